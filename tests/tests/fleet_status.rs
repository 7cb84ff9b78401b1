//! `drover status`: the fleet view from agents' status reports, read from a directory and
//! from real nginx (reports PUT with WebDAV, listed by autoindex in HTML and JSON), with
//! its documented exit codes: 0 all well, 1 needs attention, 3 no view.

use std::path::Path;

use drover_e2e::{drover, drover_ok, require, run, text};
use serde_json::{json, Value};

/// The clock every test measures staleness against (`--now`).
const NOW: &str = "2026-11-26T10:00:00Z";
const RECENT: &str = "2026-11-26T09:59:00Z";
const YESTERDAY: &str = "2026-11-25T10:00:00Z";
const WEB_V2: &str = "sha256:3f2a1c9e0b11aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const WEB_V1: &str = "sha256:77e0d2c4b6a8bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const BASE: &str = "sha256:0c0ffee00000cccccccccccccccccccccccccccccccccccccccccccccccccccc";

/// A report as an agent writes it.
fn report(cluster: &str, checked_at: &str, stale: bool, bundles: &[(&str, &str, &str, &str)]) -> String {
    let bundles: Vec<Value> = bundles
        .iter()
        .map(|(name, digest, state, message)| {
            json!({"name": name, "digest": digest, "state": state, "message": message, "since": "2026-11-26T09:00:00Z"})
        })
        .collect();
    let report = json!({
        "apiVersion": "drover.dev/v1", "kind": "ClusterStatus",
        "cluster": cluster, "labels": {"env": "prod"}, "agentVersion": "0.1.0",
        "channel": "stable", "indexVersion": 12, "indexSha256": format!("sha256:{}", "1".repeat(64)),
        "origin": "http://mirror/store/index.json",
        "checkedAt": checked_at, "lastSuccess": if stale { "2026-11-26T08:00:00Z" } else { checked_at },
        "stale": stale, "staleSince": if stale { Some("2026-11-26T08:00:00Z") } else { None },
        "lastError": if stale { Some("http://mirror/store/: connection refused") } else { None },
        "intervalSeconds": 60, "bundles": bundles,
    });
    serde_json::to_string_pretty(&report).unwrap()
}

fn healthy(cluster: &str) -> String {
    report(
        cluster,
        RECENT,
        false,
        &[
            ("web", WEB_V2, "Applied", "applied"),
            ("base", BASE, "Applied", "applied"),
        ],
    )
}

fn write(dir: &Path, name: &str, content: &str) {
    std::fs::write(dir.join(name), content).unwrap();
}

fn status(source: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["status", source, "--now", NOW];
    args.extend_from_slice(extra);
    drover(&args)
}

fn json_of(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(out)))
}

