//! The agent's life between cycles: one [`Agent`] runs cycles and keeps everything that
//! spans them (freshness, metrics, the status report, the reporter); [`run`] is the loop
//! that schedules those cycles with jitter and backoff and reacts to signals and
//! `POST /sync`.
//!
//! Stopping is safe at any await point: every write to the sink and the state is a
//! synchronous atomic replace, so SIGTERM (or SIGKILL) never leaves half a file, and the
//! state records an `Applying` intent before each sink write so the next cycle finishes or
//! undoes it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use time::OffsetDateTime;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::config::AgentConfig;
use crate::cycle::{run_cycle, Counters, CycleReport};
use crate::error::{Error, Result};
use crate::format::rfc3339;
use crate::listener::{Health, Shared, SyncRequest};
use crate::metrics::{Metrics, Poll};
use crate::report::Reporter;
use crate::state::{State, StateLock};
use crate::status::{ClusterStatus, Freshness};

/// Readiness is lost after this many intervals without a valid index.
pub const READY_INTERVALS: u32 = 3;

/// The outcome of one cycle.
#[derive(Debug)]
pub enum Outcome {
    /// A valid index was read and applied (bundles may still have failed).
    Done(CycleReport),
    /// No source gave a valid index: nothing was changed. Or, with
    /// [`Error::StateNotSaved`], the cycle applied but could not record it.
    IndexFailed(Error),
}

impl Outcome {
    /// The outcome as JSON, for `POST /sync`.
    pub fn summary(&self) -> serde_json::Value {
        match self {
            Outcome::Done(r) => serde_json::json!({
                "result": if r.index_changed { "updated" } else { "unchanged" },
                "channel": r.channel,
                "version": r.version,
                "origin": r.origin,
                "sourceProblems": r.source_problems,
                "bundles": r.bundles.iter().map(|(name, b)| serde_json::json!({
                    "name": name.as_str(),
                    "state": b.status,
                    "digest": b.digest,
                    "message": b.message,
                })).collect::<Vec<_>>(),
            }),
            Outcome::IndexFailed(e) => serde_json::json!({"result": "error", "error": e.to_string()}),
        }
    }
}

/// Runs cycles and keeps what spans them.
#[derive(Debug)]
pub struct Agent {
    cfg: AgentConfig,
    counters: Counters,
    metrics: Metrics,
    freshness: Freshness,
    reporter: Option<Reporter>,
    shared: Arc<Shared>,
    fetched_seen: u64,
    verify_failures_seen: u64,
    /// Held while the agent lives: no second agent uses this state directory meanwhile.
    _state_lock: StateLock,
}

impl Agent {
    /// An agent for `cfg`, and the receiving end of `POST /sync` requests.
    /// Fails with [`Error::StateLocked`] when another agent uses the state directory.
    pub fn new(cfg: AgentConfig) -> Result<(Agent, mpsc::Receiver<SyncRequest>)> {
        let state_lock = StateLock::acquire(&cfg.state_dir)?;
        let (metrics, registry) = Metrics::new(&cfg.cluster.name);
        let reporter = match &cfg.report {
            Some(r) => Some(Reporter::new(r, &cfg.cluster.name, &cfg.source_limits)?),
            None => None,
        };
        let (sync_tx, sync_rx) = mpsc::channel(64);
        let shared = Arc::new(Shared {
            registry,
            health: Mutex::new(Health {
                last_success: None,
                window: cfg.interval.saturating_mul(READY_INTERVALS).max(cfg.max_backoff),
                last_error: None,
            }),
            status: Mutex::new(Vec::new()),
            sync: sync_tx,
        });
        let freshness = Freshness::recover(&cfg.state_dir);
        let agent = Agent {
            cfg,
            counters: Counters::default(),
            metrics,
            freshness,
            reporter,
            shared,
            fetched_seen: 0,
            verify_failures_seen: 0,
            _state_lock: state_lock,
        };
        Ok((agent, sync_rx))
    }

    /// The configuration.
    pub fn config(&self) -> &AgentConfig {
        &self.cfg
    }

