//! One agent cycle: read every source, keep the highest verified index, plan, then for
//! each bundle in dependency order decide what happens to it and have the sink carry it
//! out, remove what is no longer targeted, and record the result in the state directory.
//!
//! The decisions are made here, once, for every sink ([`BundleSink`]): a targeted bundle
//! is applied when its dependencies are in place (else it waits); a bundle no longer
//! targeted, or no longer in the index, is removed when the sink may hold objects of it;
//! paused, outside the rollout wave or invalid, whatever is applied stays.
//!
//! An index-level failure (no source yields a valid index) returns an error before
//! anything is written. A bundle-level failure leaves that bundle's previous content in
//! place and the cycle goes on with the others.

mod finish;
mod index;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use time::OffsetDateTime;

use crate::config::AgentConfig;
use crate::error::{Error, Result};
use crate::format::{rfc3339, BundleName};
use crate::select::{plan, BundlePlan, Decision};
use crate::sink::kube::bundles::KubeBundles;
use crate::sink::stage::RenderSettings;
use crate::sink::{BundleSink, Job, Sink, Stage};
use crate::source::blob::BlobFetch;
use crate::state::{BundleState, IndexState, State, Status};
use crate::verify::VerifiedIndex;
use finish::{Finish, StateDir};

/// What a cycle did.
#[derive(Debug, Clone)]
pub struct CycleReport {
    /// Channel of the applied index.
    pub channel: String,
    /// Version of the applied index.
    pub version: u64,
    /// Where the index came from.
    pub origin: String,
    /// Per-bundle results, in the order they were processed.
    pub bundles: Vec<(BundleName, BundleState)>,
    /// Sources that failed or served an older index (not fatal when another source worked).
    pub source_problems: Vec<String>,
    /// The version applied before this cycle, if any.
    pub previous_version: Option<u64>,
    /// True when the index differs from the one applied before (a new version, or the
    /// first index ever); false for an unchanged poll.
    pub index_changed: bool,
    /// True when state.json was rewritten (something changed).
    pub state_written: bool,
    /// The state as saved at the end of the cycle.
    pub state: State,
}

impl CycleReport {
    /// True when every targeted bundle is in place.
    pub fn is_success(&self) -> bool {
        self.bundles.iter().all(|(_, b)| b.status.is_settled())
    }
}

/// What the caller keeps across cycles: counts exported as metrics, and the last index
/// verified from each source so that an unchanged one is not verified again.
#[derive(Debug, Default)]
pub struct Counters {
    /// Indexes and blobs refused by verification.
    pub verify_failures: AtomicU64,
    known: Mutex<BTreeMap<String, VerifiedIndex>>,
    /// Whether this process has cleared the temporary files a killed one left: only a
    /// killed process leaves any (ours delete themselves), so once per process suffices.
    swept: AtomicBool,
}

