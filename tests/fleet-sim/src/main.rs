//! `fleet-sim`: N simulated drover agents in one process, polling a real store server.
//!
//! Each simulated agent runs the agent library's own source (conditional GET over HTTP),
//! verification (signature, expiry, anti-rollback, re-use of identical bytes) and selection
//! (targets, rollout waves) on jittered timers, with a null sink: the blobs it selects are
//! downloaded and verified, then dropped. The agents share one HTTP client (one process
//! cannot hold a connection pool per agent for 100,000 agents), so they share connections.
//!
//! The run: start N agents with random first-poll offsets; wait until every one applied
//! the current index; run `--change-cmd` (a publish); then measure, for every agent, the
//! time from the end of that publish until it applied the changed bundle (`--changed-bundle`:
//! a new blob for it deployed, not merely a new index version read). Agents the change is
//! not for (outside a rollout wave, or not targeted) are counted apart, and so are index
//! reads refused mid-publish (the new index with the old signature). Prints a JSON summary:
//! convergence p50/p99/max, requests and bytes the agents received.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use drover_agent::format::Digest;
use drover_agent::select::{plan, Cluster, Decision};
use drover_agent::source::{HttpSource, Limits, Source};
use drover_agent::verify::{verify_index_reusing, Applied, TrustedKeys, VerifiedIndex};

#[derive(Parser)]
struct Args {
    /// Store URL (http://…/store/).
    #[arg(long)]
    store: url::Url,
    /// Trusted public key.
    #[arg(long)]
    key: PathBuf,
    /// Number of simulated clusters.
    #[arg(long, default_value_t = 1000)]
    clusters: usize,
    /// Polling interval in seconds.
    #[arg(long, default_value_t = 10.0)]
    interval: f64,
    /// Jitter in percent either way.
    #[arg(long, default_value_t = 10.0)]
    jitter: f64,
    /// Shell command run once every agent applied the first index (e.g. a drover publish).
    #[arg(long)]
    change_cmd: String,
    /// The bundle `--change-cmd` changes; convergence is its new blob being deployed.
    #[arg(long, default_value = "monitoring")]
    changed_bundle: String,
    /// Give up waiting for convergence after this many intervals.
    #[arg(long, default_value_t = 5.0)]
    patience: f64,
}

/// Counters shared by all agents.
#[derive(Default)]
struct Totals {
    polls: AtomicU64,
    requests: AtomicU64,
    bytes: AtomicU64,
    blob_fetches: AtomicU64,
    errors: AtomicU64,
}

struct Agent {
    source: Source,
    cluster: Cluster,
    applied: Option<Applied>,
    known: Option<VerifiedIndex>,
    have: BTreeSet<Digest>,
    /// The changed bundle's blob this agent deployed from the first index it applied.
    first: Option<Option<Digest>>,
}

/// What one cycle did with the changed bundle, against what the agent first deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// A blob other than the first one is deployed: the change is applied.
    Took,
    /// The first blob is still what the targets give (before the change, or a previous
    /// blob outside the wave).
    Same,
    /// Outside the rollout wave: the agent keeps what it has.
    OutsideWave,
    /// The bundle is not for this cluster.
    NotTargeted,
}

/// One successful cycle: the index version applied and what it did with the changed bundle.
struct Polled {
    version: u64,
    change: Change,
}

impl Agent {
    /// One cycle with a null sink; returns the applied version.
    async fn poll(
        &mut self,
        keys: &TrustedKeys,
        totals: &Totals,
        scratch: &std::path::Path,
        changed: &str,
    ) -> anyhow::Result<Polled> {
        totals.polls.fetch_add(1, Ordering::Relaxed);
        let received = self.source.bytes_received();
        let result = self.cycle(keys, totals, scratch, changed).await;
        totals
            .bytes
            .fetch_add(self.source.bytes_received() - received, Ordering::Relaxed);
        result
    }

