//! One cycle's bundle work for the `kube` sink (the index-level part is shared with the
//! dir sink in [`crate::run`]): in dependency order, each targeted bundle is rendered from
//! its verified blob and applied through the API every cycle (server-side apply is a no-op
//! when nothing changed, and restores drifted objects); a bundle is applied only once every
//! bundle it depends on is Ready on this cluster; bundles no longer targeted are pruned.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use time::OffsetDateTime;

use crate::config::AgentConfig;
use crate::error::Result;
use crate::format::{BundleName, Digest};
use crate::render::{render_bundle, Rendered};
use crate::run::{fetch_blob, no_change, waiting_for, Counters};
use crate::select::{plan, Decision};
use crate::sink::kube::{KubeSink, Policy};
use crate::sink::KubeTarget;
use crate::source::Source;
use crate::state::{BundleState, State, Status};
use crate::verify::VerifiedIndex;

/// File in the state directory with what each object looked like after drover's last apply
/// (generation or resourceVersion), to count drift.
pub const MARKS_FILE: &str = "kube-marks.json";
/// How long a bundle may stay Applying (objects not healthy) before it is an Error.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(300);

/// The inputs of one cycle.
pub(crate) struct Cycle<'a> {
    pub(crate) cfg: &'a AgentConfig,
    pub(crate) winner: &'a Source,
    pub(crate) verified: &'a VerifiedIndex,
    pub(crate) counters: &'a Counters,
    pub(crate) now: OffsetDateTime,
}

