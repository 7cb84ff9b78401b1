//! The status report: what this cluster runs and how fresh that is, written to
//! `status.json` in the state directory after every cycle and optionally sent to a report
//! URL (see [`crate::report`]). `drover status` aggregates many of them into a fleet view.
//!
//! Freshness is tracked across cycles and restarts: with every source down the agent keeps
//! what it applied and reports `stale: true` with `staleSince` = the last time it read a
//! valid index.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::config::AgentConfig;
use crate::error::Result;
use crate::format::{rfc3339, Digest, API_VERSION};
use crate::fsutil;
use crate::state::{State, Status};

/// File name of the status report inside the state directory.
pub const STATUS_FILE: &str = "status.json";
/// `kind` of a status report.
pub const STATUS_KIND: &str = "ClusterStatus";

/// One cluster's status report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// Always [`API_VERSION`].
    pub api_version: String,
    /// Always [`STATUS_KIND`].
    pub kind: String,
    /// Cluster name.
    pub cluster: String,
    /// Cluster labels.
    pub labels: BTreeMap<String, String>,
    /// Version of the agent that wrote the report.
    pub agent_version: String,
    /// Channel of the applied index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Version of the applied index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_version: Option<u64>,
    /// sha256 of the applied index bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_sha256: Option<Digest>,
    /// Where the applied index was read from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// End of the last cycle attempt.
    pub checked_at: String,
    /// Last time a valid index was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<String>,
    /// True when the last attempt got no valid index from any source.
    pub stale: bool,
    /// While stale: the last success, or the first failed attempt if there never was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_since: Option<String>,
    /// Why the last attempt failed, while stale; otherwise problems with individual sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The agent's polling interval, so a reader can tell a silent cluster from a slow one.
    pub interval_seconds: u64,
    /// Longest time between two reports when nothing changes (absent when not reporting):
    /// `drover status` adds it to the interval before calling a silent cluster stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_interval_seconds: Option<u64>,
    /// Per-bundle results.
    pub bundles: Vec<BundleStatus>,
}

/// One bundle in a status report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleStatus {
    /// Bundle name.
    pub name: String,
    /// Digest in the sink, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// Result of the last cycle.
    pub state: Status,
    /// Explanation.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When the bundle entered this state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

/// Freshness across cycles: when a valid index was last read and since when it has not been.
#[derive(Debug, Clone, Default)]
pub struct Freshness {
    /// Last cycle that read a valid index.
    pub last_success: Option<OffsetDateTime>,
    /// First failed attempt of the current run of failures.
    pub failing_since: Option<OffsetDateTime>,
    /// Last cycle attempt.
    pub checked_at: Option<OffsetDateTime>,
    /// Why the last attempt failed (index level), or source problems of a successful one.
    pub last_error: Option<String>,
}

impl Freshness {
    /// Recovers freshness from a previous run's `status.json`, so "stale since" survives
    /// a restart while every source is down.
    pub fn recover(state_dir: &Path) -> Freshness {
        let Ok(bytes) = std::fs::read(state_dir.join(STATUS_FILE)) else {
            return Freshness::default();
        };
        let Ok(previous) = serde_json::from_slice::<ClusterStatus>(&bytes) else {
            return Freshness::default();
        };
        let parse = |s: &Option<String>| {
            s.as_deref()
                .and_then(|s| OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok())
        };
        Freshness {
            last_success: parse(&previous.last_success),
            failing_since: if previous.stale {
                parse(&previous.stale_since)
            } else {
                None
            },
            checked_at: None,
            last_error: previous.last_error,
        }
    }

    /// Records a cycle that read a valid index; `problems` are non-fatal source problems.
    pub fn succeeded(&mut self, now: OffsetDateTime, problems: &[String]) {
        self.last_success = Some(now);
        self.failing_since = None;
        self.checked_at = Some(now);
        self.last_error = (!problems.is_empty()).then(|| problems.join("; "));
    }

