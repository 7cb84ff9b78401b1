//! Kustomize bundles: `kubectl kustomize DIR` renders a kustomization (the bundle
//! directory, or a target's overlay) at publish time, so clusters receive plain YAML and
//! the agent needs no kustomize. kubectl has shipped kustomize since v1.14.

use std::path::Path;
use std::process::Command;

use crate::error::{Error, Result};

/// Environment variable naming the kubectl to run (default: `kubectl` on `PATH`).
pub const KUBECTL_ENV: &str = "DROVER_KUBECTL";

/// Renders the kustomization in `dir`; errors name `dir` and carry kustomize's message.
pub fn render(dir: &Path) -> Result<Vec<u8>> {
    let kubectl = std::env::var_os(KUBECTL_ENV).unwrap_or_else(|| "kubectl".into());
    let output = Command::new(&kubectl)
        .arg("kustomize")
        .arg(dir)
        .output()
        .map_err(|e| {
            let how = if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "{} not found: rendering a kustomization needs kubectl (v1.14 or later; it includes kustomize). Install it (e.g. `apt-get install kubectl` from the Kubernetes apt repository, or the static binary from https://kubernetes.io/docs/tasks/tools/) or set {KUBECTL_ENV} to its path",
                    kubectl.to_string_lossy()
                )
            } else {
                format!("cannot run {}: {e}", kubectl.to_string_lossy())
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
