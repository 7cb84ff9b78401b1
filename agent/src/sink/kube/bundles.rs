//! The kube sink in the cycle: each targeted bundle is rendered from its verified blob and
//! applied through the API every cycle (server-side apply is a no-op when nothing changed,
//! and restores drifted objects); a dependent waits until its dependencies are Ready; a
//! removed bundle's inventory is pruned. Warning Events tell kubectl users what failed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::health::{waiting_for_health, Unsettled, HEALTH_TIMEOUT};
use super::{Applied, KubeSink, Parents, Policy, Prepared};
use crate::allow::AllowList;
use crate::error::Result;
use crate::format::BundleName;
use crate::render::Rendered;
use crate::sink::{BundleSink, Cleared, Job, Placed, Stage};
use crate::state::{BundleState, Status};

/// File in the state directory with what each object looked like after drover's last apply
/// (generation or resourceVersion), to count drift.
pub const MARKS_FILE: &str = "kube-marks.json";

/// Drift marks of every bundle: bundle name → the digest they were taken at and, per
/// object key, its mark.
type Marks = BTreeMap<String, DigestMarks>;

/// The marks of one bundle's objects, and the digest whose apply they were taken after. A
/// mark is only evidence that an object is up to date for that digest: the state can name a
/// newer digest that was never applied (its intent is recorded before the API is touched,
/// so a killed run leaves it), and the objects then still carry the old marks.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
struct DigestMarks {
    digest: String,
    objects: BTreeMap<String, String>,
}

/// One cycle's use of a connected [`KubeSink`], with the drift marks it keeps.
#[derive(Debug)]
pub(crate) struct KubeBundles<'a> {
    sink: &'a KubeSink,
    marks: Marks,
    state_dir: PathBuf,
    /// The namespace allow-list, which bounds removals as it bounds applies.
    allow: Option<&'a AllowList>,
    /// The ApplySet parents, read once a cycle when the first bundle is applied.
    parents: tokio::sync::OnceCell<Parents>,
}

impl<'a> KubeBundles<'a> {
    /// Opens a cycle on `sink`, with the drift marks saved in `state_dir` and the
    /// configured namespace `allow`-list.
    pub(crate) async fn open(sink: &'a KubeSink, state_dir: &Path, allow: Option<&'a AllowList>) -> Self {
        let dir = state_dir.to_path_buf();
        let marks = crate::blocking::run(move || load_marks(&dir)).await;
        KubeBundles {
            sink,
            marks,
            state_dir: state_dir.to_path_buf(),
            allow,
            parents: tokio::sync::OnceCell::new(),
        }
    }

    /// Fetches, renders, checks and applies the job's bundle.
    async fn put(&self, job: &Job<'_>, stage: &mut Stage<'_>) -> Result<Applied> {
        let blob = stage.fetch(job).await?;
        let (rendered, rendering) = stage.render_into(blob, job, Rendered::default()).await?;
        let prepared = Prepared::new(&format!("bundle {}", job.name()), &rendered.objects)?;
        drop(rendered);
        if let Some(allow) = stage.render.allow {
            // With the scope the API server reports for kinds rendering cannot place,
            // before any write.
            let what = job.what();
            self.sink
                .check_allowed(&what, &prepared, &rendering.scopes, allow)
                .await?;
        }
        // Drift is a change by someone else: a new digest changes the objects on purpose,
        // so its first apply counts none.
        let previous_marks = match job.same_digest() {
            true => self
                .marks
                .get(job.name().as_str())
                .filter(|m| m.digest == job.chosen.digest.to_string())
                .map(|m| m.objects.clone())
                .unwrap_or_default(),
            false => {
                // Recorded before the API is touched.
                let message = format!("applying {}", job.chosen.digest.short());
                stage.record_intent(job.name(), &job.chosen.digest, message).await?;
                BTreeMap::new()
            }
        };
        let policy = Policy {
            force: job.bundle.force,
            keep_resources: job.bundle.keep_resources,
        };
        let parents = self.parents.get_or_try_init(|| self.sink.parents()).await?;
        self.sink
            .apply(
                job.name(),
                &prepared,
                policy,
                &previous_marks,
                stage.render.allow,
                parents,
            )
            .await
    }

