//! `drover status`: the fleet view, built from the status reports agents leave in a report
//! directory (one `<cluster>.json` per cluster, PUT to a WebDAV server or copied from a USB
//! stick).
//!
//! Three steps, each usable on its own:
//! * [`read_reports`] reads every report of a directory or of an `http(s)://` directory
//!   listing (nginx `autoindex`, HTML or JSON). Files are read in parallel; a report that
//!   cannot be read or parsed becomes a [`Problem`] and never stops the others.
//! * [`aggregate`] turns the reports into a [`FleetStatus`]: counts per bundle, digest and
//!   state, stale clusters, bundles in `Error`, index and agent versions. It is pure: the
//!   time is an argument.
//! * [`FleetStatus::render_table`] and the `Serialize` impl (`-o json`) present it.
//!
//! Reports come from agents of different versions, so parsing is tolerant: unknown fields
//! are ignored, every field but `cluster` may be missing, and `state` is a free string.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::{Error, Result};

/// Largest report read (1 MiB); a bigger file is listed as a problem, not read.
pub const MAX_REPORT_SIZE: u64 = 1 << 20;
/// Largest directory listing read over HTTP (64 MiB; nginx lists 100,000 reports in about
/// 12 MiB of HTML).
pub const MAX_LISTING_SIZE: u64 = 64 << 20;
/// Reports fetched at once over HTTP.
pub const HTTP_CONCURRENCY: usize = 32;
/// Time allowed to connect to the report server.
pub const HTTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for one request, the listing included.
pub const HTTP_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Without `--stale-after`, a cluster is stale when its report is this many agent cycles
/// later than its heartbeat...
pub const STALE_INTERVALS: u32 = 3;
/// ...but never sooner than this.
pub const MIN_STALE_AFTER: Duration = Duration::from_secs(300);
/// Cycle interval assumed for a report without `intervalSeconds` (the agent's default).
pub const DEFAULT_INTERVAL: Duration = drover_agent::config::DEFAULT_INTERVAL;
/// Heartbeat assumed for a report without `reportIntervalSeconds`: the agent's default
/// `--report-interval`. An agent sends its report when it changes and otherwise only this
/// often, so an idle, healthy cluster's `checkedAt` is normally up to this old.
pub const DEFAULT_REPORT_INTERVAL: Duration = Duration::from_secs(600);
/// Longest bundle message shown in the table (the JSON output has it whole).
pub const TABLE_MESSAGE_CHARS: usize = 160;
/// The `kind` a report must have when it names one.
pub const REPORT_KIND: &str = "ClusterStatus";

/// The state an agent reports for a bundle that failed.
const ERROR_STATE: &str = "Error";
/// States in the order the table shows their columns; other states follow alphabetically.
const KNOWN_STATES: &[&str] = &[
    "Applied",
    "Ready",
    "Applying",
    "PendingDependency",
    "Error",
    "Paused",
    "OutsideRollout",
    "NotTargeted",
    "Removed",
];

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
    /// State as the agent wrote it (`Applied`, `Error`, …); `Unknown` when missing.
    pub state: Arc<str>,
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

/// What [`read_reports`] found.
#[derive(Debug, Default)]
pub struct Reports {
    /// Where the reports were read from.
    pub source: String,
    /// The readable reports.
    pub reports: Vec<ClusterReport>,
    /// The unreadable ones.
    pub problems: Vec<Problem>,
}

/// Options of [`aggregate`].
#[derive(Debug, Clone)]
pub struct Options {
    /// The time staleness is measured against.
    pub now: OffsetDateTime,
    /// Fixed staleness limit; `None` means per report, see [`stale_after`].
    pub stale_after: Option<Duration>,
}

// ---------------------------------------------------------------------------------------
// Parsing

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
struct Interner(HashSet<Arc<str>>);

impl Interner {
    fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(shared) = self.0.get(s) {
            return shared.clone();
        }
        let shared: Arc<str> = s.into();
        self.0.insert(shared.clone());
        shared
    }

    /// Interns a string that is present and not empty.
    fn non_empty(&mut self, s: Option<Cow<'_, str>>) -> Option<Arc<str>> {
        s.filter(|s| !s.is_empty()).map(|s| self.get(&s))
    }
}

/// What one reader thread or task keeps between reports.
#[derive(Debug, Default)]
struct Scratch {
    buf: Vec<u8>,
    strings: Interner,
}

/// Parses one report. `file` names it in the problem returned for an unusable report.
pub fn parse_report(file: &str, bytes: &[u8]) -> Result<ClusterReport, Problem> {
    parse_report_interned(file, bytes, &mut Interner::default())
}

