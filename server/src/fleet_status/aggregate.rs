//! Aggregation: the reports turned into a [`FleetStatus`], with counts per bundle, digest
//! and state, stale clusters, bundles in `Error`, index and agent versions. Pure: the time
//! is an argument.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use super::read::Reports;
use super::report::{ClusterReport, Problem};

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

/// Options of [`aggregate`].
#[derive(Debug, Clone)]
pub struct Options {
    /// The time staleness is measured against.
    pub now: OffsetDateTime,
    /// Fixed staleness limit; `None` means per report, see [`stale_after`].
    pub stale_after: Option<Duration>,
}

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
            Some(t) => format!(
                "agent has had no valid index since {}",
                drover_agent::format::rfc3339(t)
            ),
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
    problems.sort();
    let mut tally = Tally::default();
    for report in &kept {
        tally.add(report, opts);
    }
    let Tally {
        versions,
        agents,
        rows,
        mut stale_clusters,
        mut errors,
        clusters_with_errors,
    } = tally;
    // Longest silent first; a report without checkedAt is the least known of all.
    stale_clusters.sort_by(|a, b| a.checked_at.cmp(&b.checked_at).then(a.cluster.cmp(&b.cluster)));
    errors.sort_by(|a, b| a.cluster.cmp(&b.cluster).then(a.bundle.cmp(&b.bundle)));
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
        index_versions: index_versions(versions),
        agent_versions: agent_versions(agents),
        bundles: bundle_rows(rows),
        stale_clusters,
        errors,
        problems,
    }
}

/// Counts over the kept reports, borrowing their strings.
#[derive(Default)]
struct Tally<'a> {
    versions: HashMap<(Option<&'a str>, Option<u64>), usize>,
    agents: HashMap<Option<&'a str>, usize>,
    rows: HashMap<(&'a str, Option<&'a str>), RowCounts<'a>>,
    stale_clusters: Vec<StaleCluster>,
    errors: Vec<BundleError>,
    clusters_with_errors: usize,
}

impl<'a> Tally<'a> {
    /// Counts one cluster's report.
    fn add(&mut self, report: &'a ClusterReport, opts: &Options) {
        *self
            .versions
            .entry((report.channel.as_deref(), report.index_version))
            .or_default() += 1;
        *self.agents.entry(report.agent_version.as_deref()).or_default() += 1;
        let stale = staleness(report, opts);
        let mut has_error = false;
        for b in &report.bundles {
            let row = self.rows.entry((&b.name, b.digest.as_deref())).or_default();
            row.clusters += 1;
            row.stale += usize::from(stale.is_some());
            *row.states.entry(&b.state.name).or_default() += 1;
            if b.state.is_error() {
                has_error = true;
                self.errors.push(BundleError {
                    cluster: report.cluster.clone(),
                    bundle: b.name.to_string(),
                    digest: b.digest.as_deref().map(str::to_string),
                    message: b.message.clone(),
                    since: b.since,
                });
            }
        }
        self.clusters_with_errors += usize::from(has_error);
        if let Some(reason) = stale {
            self.stale_clusters.push(StaleCluster {
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
}

/// One row per bundle and digest: bundle name, then most clusters first.
fn bundle_rows(rows: HashMap<(&str, Option<&str>), RowCounts<'_>>) -> Vec<BundleRow> {
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
    bundles
}

/// Clusters per (channel, index version), most clusters first.
fn index_versions(versions: HashMap<(Option<&str>, Option<u64>), usize>) -> Vec<IndexVersionCount> {
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
    index_versions
}

/// Clusters per agent version, most clusters first.
fn agent_versions(agents: HashMap<Option<&str>, usize>) -> Vec<AgentVersionCount> {
    let mut agent_versions: Vec<AgentVersionCount> = agents
        .into_iter()
        .map(|(version, clusters)| AgentVersionCount {
            version: version.map(str::to_string),
            clusters,
        })
        .collect();
    agent_versions.sort_by(|a, b| b.clusters.cmp(&a.clusters).then(a.version.cmp(&b.version)));
    agent_versions
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

/// Clusters and states of one bundle row while counting.
#[derive(Default)]
struct RowCounts<'a> {
    clusters: usize,
    stale: usize,
    states: HashMap<&'a str, usize>,
}

/// `2d3h`, `4h12m`, `7m30s`, `45s`: the two largest units.
pub(super) fn human_duration(d: Duration) -> String {
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
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::super::fixtures::*;
    use super::super::*;
    use super::*;

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
    fn durations_read_like_people_write_them() {
        assert_eq!(human_duration(Duration::from_secs(45)), "45s");
        assert_eq!(human_duration(Duration::from_secs(0)), "0s");
        assert_eq!(human_duration(Duration::from_secs(300)), "5m");
        assert_eq!(human_duration(Duration::from_secs(7 * 3600 + 60 * 12 + 5)), "7h12m");
        assert_eq!(human_duration(Duration::from_secs(2 * 86_400 + 5)), "2d");
    }
}