    async fn cycle(
        &mut self,
        keys: &TrustedKeys,
        totals: &Totals,
        scratch: &std::path::Path,
        changed: &str,
    ) -> anyhow::Result<Polled> {
        let raw = self.source.fetch_index().await?;
        totals
            .requests
            .fetch_add(if raw.not_modified { 1 } else { 2 }, Ordering::Relaxed);
        let now = time::OffsetDateTime::now_utc();
        let verified = match verify_index_reusing(&raw, keys, now, self.applied.as_ref(), self.known.as_ref()) {
            Ok(v) => v,
            Err(e) => {
                // As the agent does: a refused pair (say a new index read with the old
                // signature during a publish) is not replayed by 304s.
                self.source.forget_index();
                return Err(e.into());
            }
        };
        let mut change = Change::NotTargeted;
        let mut deployed = None;
        for item in plan(&verified, &self.cluster) {
            if item.bundle.name.as_str() == changed {
                match &item.decision {
                    Decision::Deploy(chosen) => deployed = Some(chosen.digest.clone()),
                    Decision::OutsideRollout { .. } => change = Change::OutsideWave,
                    _ => {}
                }
            }
            if let Decision::Deploy(chosen) = item.decision {
                if self.have.insert(chosen.digest.clone()) {
                    let dest = scratch.join(format!("{}-{}", self.cluster.name, chosen.digest.hex()));
                    self.source.fetch_blob(&chosen.digest, chosen.size, &dest).await?;
                    let _ = std::fs::remove_file(&dest);
                    totals.requests.fetch_add(1, Ordering::Relaxed);
                    totals.blob_fetches.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let first = self.first.get_or_insert_with(|| deployed.clone());
        if let Some(digest) = &deployed {
            change = if first.as_ref() == Some(digest) {
                Change::Same
            } else {
                Change::Took
            };
        }
        let version = verified.index().version;
        self.applied = Some(Applied {
            version,
            sha256: verified.sha256().clone(),
        });
        self.known = Some(verified);
        Ok(Polled { version, change })
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let keys = Arc::new(TrustedKeys::load(std::slice::from_ref(&args.key))?);
    let limits = Limits::default();
    let client = reqwest::Client::builder()
        .connect_timeout(limits.connect_timeout)
        .read_timeout(limits.read_timeout)
        .pool_max_idle_per_host(256)
        .build()?;
    let totals = Arc::new(Totals::default());
    // Blobs land in memory-backed /dev/shm when there is one: every simulated agent's
    // fsync would otherwise queue on this one machine's disk, which real agents don't share.
    let shm = std::path::Path::new("/dev/shm");
    let scratch = Arc::new(if shm.is_dir() {
        tempfile::tempdir_in(shm)?
    } else {
        tempfile::tempdir()?
    });
    let interval = Duration::from_secs_f64(args.interval);
    // Version each agent has applied, and when it applied the version after the change.
    let versions: Arc<Vec<AtomicU64>> = Arc::new((0..args.clusters).map(|_| AtomicU64::new(0)).collect());
    let converged_at: Arc<Mutex<BTreeMap<usize, Instant>>> = Arc::default();
    // When each agent first deployed the changed bundle's new blob, and what the others saw.
    let took_at: Arc<Mutex<BTreeMap<usize, Instant>>> = Arc::default();
    let kept: Arc<Mutex<BTreeMap<usize, Change>>> = Arc::default();
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let ready = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();

    let mut handles = Vec::new();
    for i in 0..args.clusters {
        let labels: BTreeMap<String, String> = [
            ("env", if i % 10 == 9 { "lab" } else { "prod" }),
            ("region", if i % 2 == 0 { "eu" } else { "us" }),
            ("monitoring", "on"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut agent = Agent {
            source: Source::Http(HttpSource::with_client(args.store.clone(), client.clone(), &limits)),
            cluster: Cluster {
                name: format!("site-{i:06}"),
                labels,
            },
            applied: None,
            known: None,
            have: BTreeSet::new(),
            first: None,
        };
        let (keys, totals, scratch) = (keys.clone(), totals.clone(), scratch.clone());
        let (versions, converged_at, target, ready) =
            (versions.clone(), converged_at.clone(), target.clone(), ready.clone());
        let (took_at, kept, changed) = (took_at.clone(), kept.clone(), args.changed_bundle.clone());
        let jitter = args.jitter / 100.0;
        handles.push(tokio::spawn(async move {
            tokio::time::sleep(interval.mul_f64(fastrand::f64())).await;
            loop {
                match agent.poll(&keys, &totals, scratch.path(), &changed).await {
                    Ok(Polled { version, change }) => {
                        if versions[i].swap(version, Ordering::Relaxed) == 0 {
                            ready.fetch_add(1, Ordering::Relaxed);
                        }
                        if version >= target.load(Ordering::Relaxed) {
                            let now = Instant::now();
                            if change == Change::Took {
                                lock(&took_at).entry(i).or_insert(now);
                            } else {
                                lock(&kept).insert(i, change);
                            }
                            lock(&converged_at).entry(i).or_insert(now);
                        }
                    }
                    Err(e) => {
                        if totals.errors.fetch_add(1, Ordering::Relaxed) < 5 {
                            eprintln!("fleet-sim: site-{i:06}: {e}");
                        }
                    }
                }
                let factor = 1.0 + jitter * (fastrand::f64() * 2.0 - 1.0);
                tokio::time::sleep(interval.mul_f64(factor)).await;
            }
        }));
    }

    // Phase 1: every agent applied the first index.
    let deadline = Instant::now() + interval.mul_f64(args.patience);
    while ready.load(Ordering::Relaxed) < args.clusters {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {} agents applied the first index",
            ready.load(Ordering::Relaxed),
            args.clusters
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first_version = versions[0].load(Ordering::Relaxed);
    let warmup = started.elapsed();
    let (requests0, bytes0, blobs0, polls0, errors0) = (
        totals.requests.load(Ordering::Relaxed),
        sum_bytes(&totals),
        totals.blob_fetches.load(Ordering::Relaxed),
        totals.polls.load(Ordering::Relaxed),
        totals.errors.load(Ordering::Relaxed),
    );

    // Phase 2: publish a change, then wait for every agent to apply it.
    let status = std::process::Command::new("sh")
        .args(["-c", &args.change_cmd])
        .status()
        .context("running --change-cmd")?;
    anyhow::ensure!(status.success(), "--change-cmd failed");
    target.store(first_version + 1, Ordering::Relaxed);
    let t0 = Instant::now();
    let deadline = t0 + interval.mul_f64(args.patience);
    while converged_at.lock().unwrap_or_else(|p| p.into_inner()).len() < args.clusters && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = t0.elapsed();
    for h in &handles {
        h.abort();
    }
    let at_new_version = converged_at.lock().unwrap_or_else(|p| p.into_inner()).len();
    let kept = kept.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let took = took_at.lock().unwrap_or_else(|p| p.into_inner()).clone();
    // An agent that took the change later is not "kept", whatever an earlier poll saw.
    let kept_count = |what: Change| {
        kept.iter()
            .filter(|(i, c)| **c == what && !took.contains_key(i))
            .count()
    };
    let mut times: Vec<f64> = took
        .values()
        .map(|t| t.saturating_duration_since(t0).as_secs_f64())
        .collect();
    times.sort_by(f64::total_cmp);
    let requests = totals.requests.load(Ordering::Relaxed) - requests0;
    let bytes = sum_bytes(&totals) - bytes0;
    let polls = totals.polls.load(Ordering::Relaxed) - polls0;
    let summary = serde_json::json!({
        "clusters": args.clusters,
        "intervalSeconds": args.interval,
        "jitterPercent": args.jitter,
        "warmupSeconds": warmup.as_secs_f64(),
        "changedBundle": args.changed_bundle,
        "converged": times.len(),
        "atNewVersion": at_new_version,
        "outsideWave": kept_count(Change::OutsideWave),
        "keptPreviousBlob": kept_count(Change::Same),
        "notTargeted": kept_count(Change::NotTargeted),
        "convergenceSeconds": {"p50": percentile(&times, 0.5), "p99": percentile(&times, 0.99), "max": times.last().copied().unwrap_or(f64::NAN)},
        "afterChange": {
            "seconds": elapsed.as_secs_f64(),
            "polls": polls,
            "requests": requests,
            "bodyBytesReceived": bytes,
            "blobDownloads": totals.blob_fetches.load(Ordering::Relaxed) - blobs0,
            "refusedIndexReads": totals.errors.load(Ordering::Relaxed) - errors0,
        },
        "errors": totals.errors.load(Ordering::Relaxed),
    });
    println!("{summary}");
    Ok(())
}

/// Locks `m`, poisoned or not (a panicked agent task leaves its counts usable).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn sum_bytes(totals: &Totals) -> u64 {
    totals.bytes.load(Ordering::Relaxed)
}