fn parse_report_interned(file: &str, bytes: &[u8], strings: &mut Interner) -> Result<ClusterReport, Problem> {
    let problem = |reason: String| Problem {
        file: file.to_string(),
        reason,
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(problem("empty file".into()));
    }
    let raw: RawReport =
        serde_json::from_slice(bytes).map_err(|e| problem(format!("not a status report (JSON): {e}")))?;
    if let Some(kind) = raw.kind.as_deref().filter(|k| *k != REPORT_KIND) {
        return Err(problem(format!("kind is {kind:?}, expected {REPORT_KIND:?}")));
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
            state: strings.non_empty(b.state).unwrap_or_else(|| strings.get("Unknown")),
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

// ---------------------------------------------------------------------------------------
// Reading

/// Reads every report of `source`: a directory, or the `http(s)://` URL of a directory
/// listing. Fails only when the source itself cannot be read or holds no report at all;
/// unreadable reports are returned as problems.
pub async fn read_reports(source: &str) -> Result<Reports> {
    if source.starts_with("http://") || source.starts_with("https://") {
        let url = Url::parse(source).map_err(|e| Error::reports(source, format!("not a valid URL: {e}")))?;
        return read_http(url).await;
    }
    if source.contains("://") {
        return Err(Error::reports(
            source,
            "only directories and http(s):// URLs are supported",
        ));
    }
    let dir = PathBuf::from(source);
    tokio::task::spawn_blocking(move || read_dir(&dir))
        .await
        .map_err(|e| Error::reports(source, format!("reader thread failed: {e}")))?
}

/// Reads every report file of `dir` (not recursive), in parallel.
pub fn read_dir(dir: &Path) -> Result<Reports> {
    let source = dir.display().to_string();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::reports(&source, format!("cannot list: {e}")))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::reports(&source, format!("cannot list: {e}")))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue; // not UTF-8: no agent writes such a name
        };
        if is_report_name(&name) && !entry.file_type().is_ok_and(|t| t.is_dir()) {
            names.push(name);
        }
    }
    if names.is_empty() {
        return Err(Error::reports(&source, "no *.json reports here"));
    }
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 8) * 2;
    let results = parallel_map(&names, threads, |scratch, name| {
        read_report_file(&dir.join(name), name, scratch)
    });
    Ok(collect(source, results))
}

/// Reads and parses one report file.
fn read_report_file(path: &Path, name: &str, scratch: &mut Scratch) -> Result<ClusterReport, Problem> {
    let problem = |reason: String| Problem {
        file: name.to_string(),
        reason,
    };
    scratch.buf.clear();
    let file = std::fs::File::open(path).map_err(|e| problem(format!("cannot open: {e}")))?;
    file.take(MAX_REPORT_SIZE + 1)
        .read_to_end(&mut scratch.buf)
        .map_err(|e| problem(format!("cannot read: {e}")))?;
    if scratch.buf.len() as u64 > MAX_REPORT_SIZE {
        return Err(problem(format!("larger than {MAX_REPORT_SIZE} bytes")));
    }
    parse_report_interned(name, &scratch.buf, &mut scratch.strings)
}

/// Applies `f` to every item on `threads` threads; each thread owns one [`Scratch`].
/// The order of the results is not the order of the items.
fn parallel_map<T: Send>(items: &[String], threads: usize, f: impl Fn(&mut Scratch, &str) -> T + Sync) -> Vec<T> {
    // Items are handed out in small batches so one slow file does not hold up a whole share.
    const BATCH: usize = 64;
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut scratch = Scratch::default();
                    let mut out = Vec::new();
                    loop {
                        let start = next.fetch_add(BATCH, Ordering::Relaxed);
                        if start >= items.len() {
                            return out;
                        }
                        for item in &items[start..items.len().min(start + BATCH)] {
                            out.push(f(&mut scratch, item));
                        }
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    })
}

fn collect(source: String, results: Vec<Result<ClusterReport, Problem>>) -> Reports {
    let mut reports = Reports {
        source,
        ..Reports::default()
    };
    for r in results {
        match r {
            Ok(report) => reports.reports.push(report),
            Err(problem) => reports.problems.push(problem),
        }
    }
    reports
}

/// Reads the listing at `base`, then every report it names, [`HTTP_CONCURRENCY`] at a time.
pub async fn read_http(mut base: Url) -> Result<Reports> {
    if !base.path().ends_with('/') {
        base.set_path(&format!("{}/", base.path()));
    }
    let source = base.to_string();
    let client = drover_agent::transport::ClientOptions::new(
        drover_agent::transport::PUBLISHER_USER_AGENT,
        HTTP_CONNECT_TIMEOUT,
    )
    .timeout(HTTP_REQUEST_TIMEOUT)
    .build()
    .map_err(|e| Error::reports(&source, e.to_string()))?;
    let listing = fetch(&client, &base, MAX_LISTING_SIZE)
        .await
        .map_err(|e| Error::reports(&source, format!("cannot read the listing: {e}")))?;
    let files = Arc::new(parse_listing(&listing, &base));
    if files.is_empty() {
        return Err(Error::reports(
            &source,
            "the listing names no *.json reports (is autoindex on?)",
        ));
    }
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..HTTP_CONCURRENCY.min(files.len()) {
        let (client, files, next) = (client.clone(), files.clone(), next.clone());
        workers.spawn(async move {
            let (mut out, mut strings) = (Vec::new(), Interner::default());
            while let Some((name, url)) = files.get(next.fetch_add(1, Ordering::Relaxed)) {
                let report = match fetch(&client, url, MAX_REPORT_SIZE).await {
                    Ok(bytes) => parse_report_interned(name, &bytes, &mut strings),
                    Err(reason) => Err(Problem {
                        file: name.clone(),
                        reason,
                    }),
                };
                out.push(report);
            }
            out
        });
    }
    let mut results = Vec::with_capacity(files.len());
    while let Some(done) = workers.join_next().await {
        results.extend(done.map_err(|e| Error::reports(&source, format!("fetch task failed: {e}")))?);
    }
    Ok(collect(source, results))
}

