//! Kustomize bundles: `kubectl kustomize DIR` renders a kustomization (the bundle
//! directory, or a target's overlay) at publish time, so clusters receive plain YAML and
//! the agent needs no kustomize. kubectl has shipped kustomize since v1.14.
//!
//! Publishing must give the same digest for the same input and must not hang, so before
//! kubectl runs, the kustomization (and those of the local directories it includes) is
//! scanned for remote references (git or HTTP URLs, `helmCharts` pulled from a repository),
//! which are refused; and kubectl is killed after [`KUSTOMIZE_TIMEOUT`].

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_norway::Value;

use crate::error::{Error, Result};

/// File names that make a directory a kustomization, as kustomize looks for them.
pub const KUSTOMIZATION_FILES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// Environment variable naming the kubectl to run (default: `kubectl` on `PATH`).
pub const KUBECTL_ENV: &str = "DROVER_KUBECTL";

/// Longest a `kubectl kustomize` run may take before it is killed and the publish fails.
pub const KUSTOMIZE_TIMEOUT: Duration = Duration::from_secs(120);

/// Fields of a kustomization whose entries kustomize loads as files, directories or URLs.
const LOADED_FIELDS: [&str; 8] = [
    "resources",
    "components",
    "bases",
    "crds",
    "configurations",
    "generators",
    "transformers",
    "validators",
];

/// Most kustomization files scanned for one render (local directories that include
/// others); past that the publish fails rather than scanning forever.
const MAX_SCANNED: usize = 256;

/// Renders the kustomization in `dir`; errors name `dir` and carry kustomize's message.
pub fn render(dir: &Path) -> Result<Vec<u8>> {
    refuse_remote(dir)?;
    let kubectl = std::env::var_os(KUBECTL_ENV).unwrap_or_else(|| "kubectl".into());
    let mut command = Command::new(&kubectl);
    command.arg("kustomize").arg(dir);
    let output = run_with_timeout(command, KUSTOMIZE_TIMEOUT).map_err(|e| {
        let how = match e {
            Run::Spawn(e) if e.kind() == std::io::ErrorKind::NotFound => format!(
                "{} not found: rendering a kustomization needs kubectl (v1.14 or later; it includes kustomize). Install it (e.g. `apt-get install kubectl` from the Kubernetes apt repository, or the static binary from https://kubernetes.io/docs/tasks/tools/) or set {KUBECTL_ENV} to its path",
                kubectl.to_string_lossy()
            ),
            Run::Spawn(e) | Run::Io(e) => format!("cannot run {}: {e}", kubectl.to_string_lossy()),
            Run::TimedOut(after) => format!(
                "kubectl kustomize did not finish within {}s and was killed (a kustomization that \
                 loads something slow or never ends)",
                after.as_secs()
            ),
        };
        Error::source(dir, how)
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(Error::source(
            dir,
            format!("kubectl kustomize failed ({}): {}", output.status, stderr.trim()),
        ));
    }
    Ok(output.stdout)
}

/// Why a child could not be run to its end.
#[derive(Debug)]
enum Run {
    Spawn(std::io::Error),
    Io(std::io::Error),
    TimedOut(Duration),
}

/// Runs `command` with its output captured, killing it (and failing) past `timeout`.
fn run_with_timeout(mut command: Command, timeout: Duration) -> std::result::Result<std::process::Output, Run> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(Run::Spawn)?;
    // Read both pipes while waiting, so a child with much output never blocks on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                pipe.read_to_end(&mut bytes)?;
            }
            Ok::<_, std::io::Error>(bytes)
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().map_err(Run::Io)? {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                // Killed and reaped; the reader threads end when the pipes close.
                let _ = child.kill();
                let _ = child.wait();
                return Err(Run::TimedOut(timeout));
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let join = |h: std::thread::JoinHandle<std::io::Result<Vec<u8>>>| {
        h.join()
            .unwrap_or_else(|_| Err(std::io::Error::other("output reader panicked")))
            .map_err(Run::Io)
    };
    Ok(std::process::Output {
        status,
        stdout: join(stdout)?,
        stderr: join(stderr)?,
    })
}

