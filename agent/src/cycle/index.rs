//! The index a cycle applies: every source is read, and the highest verified version
//! wins. Problems with the other sources are kept for the report.

use time::OffsetDateTime;

use super::Counters;
use crate::config::AgentConfig;
use crate::error::{Error, Result};
use crate::source::Source;
use crate::state::State;
use crate::verify::{check_channel, verify_index_reusing, Applied, ChannelPin, VerifiedIndex};

/// The winning index, the source it came from, and what went wrong with the others.
pub(crate) struct Best {
    pub(crate) verified: VerifiedIndex,
    pub(crate) winner: Source,
    pub(crate) problems: Vec<String>,
}

/// Reads every source; the highest verified version wins. Fails only when no source
/// yields a valid index.
pub(crate) async fn best_index(
    cfg: &AgentConfig,
    state: &State,
    now: OffsetDateTime,
    counters: &Counters,
) -> Result<Best> {
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
        match read_one(cfg, source, now, applied.as_ref(), pin, counters).await {
            Ok(v) if best.as_ref().is_none_or(|(b, _)| v.index().version > b.index().version) => {
                if let Some((older, _)) = best.replace((v, source.clone())) {
                    problems.push(older_version(&older));
                }
            }
            // A mirror in sync (same version, same bytes) is not a problem.
            Ok(v) if best.as_ref().is_some_and(|(b, _)| b.sha256() == v.sha256()) => {}
            Ok(v) => problems.push(older_version(&v)),
            Err(e) => {
                problems.push(e.to_string());
                last_error = Some(e);
            }
        }
    }
    match (best, last_error) {
        (Some((verified, winner)), _) => Ok(Best {
            verified,
            winner,
            problems,
        }),
        (None, Some(e)) if cfg.sources.len() == 1 => Err(e),
        (None, _) => Err(Error::Fetch {
            url: cfg.sources.iter().map(Source::location).collect::<Vec<_>>().join(", "),
            message: format!("no source gave a valid index: {}", problems.join("; ")),
        }),
    }
}

fn older_version(v: &VerifiedIndex) -> String {
    format!("{}: serves older version {}", v.origin(), v.index().version)
}

/// Reads and verifies the index of one source, reusing the last verification of the same
/// bytes. A failure is counted and logged here.
async fn read_one(
    cfg: &AgentConfig,
    source: &Source,
    now: OffsetDateTime,
    applied: Option<&Applied>,
    pin: ChannelPin<'_>,
    counters: &Counters,
) -> Result<VerifiedIndex> {
    let verified = match source.fetch_index().await {
        Ok(raw) => {
            let mut known = counters.known.lock().unwrap_or_else(|p| p.into_inner());
            let location = source.location();
            let result = verify_index_reusing(&raw, &cfg.keys, now, applied, known.get(&location))
                .and_then(|v| check_channel(&v, pin).map(|()| v));
            match &result {
                Ok(v) => known.insert(location, v.clone()),
                Err(_) => known.remove(&location),
            };
            result
        }
        Err(e) => Err(e),
    };
    if let Err(e) = &verified {
        counters.note(e);
        if !matches!(e, Error::Fetch { .. } | Error::Io { .. }) {
            // What it served did not verify: do not let 304s replay it.
            source.forget_index();
        }
        tracing::warn!(source = %source.location(), error = %e, "source unusable");
    }
    verified
}
