//! Sinks: where rendered manifests go. `dir:PATH` writes into the k3s auto-deploy
//! directory (see [`dir`]); `kube` applies through the Kubernetes API (see [`kube`]).
//!
//! The cycle ([`crate::cycle`]) decides what happens to each bundle (apply it, remove it,
//! keep what is there, wait for a dependency) and drives every sink through one trait,
//! [`BundleSink`]: a sink only carries out the apply or the removal of one bundle. A new
//! sink is one more `impl BundleSink`, and one arm where [`crate::cycle`] opens it.
//! [`Sink`] is the configured choice.

pub mod dir;
pub mod kube;
#[cfg(test)]
pub(crate) mod memory;
pub(crate) mod stage;

pub use dir::{BundleFile, DirSink};
pub(crate) use stage::Stage;

use std::path::Path;

use crate::error::{Error, Result};
use crate::format::{Bundle, BundleName, Digest};
use crate::select::Chosen;
use crate::state::{BundleState, Reason, Status};

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

    /// A directory the sink writes temporary files into, besides the state directory (a
    /// killed agent may leave some there).
    pub fn scratch_dir(&self) -> Option<&Path> {
        match self {
            Sink::Dir(dir) => Some(dir.dir()),
            Sink::Kube(_) => None,
        }
    }

    /// Publishes the status report where the sink's users look for it: for the kube sink,
    /// ConfigMap `drover-status` (for kubectl users); the dir sink has no such place.
    /// Best effort: a failure is logged.
    pub async fn publish_status(&self, status_json: &str) {
        let Sink::Kube(target) = self else {
            return;
        };
        match target.sink().await {
            Ok(sink) => {
                if let Err(e) = sink.write_status(status_json).await {
                    tracing::warn!(error = %e, "could not write the status ConfigMap");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not reach the Kubernetes API for the status ConfigMap"),
        }
    }
}

/// One bundle the cycle wants in place: its index entry, the blob chosen for this
/// cluster, and what the state recorded for it before this cycle.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Job<'a> {
    pub(crate) bundle: &'a Bundle,
    pub(crate) chosen: &'a Chosen,
    pub(crate) previous: Option<&'a BundleState>,
}

impl Job<'_> {
    pub(crate) fn name(&self) -> &BundleName {
        &self.bundle.name
    }

    /// The bundle and blob, as errors name them.
    pub(crate) fn what(&self) -> String {
        format!("bundle {} ({})", self.bundle.name, self.chosen.digest)
    }

    /// Whether the previous record is of the same blob.
    pub(crate) fn same_digest(&self) -> bool {
        self.previous.and_then(|p| p.digest.as_ref()) == Some(&self.chosen.digest)
    }
}

/// What a sink reports once a bundle is in place (the digest is the job's).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Placed {
    pub(crate) status: Status,
    pub(crate) message: String,
    /// sha256 of what the sink holds for the bundle, when it can tell (the dir sink's file).
    pub(crate) file_sha256: Option<Digest>,
    /// Fingerprint of the render inputs, when the sink skips unchanged renders by it.
    pub(crate) inputs: Option<Digest>,
    /// Why the bundle has this status, when a later cycle decides on it.
    pub(crate) reason: Option<Reason>,
}

/// What a sink reports once a bundle is removed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cleared {
    pub(crate) message: String,
    /// sha256 of what the sink holds for the bundle afterwards (the dir sink's tombstone).
    pub(crate) file_sha256: Option<Digest>,
}

/// A place bundles are applied to, as the cycle drives it.
pub(crate) trait BundleSink {
    /// What a dependent waits for, as in "waiting for db to be {goal}".
    fn dependency_goal(&self) -> &'static str;

    /// Whether a bundle whose result this cycle is `result` (recorded as `previous`
    /// before) lets the bundles that depend on it be applied.
    fn unblocks_dependents(&self, result: &BundleState, previous: Option<&BundleState>) -> bool;

    /// Puts the bundle of `job` in place, fetching and rendering its blob through `stage`.
    /// A sink records the `Applying` intent with [`Stage::record_intent`] before it first
    /// changes anything.
    async fn apply(&mut self, job: &Job<'_>, stage: &mut Stage<'_>) -> Result<Placed>;

    /// The record after [`BundleSink::apply`] failed with `message`. By default whatever
    /// was recorded stays: the previous content, or the intent recorded before a write
    /// that then failed (so the next cycle writes again or removes).
    fn failed(&self, job: &Job<'_>, recorded: Option<&BundleState>, message: String) -> BundleState {
        BundleState::keeping(recorded.or(job.previous), Status::Error, message)
    }

    /// Removes what the sink holds of `bundle`; `reason` says why, for the record.
    async fn remove(&mut self, bundle: &BundleName, reason: &str) -> Result<Cleared>;

    /// Called once every bundle of the cycle was handled: the sink saves what it keeps
    /// across cycles.
    async fn end(&mut self) {}
}