/// Refuses a kustomization in `dir` (or in a local directory it includes) that loads
/// anything remote; the error names the kustomization file and the field.
pub fn refuse_remote(dir: &Path) -> Result<()> {
    let mut seen = BTreeSet::new();
    let mut queue = vec![dir.to_path_buf()];
    while let Some(dir) = queue.pop() {
        let Some(file) = KUSTOMIZATION_FILES.iter().map(|f| dir.join(f)).find(|f| f.is_file()) else {
            continue;
        };
        let canonical = file.canonicalize().unwrap_or_else(|_| file.clone());
        if !seen.insert(canonical) {
            continue;
        }
        if seen.len() > MAX_SCANNED {
            return Err(Error::source(
                &file,
                format!("more than {MAX_SCANNED} kustomizations included from one overlay"),
            ));
        }
        let text = std::fs::read_to_string(&file).map_err(|e| drover_agent::Error::io(&file, e))?;
        // A file kustomize cannot parse is left for kubectl to report.
        let Ok(Value::Mapping(k)) = serde_norway::from_str::<Value>(&text) else {
            continue;
        };
        for field in LOADED_FIELDS {
            let Some(Value::Sequence(entries)) = k.get(field) else {
                continue;
            };
            for (i, entry) in entries.iter().enumerate() {
                let Some(entry) = entry.as_str() else { continue };
                // A local path that exists is local, whatever its name looks like.
                if is_remote(entry) && !dir.join(entry).exists() {
                    return Err(remote(&file, &format!("{field}[{i}]"), entry));
                }
                let local: PathBuf = dir.join(entry);
                if local.is_dir() {
                    queue.push(local);
                }
            }
        }
        if let Some(Value::Sequence(charts)) = k.get("helmCharts") {
            for (i, chart) in charts.iter().enumerate() {
                if let Some(repo) = chart.get("repo").and_then(Value::as_str) {
                    return Err(remote(&file, &format!("helmCharts[{i}].repo"), repo));
                }
            }
        }
    }
    Ok(())
}

fn remote(file: &Path, field: &str, entry: &str) -> Error {
    Error::source(
        file,
        format!(
            "{field}: {entry:?} is a remote reference; publish renders local files only, so the \
             same checkout always gives the same digest: copy it into the bundle repository \
             (or use a Helm chart bundle with chart:)"
        ),
    )
}

/// Whether a kustomization entry names something kustomize would fetch: a URL, a git
/// reference, or a `host.name/path` remote target.
fn is_remote(entry: &str) -> bool {
    let entry = entry.trim();
    if entry.contains("://") || entry.starts_with("git@") || entry.starts_with("git::") {
        return true;
    }
    if entry.contains("?ref=") || entry.contains("?version=") || entry.contains("?timeout=") {
        return true;
    }
    // `github.com/org/repo//path`: a first path component that looks like a host name.
    let first = entry.split('/').next().unwrap_or_default();
    entry.contains('/')
        && first.contains('.')
        && first != "."
        && first != ".."
        && !first.starts_with('.')
        && first
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_references_are_told_from_local_paths() {
        for remote in [
            "https://github.com/org/repo//deploy?ref=v1",
            "github.com/org/repo/deploy?ref=main",
            "gitlab.com/org/repo//base",
            "git@github.com:org/repo.git",
            "ssh://git@example.com/repo.git",
            "http://example.com/all.yaml",
        ] {
            assert!(is_remote(remote), "{remote}");
        }
        for local in [
            "deployment.yaml",
            "../base",
            "./overlays/prod",
            "base/v1.2",
            "configs/app.v2/x.yaml",
            ".hidden/dir",
        ] {
            assert!(!is_remote(local), "{local}");
        }
    }

    #[test]
    fn a_remote_resource_is_refused_naming_the_file_and_field_even_in_an_included_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().join("base");
        std::fs::create_dir_all(&base).expect("mkdir");
        std::fs::write(dir.path().join("kustomization.yaml"), "resources: [cm.yaml, base]\n").expect("write");
        std::fs::write(base.join("kustomization.yaml"), "resources: [ok.yaml]\n").expect("write");
        refuse_remote(dir.path()).expect("local only");

        std::fs::write(
            base.join("kustomization.yaml"),
            "resources: [ok.yaml]\ncomponents: [\"https://example.com/c?ref=v1\"]\n",
        )
        .expect("write");
        let err = refuse_remote(dir.path()).expect_err("remote").to_string();
        assert!(
            err.contains("base/kustomization.yaml") && err.contains("components[0]") && err.contains("remote"),
            "{err}"
        );

        std::fs::write(
            base.join("kustomization.yaml"),
            "helmCharts:\n- name: x\n  repo: https://charts.example.com\n",
        )
        .expect("write");
        let err = refuse_remote(dir.path()).expect_err("chart repo").to_string();
        assert!(err.contains("helmCharts[0].repo"), "{err}");
    }

    #[test]
    fn a_kustomization_that_includes_itself_is_scanned_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("kustomization.yaml"), "resources: [., ./]\n").expect("write");
        refuse_remote(dir.path()).expect("no loop");
    }

    #[test]
    fn a_child_past_its_time_is_killed_and_reported() {
        let mut command = Command::new("sleep");
        command.arg("600");
        match run_with_timeout(command, Duration::from_millis(100)) {
            Err(Run::TimedOut(after)) => assert_eq!(after, Duration::from_millis(100)),
            other => panic!("expected a timeout, got {other:?}"),
        }
        let mut command = Command::new("sh");
        command.args(["-c", "echo out; echo err >&2"]);
        let output = run_with_timeout(command, Duration::from_secs(600)).expect("runs");
        assert_eq!((output.stdout, output.stderr), (b"out\n".to_vec(), b"err\n".to_vec()));
    }
}