    /// Records a cycle that got no valid index.
    pub fn failed(&mut self, now: OffsetDateTime, error: String) {
        self.failing_since.get_or_insert(now);
        self.checked_at = Some(now);
        self.last_error = Some(error);
    }

    /// True while the last attempt failed.
    pub fn is_stale(&self) -> bool {
        self.failing_since.is_some()
    }

    /// Since when the applied content may be out of date.
    pub fn stale_since(&self) -> Option<OffsetDateTime> {
        self.failing_since.map(|f| self.last_success.unwrap_or(f))
    }
}

impl ClusterStatus {
    /// Builds the report from the configuration, the saved state and freshness.
    pub fn new(cfg: &AgentConfig, state: &State, freshness: &Freshness, now: OffsetDateTime) -> Self {
        let index = state.index.as_ref();
        ClusterStatus {
            api_version: API_VERSION.into(),
            kind: STATUS_KIND.into(),
            cluster: cfg.cluster.name.clone(),
            labels: cfg.cluster.labels.clone(),
            agent_version: env!("CARGO_PKG_VERSION").into(),
            channel: index.map(|i| i.channel.clone()),
            index_version: index.map(|i| i.version),
            index_sha256: index.map(|i| i.sha256.clone()),
            origin: index.map(|i| i.origin.clone()),
            checked_at: rfc3339(freshness.checked_at.unwrap_or(now)),
            last_success: freshness.last_success.map(rfc3339),
            stale: freshness.is_stale(),
            stale_since: freshness.stale_since().map(rfc3339),
            last_error: freshness.last_error.clone(),
            interval_seconds: cfg.interval.as_secs(),
            report_interval_seconds: cfg.report.as_ref().map(|r| r.interval.as_secs()),
            bundles: state
                .bundles
                .iter()
                .map(|(name, b)| BundleStatus {
                    name: name.to_string(),
                    digest: b.digest.clone(),
                    state: b.status,
                    message: b.message.clone(),
                    since: b.since.clone(),
                })
                .collect(),
        }
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("status serialises: plain data, string keys")
    }

    /// True when `other` says the same apart from when it was checked: used to send a
    /// report only on change or as a periodic heartbeat.
    pub fn same_content(&self, other: &ClusterStatus) -> bool {
        let strip = |s: &ClusterStatus| ClusterStatus {
            checked_at: String::new(),
            last_success: None,
            ..s.clone()
        };
        strip(self) == strip(other)
    }

    /// Writes `status.json` into the state directory: atomically (a reader never sees half
    /// of it) but not synced to disk, since it is rewritten every cycle and rebuilt from the
    /// state after a power cut.
    pub fn write(&self, state_dir: &Path) -> Result<()> {
        fsutil::ensure_dir(state_dir)?;
        fsutil::replace_unsynced(&state_dir.join(STATUS_FILE), &self.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).expect("time")
    }

    #[test]
    fn stale_since_is_the_last_success_and_survives_more_failures() {
        let mut f = Freshness::default();
        f.succeeded(at("2026-11-26T10:00:00Z"), &[]);
        assert!(!f.is_stale());
        f.failed(at("2026-11-26T10:01:00Z"), "down".into());
        f.failed(at("2026-11-26T10:02:00Z"), "still down".into());
        assert!(f.is_stale());
        assert_eq!(f.stale_since(), Some(at("2026-11-26T10:00:00Z")));
        assert_eq!(f.last_error.as_deref(), Some("still down"));
        f.succeeded(at("2026-11-26T10:03:00Z"), &[]);
        assert!(!f.is_stale() && f.stale_since().is_none());
    }

    #[test]
    fn never_successful_agent_is_stale_since_its_first_attempt() {
        let mut f = Freshness::default();
        f.failed(at("2026-11-26T10:01:00Z"), "down".into());
        f.failed(at("2026-11-26T10:02:00Z"), "down".into());
        assert_eq!(f.stale_since(), Some(at("2026-11-26T10:01:00Z")));
    }
}