/// GETs `url` and returns its body, refusing more than `limit` bytes.
pub(crate) async fn fetch(client: &reqwest::Client, url: &Url, limit: u64) -> Result<Vec<u8>, String> {
    drover_agent::transport::get_limited(client, url, limit)
        .await
        .map_err(|e| e.to_string())
}

/// The reports a directory listing names, as (file name, URL), sorted by name. Understands
/// nginx `autoindex_format json` (an array of `{"name", "type"}`) and any HTML listing
/// whose links point to files directly in `base` (such as nginx's default listing).
pub fn parse_listing(body: &[u8], base: &Url) -> Vec<(String, Url)> {
    #[derive(Deserialize)]
    struct Entry {
        name: String,
        #[serde(rename = "type")]
        kind: Option<String>,
    }
    let mut files = BTreeMap::new();
    let json_start = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    if let Some(entries) = json_start
        .then(|| serde_json::from_slice::<Vec<Entry>>(body).ok())
        .flatten()
    {
        for e in entries {
            if e.kind.as_deref().is_none_or(|k| k == "file") && is_report_name(&e.name) && !e.name.contains('/') {
                let mut url = base.clone();
                url.set_query(None);
                if let Ok(mut segments) = url.path_segments_mut() {
                    segments.pop_if_empty().push(&e.name);
                }
                files.insert(e.name, url);
            }
        }
    } else {
        let html = String::from_utf8_lossy(body);
        for href in html.split("href=\"").skip(1).filter_map(|s| s.split('"').next()) {
            let Ok(url) = base.join(&href.replace("&amp;", "&")) else {
                continue;
            };
            let name = url
                .path()
                .strip_prefix(base.path())
                .filter(|n| !n.contains('/'))
                .map(percent_decode);
            if let Some(name) = name.filter(|n| is_report_name(n) && url.origin() == base.origin()) {
                files.insert(name, url);
            }
        }
    }
    files.into_iter().collect()
}

/// Decodes `%XX` escapes of a URL path segment.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------
// Aggregation

/// The fleet view. Its JSON form (`drover status -o json`) is documented in
/// docs/fleet-status.md; lists are complete and sorted.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetStatus {
    /// Always `drover.dev/v1`.
    pub api_version: &'static str,
    /// Always `FleetStatus`.
    pub kind: &'static str,
    /// Where the reports were read from.
    pub source: String,
    /// The time staleness was measured against.
    #[serde(with = "time::serde::rfc3339")]
    pub now: OffsetDateTime,
    /// The fixed staleness limit, or `None` for the per-report default.
    pub stale_after_seconds: Option<u64>,
    /// Headline counts.
    pub totals: Totals,
    /// Clusters per (channel, index version), most clusters first.
    pub index_versions: Vec<IndexVersionCount>,
    /// Clusters per agent version, most clusters first.
    pub agent_versions: Vec<AgentVersionCount>,
    /// One row per bundle and digest: bundle name, then most clusters first.
    pub bundles: Vec<BundleRow>,
    /// Stale clusters, longest silent first.
    pub stale_clusters: Vec<StaleCluster>,
    /// Every bundle in `Error`, by cluster then bundle.
    pub errors: Vec<BundleError>,
    /// Reports that could not be used, by file name.
    pub problems: Vec<Problem>,
}

/// Headline counts of a [`FleetStatus`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    /// Clusters with a usable report.
    pub clusters: usize,
    /// Of those, how many are stale.
    pub stale: usize,
    /// Clusters with at least one bundle in `Error`.
    pub clusters_with_errors: usize,
    /// Bundles in `Error`, over all clusters.
    pub bundle_errors: usize,
    /// Reports that could not be used.
    pub problems: usize,
}

/// Clusters on one index version of one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexVersionCount {
    /// The channel (`None`: not reported).
    pub channel: Option<String>,
    /// The index version (`None`: the cluster never read a valid index).
    pub version: Option<u64>,
    /// How many clusters.
    pub clusters: usize,
}

/// Clusters running one agent version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentVersionCount {
    /// The agent version (`None`: not reported).
    pub version: Option<String>,
    /// How many clusters.
    pub clusters: usize,
}

/// The clusters reporting one bundle at one digest, by state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleRow {
    /// Bundle name.
    pub bundle: String,
    /// Digest (`None` for states without one, such as `NotTargeted`).
    pub digest: Option<String>,
    /// Clusters reporting this bundle at this digest.
    pub clusters: usize,
    /// Of those, how many are stale (their state may be out of date).
    pub stale: usize,
    /// Clusters per state.
    pub states: BTreeMap<String, usize>,
}

/// A cluster whose report cannot be trusted to be current.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StaleCluster {
    /// Cluster name.
    pub cluster: String,
    /// Report file.
    pub file: String,
    /// End of the agent's last cycle attempt.
    #[serde(with = "time::serde::rfc3339::option")]
    pub checked_at: Option<OffsetDateTime>,
    /// Last cycle that read a valid index.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_success: Option<OffsetDateTime>,
    /// Seconds since `checkedAt`.
    pub silent_seconds: Option<u64>,
    /// Why it is stale, for people.
    pub reason: String,
    /// The agent's last error.
    pub last_error: Option<String>,
}

/// A bundle in `Error` on one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleError {
    /// Cluster name.
    pub cluster: String,
    /// Bundle name.
    pub bundle: String,
    /// The digest it failed to apply.
    pub digest: Option<String>,
    /// The agent's message.
    pub message: Option<String>,
    /// Since when.
    #[serde(with = "time::serde::rfc3339::option")]
    pub since: Option<OffsetDateTime>,
}