#[test]
fn status_counts_clusters_per_bundle_and_state() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "site-1.json", &healthy("site-1"));
    write(dir.path(), "site-2.json", &healthy("site-2"));
    write(
        dir.path(),
        "site-3.json",
        &report(
            "site-3",
            RECENT,
            false,
            &[
                ("web", WEB_V2, "Error", "Deployment web: spec.replicas: invalid value"),
                ("base", BASE, "Applied", "applied"),
            ],
        ),
    );
    write(
        dir.path(),
        "site-4.json",
        &report(
            "site-4",
            RECENT,
            false,
            &[
                ("web", WEB_V1, "Applied", "applied"),
                ("base", BASE, "Applied", "applied"),
            ],
        ),
    );
    let src = dir.path().to_str().unwrap();

    let out = status(src, &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a bundle in Error needs attention: {}",
        text(&out)
    );
    let table = String::from_utf8(out.stdout.clone()).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[..4],
        [
            "BUNDLE  DIGEST        CLUSTERS  STALE  Applied  Error",
            "base    0c0ffee00000  4         -      4        -",
            "web     3f2a1c9e0b11  3         -      2        1",
            "web     77e0d2c4b6a8  1         -      1        -",
        ],
        "{table}"
    );
    assert!(
        table.contains("4 clusters: 0 stale, 1 with bundle errors (1 bundles)"),
        "{table}"
    );
    assert!(table.contains("index versions: stable v12: 4"), "{table}");
    assert!(table.contains("agent versions: 0.1.0: 4"), "{table}");
    assert!(table.contains("BUNDLE ERRORS (1 on 1 clusters)"), "{table}");
    assert!(
        table.contains(
            "site-3   web     3f2a1c9e0b11  2026-11-26T09:00:00Z  Deployment web: spec.replicas: invalid value"
        ),
        "{table}"
    );
    assert!(!table.contains("STALE CLUSTERS"), "{table}");

    let out = status(src, &["-o", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v = json_of(&out);
    assert_eq!(v["kind"], "FleetStatus");
    assert_eq!(
        v["totals"],
        json!({"clusters": 4, "stale": 0, "clustersWithErrors": 1, "bundleErrors": 1, "problems": 0})
    );
    assert_eq!(
        v["bundles"][1],
        json!({"bundle": "web", "digest": WEB_V2, "clusters": 3, "stale": 0, "states": {"Applied": 2, "Error": 1}})
    );
    assert_eq!(v["errors"][0]["cluster"], "site-3");
    assert_eq!(v["errors"][0]["digest"], WEB_V2);
    assert_eq!(
        v["indexVersions"],
        json!([{"channel": "stable", "version": 12, "clusters": 4}])
    );
}

#[test]
fn status_exits_zero_when_every_cluster_is_current_and_healthy() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["site-1", "site-2", "site-3"] {
        write(dir.path(), &format!("{name}.json"), &healthy(name));
    }
    // Temp files of an agent or a DAV server in the middle of a write are not reports.
    write(dir.path(), ".site-4.json.tmp", "{\"cluster\":");
    let table = drover_ok(&["status", dir.path().to_str().unwrap(), "--now", NOW]);
    assert!(table.contains("3 clusters: 0 stale, 0 with bundle errors"), "{table}");
}

#[test]
fn status_lists_clusters_stale_by_their_own_flag_and_by_age() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "site-1.json", &healthy("site-1"));
    // The agent ran a minute ago but no source gave it a valid index.
    write(
        dir.path(),
        "site-2.json",
        &report("site-2", RECENT, true, &[("web", WEB_V2, "Applied", "applied")]),
    );
    // Silent for a day.
    write(
        dir.path(),
        "site-3.json",
        &report("site-3", YESTERDAY, false, &[("web", WEB_V1, "Applied", "applied")]),
    );
    let src = dir.path().to_str().unwrap();

    let out = status(src, &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stale clusters need attention: {}",
        text(&out)
    );
    let table = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(table.contains("3 clusters: 2 stale"), "{table}");
    assert!(table.contains("STALE CLUSTERS (2)"), "{table}");
    let site3 = table.lines().find(|l| l.starts_with("site-3")).expect("site-3 listed");
    assert!(site3.contains("no check-in for 1d (stale after 13m)"), "{site3}");
    let site2 = table.lines().find(|l| l.starts_with("site-2")).expect("site-2 listed");
    assert!(
        site2.contains("agent has had no valid index since 2026-11-26T08:00:00Z")
            && site2.contains("connection refused"),
        "{site2}"
    );
    let web_v2 = table
        .lines()
        .find(|l| l.starts_with("web") && l.contains("3f2a1c9e0b11"))
        .unwrap();
    assert!(web_v2.starts_with("web     3f2a1c9e0b11  2         1 "), "{web_v2}");

    let v = json_of(&status(src, &["-o", "json"]));
    let stale: Vec<&str> = v["staleClusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["cluster"].as_str().unwrap())
        .collect();
    assert_eq!(stale, ["site-3", "site-2"], "longest silent first");
    assert_eq!(v["staleClusters"][0]["silentSeconds"], 86_400);

    // A more patient limit forgives the silence but not the agent's own flag.
    let v = json_of(&status(src, &["-o", "json", "--stale-after", "2d"]));
    assert_eq!(v["totals"]["stale"], 1);
    assert_eq!(v["staleClusters"][0]["cluster"], "site-2");
    assert_eq!(v["staleAfterSeconds"], 172_800);
}

