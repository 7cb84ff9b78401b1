//! One agent cycle: read every source, keep the highest verified index, plan, then for each
//! bundle in dependency order fetch, render and apply it, remove what is no longer
//! targeted, and record the result in the state directory.
//!
//! An index-level failure (no source yields a valid index) returns an error before
//! anything is written. A bundle-level failure leaves that bundle's previous content in
//! place and the cycle goes on with the others.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use time::OffsetDateTime;

use crate::config::AgentConfig;
use crate::error::{Error, Result};
use crate::format::{rfc3339, BundleName, Digest};
use crate::render::render_bundle;
use crate::select::{plan, Chosen, Decision};
use crate::sink::Sink;
use crate::source::Source;
use crate::state::{self, BundleState, IndexState, State, Status};
use crate::verify::{check_channel, verify_index_reusing, ChannelPin, VerifiedIndex};

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
    let mut state = State::load(&cfg.state_dir)?;
    let before = state.clone();
    let (verified, winner, source_problems) = best_index(cfg, &state, now, counters).await?;
    let index = verified.index();
    if !counters.swept.load(Ordering::Relaxed) && remove_leftover_temp_files(cfg) {
        counters.swept.store(true, Ordering::Relaxed);
    }
    let index_changed = before.index.as_ref().map(|i| &i.sha256) != Some(verified.sha256());
    if index_changed {
        tracing::info!(
            channel = %index.channel,
            version = index.version,
            previous = ?before.index.as_ref().map(|i| i.version),
            origin = %verified.origin(),
            "new index"
        );
    }
    let sink = match &cfg.sink {
        Sink::Dir(sink) => sink,
        Sink::Kube(kube) => {
            let cycle = crate::run_kube::Cycle {
                cfg,
                winner: &winner,
                verified: &verified,
                counters,
                now,
            };
            let (state, results) = cycle.run(kube, state).await?;
            let f = Finish {
                state,
                before,
                results,
                verified: &verified,
                source_problems,
                index_changed,
            };
            return finish(cfg, f, now);
        }
    };

    let mut results: Vec<(BundleName, BundleState)> = Vec::new();
    let mut in_place: BTreeSet<BundleName> = BTreeSet::new();
    for item in plan(&verified, &cfg.cluster) {
        let name = &item.bundle.name;
        let previous = state.bundles.get(name).cloned();
        let kept = |status: Status, message: String| BundleState::keeping(previous.as_ref(), status, message);
        let result = match item.decision {
            Decision::NotTargeted if previous.as_ref().is_some_and(BundleState::may_have_objects) => {
                remove(sink, name, "no target matches this cluster", previous.as_ref())
            }
            decision @ (Decision::Invalid(_)
            | Decision::NotTargeted
            | Decision::Paused { .. }
            | Decision::OutsideRollout { .. }) => no_change(decision, previous.as_ref()),
            Decision::Deploy(chosen) => {
                let waiting = waiting_for(&item.bundle.depends_on, &in_place);
                if waiting.is_empty() {
                    let namespace = item.bundle.namespace.as_deref();
                    let target = Target {
                        name,
                        namespace,
                        chosen: &chosen,
                    };
                    apply(cfg, &mut state, sink, &winner, &target, previous.as_ref(), counters).await
                } else {
                    kept(
                        Status::PendingDependency,
                        format!("waiting for {} to be applied", waiting.join(", ")),
                    )
                }
            }
        };
        if result.digest.is_some() && result.file_sha256.is_some() && result.status != Status::Removed {
            in_place.insert(name.clone());
        }
        results.push((name.clone(), result));
    }
    // Bundles applied before that the index no longer lists at all.
    for (name, previous) in &state.bundles {
        let listed = index.bundle(name).is_some();
        if !listed && previous.may_have_objects() {
            results.push((
                name.clone(),
                remove(sink, name, "the bundle is no longer in the index", Some(previous)),
            ));
        }
    }

    finish(
        cfg,
        Finish {
            state,
            before,
            results,
            verified: &verified,
            source_problems,
            index_changed,
        },
        now,
    )
}

