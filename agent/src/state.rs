//! The agent's state directory: what was applied, written atomically so a crash at any
//! point leaves either the old or the new state, and the next cycle re-converges.
//!
//! Layout: `state.json` (this module's [`State`]), `status.json` (see [`crate::status`])
//! and `blobs/<hex>`, a cache of verified bundle blobs: everything currently applied, plus
//! the most recently used others up to a size bound, so a rollback to a recent digest
//! needs no download. `lock` is held by the one agent using the directory (see
//! [`StateLock`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::{BundleName, Digest};
use crate::fsutil;
use crate::verify::Applied;

mod lock;
pub use lock::{StateLock, LOCK_FILE};

/// File name of the state inside the state directory.
pub const STATE_FILE: &str = "state.json";
/// Directory of cached blobs inside the state directory.
pub const BLOB_CACHE_DIR: &str = "blobs";

/// Everything the agent remembers between cycles.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// The last index applied (anti-rollback reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<IndexState>,
    /// Per-bundle result of the last cycle and what is in the sink.
    #[serde(default)]
    pub bundles: BTreeMap<BundleName, BundleState>,
    /// The last index applied of each channel this agent followed before `index`'s: each
    /// channel counts its versions on its own, so moving to another channel (`--channel`)
    /// is checked against that channel's own history, and moving back cannot roll back.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub other_channels: BTreeMap<String, ChannelRecord>,
}

/// The anti-rollback reference of a channel followed earlier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelRecord {
    /// Last version applied of that channel.
    pub version: u64,
    /// sha256 of that index's exact bytes.
    pub sha256: Digest,
}

/// The last applied index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexState {
    /// Channel name.
    pub channel: String,
    /// Version applied.
    pub version: u64,
    /// sha256 of the exact index bytes.
    pub sha256: Digest,
    /// Where it was read from.
    pub origin: String,
    /// When the cycle that applied it finished (RFC 3339).
    pub applied_at: String,
}

/// One bundle's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleState {
    /// Result of the last cycle for this bundle.
    pub status: Status,
    /// Human explanation of the status.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Blob currently applied in the sink, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// sha256 of the file the dir sink wrote (manifests or tombstone), to detect drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_sha256: Option<Digest>,
    /// Fingerprint of everything besides the blob that shaped the rendered output (cluster
    /// name and labels, default namespace), so a change to any of them re-renders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Digest>,
    /// When the bundle entered this status with this digest (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Why the bundle is in this status, when a later cycle decides on it (the message
    /// explains it to people; this says it to the agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
}

/// Why a bundle is in its status, for the decisions of later cycles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
#[non_exhaustive]
pub enum Reason {
    /// Its objects were not healthy within the bundle's health timeout (kube sink): it
    /// stays an Error until they are, rather than flapping back to Applying.
    #[serde(rename_all = "camelCase")]
    HealthTimeout {
        /// The timeout that passed, in seconds.
        after_seconds: u64,
    },
}

impl BundleState {
    /// A result that changes nothing in the sink: whatever `previous` had applied stays.
    pub fn keeping(previous: Option<&BundleState>, status: Status, message: String) -> Self {
        BundleState {
            status,
            message,
            digest: previous.and_then(|p| p.digest.clone()),
            file_sha256: previous.and_then(|p| p.file_sha256.clone()),
            inputs: previous.and_then(|p| p.inputs.clone()),
            since: None,
            reason: None,
        }
    }

    /// Whether the sink may hold objects of this bundle (so removal must be written).
    pub fn may_have_objects(&self) -> bool {
        self.digest.is_some() || self.file_sha256.is_some()
    }
}

/// Per-bundle result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// The bundle's manifests are in the sink at the targeted digest.
    Applied,
    /// Applied through the Kubernetes API and every object is healthy (kube sink).
    Ready,
    /// A write to the sink has started and not been confirmed (recorded before the write,
    /// so a crash in between is repaired by the next cycle).
    Applying,
    /// The bundle could not be applied this cycle; the previous content stays.
    Error,
    /// Waiting for a bundle in `dependsOn` to be applied first.
    PendingDependency,
    /// Paused in the index: the applied digest (if any) is kept.
    Paused,
    /// Outside the current rollout wave: the applied digest (if any) is kept.
    OutsideRollout,
    /// No target matches this cluster and nothing was ever applied.
    NotTargeted,
    /// It was applied before and is no longer targeted: its objects are being removed.
    Removed,
}