impl FleetStatus {
    /// Whether anything needs an operator: a stale cluster, a bundle in `Error` or an
    /// unusable report (`drover status` then exits 1).
    pub fn needs_attention(&self) -> bool {
        self.totals.stale > 0 || self.totals.bundle_errors > 0 || self.totals.problems > 0
    }
}

/// The staleness limit for `report`: the fixed one, or else its heartbeat plus
/// [`STALE_INTERVALS`] cycles, at least [`MIN_STALE_AFTER`]. With the agent's defaults
/// (10m heartbeat, 60s cycles) that is 13m; for an agent that reports every cycle
/// (`reportIntervalSeconds: 0`) it is 3 cycles, at least 5m.
pub fn stale_after(report: &ClusterReport, fixed: Option<Duration>) -> Duration {
    fixed.unwrap_or_else(|| {
        let interval = report.interval.unwrap_or(DEFAULT_INTERVAL);
        let heartbeat = report.report_interval.unwrap_or(DEFAULT_REPORT_INTERVAL);
        (heartbeat + interval * STALE_INTERVALS).max(MIN_STALE_AFTER)
    })
}

/// Why `report` is stale at `opts.now`, or `None` when it is current. A report is stale
/// when the agent says so (no source gave a valid index), when it has no `checkedAt`, or
/// when `checkedAt` is older than [`stale_after`].
pub fn staleness(report: &ClusterReport, opts: &Options) -> Option<String> {
    let mut reasons = Vec::new();
    if report.stale {
        let since = report.stale_since.or(report.last_success);
        reasons.push(match since {
            Some(t) => format!("agent has had no valid index since {}", rfc3339(t)),
            None => "agent has no valid index".to_string(),
        });
    }
    let limit = stale_after(report, opts.stale_after);
    match report.checked_at {
        None => reasons.push("report has no checkedAt".into()),
        Some(t) => {
            let silent = silence(t, opts.now);
            if silent > limit {
                reasons.push(format!(
                    "no check-in for {} (stale after {})",
                    human_duration(silent),
                    human_duration(limit)
                ));
            }
        }
    }
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

/// Time from `then` to `now`; zero when `then` is in the future (clock skew).
fn silence(then: OffsetDateTime, now: OffsetDateTime) -> Duration {
    Duration::try_from(now - then).unwrap_or(Duration::ZERO)
}

/// Aggregates reports into the fleet view. When two reports name the same cluster, the
/// one with the latest `checkedAt` counts and the other is listed as a problem.
pub fn aggregate(reports: Reports, opts: &Options) -> FleetStatus {
    let Reports {
        source,
        reports: all,
        mut problems,
    } = reports;
    let (kept, duplicates) = drop_duplicates(all);
    problems.extend(duplicates);

    let mut versions: HashMap<(Option<&str>, Option<u64>), usize> = HashMap::new();
    let mut agents: HashMap<Option<&str>, usize> = HashMap::new();
    let mut rows: HashMap<(&str, Option<&str>), RowCounts> = HashMap::new();
    let mut stale_clusters = Vec::new();
    let mut errors = Vec::new();
    let mut clusters_with_errors = 0;
    for report in &kept {
        *versions
            .entry((report.channel.as_deref(), report.index_version))
            .or_default() += 1;
        *agents.entry(report.agent_version.as_deref()).or_default() += 1;
        let stale = staleness(report, opts);
        let mut has_error = false;
        for b in &report.bundles {
            let row = rows.entry((&b.name, b.digest.as_deref())).or_default();
            row.clusters += 1;
            row.stale += usize::from(stale.is_some());
            *row.states.entry(&b.state).or_default() += 1;
            if &*b.state == ERROR_STATE {
                has_error = true;
                errors.push(BundleError {
                    cluster: report.cluster.clone(),
                    bundle: b.name.to_string(),
                    digest: b.digest.as_deref().map(str::to_string),
                    message: b.message.clone(),
                    since: b.since,
                });
            }
        }
        clusters_with_errors += usize::from(has_error);
        if let Some(reason) = stale {
            stale_clusters.push(StaleCluster {
                cluster: report.cluster.clone(),
                file: report.file.clone(),
                checked_at: report.checked_at,
                last_success: report.last_success,
                silent_seconds: report.checked_at.map(|t| silence(t, opts.now).as_secs()),
                reason,
                last_error: report.last_error.clone(),
            });
        }
    }

    let mut bundles: Vec<BundleRow> = rows
        .into_iter()
        .map(|((bundle, digest), c)| BundleRow {
            bundle: bundle.to_string(),
            digest: digest.map(str::to_string),
            clusters: c.clusters,
            stale: c.stale,
            states: c.states.into_iter().map(|(s, n)| (s.to_string(), n)).collect(),
        })
        .collect();
    bundles.sort_by(|a, b| {
        a.bundle
            .cmp(&b.bundle)
            .then(b.clusters.cmp(&a.clusters))
            .then(a.digest.cmp(&b.digest))
    });
    let mut index_versions: Vec<IndexVersionCount> = versions
        .into_iter()
        .map(|((channel, version), clusters)| IndexVersionCount {
            channel: channel.map(str::to_string),
            version,
            clusters,
        })
        .collect();
    index_versions.sort_by(|a, b| {
        b.clusters
            .cmp(&a.clusters)
            .then(a.channel.cmp(&b.channel))
            .then(b.version.cmp(&a.version))
    });
    let mut agent_versions: Vec<AgentVersionCount> = agents
        .into_iter()
        .map(|(version, clusters)| AgentVersionCount {
            version: version.map(str::to_string),
            clusters,
        })
        .collect();
    agent_versions.sort_by(|a, b| b.clusters.cmp(&a.clusters).then(a.version.cmp(&b.version)));
    // Longest silent first; a report without checkedAt is the least known of all.
    stale_clusters.sort_by(|a, b| a.checked_at.cmp(&b.checked_at).then(a.cluster.cmp(&b.cluster)));
    errors.sort_by(|a, b| a.cluster.cmp(&b.cluster).then(a.bundle.cmp(&b.bundle)));
    problems.sort();

    FleetStatus {
        api_version: "drover.dev/v1",
        kind: "FleetStatus",
        source,
        now: opts.now,
        stale_after_seconds: opts.stale_after.map(|d| d.as_secs()),
        totals: Totals {
            clusters: kept.len(),
            stale: stale_clusters.len(),
            clusters_with_errors,
            bundle_errors: errors.len(),
            problems: problems.len(),
        },
        index_versions,
        agent_versions,
        bundles,
        stale_clusters,
        errors,
        problems,
    }
}

/// Keeps one report per cluster, the one with the latest `checkedAt` (then the first file
/// name), and returns the others as problems.
fn drop_duplicates(all: Vec<ClusterReport>) -> (Vec<ClusterReport>, Vec<Problem>) {
    let newer = |a: &ClusterReport, b: &ClusterReport| (a.checked_at, &b.file) > (b.checked_at, &a.file);
    let mut newest: HashMap<&str, usize> = HashMap::with_capacity(all.len());
    for (i, report) in all.iter().enumerate() {
        newest
            .entry(&report.cluster)
            .and_modify(|best| {
                if newer(report, &all[*best]) {
                    *best = i;
                }
            })
            .or_insert(i);
    }
    if newest.len() == all.len() {
        return (all, Vec::new());
    }
    let winners: HashMap<String, String> = newest
        .into_iter()
        .map(|(cluster, i)| (cluster.to_string(), all[i].file.clone()))
        .collect();
    let (kept, dropped): (Vec<_>, Vec<_>) = all.into_iter().partition(|r| winners[&r.cluster] == r.file);
    let problems = dropped
        .into_iter()
        .map(|r| Problem {
            reason: format!(
                "duplicate report for cluster {:?}; {} is newer and counts",
                r.cluster, winners[&r.cluster]
            ),
            file: r.file,
        })
        .collect();
    (kept, problems)
}

#[derive(Default)]
struct RowCounts<'a> {
    clusters: usize,
    stale: usize,
    states: HashMap<&'a str, usize>,
}