/// Removes the temporary files a killed agent left in the state directory and the
/// manifests directory, before this cycle needs the space. Best effort: a failure is
/// logged and the cycle goes on; returns whether every directory was swept.
fn remove_leftover_temp_files(cfg: &AgentConfig) -> bool {
    let mut swept = true;
    let mut dirs = vec![cfg.state_dir.clone()];
    if let Sink::Dir(sink) = &cfg.sink {
        dirs.push(sink.dir().to_path_buf());
    }
    for dir in dirs {
        match crate::fsutil::remove_temp_files(&dir) {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(dir = %dir.display(), removed = n, "removed temporary files left by an interrupted run")
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not remove leftover temporary files");
                swept = false;
            }
        }
    }
    swept
}

/// What a cycle hands to [`finish`].
pub(crate) struct Finish<'a> {
    pub(crate) state: State,
    pub(crate) before: State,
    pub(crate) results: Vec<(BundleName, BundleState)>,
    pub(crate) verified: &'a VerifiedIndex,
    pub(crate) source_problems: Vec<String>,
    pub(crate) index_changed: bool,
}

/// Stamps `since`, logs what changed, records the index and saves the state when anything
/// changed (an unchanged poll writes nothing: edge devices often run on flash).
pub(crate) fn finish(cfg: &AgentConfig, f: Finish<'_>, now: OffsetDateTime) -> Result<CycleReport> {
    let Finish {
        mut state,
        before,
        mut results,
        verified,
        source_problems,
        index_changed,
    } = f;
    let index = verified.index();
    for (name, result) in &mut results {
        result.since = match before.bundles.get(name) {
            Some(p) if p.status == result.status && p.digest == result.digest => p.since.clone(),
            _ => Some(rfc3339(now)),
        };
        if before
            .bundles
            .get(name)
            .is_none_or(|p| p.status != result.status || p.digest != result.digest)
        {
            log_result(name, result);
        }
    }
    state.record_index(IndexState {
        channel: index.channel.clone(),
        version: index.version,
        sha256: verified.sha256().clone(),
        origin: verified.origin().to_string(),
        applied_at: match &before.index {
            Some(i) if !index_changed => i.applied_at.clone(),
            _ => rfc3339(now),
        },
    });
    state.bundles = results.iter().cloned().collect();
    let state_written = state != before;
    if state_written {
        state.save(&cfg.state_dir).map_err(|e| match e {
            Error::Io { path, source } => Error::StateNotSaved { path, source },
            other => other,
        })?;
        state::prune_blob_cache(&cfg.state_dir, &state, cfg.cache_bytes)?;
    }
    Ok(CycleReport {
        channel: index.channel.clone(),
        version: index.version,
        origin: verified.origin().to_string(),
        bundles: results,
        source_problems,
        previous_version: before.index.as_ref().map(|i| i.version),
        index_changed,
        state_written,
        state,
    })
}

/// The dependencies in `depends_on` not yet in `done`, by name.
pub(crate) fn waiting_for<'a>(depends_on: &'a [BundleName], done: &BTreeSet<BundleName>) -> Vec<&'a str> {
    depends_on
        .iter()
        .filter(|d| !done.contains(*d))
        .map(BundleName::as_str)
        .collect()
}

