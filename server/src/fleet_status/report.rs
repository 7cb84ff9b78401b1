//! One agent status report, parsed tolerantly: what `drover status` needs of the agent's
//! [`ClusterStatus`](drover_agent::status::ClusterStatus).
//!
//! Reports come from agents of different versions, so parsing is tolerant: unknown fields
//! are ignored, every field but `cluster` may be missing, and a `state` this publisher does
//! not know is kept as written (it gets its own table column). The field names and the
//! states are the agent's own: [`drover_agent::status`] writes them and a unit test
//! round-trips a report it wrote. The view below borrows from the input and interns the
//! strings that repeat across the fleet, which is what keeps 100,000 reports cheap.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use drover_agent::state::Status;
pub use drover_agent::status::STATUS_KIND;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The state shown for a bundle whose report names none.
pub const UNKNOWN_STATE: &str = "Unknown";

/// One cluster's report, as far as the fleet view needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterReport {
    /// The report's file name, for messages.
    pub file: String,
    /// The cluster's name.
    pub cluster: String,
    /// Version of the agent that wrote the report.
    pub agent_version: Option<Arc<str>>,
    /// Channel of the last valid index.
    pub channel: Option<Arc<str>>,
    /// Version of the last valid index.
    pub index_version: Option<u64>,
    /// End of the agent's last cycle attempt.
    pub checked_at: Option<OffsetDateTime>,
    /// Last cycle that read a valid index.
    pub last_success: Option<OffsetDateTime>,
    /// The agent found no valid index on its last attempt.
    pub stale: bool,
    /// Since when the agent has had no valid index.
    pub stale_since: Option<OffsetDateTime>,
    /// The agent's last error.
    pub last_error: Option<String>,
    /// The agent's cycle interval.
    pub interval: Option<Duration>,
    /// The agent's heartbeat: longest time between two reports when nothing changes.
    pub report_interval: Option<Duration>,
    /// Per-bundle results.
    pub bundles: Vec<BundleReport>,
}

/// One bundle's result in a cluster's report. Names, digests and states repeat across
/// the fleet, so they are shared (a 100,000-cluster fleet has a few dozen of each).
#[derive(Debug, Clone, PartialEq)]
pub struct BundleReport {
    /// Bundle name.
    pub name: Arc<str>,
    /// Digest of the blob the cluster targets or has applied.
    pub digest: Option<Arc<str>>,
    /// State as the agent wrote it, and what it means.
    pub state: BundleState,
    /// The agent's message.
    pub message: Option<String>,
    /// Since when the bundle has been in this state.
    pub since: Option<OffsetDateTime>,
}

/// A report that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Problem {
    /// The report's file name.
    pub file: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A bundle's state: the name the agent wrote, and the agent's [`Status`] it stands for
/// when this publisher knows it (`None` for a missing state or one from a newer agent).
#[derive(Debug, Clone, PartialEq)]
pub struct BundleState {
    /// As written (`Applied`, `Error`, …); [`UNKNOWN_STATE`] when missing.
    pub name: Arc<str>,
    /// What it means, when known.
    pub known: Option<Status>,
}

impl BundleState {
    /// The state named `name`.
    pub fn new(name: Arc<str>) -> Self {
        let known = agent_status(&name);
        BundleState { name, known }
    }

    /// Whether the bundle failed on its cluster.
    pub fn is_error(&self) -> bool {
        self.known == Some(Status::Error)
    }
}

/// The agent's [`Status`] called `name` (its serde name), if there is one.
pub fn agent_status(name: &str) -> Option<Status> {
    let name = serde::de::value::StrDeserializer::<serde::de::value::Error>::new(name);
    Status::deserialize(name).ok()
}

/// The report as written by any agent version: everything optional, unknown fields ignored.
/// Strings borrow from the input where they can; the repeated ones are interned after.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawReport<'a> {
    #[serde(borrow)]
    kind: Option<Cow<'a, str>>,
    cluster: Option<String>,
    #[serde(borrow)]
    agent_version: Option<Cow<'a, str>>,
    #[serde(borrow)]
    channel: Option<Cow<'a, str>>,
    index_version: Option<u64>,
    #[serde(borrow)]
    checked_at: Option<Cow<'a, str>>,
    #[serde(borrow)]
    last_success: Option<Cow<'a, str>>,
    stale: Option<bool>,
    #[serde(borrow)]
    stale_since: Option<Cow<'a, str>>,
    last_error: Option<String>,
    interval_seconds: Option<u64>,
    report_interval_seconds: Option<u64>,
    #[serde(borrow)]
    bundles: Option<Vec<RawBundle<'a>>>,
}