impl Counters {
    fn note(&self, e: &Error) {
        if e.is_verification_failure() {
            self.verify_failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Runs one cycle. `Err` means the index could not be used and nothing was changed.
pub async fn run_cycle(cfg: &AgentConfig, now: OffsetDateTime, counters: &Counters) -> Result<CycleReport> {
    let dir = cfg.state_dir.clone();
    let mut state = crate::blocking::run(move || State::load(&dir)).await?;
    let before = state.clone();
    let best = index::best_index(cfg, &state, now, counters).await?;
    let verified = &best.verified;
    if !counters.swept.load(Ordering::Relaxed) && remove_leftover_temp_files(cfg).await {
        counters.swept.store(true, Ordering::Relaxed);
    }
    let index_changed = before.index.as_ref().map(|i| &i.sha256) != Some(verified.sha256());
    if index_changed {
        tracing::info!(
            channel = %verified.index().channel,
            version = verified.index().version,
            previous = ?before.index.as_ref().map(|i| i.version),
            origin = %verified.origin(),
            "new index"
        );
    }
    let mut stage = Stage {
        blobs: BlobFetch {
            sources: &cfg.sources,
            winner: &best.winner,
            state_dir: &cfg.state_dir,
            verify_failures: &counters.verify_failures,
        },
        render: RenderSettings {
            cluster: &cfg.cluster,
            limits: &cfg.render_limits,
            allow: cfg.allow.as_ref(),
        },
        state: &mut state,
        state_dir: &cfg.state_dir,
        now,
    };
    let items = plan(verified, &cfg.cluster);
    // The one place a configured sink becomes the sink the cycle drives.
    let results = match &cfg.sink {
        Sink::Dir(dir) => converge(&mut dir.clone(), items, verified, &mut stage).await,
        Sink::Kube(target) => {
            let mut bundles = KubeBundles::open(target.sink().await?, &cfg.state_dir, cfg.allow.as_ref()).await;
            converge(&mut bundles, items, verified, &mut stage).await
        }
    };
    let f = Finish {
        state,
        before,
        results,
        index: index_record(verified, now),
        source_problems: best.problems,
        index_changed,
    };
    let (dir, cache_bytes) = (cfg.state_dir.clone(), cfg.cache_bytes);
    crate::blocking::run(move || {
        let dir = StateDir {
            path: &dir,
            cache_bytes,
        };
        finish::finish(dir, f, now)
    })
    .await
}

/// The record of `verified` as applied now.
fn index_record(verified: &VerifiedIndex, now: OffsetDateTime) -> IndexState {
    IndexState {
        channel: verified.index().channel.clone(),
        version: verified.index().version,
        sha256: verified.sha256().clone(),
        origin: verified.origin().to_string(),
        applied_at: rfc3339(now),
    }
}

/// Removes the temporary files a killed agent left in the state directory, its blob
/// cache and the sink's directory, before this cycle needs the space (the cache is also
/// swept when the state changes, but a kill between saving the state and that sweep
/// leaves an unchanged state behind). Best effort: a failure is logged and the cycle
/// goes on; returns whether every directory was swept.
async fn remove_leftover_temp_files(cfg: &AgentConfig) -> bool {
    let state_dir = cfg.state_dir.clone();
    let dirs: Vec<std::path::PathBuf> = std::iter::once(state_dir.clone())
        .chain(cfg.sink.scratch_dir().map(std::path::Path::to_path_buf))
        .collect();
    let results = crate::blocking::run(move || {
        let swept = dirs.into_iter().map(|dir| {
            let result = crate::fsutil::remove_temp_files(&dir);
            (dir, result)
        });
        let cache = (
            state_dir.join(crate::state::BLOB_CACHE_DIR),
            crate::state::remove_partial_blobs(&state_dir),
        );
        swept.chain(std::iter::once(cache)).collect::<Vec<_>>()
    })
    .await;
    let mut all = true;
    for (dir, result) in results {
        match result {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(dir = %dir.display(), removed = n, "removed temporary files left by an interrupted run")
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not remove leftover temporary files");
                all = false;
            }
        }
    }
    all
}

/// Which bundles the index lists (the others are removed when the sink may hold them).
trait Listing {
    fn lists(&self, bundle: &BundleName) -> bool;
}

impl Listing for VerifiedIndex {
    fn lists(&self, bundle: &BundleName) -> bool {
        self.index().bundle(bundle).is_some()
    }
}

/// Carries out `items` (the plan, in dependency order) through `sink`, then removes the
/// bundles applied before that `index` no longer lists; returns each bundle's result.
async fn converge<S: BundleSink>(
    sink: &mut S,
    items: Vec<BundlePlan<'_>>,
    index: &impl Listing,
    stage: &mut Stage<'_>,
) -> Vec<(BundleName, BundleState)> {
    let mut results = Vec::new();
    let mut in_place: BTreeSet<BundleName> = BTreeSet::new();
    for item in items {
        let name = &item.bundle.name;
        let previous = stage.state.bundles.get(name).cloned();
        let result = handle(sink, item, previous.as_ref(), &in_place, stage).await;
        if sink.unblocks_dependents(&result, previous.as_ref()) {
            in_place.insert(name.clone());
        }
        results.push((name.clone(), result));
    }
    let gone: Vec<(BundleName, BundleState)> = stage
        .state
        .bundles
        .iter()
        .filter(|(name, previous)| !index.lists(name) && previous.may_have_objects())
        .map(|(name, previous)| (name.clone(), previous.clone()))
        .collect();
    for (name, previous) in gone {
        let removed = remove(sink, &name, "the bundle is no longer in the index", Some(&previous)).await;
        results.push((name, removed));
    }
    sink.end().await;
    results
}

/// The result for one bundle of the plan.
async fn handle<S: BundleSink>(
    sink: &mut S,
    item: BundlePlan<'_>,
    previous: Option<&BundleState>,
    in_place: &BTreeSet<BundleName>,
    stage: &mut Stage<'_>,
) -> BundleState {
    let bundle = item.bundle;
    match item.decision {
        Decision::NotTargeted if previous.is_some_and(BundleState::may_have_objects) => {
            remove(sink, &bundle.name, "no target matches this cluster", previous).await
        }
        Decision::Deploy(chosen) => {
            let waiting = waiting_for(&bundle.depends_on, in_place);
            if !waiting.is_empty() {
                let message = format!("waiting for {} to be {}", waiting.join(", "), sink.dependency_goal());
                return BundleState::keeping(previous, Status::PendingDependency, message);
            }
            let job = Job {
                bundle,
                chosen: &chosen,
                previous,
            };
            apply(sink, &job, stage).await
        }
        decision => no_change(decision, previous),
    }
}

/// Applies one bundle; on failure, the sink says what stays recorded.
async fn apply<S: BundleSink>(sink: &mut S, job: &Job<'_>, stage: &mut Stage<'_>) -> BundleState {
    match sink.apply(job, stage).await {
        Ok(placed) => BundleState {
            status: placed.status,
            message: placed.message,
            digest: Some(job.chosen.digest.clone()),
            file_sha256: placed.file_sha256,
            inputs: placed.inputs,
            since: None,
            reason: placed.reason,
        },
        Err(e) => sink.failed(job, stage.state.bundles.get(job.name()), e.to_string()),
    }
}

/// Removes a bundle. If that fails, the record of what is applied is kept so the next
/// cycle tries again rather than forgetting the bundle's objects.
async fn remove<S: BundleSink>(
    sink: &mut S,
    name: &BundleName,
    reason: &str,
    previous: Option<&BundleState>,
) -> BundleState {
    match sink.remove(name, reason).await {
        Ok(cleared) => BundleState {
            status: Status::Removed,
            message: cleared.message,
            digest: None,
            file_sha256: cleared.file_sha256,
            inputs: None,
            since: None,
            reason: None,
        },
        Err(e) => BundleState::keeping(previous, Status::Error, format!("could not remove ({reason}): {e}")),
    }
}

/// The dependencies in `depends_on` not yet in `done`, by name.
fn waiting_for<'a>(depends_on: &'a [BundleName], done: &BTreeSet<BundleName>) -> Vec<&'a str> {
    depends_on
        .iter()
        .filter(|d| !done.contains(*d))
        .map(BundleName::as_str)
        .collect()
}

