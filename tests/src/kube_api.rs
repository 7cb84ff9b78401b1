//! The in-repo Kubernetes API double with a kubeconfig for it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::kubectl::Kubectl;
use crate::process::{bin, spawn_announcing, Daemon};

/// The in-repo Kubernetes API double (`kube-api-double`) on a free port, killed on drop,
/// with a kubeconfig for it in `dir` and stock kubectl to talk to it. It logs every
/// request to `dir/kube-api-double.log`.
pub struct KubeApi {
    daemon: Daemon,
    /// Path of the kubeconfig pointing at the double.
    pub kubeconfig: PathBuf,
    log: PathBuf,
}

impl KubeApi {
    /// Starts the double; its kubeconfig is written to `dir/kubeconfig` (`dir` is created).
    pub fn start(dir: &Path) -> KubeApi {
        KubeApi::start_with(dir, &[])
    }

    /// Starts the double with `extra` flags (e.g. `--auto-ready`).
    pub fn start_with(dir: &Path, extra: &[&str]) -> KubeApi {
        std::fs::create_dir_all(dir).unwrap();
        let log = dir.join("kube-api-double.log");
        let (child, line) = spawn_announcing(
            Command::new(bin("kube-api-double"))
                .args(["--listen", "127.0.0.1:0", "--verbose"])
                .args(extra)
                .stderr(std::fs::File::create(&log).expect("the double's log file")),
            "kube-api-double",
        );
        let server = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("kube-api-double printed {line:?}"))
            .to_string();
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: double\n  cluster: {{server: \"{server}\"}}\n\
                 contexts:\n- name: double\n  context: {{cluster: double, user: nobody}}\ncurrent-context: double\n\
                 users:\n- name: nobody\n  user: {{}}\n"
            ),
        )
        .unwrap();
        KubeApi {
            daemon: Daemon { child, url: server },
            kubeconfig,
            log,
        }
    }

    /// Stock kubectl for the double, with its request log in failure messages.
    pub fn kubectl(&self) -> Kubectl {
        Kubectl::new(&self.kubeconfig).with_server_log(&self.log)
    }

    /// The double's base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.daemon.url
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        let port = self.daemon.url.rsplit(':').next().unwrap_or_default();
        port.parse()
            .unwrap_or_else(|_| panic!("kube-api-double URL {}", self.daemon.url))
    }

    /// Every request it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