#[derive(Deserialize)]
struct RawBundle<'a> {
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    digest: Option<Cow<'a, str>>,
    #[serde(borrow)]
    state: Option<Cow<'a, str>>,
    message: Option<String>,
    #[serde(borrow)]
    since: Option<Cow<'a, str>>,
}

/// Hands out one shared copy of each distinct string.
#[derive(Debug, Default)]
pub(super) struct Interner(HashSet<Arc<str>>);

impl Interner {
    pub(super) fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(shared) = self.0.get(s) {
            return shared.clone();
        }
        let shared: Arc<str> = s.into();
        self.0.insert(shared.clone());
        shared
    }

    /// Interns a string that is present and not empty.
    pub(super) fn non_empty(&mut self, s: Option<Cow<'_, str>>) -> Option<Arc<str>> {
        s.filter(|s| !s.is_empty()).map(|s| self.get(&s))
    }
}

/// Parses one report. `file` names it in the problem returned for an unusable report.
pub fn parse_report(file: &str, bytes: &[u8]) -> Result<ClusterReport, Problem> {
    parse_report_interned(file, bytes, &mut Interner::default())
}

/// [`parse_report`], sharing repeated strings through `strings`.
pub(super) fn parse_report_interned(
    file: &str,
    bytes: &[u8],
    strings: &mut Interner,
) -> Result<ClusterReport, Problem> {
    let problem = |reason: String| Problem {
        file: file.to_string(),
        reason,
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(problem("empty file".into()));
    }
    let raw: RawReport =
        serde_json::from_slice(bytes).map_err(|e| problem(format!("not a status report (JSON): {e}")))?;
    if let Some(kind) = raw.kind.as_deref().filter(|k| *k != STATUS_KIND) {
        return Err(problem(format!("kind is {kind:?}, expected {STATUS_KIND:?}")));
    }
    let cluster = raw
        .cluster
        .filter(|c| !c.is_empty())
        .ok_or_else(|| problem("no cluster name (field \"cluster\")".into()))?;
    let time = |field: &str, value: Option<Cow<'_, str>>| -> Result<Option<OffsetDateTime>, Problem> {
        value
            .map(|v| {
                OffsetDateTime::parse(&v, &Rfc3339)
                    .map_err(|_| problem(format!("{field}: {v:?} is not an RFC 3339 time")))
            })
            .transpose()
    };
    let mut bundles = Vec::new();
    for (i, b) in raw.bundles.unwrap_or_default().into_iter().enumerate() {
        let name = strings
            .non_empty(b.name)
            .ok_or_else(|| problem(format!("bundles[{i}] has no name")))?;
        bundles.push(BundleReport {
            since: time(&format!("bundles[{i}].since"), b.since)?,
            name,
            digest: strings.non_empty(b.digest),
            state: BundleState::new(strings.non_empty(b.state).unwrap_or_else(|| strings.get(UNKNOWN_STATE))),
            message: b.message.filter(|m| !m.is_empty()),
        });
    }
    Ok(ClusterReport {
        file: file.to_string(),
        cluster,
        agent_version: strings.non_empty(raw.agent_version),
        channel: strings.non_empty(raw.channel),
        index_version: raw.index_version,
        checked_at: time("checkedAt", raw.checked_at)?,
        last_success: time("lastSuccess", raw.last_success)?,
        stale: raw.stale.unwrap_or(false),
        stale_since: time("staleSince", raw.stale_since)?,
        last_error: raw.last_error.filter(|e| !e.is_empty()),
        interval: raw.interval_seconds.map(Duration::from_secs),
        report_interval: raw.report_interval_seconds.map(Duration::from_secs),
        bundles,
    })
}

