//! The one way tests build a `drover-agent` command line: [`AgentRun`]. A test names what
//! differs from a site's defaults (sources, cluster, labels, sink, extra flags) and then
//! runs the agent to completion, spawns it to kill it at some point, or starts it as a
//! daemon.
//!
//! ```no_run
//! # use drover_e2e::{AgentRun, Site};
//! # let site = Site::new();
//! let out = AgentRun::once(&site).cluster("site-7").label("env=prod").run();
//! ```

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::agent_daemon::AgentDaemon;
use crate::process::bin;
use crate::site::Site;

/// Interval of a daemon started by a test: long enough that only `POST /sync` and signals
/// drive its cycles, never the clock.
const DAEMON_INTERVAL: &str = "1h";

/// How often [`AgentRun::run_within`] looks whether the agent has ended.
const POLL: Duration = Duration::from_millis(20);

/// Whether the agent runs one cycle and exits, or stays up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Adds nothing: the flags the test gives are the whole command line.
    Bare,
    /// `--once --listen off`.
    Once,
    /// `--interval 1h`; [`AgentRun::start`] adds the listener.
    Daemon,
}

/// How a run started by [`AgentRun::kill_after`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It exited on its own before the kill.
    Finished,
    /// It was still running and got SIGKILL.
    Killed,
}

/// A `drover-agent` command line under construction.
#[derive(Debug, Clone)]
pub struct AgentRun {
    program: PathBuf,
    mode: Mode,
    sources: Vec<String>,
    default_source: Option<String>,
    key: Option<String>,
    cluster: Option<String>,
    labels: Vec<String>,
    sink: Option<String>,
    state_dir: Option<String>,
    extra: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
}

impl AgentRun {
    /// The built `drover-agent` with no flags at all (for `--config` and bad-flag tests).
    pub fn bare() -> AgentRun {
        AgentRun::with_program(bin("drover-agent"))
    }

    fn with_program(program: PathBuf) -> AgentRun {
        AgentRun {
            program,
            mode: Mode::Bare,
            sources: Vec::new(),
            default_source: None,
            key: None,
            cluster: None,
            labels: Vec::new(),
            sink: None,
            state_dir: None,
            extra: Vec::new(),
            env: Vec::new(),
        }
    }

    /// `drover-agent --once --listen off` trusting `site`'s key, with the `dir` sink at
    /// `site/manifests` and state in `site/state`, reading the site's store unless a
    /// [`source`](Self::source) is given.
    pub fn once(site: &Site) -> AgentRun {
        AgentRun {
            mode: Mode::Once,
            ..AgentRun::for_site(site)
        }
    }

    /// [`once`](Self::once)'s defaults for a daemon (`--interval 1h`), to [`start`](Self::start).
    pub fn daemon(site: &Site) -> AgentRun {
        AgentRun {
            mode: Mode::Daemon,
            ..AgentRun::for_site(site)
        }
    }

    fn for_site(site: &Site) -> AgentRun {
        AgentRun {
            default_source: Some(site.store_url()),
            key: Some(site.p("keys/drover.pub")),
            sink: Some(format!("dir:{}", site.p("manifests"))),
            state_dir: Some(site.p("state")),
            ..AgentRun::bare()
        }
    }

    /// Runs `program` instead of the built agent (the static agent in a chroot).
    pub fn program(mut self, program: impl AsRef<Path>) -> AgentRun {
        self.program = program.as_ref().to_path_buf();
        self
    }

    /// Adds `--once --listen off` to a [`bare`](Self::bare) command line.
    pub fn one_cycle(mut self) -> AgentRun {
        self.mode = Mode::Once;
        self
    }

    /// Adds a `--source` (in order; the first replaces the site's default store).
    pub fn source(mut self, url: &str) -> AgentRun {
        self.sources.push(url.to_string());
        self
    }

    /// Adds a `--source` for each of `urls`.
    pub fn sources(self, urls: &[&str]) -> AgentRun {
        urls.iter().fold(self, |run, url| run.source(url))
    }

    /// Trusts the public key at `path` instead of the site's.
    pub fn key(mut self, path: &str) -> AgentRun {
        self.key = Some(path.to_string());
        self
    }

    /// `--cluster-name NAME`.
    pub fn cluster(mut self, name: &str) -> AgentRun {
        self.cluster = Some(name.to_string());
        self
    }

    /// Adds a `--label KEY=VALUE`.
    pub fn label(mut self, label: &str) -> AgentRun {
        self.labels.push(label.to_string());
        self
    }

    /// Adds a `--label` for each of `labels`.
    pub fn labels(self, labels: &[&str]) -> AgentRun {
        labels.iter().fold(self, |run, label| run.label(label))
    }

    /// The `dir` sink writing into `dir`.
    pub fn dir_sink(mut self, dir: impl AsRef<Path>) -> AgentRun {
        self.sink = Some(format!("dir:{}", dir.as_ref().display()));
        self
    }

    /// The `kube` sink talking to the API that `kubeconfig` names.
    pub fn kube(mut self, kubeconfig: impl AsRef<Path>) -> AgentRun {
        self.sink = Some(format!("kube:{}", kubeconfig.as_ref().display()));
        self
    }

    /// `--state-dir DIR`.
    pub fn state_dir(mut self, dir: impl AsRef<Path>) -> AgentRun {
        self.state_dir = Some(dir.as_ref().display().to_string());
        self
    }

