//! Running programs: the workspace's binaries, external tools the tests require, and
//! child processes killed on drop.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Path of a workspace binary (`drover` or `drover-agent`) next to this test executable.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile> directory");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} not found: build the binaries first with `cargo build --workspace --bins` (bash tests/run.sh does)",
        path.display()
    );
    path
}

/// Finds an external command on PATH, then in the system directories (the `sbin` ones are
/// often missing from a user's PATH); fails with a clear message when it is missing.
pub fn require(cmd: &str, package: &str) -> PathBuf {
    find_program(cmd, std::env::var_os("PATH").as_deref()).unwrap_or_else(|| panic!("{}", missing(cmd, package)))
}

fn find_program(cmd: &str, path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    let on_path = path
        .map(|p| std::env::split_paths(p).collect::<Vec<_>>())
        .unwrap_or_default();
    let system = [
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
        "/usr/local/bin",
        "/usr/local/sbin",
    ];
    on_path
        .into_iter()
        .chain(system.iter().map(PathBuf::from))
        .map(|dir| dir.join(cmd))
        .find(|p| p.is_file())
}

fn missing(cmd: &str, package: &str) -> String {
    if cmd == "kubectl" {
        return "kubectl is required by this test but not on PATH: install the official binary \
                (curl -LO https://dl.k8s.io/release/v1.32.4/bin/linux/amd64/kubectl && \
                install -m 0755 kubectl /usr/local/bin/kubectl); Debian 12's kubernetes-client (1.20) is too old"
            .to_string();
    }
    format!(
        "{cmd} is required by this test but not installed: apt-get install {package} (bash tests/run.sh installs it)"
    )
}

/// Runs a command to completion, capturing output.
pub fn run(cmd: &Path, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", cmd.display()))
}

/// stdout and stderr of a finished command, for messages.
pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Polls `cond` until it holds or `timeout` passes.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process killed on drop.
pub struct Daemon {
    pub(crate) child: Child,
    /// Base URL it serves.
    pub url: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `cmd` with its stdout piped and returns it with the first line it prints (the
/// daemons used here announce their address that way).
pub(crate) fn spawn_announcing(cmd: &mut Command, what: &str) -> (Child, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line)
}

pub(crate) fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_on_path_before_the_system_directories() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sh"), "").unwrap();
        let path = std::env::join_paths([dir.path()]).unwrap();
        assert_eq!(find_program("sh", Some(&path)), Some(dir.path().join("sh")));
        let system = find_program("sh", None).expect("sh in a system directory");
        assert!(system.starts_with("/usr") || system.starts_with("/bin"), "{system:?}");
        assert_eq!(find_program("no-such-program-anywhere", Some(&path)), None);
    }

    #[test]
    fn a_missing_kubectl_says_how_to_install_it() {
        assert!(missing("kubectl", "kubectl").contains("dl.k8s.io"));
        assert!(missing("nginx", "nginx-light").contains("apt-get install nginx-light"));
    }
}