    /// What the local listener needs.
    pub fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// Runs one cycle, then updates freshness, metrics, `status.json` and the report.
    pub async fn cycle(&mut self) -> Outcome {
        let started = Instant::now();
        let now = OffsetDateTime::now_utc();
        let outcome = match run_cycle(&self.cfg, now, &self.counters).await {
            Ok(report) => Outcome::Done(report),
            Err(e) => Outcome::IndexFailed(e),
        };
        let poll = match &outcome {
            Outcome::Done(r) => {
                self.freshness.succeeded(now, &r.source_problems);
                if r.index_changed {
                    Poll::Updated
                } else {
                    Poll::Unchanged
                }
            }
            Outcome::IndexFailed(e @ Error::StateNotSaved { .. }) => {
                self.freshness.failed(now, e.to_string());
                tracing::error!(error = %e, "cycle not recorded");
                Poll::Error
            }
            Outcome::IndexFailed(e) => {
                self.freshness.failed(now, e.to_string());
                tracing::warn!(
                    error = %e,
                    stale_since = ?self.freshness.stale_since().map(rfc3339),
                    "no valid index from any source; keeping what is applied"
                );
                Poll::Error
            }
        };
        let fetched: u64 = self.cfg.sources.iter().map(|s| s.bytes_received()).sum();
        let verify_failures = self.counters.verify_failures.load(Ordering::Relaxed);
        self.metrics.cycle(
            poll,
            started.elapsed().as_secs_f64(),
            fetched.saturating_sub(self.fetched_seen),
            verify_failures.saturating_sub(self.verify_failures_seen),
        );
        self.fetched_seen = fetched;
        self.verify_failures_seen = verify_failures;
        let saved = match &outcome {
            Outcome::Done(report) => Some(&report.state),
            Outcome::IndexFailed(_) => None,
        };
        self.publish_status(now, saved).await;
        outcome
    }

    /// Updates metrics, status.json, the listener's view and the report from the state
    /// the cycle saved (read from disk when the cycle failed before reaching it).
    async fn publish_status(&mut self, now: OffsetDateTime, saved: Option<&State>) {
        let loaded;
        let state = match saved {
            Some(state) => state,
            None => match load_state(&self.cfg.state_dir).await {
                Ok(state) => {
                    loaded = state;
                    &loaded
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read state for the status report");
                    return;
                }
            },
        };
        self.metrics
            .state(state, self.freshness.last_success.map(OffsetDateTime::unix_timestamp));
        let status = ClusterStatus::new(&self.cfg, state, &self.freshness, now);
        let (written, dir) = (status.clone(), self.cfg.state_dir.clone());
        if let Err(e) = crate::blocking::run(move || written.write(&dir)).await {
            tracing::error!(error = %e, "cannot write status.json");
        }
        let json = status.to_json();
        *self.shared.status.lock().unwrap_or_else(|p| p.into_inner()) = json.clone();
        // The same report where the sink's users look (ConfigMap drover-status for kubectl).
        self.cfg.sink.publish_status(&String::from_utf8_lossy(&json)).await;
        {
            let mut health = self.shared.health.lock().unwrap_or_else(|p| p.into_inner());
            if self.freshness.is_stale() {
                health.last_error = self.freshness.last_error.clone();
            } else {
                health.last_success = Some(Instant::now());
                health.last_error = None;
            }
        }
        if let Some(reporter) = &mut self.reporter {
            match reporter.maybe_send(&status).await {
                Some(Ok(())) => self.metrics.report(true),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "status report not sent; the cycle is not affected");
                    self.metrics.report(false);
                }
                None => {}
            }
        }
    }
}

/// The state saved in `dir`, read on the blocking pool.
async fn load_state(dir: &std::path::Path) -> Result<State> {
    let dir = dir.to_path_buf();
    crate::blocking::run(move || State::load(&dir)).await
}

/// When the next cycle is due: the interval with random jitter after a success, an
/// exponential backoff (with its own jitter, capped) while no source gives a valid index.
#[derive(Debug)]
pub struct Schedule {
    interval: Duration,
    jitter_percent: u8,
    backoff: ExponentialBuilder,
    max_backoff: Duration,
    retries: Option<backon::ExponentialBackoff>,
}

impl Schedule {
    /// A schedule for `cfg`.
    pub fn new(cfg: &AgentConfig) -> Self {
        let min = cfg.interval.min(Duration::from_secs(5));
        Schedule {
            interval: cfg.interval,
            jitter_percent: cfg.jitter_percent,
            backoff: ExponentialBuilder::default()
                .with_min_delay(min)
                .with_max_delay(cfg.max_backoff.max(min))
                .with_factor(2.0)
                .with_jitter()
                .without_max_times(),
            max_backoff: cfg.max_backoff.max(min),
            retries: None,
        }
    }