/// The result of a decision that changes nothing in the sink: the bundle is invalid,
/// not targeted (and holds nothing), paused, or outside the rollout wave. Whatever was
/// applied stays. Shared by every sink.
pub(crate) fn no_change(decision: Decision, previous: Option<&BundleState>) -> BundleState {
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

/// Reads every source; the highest verified version wins. Problems with other sources are
/// returned for reporting. Fails only when no source yields a valid index.
async fn best_index(
    cfg: &AgentConfig,
    state: &State,
    now: OffsetDateTime,
    counters: &Counters,
) -> Result<(VerifiedIndex, Source, Vec<String>)> {
    // A configured channel is checked against its own history: channels count versions
    // on their own, so moving to one with lower numbers is not a rollback.
    let applied = match &cfg.channel {
        Some(channel) => state.applied_in(channel),
        None => state.applied(),
    };
    let pin = match (&cfg.channel, &state.index) {
        (Some(c), _) => ChannelPin::Configured(c),
        (None, Some(last)) => ChannelPin::LastApplied(&last.channel),
        (None, None) => ChannelPin::Any,
    };
    let mut best: Option<(VerifiedIndex, Source)> = None;
    let mut problems = Vec::new();
    let mut last_error = None;
    for source in &cfg.sources {
        let verified = match source.fetch_index().await {
            Ok(raw) => {
                let mut known = counters.known.lock().unwrap_or_else(|p| p.into_inner());
                let location = source.location();
                let result = verify_index_reusing(&raw, &cfg.keys, now, applied.as_ref(), known.get(&location))
                    .and_then(|v| check_channel(&v, pin).map(|()| v));
                match &result {
                    Ok(v) => known.insert(location, v.clone()),
                    Err(_) => known.remove(&location),
                };
                result
            }
            Err(e) => Err(e),
        };
        match verified {
            Ok(v) if best.as_ref().is_none_or(|(b, _)| v.index().version > b.index().version) => {
                if let Some((older, _)) = best.replace((v, source.clone())) {
                    problems.push(format!(
                        "{}: serves older version {}",
                        older.origin(),
                        older.index().version
                    ));
                }
            }
            // A mirror in sync (same version, same bytes) is not a problem.
            Ok(v) if best.as_ref().is_some_and(|(b, _)| b.sha256() == v.sha256()) => {}
            Ok(v) => problems.push(format!("{}: serves older version {}", v.origin(), v.index().version)),
            Err(e) => {
                counters.note(&e);
                if !matches!(e, Error::Fetch { .. } | Error::Io { .. }) {
                    // What it served did not verify: do not let 304s replay it.
                    source.forget_index();
                }
                tracing::warn!(source = %source.location(), error = %e, "source unusable");
                problems.push(e.to_string());
                last_error = Some(e);
            }
        }
    }
    match (best, last_error) {
        (Some((v, s)), _) => Ok((v, s, problems)),
        (None, Some(e)) if cfg.sources.len() == 1 => Err(e),
        (None, _) => Err(Error::Fetch {
            url: cfg.sources.iter().map(Source::location).collect::<Vec<_>>().join(", "),
            message: format!("no source gave a valid index: {}", problems.join("; ")),
        }),
    }
}

/// What is to be applied for one bundle.
struct Target<'a> {
    name: &'a BundleName,
    namespace: Option<&'a str>,
    chosen: &'a Chosen,
}