impl Cycle<'_> {
    /// Applies the plan; returns the state (to be finished by the caller) and per-bundle results.
    pub(crate) async fn run(
        &self,
        target: &KubeTarget,
        mut state: State,
    ) -> Result<(State, Vec<(BundleName, BundleState)>)> {
        let sink = target.sink().await?;
        let mut marks = load_marks(self.cfg);
        let mut results: Vec<(BundleName, BundleState)> = Vec::new();
        let mut ready: BTreeSet<BundleName> = BTreeSet::new();
        for item in plan(self.verified, &self.cfg.cluster) {
            let name = item.bundle.name.clone();
            let previous = state.bundles.get(&name).cloned();
            let kept = |status: Status, message: String| BundleState::keeping(previous.as_ref(), status, message);
            let result = match item.decision {
                Decision::NotTargeted if previous.as_ref().is_some_and(BundleState::may_have_objects) => {
                    self.remove(
                        sink,
                        &name,
                        "no target matches this cluster",
                        previous.as_ref(),
                        &mut marks,
                    )
                    .await
                }
                decision @ (Decision::Invalid(_)
                | Decision::NotTargeted
                | Decision::Paused { .. }
                | Decision::OutsideRollout { .. }) => no_change(decision, previous.as_ref()),
                Decision::Deploy(chosen) => {
                    let waiting = waiting_for(&item.bundle.depends_on, &ready);
                    if !waiting.is_empty() {
                        kept(
                            Status::PendingDependency,
                            format!("waiting for {} to be Ready", waiting.join(", ")),
                        )
                    } else {
                        let namespace = item.bundle.namespace.as_deref();
                        let outcome = async {
                            let blob =
                                fetch_blob(self.cfg, self.winner, &chosen.digest, chosen.size, self.counters).await?;
                            let what = format!("bundle {name} ({})", chosen.digest);
                            let mut rendered = Rendered::default();
                            render_bundle(
                                &blob,
                                &what,
                                namespace,
                                &self.cfg.cluster,
                                &self.cfg.render_limits,
                                self.cfg.allow.as_ref(),
                                &mut rendered,
                            )?;
                            if let Some(allow) = &self.cfg.allow {
                                // Again with the scope the API server reports, before any write.
                                sink.check_allowed(&what, &rendered.documents, allow).await?;
                            }
                            // Drift is a change by someone else: a new digest changes the
                            // objects on purpose, so its first apply counts none.
                            let same_digest = previous.as_ref().and_then(|p| p.digest.as_ref()) == Some(&chosen.digest);
                            let previous_marks = if same_digest {
                                marks.get(name.as_str()).cloned().unwrap_or_default()
                            } else {
                                BTreeMap::new()
                            };
                            if !same_digest {
                                // Recorded before the API is touched.
                                state.record_intent(
                                    &self.cfg.state_dir,
                                    &name,
                                    &chosen.digest,
                                    format!("applying {}", chosen.digest.short()),
                                )?;
                            }
                            let policy = Policy {
                                force: item.bundle.force,
                                keep_resources: item.bundle.keep_resources,
                            };
                            sink.apply(&name, &rendered.documents, policy, &previous_marks).await
                        }
                        .await;
                        match outcome {
                            Ok(applied) => {
                                marks.insert(name.to_string(), applied.marks.clone());
                                let summary = format!(
                                    "{}: {} objects applied, {} drifted and restored, {} pruned",
                                    chosen.digest.short(),
                                    applied.objects,
                                    applied.drifted,
                                    applied.pruned
                                );
                                let (status, message) = match applied.unhealthy {
                                    None => (Status::Ready, summary),
                                    Some(why) => {
                                        let timeout = item
                                            .bundle
                                            .health_timeout_seconds
                                            .map_or(HEALTH_TIMEOUT, Duration::from_secs);
                                        self.waiting_for_health(previous.as_ref(), &chosen.digest, why, timeout)
                                    }
                                };
                                if status == Status::Error {
                                    sink.event(&name, "NotReady", &message).await;
                                }
                                BundleState {
                                    status,
                                    message,
                                    digest: Some(chosen.digest.clone()),
                                    file_sha256: None,
                                    inputs: None,
                                    since: None,
                                }
                            }
                            Err(e) => {
                                sink.event(&name, "ApplyFailed", &e.to_string()).await;
                                BundleState {
                                    // The objects may be partly applied: keep the digest so a
                                    // later removal prunes them.
                                    digest: Some(chosen.digest.clone()),
                                    ..kept(Status::Error, e.to_string())
                                }
                            }
                        }
                    }
                }
            };
            // A bundle frozen (paused, outside the wave) at a digest that was Ready stays Ready
            // for its dependents, as the dir sink counts a frozen bundle as in place.
            let frozen_ready = matches!(result.status, Status::Paused | Status::OutsideRollout)
                && previous.as_ref().is_some_and(|p| p.status == Status::Ready);
            if result.status == Status::Ready || frozen_ready {
                ready.insert(name.clone());
            }
            results.push((name, result));
        }
        let listed: BTreeSet<&BundleName> = self.verified.index().bundles.iter().map(|b| &b.name).collect();
        for (name, previous) in &state.bundles {
            if !listed.contains(name) && previous.may_have_objects() {
                let removed = self
                    .remove(
                        sink,
                        name,
                        "the bundle is no longer in the index",
                        Some(previous),
                        &mut marks,
                    )
                    .await;
                results.push((name.clone(), removed));
            }
        }
        save_marks(self.cfg, &marks);
        Ok((state, results))
    }

    /// Applying while objects are not healthy; Error once that lasted past the timeout.
    fn waiting_for_health(
        &self,
        previous: Option<&BundleState>,
        digest: &Digest,
        why: String,
        timeout: Duration,
    ) -> (Status, String) {
        if let Some(p) = previous.filter(|p| {
            p.status == Status::Error && p.digest.as_ref() == Some(digest) && p.message.starts_with("not Ready after")
        }) {
            // Timed out before and still not healthy: stays an Error (no flapping back).
            let head = p.message.split(": ").next().unwrap_or("not Ready");
            return (Status::Error, format!("{head}: {why}"));
        }
        let since = previous
            .filter(|p| p.status == Status::Applying && p.digest.as_ref() == Some(digest))
            .and_then(|p| p.since.as_deref())
            .and_then(|s| OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok());
        match since {
            Some(t) if self.now - t > timeout => {
                (Status::Error, format!("not Ready after {}s: {why}", timeout.as_secs()))
            }
            _ => (Status::Applying, format!("applied, waiting for health: {why}")),
        }
    }

    async fn remove(
        &self,
        sink: &KubeSink,
        name: &BundleName,
        reason: &str,
        previous: Option<&BundleState>,
        marks: &mut BTreeMap<String, BTreeMap<String, String>>,
    ) -> BundleState {
        match sink.remove(name).await {
            Ok(deleted) => {
                marks.remove(name.as_str());
                BundleState {
                    status: Status::Removed,
                    message: format!("{reason}; {deleted} objects deleted"),
                    digest: None,
                    file_sha256: None,
                    inputs: None,
                    since: None,
                }
            }
            Err(e) => {
                sink.event(name, "PruneFailed", &e.to_string()).await;
                BundleState::keeping(previous, Status::Error, format!("could not remove ({reason}): {e}"))
            }
        }
    }
}

fn load_marks(cfg: &AgentConfig) -> BTreeMap<String, BTreeMap<String, String>> {
    std::fs::read(cfg.state_dir.join(MARKS_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save_marks(cfg: &AgentConfig, marks: &BTreeMap<String, BTreeMap<String, String>>) {
    let bytes = serde_json::to_vec_pretty(marks).expect("marks serialise: string maps");
    if std::fs::read(cfg.state_dir.join(MARKS_FILE)).ok().as_deref() != Some(&bytes[..]) {
        let _ = crate::fsutil::ensure_dir(&cfg.state_dir)
            .and_then(|()| crate::fsutil::replace_unsynced(&cfg.state_dir.join(MARKS_FILE), &bytes));
    }
}
