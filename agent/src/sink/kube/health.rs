//! How long a bundle may stay unhealthy after its apply, and what its record says
//! meanwhile: `Applying` while its objects become healthy, `Error` once that took longer
//! than the bundle's health timeout (and `Error` it stays until they are healthy).

use std::time::Duration;

use time::OffsetDateTime;

use crate::format::Digest;
use crate::state::{BundleState, Reason, Status};

/// How long a bundle may stay Applying (objects not healthy) before it is an Error.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(300);

/// The record of a bundle whose objects are applied but not all healthy.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Unsettled {
    pub(crate) status: Status,
    pub(crate) message: String,
    pub(crate) reason: Option<Reason>,
}

/// The record of a bundle applied at `digest` whose objects are not healthy (`why`),
/// given its previous record, its timeout and the time now.
pub(crate) fn waiting_for_health(
    previous: Option<&BundleState>,
    digest: &Digest,
    why: String,
    timeout: Duration,
    now: OffsetDateTime,
) -> Unsettled {
    let timed_out = |after_seconds: u64| Unsettled {
        status: Status::Error,
        message: format!("not Ready after {after_seconds}s: {why}"),
        reason: Some(Reason::HealthTimeout { after_seconds }),
    };
    let same_blob = |p: &&BundleState| p.digest.as_ref() == Some(digest);
    if let Some(Reason::HealthTimeout { after_seconds }) = previous
        .filter(same_blob)
        .filter(|p| p.status == Status::Error)
        .and_then(|p| p.reason)
    {
        // Timed out before and still not healthy: stays an Error (no flapping back).
        return timed_out(after_seconds);
    }
    let since = previous
        .filter(same_blob)
        .filter(|p| p.status == Status::Applying)
        .and_then(|p| p.since.as_deref())
        .and_then(|s| OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok());
    match since {
        Some(t) if now - t > timeout => timed_out(timeout.as_secs()),
        _ => Unsettled {
            status: Status::Applying,
            message: format!("applied, waiting for health: {why}"),
            reason: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).expect("time")
    }

    fn record(status: Status, digest: &Digest, since: &str, reason: Option<Reason>) -> BundleState {
        BundleState {
            status,
            message: "whatever people were told".into(),
            digest: Some(digest.clone()),
            file_sha256: None,
            inputs: None,
            since: Some(since.into()),
            reason,
        }
    }

    const TIMEOUT: Duration = Duration::from_secs(300);

    #[test]
    fn unhealthy_objects_are_applying_until_the_timeout_then_an_error_that_stays() {
        let digest = Digest::of(b"web");
        let now = at("2026-06-01T00:10:00Z");
        let first = waiting_for_health(None, &digest, "0/1 ready".into(), TIMEOUT, now);
        assert_eq!((first.status, first.reason), (Status::Applying, None));
        let applying = record(Status::Applying, &digest, "2026-06-01T00:00:00Z", None);
        let late = waiting_for_health(Some(&applying), &digest, "0/1 ready".into(), TIMEOUT, now);
        assert_eq!(late.status, Status::Error);
        assert_eq!(late.message, "not Ready after 300s: 0/1 ready");
        let timed_out = record(Status::Error, &digest, "2026-06-01T00:09:00Z", late.reason);
        let still = waiting_for_health(Some(&timed_out), &digest, "1/2 ready".into(), TIMEOUT, now);
        assert_eq!(
            (still.status, still.message.as_str()),
            (Status::Error, "not Ready after 300s: 1/2 ready")
        );
    }

    #[test]
    fn an_apply_error_before_is_not_taken_for_a_health_timeout() {
        let digest = Digest::of(b"web");
        let failed = record(Status::Error, &digest, "2026-06-01T00:00:00Z", None);
        let now = at("2026-06-01T01:00:00Z");
        let next = waiting_for_health(Some(&failed), &digest, "0/1 ready".into(), TIMEOUT, now);
        assert_eq!((next.status, next.reason), (Status::Applying, None));
    }

    #[test]
    fn a_new_blob_starts_its_own_timeout() {
        let (old, new) = (Digest::of(b"old"), Digest::of(b"new"));
        let reason = Some(Reason::HealthTimeout { after_seconds: 300 });
        let timed_out = record(Status::Error, &old, "2026-06-01T00:00:00Z", reason);
        let now = at("2026-06-01T01:00:00Z");
        let next = waiting_for_health(Some(&timed_out), &new, "0/1 ready".into(), TIMEOUT, now);
        assert_eq!(next.status, Status::Applying);
    }
}