/// The result of a decision that changes nothing in the sink: the bundle is invalid,
/// not targeted (and holds nothing), paused, or outside the rollout wave. Whatever was
/// applied stays.
fn no_change(decision: Decision, previous: Option<&BundleState>) -> BundleState {
    let (status, message) = match decision {
        Decision::Invalid(problem) => (Status::Error, problem),
        Decision::Paused { would_get } => (
            Status::Paused,
            format!("paused in the index (targets select {})", would_get.digest.short()),
        ),
        Decision::OutsideRollout {
            bucket,
            percent,
            would_get,
        } => (
            Status::OutsideRollout,
            format!(
                "rollout bucket {bucket} is outside the {percent}% wave for {}",
                would_get.digest.short()
            ),
        ),
        Decision::NotTargeted | Decision::Deploy(_) => (Status::NotTargeted, "no target matches this cluster".into()),
    };
    BundleState::keeping(previous, status, message)
}

/// The cycle's decisions, against the in-memory sink.
#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;
    use crate::format::Digest;
    use crate::select::Cluster;
    use crate::sink::memory::MemorySink;
    use crate::source::{RawIndex, Source};
    use crate::verify::{verify_index, TrustedKeys};

    fn now() -> OffsetDateTime {
        OffsetDateTime::parse("2026-06-01T00:00:00Z", &time::format_description::well_known::Rfc3339).expect("time")
    }

    fn name(s: &str) -> BundleName {
        BundleName::parse(s).expect("bundle name")
    }

    fn blob(s: &str) -> Digest {
        Digest::of(s.as_bytes())
    }

    /// A bundle entry targeting every cluster with blob `blob(digest_of)`.
    fn bundle(name: &str, digest_of: &str) -> serde_json::Value {
        json!({"name": name, "targets": [{"clusterSelector": {}, "digest": blob(digest_of).as_str(), "size": 1}]})
    }

    /// A signed and verified index of version `version` holding `bundles`.
    fn index(version: u64, bundles: Vec<serde_json::Value>) -> VerifiedIndex {
        let kp = minisign::KeyPair::generate_unencrypted_keypair().expect("keypair");
        let bytes = serde_json::to_vec(&json!({
            "apiVersion": "drover.dev/v1", "kind": "Index", "channel": "stable", "version": version,
            "expires": "2099-01-01T00:00:00Z", "bundles": bundles,
        }))
        .expect("index JSON");
        let signature = minisign::sign(Some(&kp.pk), &kp.sk, &bytes[..], None, None).expect("sign");
        let key = kp.pk.to_box().expect("public key box").into_string();
        let keys = TrustedKeys::from_key_text(Path::new("test.pub"), &key).expect("key");
        let raw = RawIndex {
            bytes,
            signature: signature.into_string().into_bytes(),
            origin: "test/index.json".into(),
            not_modified: false,
        };
        verify_index(&raw, &keys, now(), None).expect("verified")
    }

    /// A state directory and the in-memory sink, cycle after cycle.
    struct Bench {
        dir: tempfile::TempDir,
        sink: MemorySink,
        source: Source,
        cluster: Cluster,
        limits: crate::render::Limits,
        failures: AtomicU64,
    }

    impl Bench {
        fn new() -> Self {
            Bench {
                dir: tempfile::tempdir().expect("tempdir"),
                sink: MemorySink::default(),
                source: Source::parse("file:///nonexistent", &Default::default()).expect("source"),
                cluster: Cluster {
                    name: "shop-1".into(),
                    labels: Default::default(),
                },
                limits: Default::default(),
                failures: AtomicU64::new(0),
            }
        }

        /// One cycle of `index` from the saved state, as [`run_cycle`] runs it.
        async fn cycle(&mut self, index: &VerifiedIndex) -> CycleReport {
            let mut state = State::load(self.dir.path()).expect("state");
            let before = state.clone();
            let mut stage = Stage {
                blobs: BlobFetch {
                    sources: &[],
                    winner: &self.source,
                    state_dir: self.dir.path(),
                    verify_failures: &self.failures,
                },
                render: RenderSettings {
                    cluster: &self.cluster,
                    limits: &self.limits,
                    allow: None,
                },
                state: &mut state,
                state_dir: self.dir.path(),
                now: now(),
            };
            let results = converge(&mut self.sink, plan(index, &self.cluster), index, &mut stage).await;
            let index_changed = before.index.as_ref().map(|i| &i.sha256) != Some(index.sha256());
            let f = Finish {
                state,
                before,
                results,
                index: index_record(index, now()),
                source_problems: Vec::new(),
                index_changed,
            };
            let dir = StateDir {
                path: self.dir.path(),
                cache_bytes: 0,
            };
            finish::finish(dir, f, now()).expect("finish")
        }
    }

    fn result<'a>(report: &'a CycleReport, bundle: &str) -> &'a BundleState {
        let found = report.bundles.iter().find(|(n, _)| n.as_str() == bundle);
        &found
            .unwrap_or_else(|| panic!("no result for {bundle}: {:?}", report.bundles))
            .1
    }

    #[tokio::test]
    async fn a_targeted_bundle_is_applied_and_recorded_at_its_digest() {
        let mut bench = Bench::new();
        let report = bench.cycle(&index(1, vec![bundle("web", "web-1")])).await;
        let web = result(&report, "web");
        assert_eq!(
            (web.status, web.digest.as_ref()),
            (Status::Applied, Some(&blob("web-1")))
        );
        assert_eq!(bench.sink.held.get(&name("web")), Some(&blob("web-1")));
        assert!(report.is_success() && report.state_written);
    }

    #[tokio::test]
    async fn a_bundle_no_longer_targeted_is_removed_from_the_sink() {
        let mut bench = Bench::new();
        bench.cycle(&index(1, vec![bundle("web", "web-1")])).await;
        let elsewhere =
            json!({"name": "web", "targets": [{"clusterName": "shop-2", "digest": blob("web-1").as_str(), "size": 1}]});
        let report = bench.cycle(&index(2, vec![elsewhere])).await;
        let web = result(&report, "web");
        assert_eq!((web.status, web.digest.as_ref()), (Status::Removed, None));
        assert!(
            web.message.starts_with("no target matches this cluster"),
            "{}",
            web.message
        );
        assert!(bench.sink.held.is_empty());
    }

    #[tokio::test]
    async fn a_bundle_never_targeted_touches_nothing() {
        let mut bench = Bench::new();
        let elsewhere =
            json!({"name": "web", "targets": [{"clusterName": "shop-2", "digest": blob("web-1").as_str(), "size": 1}]});
        let report = bench.cycle(&index(1, vec![elsewhere])).await;
        assert_eq!(result(&report, "web").status, Status::NotTargeted);
        assert_eq!(bench.sink.writes, 0);
    }

    #[tokio::test]
    async fn a_paused_bundle_keeps_what_is_applied() {
        let mut bench = Bench::new();
        bench.cycle(&index(1, vec![bundle("web", "web-1")])).await;
        let mut paused = bundle("web", "web-2");
        paused["paused"] = json!(true);
        let report = bench.cycle(&index(2, vec![paused])).await;
        let web = result(&report, "web");
        assert_eq!(
            (web.status, web.digest.as_ref()),
            (Status::Paused, Some(&blob("web-1")))
        );
        assert_eq!(bench.sink.held.get(&name("web")), Some(&blob("web-1")));
        assert_eq!(bench.sink.writes, 1);
    }

    #[tokio::test]
    async fn a_bundle_waits_for_a_dependency_that_is_not_in_place() {
        let mut bench = Bench::new();
        bench.sink.refuse.insert(name("db"));
        let mut api = bundle("api", "api-1");
        api["dependsOn"] = json!(["db"]);
        let index = index(1, vec![api, bundle("db", "db-1")]);
        let report = bench.cycle(&index).await;
        let api = result(&report, "api");
        assert_eq!(
            (api.status, api.message.as_str()),
            (Status::PendingDependency, "waiting for db to be applied")
        );
        assert!(!bench.sink.held.contains_key(&name("api")));
        assert!(!report.is_success());

        bench.sink.refuse.clear();
        let report = bench.cycle(&index).await;
        let order: Vec<&str> = report.bundles.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(order, ["db", "api"], "dependencies first");
        assert_eq!(result(&report, "api").status, Status::Applied);
    }

    #[tokio::test]
    async fn a_bundle_that_left_the_index_is_removed() {
        let mut bench = Bench::new();
        bench
            .cycle(&index(1, vec![bundle("web", "web-1"), bundle("old", "old-1")]))
            .await;
        let report = bench.cycle(&index(2, vec![bundle("web", "web-1")])).await;
        let old = result(&report, "old");
        assert_eq!(old.status, Status::Removed);
        assert!(
            old.message.starts_with("the bundle is no longer in the index"),
            "{}",
            old.message
        );
        assert!(!bench.sink.held.contains_key(&name("old")));
        assert_eq!(bench.sink.held.get(&name("web")), Some(&blob("web-1")));
    }

    #[tokio::test]
    async fn a_failed_bundle_keeps_its_previous_content_and_the_others_go_on() {
        let mut bench = Bench::new();
        bench.cycle(&index(1, vec![bundle("web", "web-1")])).await;
        bench.sink.refuse.insert(name("web"));
        let report = bench
            .cycle(&index(2, vec![bundle("web", "web-2"), bundle("db", "db-1")]))
            .await;
        let web = result(&report, "web");
        assert_eq!((web.status, web.digest.as_ref()), (Status::Error, Some(&blob("web-1"))));
        assert!(web.message.contains("refused by the test"), "{}", web.message);
        assert_eq!(bench.sink.held.get(&name("web")), Some(&blob("web-1")));
        assert_eq!(result(&report, "db").status, Status::Applied);
    }

    #[tokio::test]
    async fn an_invalid_plan_is_an_error_that_keeps_what_is_applied() {
        let mut bench = Bench::new();
        bench.cycle(&index(1, vec![bundle("web", "web-1")])).await;
        let mut web = bundle("web", "web-2");
        web["dependsOn"] = json!(["nowhere"]);
        let report = bench.cycle(&index(2, vec![web])).await;
        let web = result(&report, "web");
        assert_eq!((web.status, web.digest.as_ref()), (Status::Error, Some(&blob("web-1"))));
        assert!(web.message.contains("unknown bundle(s): nowhere"), "{}", web.message);
        assert_eq!(bench.sink.writes, 1);
    }

    #[tokio::test]
    async fn a_paused_dependency_that_is_in_place_lets_its_dependents_go() {
        let mut bench = Bench::new();
        bench.cycle(&index(1, vec![bundle("db", "db-1")])).await;
        let mut db = bundle("db", "db-2");
        db["paused"] = json!(true);
        let mut api = bundle("api", "api-1");
        api["dependsOn"] = json!(["db"]);
        let report = bench.cycle(&index(2, vec![db, api])).await;
        assert_eq!(result(&report, "db").status, Status::Paused);
        assert_eq!(result(&report, "api").status, Status::Applied);
    }

    #[tokio::test]
    async fn an_unchanged_poll_writes_nothing() {
        let mut bench = Bench::new();
        let index = index(1, vec![bundle("web", "web-1")]);
        bench.cycle(&index).await;
        let saved = std::fs::read(bench.dir.path().join(crate::state::STATE_FILE)).expect("state");
        let report = bench.cycle(&index).await;
        assert!(!report.state_written && !report.index_changed);
        assert_eq!(bench.sink.writes, 1, "the sink was not written again");
        let again = std::fs::read(bench.dir.path().join(crate::state::STATE_FILE)).expect("state");
        assert_eq!(saved, again);
    }
}
