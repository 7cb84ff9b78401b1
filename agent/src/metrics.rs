//! Prometheus metrics of the agent, served on `/metrics` by [`crate::listener`] in the
//! Prometheus text format (0.0.4). Metric names are part of the interface: they are listed
//! in docs/operations.md, and renaming one breaks dashboards.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::state::State;

/// Content type of the `/metrics` response.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

type Labels = Vec<(&'static str, String)>;

/// Result of one poll, for `drover_polls_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// The index had not changed.
    Unchanged,
    /// A new index was applied.
    Updated,
    /// No source gave a valid index.
    Error,
}

impl Poll {
    fn label(self) -> &'static str {
        match self {
            Poll::Unchanged => "unchanged",
            Poll::Updated => "updated",
            Poll::Error => "error",
        }
    }
}

/// Every metric the agent exports. Cheap to clone (each metric is shared).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    polls: Family<Labels, Counter>,
    last_success: Gauge,
    index_version: Gauge,
    stale: Gauge,
    bundle_state: Family<Labels, Gauge>,
    fetched_bytes: Counter,
    verify_failures: Counter,
    reports: Family<Labels, Counter>,
    cycle_seconds: CycleHistogram,
    info: Family<Labels, Gauge>,
}

#[derive(Debug, Clone)]
struct CycleHistogram(Histogram);

impl Default for CycleHistogram {
    fn default() -> Self {
        // 0.5 ms … ~35 min: an unchanged poll sits in the first buckets, a big download in the last.
        CycleHistogram(Histogram::new(exponential_buckets(0.0005, 4.0, 12)))
    }
}

impl Metrics {
    /// Creates the metrics and registers them.
    pub fn new(cluster: &str) -> (Metrics, Registry) {
        let m = Metrics::default();
        let mut r = Registry::default();
        r.register(
            "drover_polls",
            "Agent cycles by result: unchanged, updated (new index applied) or error (no valid index)",
            m.polls.clone(),
        );
        r.register(
            "drover_last_success_timestamp_seconds",
            "Unix time of the last cycle that read a valid index",
            m.last_success.clone(),
        );
        r.register(
            "drover_index_version",
            "Version of the applied index",
            m.index_version.clone(),
        );
        r.register(
            "drover_stale",
            "1 while the last cycle got no valid index from any source (what is applied stays)",
            m.stale.clone(),
        );
        r.register(
            "drover_bundle_state",
            "1 for each bundle's current state (Applied, Error, PendingDependency, ...)",
            m.bundle_state.clone(),
        );
        r.register(
            "drover_fetched_bytes",
            "Bytes received from sources (index, signature and blob bodies)",
            m.fetched_bytes.clone(),
        );
        r.register(
            "drover_verify_failures",
            "Indexes or blobs refused by verification (signature, expiry, rollback, digest, size)",
            m.verify_failures.clone(),
        );
        r.register("drover_reports", "Status reports sent, by result", m.reports.clone());
        r.register(
            "drover_cycle_duration_seconds",
            "Duration of agent cycles",
            m.cycle_seconds.0.clone(),
        );
        r.register("drover_agent_info", "Agent version and cluster name", m.info.clone());
        m.info
            .get_or_create(&vec![
                ("version", env!("CARGO_PKG_VERSION").to_string()),
                ("cluster", cluster.to_string()),
            ])
            .set(1);
        (m, r)
    }

    /// Records one cycle.
    pub fn cycle(&self, poll: Poll, seconds: f64, fetched_bytes: u64, verify_failures: u64) {
        self.polls
            .get_or_create(&vec![("result", poll.label().to_string())])
            .inc();
        self.cycle_seconds.0.observe(seconds);
        self.fetched_bytes.inc_by(fetched_bytes);
        self.verify_failures.inc_by(verify_failures);
        self.stale.set(i64::from(poll == Poll::Error));
    }

    /// Mirrors the saved state: applied version, success time and per-bundle states.
    pub fn state(&self, state: &State, last_success_unix: Option<i64>) {
        if let Some(index) = &state.index {
            self.index_version.set(i64::try_from(index.version).unwrap_or(i64::MAX));
        }
        if let Some(t) = last_success_unix {
            self.last_success.set(t);
        }
        self.bundle_state.clear();
        for (name, b) in &state.bundles {
            self.bundle_state
                .get_or_create(&vec![
                    ("bundle", name.to_string()),
                    ("state", format!("{:?}", b.status)),
                ])
                .set(1);
        }
    }

    /// Records a status report attempt.
    pub fn report(&self, sent: bool) {
        let result = if sent { "sent" } else { "failed" };
        self.reports.get_or_create(&vec![("result", result.to_string())]).inc();
    }
}

/// Encodes `registry` in the Prometheus text format.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, registry).expect("writing to a String cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_text_names_every_series_after_a_cycle() {
        let (m, r) = Metrics::new("site-7");
        m.cycle(Poll::Unchanged, 0.0004, 0, 0);
        m.cycle(Poll::Error, 0.2, 10, 1);
        m.report(true);
        let text = encode(&r);
        for needle in [
            "drover_polls_total{result=\"unchanged\"} 1",
            "drover_polls_total{result=\"error\"} 1",
            "drover_fetched_bytes_total 10",
            "drover_verify_failures_total 1",
            "drover_stale 1",
            "drover_reports_total{result=\"sent\"} 1",
            "drover_cycle_duration_seconds_count 2",
            "drover_agent_info{version=",
        ] {
            assert!(text.contains(needle), "{needle} missing in:\n{text}");
        }
    }
}