impl Status {
    /// Whether this status means the bundle is where the index wants it.
    pub fn is_settled(self) -> bool {
        !matches!(self, Status::Error | Status::PendingDependency | Status::Applying)
    }
}

impl State {
    /// Loads the state of `dir`; a missing file is an empty state (first run).
    pub fn load(dir: &Path) -> Result<State> {
        let path = dir.join(STATE_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::invalid(
                    path.display().to_string(),
                    format!("state file is corrupt ({e}); move it away to start afresh"),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Writes the state to `dir` atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        fsutil::ensure_dir(dir)?;
        let bytes = serde_json::to_vec_pretty(self).expect("state serialises: plain data, string keys");
        fsutil::write_atomic(&dir.join(STATE_FILE), &bytes)
    }

    /// The anti-rollback reference: the last index applied.
    pub fn applied(&self) -> Option<Applied> {
        self.index.as_ref().map(|i| Applied {
            version: i.version,
            sha256: i.sha256.clone(),
        })
    }

    /// The anti-rollback reference for `channel`: the last index applied of that channel,
    /// if this agent ever followed it.
    pub fn applied_in(&self, channel: &str) -> Option<Applied> {
        match &self.index {
            Some(i) if i.channel == channel => self.applied(),
            _ => self.other_channels.get(channel).map(|r| Applied {
                version: r.version,
                sha256: r.sha256.clone(),
            }),
        }
    }

    /// Records `index` as the last applied; when it is of another channel than the one
    /// before, that channel's last version is kept in [`State::other_channels`].
    pub fn record_index(&mut self, index: IndexState) {
        if let Some(old) = self.index.take().filter(|old| old.channel != index.channel) {
            self.other_channels.insert(
                old.channel,
                ChannelRecord {
                    version: old.version,
                    sha256: old.sha256,
                },
            );
        }
        self.other_channels.remove(&index.channel);
        self.index = Some(index);
    }
}

/// Path of the cached blob `digest` in state directory `dir`.
pub fn cached_blob(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join(BLOB_CACHE_DIR).join(digest.hex())
}

/// Marks a cached blob as just used (its mtime orders the LRU eviction).
pub fn touch_cached_blob(path: &Path) {
    if let Ok(file) = std::fs::File::options().append(true).open(path) {
        // Best effort: a failed touch only makes the blob an earlier eviction candidate.
        let _ = file.set_modified(std::time::SystemTime::now());
    }
}

/// Bounds the blob cache: blobs `state` references are always kept; the others are kept
/// most recently used first while the whole cache stays within `max_bytes`. Leftover
/// temporary files of an interrupted download are removed.
pub fn prune_blob_cache(dir: &Path, state: &State, max_bytes: u64) -> Result<()> {
    let cache = dir.join(BLOB_CACHE_DIR);
    let in_use: Vec<&str> = state
        .bundles
        .values()
        .filter_map(|b| b.digest.as_ref())
        .map(Digest::hex)
        .collect();
    let entries = match std::fs::read_dir(&cache) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(cache, e)),
    };
    let mut total = 0u64;
    let mut others = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&cache, e))?;
        let path = entry.path();
        let meta = entry.metadata().map_err(|e| Error::io(&path, e))?;
        let name = entry.file_name();
        if is_partial(&name) {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        } else if in_use.iter().any(|k| name == std::ffi::OsStr::new(k)) {
            total += meta.len();
        } else {
            let used = meta.modified().unwrap_or(std::time::SystemTime::UNIX_EPOCH);
            others.push((used, meta.len(), path));
        }
    }
    others.sort_by_key(|entry| std::cmp::Reverse(entry.0));
    for (_, len, path) in others {
        if total + len <= max_bytes {
            total += len;
        } else {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}

/// Whether a file of the blob cache is a download or spool in progress (or left by a
/// killed run): those are named with a leading dot, blobs by their hex digest.
fn is_partial(name: &std::ffi::OsStr) -> bool {
    name.to_string_lossy().starts_with('.')
}

/// Removes the partial downloads a killed run left in the blob cache of state directory
/// `dir`; returns how many. Only call it when no download is under way.
pub fn remove_partial_blobs(dir: &Path) -> Result<usize> {
    let cache = dir.join(BLOB_CACHE_DIR);
    let entries = match std::fs::read_dir(&cache) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(cache, e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&cache, e))?;
        if is_partial(&entry.file_name()) {
            let path = entry.path();
            match std::fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(path, e)),
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_missing_file_is_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(State::load(dir.path()).expect("empty"), State::default());
        let mut state = State::default();
        state.bundles.insert(
            BundleName::parse("web").expect("name"),
            BundleState {
                status: Status::Applied,
                message: String::new(),
                digest: Some(Digest::of(b"x")),
                file_sha256: None,
                inputs: None,
                since: Some("2026-11-26T00:00:00Z".into()),
                reason: None,
            },
        );
        state.save(dir.path()).expect("save");
        assert_eq!(State::load(dir.path()).expect("load"), state);
    }

    #[test]
    fn blob_cache_keeps_blobs_in_use_and_evicts_least_recently_used_beyond_the_bound() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = dir.path().join(BLOB_CACHE_DIR);
        std::fs::create_dir_all(&cache).expect("mkdir");
        let in_use = Digest::of(b"in use");
        let (old, recent) = (Digest::of(b"old"), Digest::of(b"recent"));
        for (i, d) in [&in_use, &old, &recent].into_iter().enumerate() {
            let path = cached_blob(dir.path(), d);
            std::fs::write(&path, vec![0u8; 100]).expect("write");
            let file = std::fs::File::options().append(true).open(&path).expect("open");
            let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000 + i as u64);
            file.set_modified(t).expect("mtime");
        }
        std::fs::write(cache.join(".blob-partial"), b"x").expect("write");
        let mut state = State::default();
        state.bundles.insert(
            BundleName::parse("web").expect("name"),
            BundleState {
                status: Status::Applied,
                message: String::new(),
                digest: Some(in_use.clone()),
                file_sha256: None,
                inputs: None,
                since: None,
                reason: None,
            },
        );
        prune_blob_cache(dir.path(), &state, 250).expect("prune");
        assert!(cached_blob(dir.path(), &in_use).exists());
        assert!(cached_blob(dir.path(), &recent).exists(), "most recent other blob fits");
        assert!(!cached_blob(dir.path(), &old).exists(), "least recently used evicted");
        assert!(!cache.join(".blob-partial").exists(), "interrupted download cleaned");
        prune_blob_cache(dir.path(), &state, 0).expect("prune");
        assert!(
            cached_blob(dir.path(), &in_use).exists(),
            "in-use blob kept over the bound"
        );
        assert!(!cached_blob(dir.path(), &recent).exists());
    }

    #[test]
    fn partial_downloads_a_killed_run_left_are_removed_and_blobs_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(remove_partial_blobs(dir.path()).expect("no cache yet"), 0);
        let cache = dir.path().join(BLOB_CACHE_DIR);
        std::fs::create_dir_all(&cache).expect("mkdir");
        let blob = cached_blob(dir.path(), &Digest::of(b"blob"));
        std::fs::write(&blob, b"blob").expect("write");
        std::fs::write(cache.join(".blob-partial"), b"x").expect("write");
        assert_eq!(remove_partial_blobs(dir.path()).expect("sweep"), 1);
        assert!(blob.exists() && !cache.join(".blob-partial").exists());
    }

    #[test]
    fn corrupt_state_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(STATE_FILE), b"{oops").expect("write");
        let err = State::load(dir.path()).expect_err("corrupt").to_string();
        assert!(err.contains("state.json") && err.contains("corrupt"), "{err}");
    }
}