    /// The record of a bundle whose objects were applied: Ready, or Applying/Error while
    /// they are not healthy.
    async fn settle(&mut self, job: &Job<'_>, applied: Applied, stage: &Stage<'_>) -> Placed {
        let digest = &job.chosen.digest;
        let marks = DigestMarks {
            digest: digest.to_string(),
            objects: applied.marks,
        };
        self.marks.insert(job.name().to_string(), marks);
        let mut summary = format!(
            "{}: {} objects applied, {} drifted and restored, {} pruned",
            digest.short(),
            applied.objects,
            applied.drifted,
            applied.pruned
        );
        if applied.left > 0 {
            // Reported, not deleted: members drover did not apply or may not reach.
            summary.push_str(&format!(", {} left in place (not drover's to delete)", applied.left));
        }
        let record = match applied.unhealthy {
            None => Unsettled {
                status: Status::Ready,
                message: summary,
                reason: None,
            },
            Some(why) => {
                let timeout = job
                    .bundle
                    .health_timeout_seconds
                    .map_or(HEALTH_TIMEOUT, Duration::from_secs);
                waiting_for_health(job.previous, digest, why, timeout, stage.now)
            }
        };
        if record.status == Status::Error {
            self.sink.event(job.name(), "NotReady", &record.message).await;
        }
        Placed {
            status: record.status,
            message: record.message,
            file_sha256: None,
            inputs: None,
            reason: record.reason,
        }
    }
}

impl BundleSink for KubeBundles<'_> {
    fn dependency_goal(&self) -> &'static str {
        "Ready"
    }

    fn unblocks_dependents(&self, result: &BundleState, previous: Option<&BundleState>) -> bool {
        // A bundle frozen (paused, outside the wave) at a digest that was Ready stays Ready
        // for its dependents, as the dir sink counts a frozen bundle as in place.
        let frozen_ready = matches!(result.status, Status::Paused | Status::OutsideRollout)
            && previous.is_some_and(|p| p.status == Status::Ready);
        result.status == Status::Ready || frozen_ready
    }

    async fn apply(&mut self, job: &Job<'_>, stage: &mut Stage<'_>) -> Result<Placed> {
        match self.put(job, stage).await {
            Ok(applied) => Ok(self.settle(job, applied, stage).await),
            Err(e) => {
                self.sink.event(job.name(), "ApplyFailed", &e.to_string()).await;
                Err(e)
            }
        }
    }

    fn failed(&self, job: &Job<'_>, _recorded: Option<&BundleState>, message: String) -> BundleState {
        BundleState {
            // The objects may be partly applied: keep the digest so a later removal
            // prunes them.
            digest: Some(job.chosen.digest.clone()),
            ..BundleState::keeping(job.previous, Status::Error, message)
        }
    }

    async fn remove(&mut self, bundle: &BundleName, reason: &str) -> Result<Cleared> {
        match self.sink.remove(bundle, self.allow).await {
            Ok(deleted) => {
                self.marks.remove(bundle.as_str());
                Ok(Cleared {
                    message: format!("{reason}; {deleted} objects deleted"),
                    file_sha256: None,
                })
            }
            Err(e) => {
                self.sink.event(bundle, "PruneFailed", &e.to_string()).await;
                Err(e)
            }
        }
    }

    async fn end(&mut self) {
        let (dir, marks) = (self.state_dir.clone(), std::mem::take(&mut self.marks));
        crate::blocking::run(move || save_marks(&dir, &marks)).await;
    }
}

fn load_marks(state_dir: &Path) -> Marks {
    std::fs::read(state_dir.join(MARKS_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Saves the marks when they changed; best effort (lost marks only miss one drift count).
fn save_marks(state_dir: &Path, marks: &Marks) {
    let bytes = serde_json::to_vec_pretty(marks).expect("marks serialise: string maps");
    let path = state_dir.join(MARKS_FILE);
    if std::fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
        let _ = crate::fsutil::ensure_dir(state_dir).and_then(|()| crate::fsutil::replace_unsynced(&path, &bytes));
    }
}
