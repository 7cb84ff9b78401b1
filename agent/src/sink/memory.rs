//! An in-memory sink for unit tests of the cycle: it holds which blob each bundle has,
//! can be told to refuse a bundle, and counts its writes, so a test sees every decision
//! the cycle made without files, a cluster or a network.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Error, Result};
use crate::format::{BundleName, Digest};
use crate::sink::{BundleSink, Cleared, Job, Placed, Stage};
use crate::state::{BundleState, Status};

/// Bundles held in memory.
#[derive(Debug, Default)]
pub(crate) struct MemorySink {
    /// The blob each bundle has in the sink.
    pub(crate) held: BTreeMap<BundleName, Digest>,
    /// Bundles whose apply fails (before anything is written).
    pub(crate) refuse: BTreeSet<BundleName>,
    /// Applies and removals that changed what the sink holds.
    pub(crate) writes: usize,
}

impl BundleSink for MemorySink {
    fn dependency_goal(&self) -> &'static str {
        "applied"
    }

    fn unblocks_dependents(&self, result: &BundleState, _previous: Option<&BundleState>) -> bool {
        result.digest.is_some() && result.status != Status::Removed
    }

    async fn apply(&mut self, job: &Job<'_>, stage: &mut Stage<'_>) -> Result<Placed> {
        if self.refuse.contains(job.name()) {
            return Err(Error::invalid(job.what(), "refused by the test"));
        }
        let digest = &job.chosen.digest;
        if self.held.get(job.name()) != Some(digest) {
            stage
                .record_intent(job.name(), digest, format!("writing {}", digest.short()))
                .await?;
            self.held.insert(job.name().clone(), digest.clone());
            self.writes += 1;
        }
        Ok(Placed {
            status: Status::Applied,
            message: format!("{} in memory", digest.short()),
            file_sha256: None,
            inputs: None,
            reason: None,
        })
    }

    async fn remove(&mut self, bundle: &BundleName, reason: &str) -> Result<Cleared> {
        if self.held.remove(bundle).is_some() {
            self.writes += 1;
        }
        Ok(Cleared {
            message: format!("{reason}; dropped from memory"),
            file_sha256: None,
        })
    }
}
