//! Tests of the fleet view, from report bytes to the rendered table.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Url;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::aggregate::human_duration;
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
    format!(r#"{{"name":"{name}","digest":"{digest}","state":"{state}","message":"m","since":"2026-11-26T09:00:00Z"}}"#)
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

#[test]
fn an_unknown_state_is_kept_as_written_and_gets_its_own_column_after_the_known_ones() {
    let r = parse("a", "2026-11-26T09:59:00Z", &[bundle("web", DIGEST_A, "Quarantined")]);
    assert_eq!(&*r.bundles[0].state.name, "Quarantined");
    assert_eq!(r.bundles[0].state.known, None);
    assert!(!r.bundles[0].state.is_error());
    let fleet = aggregate(
        reports(vec![
            r,
            parse("b", "2026-11-26T09:59:00Z", &[bundle("web", DIGEST_A, "Error")]),
            parse("c", "2026-11-26T09:59:00Z", &[bundle("web", DIGEST_A, "Applied")]),
            parse_report("d.json", br#"{"cluster":"d","bundles":[{"name":"web","digest":"sha256:aaaaaaaaaaaa0000000000000000000000000000000000000000000000000000"}]}"#)
                .expect("parses"),
        ]),
        &opts(),
    );
    assert_eq!(
        fleet.totals.bundle_errors, 1,
        "only the known Error state counts as an error"
    );
    let table = fleet.render_table(20);
    assert_eq!(
        table.lines().next(),
        Some("BUNDLE  DIGEST        CLUSTERS  STALE  Applied  Error  Quarantined  Unknown")
    );
}

#[test]
fn every_agent_state_has_a_table_column() {
    use drover_agent::state::Status;
    for status in render::STATE_COLUMNS {
        // No wildcard: a state added to the agent does not compile here until it has a column.
        let name = match status {
            Status::Applied => "Applied",
            Status::Ready => "Ready",
            Status::Applying => "Applying",
            Status::Error => "Error",
            Status::PendingDependency => "PendingDependency",
            Status::Paused => "Paused",
            Status::OutsideRollout => "OutsideRollout",
            Status::NotTargeted => "NotTargeted",
            Status::Removed => "Removed",
        };
        assert_eq!(report::agent_status(name), Some(status));
        assert_eq!(serde_json::to_value(status).expect("serialises"), name);
    }
    let first = |s: &Status| render::STATE_COLUMNS.iter().position(|c| c == s);
    assert!(
        render::STATE_COLUMNS
            .iter()
            .enumerate()
            .all(|(i, s)| first(s) == Some(i)),
        "each state has one column"
    );
}
