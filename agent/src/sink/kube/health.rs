//! How long a bundle may stay unhealthy after its apply, and what its record says
//! meanwhile: `Applying` while its objects become healthy, `Error` once that took longer
//! than the bundle's health timeout (and `Error` it stays until they are healthy).

use std::time::Duration;

use time::OffsetDateTime;

use crate::format::Digest;
use crate::state::{BundleState, Status};

/// How long a bundle may stay Applying (objects not healthy) before it is an Error.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(300);

/// The status and message of a bundle applied at `digest` whose objects are not healthy
/// (`why`), given its previous record, its timeout and the time now.
pub(crate) fn waiting_for_health(
    previous: Option<&BundleState>,
    digest: &Digest,
    why: String,
    timeout: Duration,
    now: OffsetDateTime,
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
        Some(t) if now - t > timeout => (Status::Error, format!("not Ready after {}s: {why}", timeout.as_secs())),
        _ => (Status::Applying, format!("applied, waiting for health: {why}")),
    }
}
