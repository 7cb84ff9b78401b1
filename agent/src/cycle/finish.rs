//! The end of a cycle: stamp when each bundle entered its status, log what changed,
//! record the index, and save the state only when anything changed (an unchanged poll
//! writes nothing: edge devices often run on flash).

use std::path::Path;

use time::OffsetDateTime;

use super::CycleReport;
use crate::error::{Error, Result};
use crate::format::{rfc3339, BundleName, Digest};
use crate::state::{self, BundleState, IndexState, State, Status};

/// What a cycle hands to [`finish`].
pub(crate) struct Finish {
    /// The state as the cycle leaves it (intents recorded), before the results go in.
    pub(crate) state: State,
    /// The state as it was loaded at the start of the cycle.
    pub(crate) before: State,
    pub(crate) results: Vec<(BundleName, BundleState)>,
    /// The index applied; its `applied_at` is replaced by the first time it was applied.
    pub(crate) index: IndexState,
    pub(crate) source_problems: Vec<String>,
    pub(crate) index_changed: bool,
}

/// Where the state lives and how much blob cache it may keep.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StateDir<'a> {
    pub(crate) path: &'a Path,
    pub(crate) cache_bytes: u64,
}

/// Stamps `since`, logs what changed, records the index and saves the state when anything
/// changed.
pub(crate) fn finish(dir: StateDir<'_>, f: Finish, now: OffsetDateTime) -> Result<CycleReport> {
    let Finish {
        mut state,
        before,
        mut results,
        mut index,
        source_problems,
        index_changed,
    } = f;
    for (name, result) in &mut results {
        let unchanged = before
            .bundles
            .get(name)
            .filter(|p| p.status == result.status && p.digest == result.digest);
        result.since = match unchanged {
            Some(p) => p.since.clone(),
            None => Some(rfc3339(now)),
        };
        if unchanged.is_none() {
            log_result(name, result);
        }
    }
    if let Some(i) = before.index.as_ref().filter(|_| !index_changed) {
        index.applied_at = i.applied_at.clone();
    }
    let (channel, version, origin) = (index.channel.clone(), index.version, index.origin.clone());
    state.record_index(index);
    state.bundles = results.iter().cloned().collect();
    let state_written = state != before;
    if state_written {
        state.save(dir.path).map_err(|e| match e {
            Error::Io { path, source } => Error::StateNotSaved { path, source },
            other => other,
        })?;
        state::prune_blob_cache(dir.path, &state, dir.cache_bytes)?;
    }
    Ok(CycleReport {
        channel,
        version,
        origin,
        bundles: results,
        source_problems,
        previous_version: before.index.as_ref().map(|i| i.version),
        index_changed,
        state_written,
        state,
    })
}

/// One line per bundle whose outcome changed: the decisions an operator looks for.
fn log_result(name: &BundleName, result: &BundleState) {
    let digest = result.digest.as_ref().map(Digest::short);
    match result.status {
        Status::Error => tracing::error!(bundle = %name, digest, detail = %result.message, "bundle refused"),
        Status::Applied => tracing::info!(bundle = %name, digest, detail = %result.message, "bundle applied"),
        Status::Removed => tracing::info!(bundle = %name, detail = %result.message, "bundle removed"),
        status => tracing::info!(bundle = %name, digest, ?status, detail = %result.message, "bundle not applied"),
    }
}