// ---------------------------------------------------------------------------------------
// Presentation

impl FleetStatus {
    /// The table `drover status` prints: bundle rows, a summary, then the first `limit`
    /// stale clusters and bundle errors (the JSON output has them all).
    pub fn render_table(&self, limit: usize) -> String {
        let mut out = String::new();
        out.push_str(&self.bundle_table());
        out.push('\n');
        out.push_str(&self.summary());
        if !self.stale_clusters.is_empty() {
            out.push_str(&format!("\nSTALE CLUSTERS ({})\n", self.stale_clusters.len()));
            let rows = self.stale_clusters.iter().take(limit).map(|s| {
                vec![
                    s.cluster.clone(),
                    s.checked_at.map_or("-".into(), rfc3339),
                    s.reason.clone(),
                    s.last_error.as_deref().map_or("-".into(), one_line),
                ]
            });
            out.push_str(&columns(&["CLUSTER", "LAST CHECK-IN", "REASON", "LAST ERROR"], rows));
            out.push_str(&more(self.stale_clusters.len(), limit));
        }
        if !self.errors.is_empty() {
            out.push_str(&format!(
                "\nBUNDLE ERRORS ({} on {} clusters)\n",
                self.errors.len(),
                self.totals.clusters_with_errors
            ));
            let rows = self.errors.iter().take(limit).map(|e| {
                vec![
                    e.cluster.clone(),
                    e.bundle.clone(),
                    short_digest(e.digest.as_deref()),
                    e.since.map_or("-".into(), rfc3339),
                    e.message.as_deref().map_or("-".into(), one_line),
                ]
            });
            out.push_str(&columns(&["CLUSTER", "BUNDLE", "DIGEST", "SINCE", "MESSAGE"], rows));
            out.push_str(&more(self.errors.len(), limit));
        }
        out
    }

    /// The problems, one per line, the first `limit` of them; empty when there are none.
    pub fn render_problems(&self, limit: usize) -> String {
        if self.problems.is_empty() {
            return String::new();
        }
        let mut out = format!("{} reports could not be used:\n", self.problems.len());
        for p in self.problems.iter().take(limit) {
            out.push_str(&format!("  {}: {}\n", p.file, one_line(&p.reason)));
        }
        out.push_str(&more(self.problems.len(), limit));
        out
    }