#[test]
fn status_lists_unreadable_reports_and_still_shows_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "site-1.json", &healthy("site-1"));
    write(dir.path(), "site-2.json", "{\"cluster\": \"site-2\", \"bundles\": [");
    write(dir.path(), "site-3.json", "");
    let src = dir.path().to_str().unwrap();

    let out = status(src, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(stdout.contains("1 clusters: 0 stale"), "{stdout}");
    assert!(stdout.contains("2 reports unusable (listed on stderr)"), "{stdout}");
    assert!(stderr.contains("2 reports could not be used:"), "{stderr}");
    assert!(
        stderr.contains("site-2.json: not a status report (JSON): EOF"),
        "{stderr}"
    );
    assert!(stderr.contains("site-3.json: empty file"), "{stderr}");

    let v = json_of(&status(src, &["-o", "json"]));
    assert_eq!(v["totals"]["clusters"], 1);
    assert_eq!(v["problems"][1], json!({"file": "site-3.json", "reason": "empty file"}));
}

#[test]
fn status_without_any_report_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "README.txt", "not a report");
    let out = status(dir.path().to_str().unwrap(), &[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no *.json reports"),
        "{}",
        text(&out)
    );
    let out = status(dir.path().join("missing").to_str().unwrap(), &[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
}

/// nginx as docs/fleet-status.md configures it: agents PUT reports into /reports/ (WebDAV),
/// operators list them with autoindex (HTML there, JSON under /reports-json/).
struct ReportServer {
    _nginx: drover_e2e::Daemon,
    url: String,
}

fn report_server(root: &Path, work: &Path) -> ReportServer {
    let port = drover_e2e::free_port();
    let locations = format!(
        "    location /reports/ {{\n      dav_methods PUT;\n      create_full_put_path on;\n      \
         dav_access user:rw group:r all:r;\n      client_max_body_size 1m;\n      autoindex on;\n      \
         limit_except GET {{ allow 127.0.0.1; deny all; }}\n    }}\n    \
         location /reports-json/ {{\n      alias {root}/reports/;\n      autoindex on;\n      autoindex_format json;\n    }}",
        root = root.display()
    );
    ReportServer {
        _nginx: drover_e2e::nginx_on(root, work, port, &locations),
        url: format!("http://127.0.0.1:{port}"),
    }
}

#[test]
fn status_reads_reports_put_to_nginx_from_its_autoindex_listing_in_html_and_json() {
    let curl = require("curl", "curl");
    let tmp = tempfile::tempdir().unwrap();
    let (root, outgoing) = (tmp.path().join("www"), tmp.path().join("outgoing"));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&outgoing).unwrap();
    let server = report_server(&root, &tmp.path().join("nginx"));

    // What each agent does with --report-url: PUT <cluster>.json.
    let reports = [
        ("site-1", healthy("site-1")),
        ("site-2", healthy("site-2")),
        (
            "site-3",
            report("site-3", YESTERDAY, false, &[("web", WEB_V1, "Applied", "applied")]),
        ),
    ];
    for (cluster, body) in &reports {
        let file = outgoing.join(format!("{cluster}.json"));
        std::fs::write(&file, body).unwrap();
        let url = format!("{}/reports/{cluster}.json", server.url);
        let out = run(&curl, &["-sSf", "-T", file.to_str().unwrap(), &url]);
        assert!(out.status.success(), "PUT {url}: {}", text(&out));
    }

    for listing in ["reports", "reports-json"] {
        let url = format!("{}/{listing}/", server.url);
        let out = status(&url, &["-o", "json"]);
        assert_eq!(out.status.code(), Some(1), "site-3 is stale: {}", text(&out));
        let v = json_of(&out);
        assert_eq!(v["source"], url);
        assert_eq!(
            v["totals"],
            json!({"clusters": 3, "stale": 1, "clustersWithErrors": 0, "bundleErrors": 0, "problems": 0}),
            "{listing}"
        );
        assert_eq!(v["staleClusters"][0]["file"], "site-3.json");
    }

    // The same view as from the directory itself, table included; the URL may omit the slash.
    let from_http = status(&format!("{}/reports", server.url), &[]);
    let from_dir = status(root.join("reports").to_str().unwrap(), &[]);
    assert_eq!(
        String::from_utf8_lossy(&from_http.stdout),
        String::from_utf8_lossy(&from_dir.stdout),
        "{}",
        text(&from_http)
    );
    assert!(String::from_utf8_lossy(&from_http.stdout).contains("web     3f2a1c9e0b11  2"));

    // A listing that names no report is no view at all.
    let out = status(&format!("{}/", server.url), &[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
}