/// Whether a file name is a report: `*.json`, not hidden (temp files of agents and DAV
/// servers start with a dot or do not end in `.json`).
pub fn is_report_name(name: &str) -> bool {
    name.len() > ".json".len() && name.ends_with(".json") && !name.starts_with('.')
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn parses_a_full_report_and_ignores_unknown_fields() {
        let json = r#"{"kind":"ClusterStatus","cluster":"site-7","futureField":{"x":1},"checkedAt":"2026-11-26T09:59:00Z",
            "stale":true,"staleSince":"2026-11-26T08:00:00Z","lastError":"mirror down","intervalSeconds":30,
            "bundles":[{"name":"web","state":"Applied","extra":true}]}"#;
        let r = parse_report("site-7.json", json.as_bytes()).expect("parses");
        assert_eq!(r.cluster, "site-7");
        assert!(r.stale);
        assert_eq!(r.stale_since, Some(at("2026-11-26T08:00:00Z")));
        assert_eq!(r.interval, Some(Duration::from_secs(30)));
        assert_eq!(r.index_version, None);
        assert_eq!(r.bundles[0].digest, None);
        assert_eq!(&*r.bundles[0].state.name, "Applied");
    }

    #[test]
    fn a_minimal_report_needs_only_the_cluster_name() {
        let r = parse_report("a.json", br#"{"cluster":"a","bundles":[{"name":"web"}]}"#).expect("parses");
        assert_eq!(&*r.bundles[0].state.name, "Unknown");
        assert_eq!(r.checked_at, None);
    }

    #[test]
    fn corrupt_reports_are_problems_naming_file_and_reason() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty file"),
            (b"{\"cluster\":\"a\"", "not a status report"),
            (b"[1,2]", "not a status report"),
            (
                b"{\"cluster\":\"a\",\"indexVersion\":\"twelve\"}",
                "not a status report",
            ),
            (b"{\"kind\":\"Index\",\"cluster\":\"a\"}", "kind is \"Index\""),
            (b"{\"checkedAt\":\"2026-11-26T10:00:00Z\"}", "no cluster name"),
            (
                b"{\"cluster\":\"a\",\"checkedAt\":\"yesterday\"}",
                "checkedAt: \"yesterday\"",
            ),
        ];
        for (bytes, reason) in cases {
            let p = parse_report("bad.json", bytes).expect_err("must be a problem");
            assert_eq!(p.file, "bad.json");
            assert!(
                p.reason.contains(reason),
                "{:?} → {}",
                String::from_utf8_lossy(bytes),
                p.reason
            );
        }
    }

    #[test]
    fn reads_a_report_the_agent_wrote() {
        use drover_agent::format::Digest;
        use drover_agent::state::Status;
        use drover_agent::status::{BundleStatus, ClusterStatus, STATUS_KIND};
        let digest = Digest::of(b"bundle");
        let written = ClusterStatus {
            api_version: drover_agent::format::API_VERSION.into(),
            kind: STATUS_KIND.into(),
            cluster: "site-1".into(),
            labels: BTreeMap::from([("env".into(), "prod".into())]),
            agent_version: "0.1.0".into(),
            channel: Some("stable".into()),
            index_version: Some(7),
            index_sha256: Some(Digest::of(b"index")),
            origin: Some("http://mirror/index.json".into()),
            checked_at: "2026-11-26T09:59:00Z".into(),
            last_success: Some("2026-11-26T09:58:00Z".into()),
            stale: true,
            stale_since: Some("2026-11-26T09:00:00Z".into()),
            last_error: Some("mirror down".into()),
            interval_seconds: 30,
            report_interval_seconds: Some(600),
            bundles: vec![BundleStatus {
                name: "web".into(),
                digest: Some(digest.clone()),
                state: Status::PendingDependency,
                message: "waiting for base".into(),
                since: Some("2026-11-26T09:30:00Z".into()),
            }],
        };
        let r = parse_report("site-1.json", &written.to_json()).expect("the agent's report parses");
        assert_eq!(r.cluster, "site-1");
        assert_eq!(r.agent_version.as_deref(), Some("0.1.0"));
        assert_eq!((r.channel.as_deref(), r.index_version), (Some("stable"), Some(7)));
        assert_eq!(r.checked_at, Some(at("2026-11-26T09:59:00Z")));
        assert_eq!(r.last_success, Some(at("2026-11-26T09:58:00Z")));
        assert_eq!((r.stale, r.stale_since), (true, Some(at("2026-11-26T09:00:00Z"))));
        assert_eq!(r.last_error.as_deref(), Some("mirror down"));
        assert_eq!(r.interval, Some(Duration::from_secs(30)));
        assert_eq!(r.report_interval, Some(Duration::from_secs(600)));
        let b = &r.bundles[0];
        assert_eq!((&*b.name, b.digest.as_deref()), ("web", Some(digest.as_str())));
        assert_eq!(b.state.known, Some(Status::PendingDependency));
        assert_eq!(&*b.state.name, "PendingDependency");
        assert_eq!(b.message.as_deref(), Some("waiting for base"));
        assert_eq!(b.since, Some(at("2026-11-26T09:30:00Z")));
    }
}
