//! What the cycle lends a sink while it applies one bundle: the blob (fetched and
//! verified), rendering with this cluster's settings, and the state, so the sink records
//! its `Applying` intent before it changes anything.

use std::path::Path;

use time::OffsetDateTime;

use crate::allow::AllowList;
use crate::error::Result;
use crate::format::{BundleName, Digest};
use crate::render::{render_bundle, Limits, ObjectWriter, Rendering};
use crate::select::Cluster;
use crate::sink::Job;
use crate::source::blob::{BlobFetch, VerifiedBlob};
use crate::state::{BundleState, State, Status};

/// How bundles render for this cluster.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RenderSettings<'a> {
    pub(crate) cluster: &'a Cluster,
    pub(crate) limits: &'a Limits,
    pub(crate) allow: Option<&'a AllowList>,
}

/// The cycle's tools for one sink, for the length of the cycle.
#[derive(Debug)]
pub(crate) struct Stage<'a> {
    pub(crate) blobs: BlobFetch<'a>,
    pub(crate) render: RenderSettings<'a>,
    pub(crate) state: &'a mut State,
    pub(crate) state_dir: &'a Path,
    /// The time this cycle runs at.
    pub(crate) now: OffsetDateTime,
}

impl Stage<'_> {
    /// A verified copy of the job's blob.
    pub(crate) async fn fetch(&self, job: &Job<'_>) -> Result<VerifiedBlob> {
        self.blobs.fetch(&job.chosen.digest, job.chosen.size).await
    }

    /// Renders `blob` for `job` into `out` on the blocking pool; returns `out` and what
    /// rendering learnt. On error, what `out` received must be discarded.
    pub(crate) async fn render_into<W>(&self, blob: VerifiedBlob, job: &Job<'_>, mut out: W) -> Result<(W, Rendering)>
    where
        W: ObjectWriter + Send + 'static,
    {
        let what = job.what();
        let namespace = job.bundle.namespace.clone();
        let cluster = self.render.cluster.clone();
        let limits = self.render.limits.clone();
        crate::blocking::run(move || {
            let rendering = render_bundle(&blob, &what, namespace.as_deref(), &cluster, &limits, &mut out)?;
            Ok((out, rendering))
        })
        .await
    }

    /// Records that `bundle` is about to be applied at `digest` (`Applying`, with
    /// `message`) and saves the state, before the sink is touched: a crash mid-apply still
    /// leaves the agent knowing that bundle's objects may exist.
    pub(crate) async fn record_intent(&mut self, bundle: &BundleName, digest: &Digest, message: String) -> Result<()> {
        let intent = BundleState {
            status: Status::Applying,
            message,
            digest: Some(digest.clone()),
            file_sha256: None,
            inputs: None,
            since: None,
            reason: None,
        };
        self.state.bundles.insert(bundle.clone(), intent);
        let (state, dir) = (self.state.clone(), self.state_dir.to_path_buf());
        crate::blocking::run(move || state.save(&dir)).await
    }
}