    fn bundle_table(&self) -> String {
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for row in &self.bundles {
            seen.extend(row.states.keys().map(String::as_str));
        }
        let mut states: Vec<&str> = KNOWN_STATES.iter().copied().filter(|s| seen.contains(s)).collect();
        states.extend(seen.iter().filter(|s| !KNOWN_STATES.contains(s)));
        let mut header = vec!["BUNDLE", "DIGEST", "CLUSTERS", "STALE"];
        header.extend(&states);
        let count = |n: usize| if n == 0 { "-".to_string() } else { n.to_string() };
        let rows = self.bundles.iter().map(|r| {
            let mut cells = vec![
                r.bundle.clone(),
                short_digest(r.digest.as_deref()),
                r.clusters.to_string(),
                count(r.stale),
            ];
            cells.extend(states.iter().map(|s| count(r.states.get(*s).copied().unwrap_or(0))));
            cells
        });
        columns(&header, rows)
    }

    fn summary(&self) -> String {
        let t = &self.totals;
        let mut line = format!(
            "{} clusters: {} stale, {} with bundle errors ({} bundles)",
            t.clusters, t.stale, t.clusters_with_errors, t.bundle_errors
        );
        if t.problems > 0 {
            line.push_str(&format!("; {} reports unusable (listed on stderr)", t.problems));
        }
        let versions: Vec<String> = self
            .index_versions
            .iter()
            .map(|v| {
                let channel = v.channel.as_deref().unwrap_or("?");
                match v.version {
                    Some(n) => format!("{channel} v{n}: {}", v.clusters),
                    None => format!("no valid index yet: {}", v.clusters),
                }
            })
            .collect();
        let agents: Vec<String> = self
            .agent_versions
            .iter()
            .map(|a| format!("{}: {}", a.version.as_deref().unwrap_or("unknown"), a.clusters))
            .collect();
        format!(
            "{line}\nindex versions: {}\nagent versions: {}\n",
            versions.join(", "),
            agents.join(", ")
        )
    }
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
fn columns(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = std::iter::once(header.iter().map(|h| h.to_string()).collect())
        .chain(rows)
        .collect();
    let mut widths = vec![0; header.len()];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn more(total: usize, shown: usize) -> String {
    if total > shown {
        format!("... and {} more (-o json lists all)\n", total - shown)
    } else {
        String::new()
    }
}

/// The first 12 hex digits of a digest, like `docker images`; `-` when there is none.
fn short_digest(digest: Option<&str>) -> String {
    match digest {
        Some(d) => {
            let hex = d.strip_prefix("sha256:").unwrap_or(d);
            hex.chars().take(12).collect()
        }
        None => "-".into(),
    }
}

/// A message on one line, cut to [`TABLE_MESSAGE_CHARS`].
fn one_line(s: &str) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > TABLE_MESSAGE_CHARS {
        let cut: String = flat.chars().take(TABLE_MESSAGE_CHARS - 1).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    drover_agent::format::rfc3339(t)
}

/// `2d3h`, `4h12m`, `7m30s`, `45s`: the two largest units.
fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, minutes, seconds) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    let parts = [(days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")];
    let first = parts.iter().position(|(n, _)| *n > 0).unwrap_or(3);
    parts[first..]
        .iter()
        .take(2)
        .filter(|(n, _)| *n > 0 || first == 3)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &Rfc3339).expect("test time is RFC 3339")
    }
    const DIGEST_A: &str = "sha256:aaaaaaaaaaaa0000000000000000000000000000000000000000000000000000";
    const DIGEST_B: &str = "sha256:bbbbbbbbbbbb0000000000000000000000000000000000000000000000000000";

    fn opts() -> Options {
        Options {
            now: at("2026-11-26T10:00:00Z"),
            stale_after: None,
        }
    }