    /// The wait before the next cycle, given whether this one read a valid index.
    pub fn next_delay(&mut self, index_ok: bool) -> Duration {
        if index_ok {
            self.retries = None;
            let spread = f64::from(self.jitter_percent) / 100.0;
            let factor = 1.0 + spread * (fastrand::f64() * 2.0 - 1.0);
            return self.interval.mul_f64(factor);
        }
        let backoff = &self.backoff;
        let retries = self.retries.get_or_insert_with(|| backoff.build());
        // backon adds its jitter after its own cap; the cap here is a hard one.
        retries.next().unwrap_or(self.interval).min(self.max_backoff)
    }
}

/// Runs cycles until SIGTERM or SIGINT, then returns (exit code 0). SIGHUP and
/// `POST /sync` start a cycle at once.
pub async fn run(mut agent: Agent, mut sync_requests: mpsc::Receiver<SyncRequest>) -> Result<()> {
    let mut term = signal(SignalKind::terminate()).map_err(|e| Error::Config(format!("SIGTERM handler: {e}")))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| Error::Config(format!("SIGINT handler: {e}")))?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| Error::Config(format!("SIGHUP handler: {e}")))?;
    let mut schedule = Schedule::new(agent.config());
    let mut waiting: Vec<SyncRequest> = Vec::new();
    loop {
        // A stop signal drops the cycle at its next await point: writes are synchronous
        // and atomic, so none is cut in half, and the next start re-converges.
        let outcome = tokio::select! {
            outcome = agent.cycle() => outcome,
            _ = term.recv() => return stopping("SIGTERM"),
            _ = int.recv() => return stopping("SIGINT"),
        };
        let summary = outcome.summary();
        for request in waiting.drain(..) {
            let _ = request.send(summary.clone());
        }
        let delay = schedule.next_delay(matches!(outcome, Outcome::Done(_)));
        tracing::debug!(next_in = ?delay, "cycle done");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = hup.recv() => tracing::info!("SIGHUP: syncing now"),
            Some(request) = sync_requests.recv() => {
                tracing::info!("POST /sync: syncing now");
                waiting.push(request);
            }
            _ = term.recv() => return stopping("SIGTERM"),
            _ = int.recv() => return stopping("SIGINT"),
        }
        // Requests that arrived together share the next cycle.
        while let Ok(request) = sync_requests.try_recv() {
            waiting.push(request);
        }
    }
}

fn stopping(signal: &str) -> Result<()> {
    tracing::info!("{signal}: stopping");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(interval: u64, jitter: u8, max_backoff: u64) -> Schedule {
        let min = Duration::from_secs(interval).min(Duration::from_secs(5));
        Schedule {
            interval: Duration::from_secs(interval),
            jitter_percent: jitter,
            backoff: ExponentialBuilder::default()
                .with_min_delay(min)
                .with_max_delay(Duration::from_secs(max_backoff))
                .with_factor(2.0)
                .with_jitter()
                .without_max_times(),
            max_backoff: Duration::from_secs(max_backoff),
            retries: None,
        }
    }

    #[test]
    fn intervals_spread_within_the_jitter_band() {
        let mut s = schedule(60, 10, 300);
        let delays: Vec<Duration> = (0..500).map(|_| s.next_delay(true)).collect();
        assert!(delays
            .iter()
            .all(|d| *d >= Duration::from_secs(54) && *d <= Duration::from_secs(66)));
        let distinct: std::collections::BTreeSet<_> = delays.iter().collect();
        assert!(distinct.len() > 100, "delays are spread, not one value");
        let mut fixed = schedule(60, 0, 300);
        assert_eq!(fixed.next_delay(true), Duration::from_secs(60));
    }

    #[test]
    fn failures_back_off_up_to_the_cap_and_success_resets() {
        let mut s = schedule(60, 0, 300);
        let first = s.next_delay(false);
        assert!(
            first >= Duration::from_secs(5) && first <= Duration::from_secs(10),
            "{first:?}"
        );
        let later: Vec<Duration> = (0..20).map(|_| s.next_delay(false)).collect();
        assert!(
            later.iter().all(|d| *d <= Duration::from_secs(300)),
            "never past the cap: {later:?}"
        );
        assert_eq!(later[15], Duration::from_secs(300), "reaches the cap: {later:?}");
        assert_eq!(s.next_delay(true), Duration::from_secs(60));
        let again = s.next_delay(false);
        assert!(
            again <= Duration::from_secs(10),
            "backoff restarts after a success: {again:?}"
        );
    }
}
