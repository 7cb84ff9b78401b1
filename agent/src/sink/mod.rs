//! Sinks: where rendered manifests go. `dir:PATH` writes into the k3s auto-deploy
//! directory (see [`dir`]); `kube` applies through the Kubernetes API (see [`kube`]).

pub mod dir;
pub mod kube;

pub use dir::{BundleFile, DirSink};

use crate::error::{Error, Result};

/// A configured sink.
#[derive(Debug, Clone)]
pub enum Sink {
    /// Files in a k3s auto-deploy manifests directory.
    Dir(DirSink),
    /// The Kubernetes API (connected at the first cycle, inside the runtime).
    Kube(std::sync::Arc<KubeTarget>),
}

/// The `kube` sink's settings and, once connected, its client.
#[derive(Debug)]
pub struct KubeTarget {
    /// Where to connect.
    pub options: kube::KubeOptions,
    connected: tokio::sync::OnceCell<kube::KubeSink>,
}

impl KubeTarget {
    /// The connected sink (connecting on first use).
    pub async fn sink(&self) -> Result<&kube::KubeSink> {
        self.connected
            .get_or_try_init(|| kube::KubeSink::connect(&self.options))
            .await
    }
}

impl Sink {
    /// Parses `dir:PATH`, `kube` (in-cluster or `$KUBECONFIG`) or `kube:KUBECONFIG`, with
    /// an optional `?namespace=NS` for the agent's own namespace (default drover-system).
    pub fn parse(spec: &str) -> Result<Self> {
        let (spec_path, namespace) = match spec.split_once("?namespace=") {
            Some((s, ns)) if !ns.is_empty() => (s, ns.to_string()),
            _ => (spec, kube::DEFAULT_NAMESPACE.to_string()),
        };
        match spec_path.split_once(':').unwrap_or((spec_path, "")) {
            ("dir", path) if !path.is_empty() && spec_path == spec => Ok(Sink::Dir(DirSink::new(path.into()))),
            ("kube", path) => Ok(Sink::Kube(std::sync::Arc::new(KubeTarget {
                options: kube::KubeOptions {
                    kubeconfig: (!path.is_empty()).then(|| path.into()),
                    namespace,
                },
                connected: tokio::sync::OnceCell::new(),
            }))),
            _ => Err(Error::Config(format!(
                "sink {spec:?}: expected dir:PATH (e.g. dir:/var/lib/rancher/k3s/server/manifests) or kube[:KUBECONFIG]"
            ))),
        }
    }
}