    fn report_json(cluster: &str, checked_at: &str, bundles: &str) -> String {
        format!(
            r#"{{"apiVersion":"drover.dev/v1","kind":"ClusterStatus","cluster":"{cluster}","labels":{{"env":"prod"}},
            "agentVersion":"0.1.0","channel":"stable","indexVersion":12,"indexSha256":"sha256:00",
            "origin":"http://mirror/store/index.json","checkedAt":"{checked_at}","lastSuccess":"{checked_at}",
            "stale":false,"staleSince":null,"intervalSeconds":60,"bundles":[{bundles}]}}"#
        )
    }

    fn bundle(name: &str, digest: &str, state: &str) -> String {
        format!(
            r#"{{"name":"{name}","digest":"{digest}","state":"{state}","message":"m","since":"2026-11-26T09:00:00Z"}}"#
        )
    }

    fn parse(cluster: &str, checked_at: &str, bundles: &[String]) -> ClusterReport {
        let json = report_json(cluster, checked_at, &bundles.join(","));
        parse_report(&format!("{cluster}.json"), json.as_bytes()).expect("test report parses")
    }

    fn reports(reports: Vec<ClusterReport>) -> Reports {
        Reports {
            source: "test".into(),
            reports,
            problems: vec![],
        }
    }

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
        assert_eq!(&*r.bundles[0].state, "Applied");
    }

    #[test]
    fn a_minimal_report_needs_only_the_cluster_name() {
        let r = parse_report("a.json", br#"{"cluster":"a","bundles":[{"name":"web"}]}"#).expect("parses");
        assert_eq!(&*r.bundles[0].state, "Unknown");
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
    fn counts_clusters_per_bundle_digest_and_state() {
        let fleet = aggregate(
            reports(vec![
                parse("a", "2026-11-26T09:59:00Z", &[bundle("web", DIGEST_A, "Applied")]),
                parse("b", "2026-11-26T09:59:00Z", &[bundle("web", DIGEST_A, "Applied")]),
                parse(
                    "c",
                    "2026-11-26T09:59:00Z",
                    &[bundle("web", DIGEST_A, "Error"), bundle("base", DIGEST_B, "Applied")],
                ),
                parse("d", "2026-11-26T09:59:00Z", &[bundle("web", DIGEST_B, "Applying")]),
            ]),
            &opts(),
        );
        let rows: Vec<(&str, Option<&str>, usize)> = fleet
            .bundles
            .iter()
            .map(|r| (r.bundle.as_str(), r.digest.as_deref(), r.clusters))
            .collect();
        assert_eq!(
            rows,
            [
                ("base", Some(DIGEST_B), 1),
                ("web", Some(DIGEST_A), 3),
                ("web", Some(DIGEST_B), 1)
            ]
        );
        let web_a = &fleet.bundles[1];
        assert_eq!(
            web_a.states,
            BTreeMap::from([("Applied".into(), 2), ("Error".into(), 1)])
        );
        assert_eq!(
            fleet.totals,
            Totals {
                clusters: 4,
                stale: 0,
                clusters_with_errors: 1,
                bundle_errors: 1,
                problems: 0
            }
        );
        assert_eq!(fleet.errors[0].cluster, "c");
        assert_eq!(
            fleet.index_versions,
            [IndexVersionCount {
                channel: Some("stable".into()),
                version: Some(12),
                clusters: 4
            }]
        );
        assert!(fleet.needs_attention(), "a bundle in Error needs attention");
    }

    #[test]
    fn a_cluster_is_stale_when_its_agent_says_so() {
        let mut r = parse("a", "2026-11-26T09:59:00Z", &[]);
        r.stale = true;
        r.stale_since = Some(at("2026-11-26T07:00:00Z"));
        let reason = staleness(&r, &opts()).expect("stale by flag");
        assert!(reason.contains("no valid index since 2026-11-26T07:00:00Z"), "{reason}");
        let fleet = aggregate(reports(vec![r]), &opts());
        assert_eq!(fleet.totals.stale, 1);
        assert!(fleet.needs_attention());
    }

    #[test]
    fn a_cluster_is_stale_three_cycles_after_its_missed_heartbeat() {
        // Agent defaults: heartbeat 10m (not in older reports), cycle 60s → 13m.
        let mut r = parse("a", "2026-11-26T09:47:00Z", &[]);
        assert_eq!(staleness(&r, &opts()), None, "exactly 13m old is still current");
        r.checked_at = Some(at("2026-11-26T09:46:59Z"));
        let reason = staleness(&r, &opts()).expect("stale by age");
        assert_eq!(reason, "no check-in for 13m1s (stale after 13m)");
        // A report stating its heartbeat: 1h + 3 × 10m.
        r.interval = Some(Duration::from_secs(600));
        r.report_interval = Some(Duration::from_secs(3600));
        assert_eq!(stale_after(&r, None), Duration::from_secs(5400));
    }

    #[test]
    fn an_agent_reporting_every_cycle_is_stale_after_three_cycles_but_not_before_five_minutes() {
        let mut r = parse_report(
            "a.json",
            br#"{"cluster":"a","intervalSeconds":60,"reportIntervalSeconds":0}"#,
        )
        .expect("parses");
        assert_eq!(stale_after(&r, None), MIN_STALE_AFTER, "3 × 60s is raised to 5m");
        r.interval = Some(Duration::from_secs(120));
        assert_eq!(stale_after(&r, None), Duration::from_secs(360));
    }

    #[test]
    fn stale_after_flag_overrides_the_per_report_default() {
        let r = parse("a", "2026-11-26T09:00:00Z", &[]);
        assert!(staleness(&r, &opts()).is_some());
        let relaxed = Options {
            now: at("2026-11-26T10:00:00Z"),
            stale_after: Some(Duration::from_secs(2 * 3600)),
        };
        assert_eq!(staleness(&r, &relaxed), None);
    }

    #[test]
    fn a_report_from_the_future_or_without_check_in_time() {
        let r = parse("a", "2026-11-26T11:00:00Z", &[]);
        assert_eq!(staleness(&r, &opts()), None, "clock skew is not staleness");
        let r = parse_report("b.json", br#"{"cluster":"b"}"#).expect("parses");
        assert_eq!(staleness(&r, &opts()).as_deref(), Some("report has no checkedAt"));
    }

    #[test]
    fn stale_clusters_still_count_in_their_bundle_rows() {
        let fleet = aggregate(
            reports(vec![
                parse("old", "2026-11-25T10:00:00Z", &[bundle("web", DIGEST_A, "Applied")]),
                parse("new", "2026-11-26T09:59:00Z", &[bundle("web", DIGEST_A, "Applied")]),
            ]),
            &opts(),
        );
        assert_eq!((fleet.bundles[0].clusters, fleet.bundles[0].stale), (2, 1));
        assert_eq!(fleet.stale_clusters[0].cluster, "old");
        assert_eq!(fleet.stale_clusters[0].silent_seconds, Some(86_400));
    }

    #[test]
    fn duplicate_reports_keep_the_newest_and_list_the_other() {
        let mut older = parse("a", "2026-11-26T09:00:00Z", &[]);
        older.file = "a-copy.json".into();
        let newer = parse("a", "2026-11-26T09:59:00Z", &[]);
        let fleet = aggregate(reports(vec![older, newer]), &opts());
        assert_eq!(fleet.totals.clusters, 1);
        assert_eq!(fleet.totals.stale, 0, "the newer report counts");
        assert_eq!(fleet.problems[0].file, "a-copy.json");
        assert!(fleet.problems[0].reason.contains("a.json is newer"));
    }

    #[test]
    fn corrupt_file_in_a_directory_is_a_problem_and_the_rest_still_counts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = report_json("a", "2026-11-26T09:59:00Z", &bundle("web", DIGEST_A, "Applied"));
        std::fs::write(dir.path().join("a.json"), good).expect("write");
        std::fs::write(dir.path().join("b.json"), "{\"cluster\": \"b\", ").expect("write");
        std::fs::write(dir.path().join(".c.json.tmp"), "ignored").expect("write");
        std::fs::write(dir.path().join("notes.txt"), "ignored").expect("write");
        std::fs::create_dir(dir.path().join("dir.json")).expect("mkdir");
        let fleet = aggregate(read_dir(dir.path()).expect("readable"), &opts());
        assert_eq!(fleet.totals.clusters, 1);
        assert_eq!(fleet.problems.len(), 1);
        assert_eq!(fleet.problems[0].file, "b.json");
        assert!(fleet.needs_attention());
        assert!(fleet.render_problems(20).contains("b.json: not a status report"));
    }

    #[test]
    fn an_empty_or_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(read_dir(dir.path()).is_err());
        assert!(read_dir(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn a_healthy_fleet_needs_no_attention() {
        let fleet = aggregate(
            reports(vec![parse(
                "a",
                "2026-11-26T09:59:00Z",
                &[bundle("web", DIGEST_A, "Applied")],
            )]),
            &opts(),
        );
        assert!(!fleet.needs_attention());
    }

    #[test]
    fn table_shows_only_states_that_occur_and_caps_lists() {
        let many: Vec<ClusterReport> = (0..25)
            .map(|i| {
                parse(
                    &format!("s{i:02}"),
                    "2026-11-26T09:59:00Z",
                    &[bundle("web", DIGEST_A, "Error")],
                )
            })
            .chain([parse(
                "ok",
                "2026-11-26T09:59:00Z",
                &[bundle("web", DIGEST_A, "Applied")],
            )])
            .collect();
        let table = aggregate(reports(many), &opts()).render_table(20);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "BUNDLE  DIGEST        CLUSTERS  STALE  Applied  Error");
        assert_eq!(lines[1], "web     aaaaaaaaaaaa  26        -      1        25");
        assert!(
            table.contains("26 clusters: 0 stale, 25 with bundle errors (25 bundles)"),
            "{table}"
        );
        assert!(table.contains("index versions: stable v12: 26"), "{table}");
        assert!(table.contains("BUNDLE ERRORS (25 on 25 clusters)"), "{table}");
        assert!(table.contains("... and 5 more (-o json lists all)"), "{table}");
        assert!(table.contains("s19") && !table.contains("s20"), "{table}");
    }

    #[test]
    fn json_output_uses_camel_case_and_complete_lists() {
        let many: Vec<ClusterReport> = (0..25)
            .map(|i| {
                parse(
                    &format!("s{i:02}"),
                    "2026-11-25T09:59:00Z",
                    &[bundle("web", DIGEST_A, "Applied")],
                )
            })
            .collect();
        let json = serde_json::to_value(aggregate(reports(many), &opts())).expect("serializes");
        assert_eq!(json["kind"], "FleetStatus");
        assert_eq!(json["totals"]["stale"], 25);
        assert_eq!(json["staleClusters"].as_array().map(Vec::len), Some(25));
        assert_eq!(json["bundles"][0]["states"]["Applied"], 25);
        assert_eq!(json["staleClusters"][0]["checkedAt"], "2026-11-25T09:59:00Z");
    }

    #[test]
    fn listing_parser_reads_nginx_json_and_html() {
        let base = Url::parse("http://mirror/reports/").expect("url");
        let json = br#"[{ "name":"sub", "type":"directory" },{ "name":"site-1.json", "type":"file", "size":3 },
            { "name":"we ird.json", "type":"file" },{ "name":"notes.txt", "type":"file" }]"#;
        let files = parse_listing(json, &base);
        let urls: Vec<(&str, &str)> = files.iter().map(|(n, u)| (n.as_str(), u.as_str())).collect();
        assert_eq!(
            urls,
            [
                ("site-1.json", "http://mirror/reports/site-1.json"),
                ("we ird.json", "http://mirror/reports/we%20ird.json")
            ]
        );
        let html = br#"<html><body><pre><a href="../">../</a>
<a href="sub/">sub/</a>   26-Nov-2026 11:01  -
<a href="site-1.json">site-1.json</a>   26-Nov-2026 11:01   3
<a href="we%20ird.json">we ird.json</a>
<a href="/reports/site-2.json">abs</a><a href="http://elsewhere/x.json">x</a><a href="/other/y.json">y</a>
</pre></body></html>"#;
        let names: Vec<String> = parse_listing(html, &base).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["site-1.json", "site-2.json", "we ird.json"]);
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(human_duration(Duration::from_secs(45)), "45s");
        assert_eq!(human_duration(Duration::from_secs(0)), "0s");
        assert_eq!(human_duration(Duration::from_secs(300)), "5m");
        assert_eq!(human_duration(Duration::from_secs(7 * 3600 + 60 * 12 + 5)), "7h12m");
        assert_eq!(human_duration(Duration::from_secs(2 * 86_400 + 5)), "2d");
    }
}
