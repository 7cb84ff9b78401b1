//! The one way tests run stock kubectl: [`Kubectl`], bound to one kubeconfig, with a
//! throwaway HOME and cache directory beside it and nothing else from the environment, so
//! `~/.kube` is never read or written. [`kustomize`] runs kubectl's built-in kustomize,
//! which needs no cluster.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::process::{require, text};

/// Stock kubectl talking to the API server one kubeconfig names.
#[derive(Debug, Clone)]
pub struct Kubectl {
    program: PathBuf,
    kubeconfig: PathBuf,
    home: PathBuf,
    cache: PathBuf,
    server_log: Option<PathBuf>,
}

impl Kubectl {
    /// kubectl for `kubeconfig`; its HOME and cache are `kube-home/` and `kube-cache/`
    /// in the kubeconfig's directory.
    pub fn new(kubeconfig: &Path) -> Kubectl {
        Kubectl {
            program: require("kubectl", "kubectl"),
            kubeconfig: kubeconfig.to_path_buf(),
            home: kubeconfig.with_file_name("kube-home"),
            cache: kubeconfig.with_file_name("kube-cache"),
            server_log: None,
        }
    }

    /// Adds the server's request log at `log` to every failure message.
    pub fn with_server_log(mut self, log: &Path) -> Kubectl {
        self.server_log = Some(log.to_path_buf());
        self
    }

    /// The kubeconfig it uses.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// `kubectl --kubeconfig=… --cache-dir=… ARGS`, to add settings to (its HOME is made
    /// by [`run`](Self::run)).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg(format!("--cache-dir={}", self.cache.display()))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs kubectl to completion, capturing its output, whatever its exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        std::fs::create_dir_all(&self.home).expect("kubectl's throwaway HOME");
        self.command(args).output().expect("run kubectl")
    }

    /// Runs kubectl, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "expected success: {}", self.describe(args, &out));
        String::from_utf8(out.stdout).expect("kubectl prints UTF-8")
    }

    /// Runs kubectl, asserts failure, returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "expected failure: {}", self.describe(args, &out));
        String::from_utf8(out.stderr).expect("kubectl prints UTF-8")
    }

    /// `kubectl ARGS -o json`, parsed; asserts success.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let all = [args, &["-o", "json"]].concat();
        let stdout = self.ok(&all);
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("kubectl {all:?} printed no JSON ({e}): {stdout}"))
    }

    /// `kubectl apply --server-side -f FILE EXTRA…`; asserts success, returns stdout.
    pub fn apply(&self, file: &str, extra: &[&str]) -> String {
        self.ok(&[&["apply", "--server-side", "-f", file], extra].concat())
    }

    /// Whether `kubectl get KIND NAME -n NAMESPACE` finds the object: `true` when it
    /// does, `false` only when the server answers NotFound. Any other failure (a
    /// forbidden read, an unknown kind, a server that is down) panics, so a check that
    /// an object is gone cannot pass because kubectl failed for another reason.
    pub fn exists(&self, kind: &str, name: &str, namespace: &str) -> bool {
        let args = ["get", kind, name, "-n", namespace];
        let out = self.run(&args);
        if out.status.success() {
            return true;
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            says_not_found(&stderr),
            "expected found or NotFound: {}",
            self.describe(&args, &out)
        );
        false
    }

    /// What kubectl ARGS did, with the server's request log when there is one.
    pub fn describe(&self, args: &[&str], out: &Output) -> String {
        let log = self
            .server_log
            .as_ref()
            .map(|log| {
                let requests = std::fs::read_to_string(log).unwrap_or_default();
                format!("\nserver's request log:\n{requests}")
            })
            .unwrap_or_default();
        format!("kubectl {}\n{}{log}", args.join(" "), text(out))
    }
}

/// Whether kubectl's stderr is the server's NotFound answer (`Error from server
/// (NotFound): …`) and nothing else.
fn says_not_found(stderr: &str) -> bool {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    !lines.is_empty() && lines.iter().all(|l| l.starts_with("Error from server (NotFound):"))
}

/// `kubectl kustomize DIR` (stock kubectl with built-in kustomize); asserts success and
/// returns the rendered YAML.
pub fn kustomize(dir: &Path) -> String {
    let out = Command::new(require("kubectl", "kubectl"))
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("run kubectl kustomize");
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        text(&out)
    );
    String::from_utf8(out.stdout).expect("kustomize prints UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_servers_not_found_answer_counts_as_absent() {
        assert!(says_not_found(
            "Error from server (NotFound): configmaps \"gone\" not found\n"
        ));
        assert!(!says_not_found(""));
        assert!(!says_not_found(
            "Error from server (Forbidden): configmaps \"x\" is forbidden\n"
        ));
        assert!(!says_not_found(
            "error: the server doesn't have a resource type \"widgets\"\n"
        ));
        assert!(!says_not_found(
            "The connection to the server 127.0.0.1:1 was refused\n"
        ));
    }

    #[test]
    fn kubectl_never_uses_the_callers_home_or_kubeconfig() {
        let kubectl = Kubectl {
            program: PathBuf::from("kubectl"),
            kubeconfig: PathBuf::from("/t/kubeconfig"),
            home: PathBuf::from("/t/kube-home"),
            cache: PathBuf::from("/t/kube-cache"),
            server_log: None,
        };
        let cmd = kubectl.command(&["get", "ns"]);
        let args: Vec<_> = cmd.get_args().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            args,
            ["--kubeconfig=/t/kubeconfig", "--cache-dir=/t/kube-cache", "get", "ns"]
        );
        let envs: Vec<_> = cmd
            .get_envs()
            .map(|(k, v)| (k.to_str().unwrap(), v.map(|v| v.to_str().unwrap())))
            .filter(|(k, _)| *k != "PATH")
            .collect();
        assert!(envs.contains(&("HOME", Some("/t/kube-home"))), "{envs:?}");
        assert!(envs.contains(&("KUBECONFIG", Some("/t/kubeconfig"))), "{envs:?}");
    }
}
