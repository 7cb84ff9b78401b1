//! The in-repo Kubernetes API double with a kubeconfig for it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::process::{bin, require, spawn_announcing, Daemon};

/// The in-repo Kubernetes API double (`kube-api-double`) on a free port, killed on drop,
/// with a kubeconfig for it in `dir` and stock kubectl to talk to it.
pub struct KubeApi {
    _daemon: Daemon,
    /// Path of the kubeconfig pointing at the double.
    pub kubeconfig: PathBuf,
}

impl KubeApi {
    /// Starts the double; its kubeconfig is written to `dir/kubeconfig` (`dir` is created).
    pub fn start(dir: &Path) -> KubeApi {
        KubeApi::start_with(dir, &[])
    }

    /// Starts the double with `extra` flags (e.g. `--auto-ready`).
    pub fn start_with(dir: &Path, extra: &[&str]) -> KubeApi {
        std::fs::create_dir_all(dir).unwrap();
        let (child, line) = spawn_announcing(
            Command::new(bin("kube-api-double"))
                .args(["--listen", "127.0.0.1:0"])
                .args(extra)
                .stderr(Stdio::null()),
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
            _daemon: Daemon { child, url: server },
            kubeconfig,
        }
    }

    /// Runs stock kubectl against the double (a throwaway cache directory beside the
    /// kubeconfig, so ~/.kube is never used).
    pub fn kubectl(&self, args: &[&str]) -> Output {
        let cache = self.kubeconfig.with_file_name("kube-cache");
        Command::new(require("kubectl", "kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&cache)
            .args(args)
            .output()
            .expect("run kubectl")
    }
}