    /// The `dir` sink at `dir/manifests` and state in `dir/state`, so that several
    /// clusters can share one site.
    pub fn under(self, dir: impl AsRef<Path>) -> AgentRun {
        let dir = dir.as_ref();
        self.dir_sink(dir.join("manifests")).state_dir(dir.join("state"))
    }

    /// Adds one flag or value, after everything else.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> AgentRun {
        self.extra.push(arg.as_ref().to_os_string());
        self
    }

    /// Adds flags and values, after everything else.
    pub fn args<S: AsRef<OsStr>>(self, args: impl IntoIterator<Item = S>) -> AgentRun {
        args.into_iter().fold(self, |run, arg| run.arg(arg))
    }

    /// Sets an environment variable for the agent.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> AgentRun {
        self.env
            .push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    /// The arguments after the program name.
    pub fn argv(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        let mut flag = |name: &str, value: &str| args.extend([OsString::from(name), OsString::from(value)]);
        let sources = match (&self.sources[..], &self.default_source) {
            ([], Some(default)) => std::slice::from_ref(default),
            (given, _) => given,
        };
        for source in sources {
            flag("--source", source);
        }
        let named = [
            ("--key", &self.key),
            ("--cluster-name", &self.cluster),
            ("--sink", &self.sink),
            ("--state-dir", &self.state_dir),
        ];
        for (name, value) in named {
            if let Some(value) = value {
                flag(name, value);
            }
        }
        for label in &self.labels {
            flag("--label", label);
        }
        match self.mode {
            Mode::Bare => {}
            Mode::Once => args.extend(["--once", "--listen", "off"].map(OsString::from)),
            Mode::Daemon => args.extend(["--interval", DAEMON_INTERVAL].map(OsString::from)),
        }
        args.extend(self.extra.iter().cloned());
        args
    }

    /// The command, to add stdio settings to.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(self.argv());
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// The command run by `wrapper WRAPPER_ARGS… AGENT ARGS…` (e.g. `unshare --net`,
    /// `chroot ROOT`), with the agent's environment.
    pub fn command_under(&self, wrapper: &Path, wrapper_args: &[&str]) -> Command {
        let mut cmd = Command::new(wrapper);
        cmd.args(wrapper_args).arg(&self.program).args(self.argv());
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Runs the agent to completion, capturing its output.
    pub fn run(&self) -> Output {
        self.command()
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.program.display()))
    }

    /// [`run`](Self::run), failing the test instead of hanging if the agent has not ended
    /// after `patience`.
    pub fn run_within(&self, patience: Duration) -> Output {
        let mut child = self.spawn(Stdio::piped);
        let deadline = Instant::now() + patience;
        while child.try_wait().expect("wait for drover-agent").is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                panic!("drover-agent did not end within {patience:?}: {:?}", self.argv());
            }
            std::thread::sleep(POLL);
        }
        child.wait_with_output().expect("collect drover-agent output")
    }

    /// Spawns the agent with its output discarded, so the test can kill it mid-run.
    pub fn spawn_quiet(&self) -> Child {
        self.spawn(Stdio::null)
    }

    /// Spawns the agent, waits `delay`, and kills it with SIGKILL if it is still running.
    pub fn kill_after(&self, delay: Duration) -> Ended {
        let mut child = self.spawn_quiet();
        std::thread::sleep(delay);
        let ended = match child.try_wait().expect("wait for drover-agent") {
            Some(_) => Ended::Finished,
            None => {
                let _ = child.kill();
                Ended::Killed
            }
        };
        child.wait().expect("reap drover-agent");
        ended
    }

    /// Starts the agent as a daemon with its listener on a free port and debug logs, and
    /// waits until it listens.
    pub fn start(&self) -> AgentDaemon {
        let mut cmd = self.command();
        cmd.args(["--listen", "127.0.0.1:0"])
            .env("DROVER_LOG", "drover_agent=debug");
        AgentDaemon::spawn(cmd)
    }

    fn spawn(&self, output: fn() -> Stdio) -> Child {
        self.command()
            .stdout(output())
            .stderr(output())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.program.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(run: &AgentRun) -> Vec<String> {
        run.argv().into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn bare_adds_nothing_but_what_is_given() {
        let run = AgentRun::with_program(PathBuf::from("/drover-agent"));
        assert!(strings(&run).is_empty());
        assert_eq!(strings(&run.key("/k").arg("--once")), ["--key", "/k", "--once"]);
    }

    #[test]
    fn given_sources_replace_the_default_store_in_order() {
        let run = AgentRun {
            default_source: Some("file:///store".into()),
            mode: Mode::Once,
            ..AgentRun::with_program(PathBuf::from("drover-agent"))
        };
        assert_eq!(
            strings(&run),
            ["--source", "file:///store", "--once", "--listen", "off"]
        );
        let run = run.sources(&["http://a/", "http://b/"]).label("env=prod");
        assert_eq!(
            strings(&run),
            [
                "--source",
                "http://a/",
                "--source",
                "http://b/",
                "--label",
                "env=prod",
                "--once",
                "--listen",
                "off"
            ]
        );
    }

    #[test]
    fn under_puts_the_dir_sink_and_state_side_by_side() {
        let run = AgentRun::with_program(PathBuf::from("drover-agent")).under("/c");
        assert_eq!(strings(&run), ["--sink", "dir:/c/manifests", "--state-dir", "/c/state"]);
    }
}