/// Fetches, renders and writes one bundle. Before the sink is touched, the state records
/// the bundle as `Applying` at the new digest, so a crash between the write and the end of
/// the cycle still leaves the agent knowing these objects may be in the sink.
async fn apply(
    cfg: &AgentConfig,
    state: &mut State,
    sink: &crate::sink::DirSink,
    winner: &Source,
    target: &Target<'_>,
    previous: Option<&BundleState>,
    counters: &Counters,
) -> BundleState {
    let Target {
        name,
        namespace,
        chosen,
    } = *target;
    let inputs = render_inputs(chosen, namespace, &cfg.cluster);
    let unchanged = previous.is_some_and(|p| {
        p.digest.as_ref() == Some(&chosen.digest)
            && p.inputs.as_ref() == Some(&inputs)
            && p.file_sha256.as_ref().is_some_and(|sha| sink.is_in_place(name, sha))
    });
    if unchanged {
        // Keep the message of the apply that put it there: an unchanged poll then leaves
        // the state byte-for-byte as it was, and nothing is rewritten.
        let message = match previous {
            Some(p) if p.status == Status::Applied => p.message.clone(),
            _ => format!("{} already in place", chosen.digest.short()),
        };
        return BundleState::keeping(previous, Status::Applied, message);
    }
    let outcome = async {
        let blob = fetch_blob(cfg, winner, &chosen.digest, chosen.size, counters).await?;
        let what = format!("bundle {name} ({})", chosen.digest);
        // Rendered into a temporary file beside the bundle's file: the sink shows nothing
        // of it until the commit below.
        let mut file = sink.begin(name, &chosen.digest)?;
        let objects = render_bundle(
            &blob,
            &what,
            namespace,
            &cfg.cluster,
            &cfg.render_limits,
            cfg.allow.as_ref(),
            &mut file,
        )?;
        state.record_intent(
            &cfg.state_dir,
            name,
            &chosen.digest,
            format!("writing {}", chosen.digest.short()),
        )?;
        let file_sha = file.commit()?;
        Ok::<_, Error>((file_sha, objects))
    }
    .await;
    match outcome {
        Ok((file_sha, objects)) => BundleState {
            status: Status::Applied,
            message: format!(
                "{} written to {} ({objects} objects, target {}{})",
                chosen.digest.short(),
                sink.file_for(name).display(),
                chosen.target,
                chosen.wave_note()
            ),
            digest: Some(chosen.digest.clone()),
            file_sha256: Some(file_sha),
            inputs: Some(inputs),
            since: None,
        },
        Err(e) => {
            // If the intent was recorded and the write failed, the record says Applying at
            // the new digest: the next cycle rewrites, or removes if no longer targeted.
            let recorded = state.bundles.get(name).cloned();
            BundleState::keeping(recorded.as_ref().or(previous), Status::Error, e.to_string())
        }
    }
}

/// Writes the tombstone. If that fails, the record of what is applied is kept so the next
/// cycle tries again rather than forgetting the bundle's objects.
fn remove(sink: &crate::sink::DirSink, name: &BundleName, reason: &str, previous: Option<&BundleState>) -> BundleState {
    match sink.remove(name, reason) {
        Ok(sha) => BundleState {
            status: Status::Removed,
            message: format!("{reason}; tombstone written so k3s deletes its objects"),
            digest: None,
            file_sha256: Some(sha),
            inputs: None,
            since: None,
        },
        Err(e) => BundleState::keeping(previous, Status::Error, format!("could not remove ({reason}): {e}")),
    }
}

/// Fingerprint of the render inputs other than the blob: the same blob renders differently
/// for another cluster name, other labels or another default namespace.
fn render_inputs(chosen: &Chosen, namespace: Option<&str>, cluster: &crate::select::Cluster) -> Digest {
    let inputs = serde_json::json!({
        "digest": chosen.digest.as_str(),
        "namespace": namespace,
        "cluster": cluster.name,
        "labels": cluster.labels,
    });
    Digest::of(inputs.to_string().as_bytes())
}

/// Returns the path of a verified copy of blob `digest` in the cache, downloading it (from
/// the source that gave the index first, then the others) when missing or damaged.
pub(crate) async fn fetch_blob(
    cfg: &AgentConfig,
    winner: &Source,
    digest: &Digest,
    size: u64,
    counters: &Counters,
) -> Result<std::path::PathBuf> {
    let dest = state::cached_blob(&cfg.state_dir, digest);
    if cached_blob_is_intact(&dest, digest, size) {
        state::touch_cached_blob(&dest);
        return Ok(dest);
    }
    crate::fsutil::ensure_dir(dest.parent().expect("cached blob paths have a parent"))?;
    let mut last = None;
    for source in std::iter::once(winner).chain(cfg.sources.iter().filter(|s| s.location() != winner.location())) {
        match source.fetch_blob(digest, size, &dest).await {
            Ok(()) => return Ok(dest),
            Err(e) => {
                counters.note(&e);
                tracing::warn!(source = %source.location(), blob = %digest, error = %e, "blob fetch failed");
                last = Some(e);
            }
        }
    }
    Err(last.expect("at least one source was tried"))
}

fn cached_blob_is_intact(path: &std::path::Path, digest: &Digest, size: u64) -> bool {
    Digest::of_file(path).is_ok_and(|(d, n)| n == size && &d == digest)
}
