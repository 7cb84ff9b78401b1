//! Network failures between the agent and its store: a connection cut in the middle of a
//! blob, and a store whose host name does not resolve. Each gives a clear error naming
//! the URL; nothing unverified lands in the sink or the blob cache; what was applied
//! stays; a good source is still used.

use drover_e2e::{require, sha256_hex, snapshot, text, AgentRun, Behaviour, FaultyServer, Site};

const CLUSTER: &str = "site-1";
const LABELS: &[&str] = &["env=prod", "region=eu", "monitoring=on"];
/// `.invalid` is reserved (RFC 6761): it never resolves, anywhere.
const UNRESOLVABLE: &str = "http://drover-does-not-exist.invalid/store/";

/// A site that applied version 1 of the examples from file://, then published version 2
/// (web and monitoring change).
fn upgraded_site() -> Site {
    let site = Site::new().with_examples();
    site.publish(&[]);
    let out = AgentRun::once(&site).cluster(CLUSTER).labels(LABELS).run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    site.write(
        "src/bundles/web/release.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web-v2}\n",
    );
    site.write(
        "src/bundles/monitoring/release.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: monitoring-v2}\n",
    );
    site.publish(&[]);
    site
}

#[test]
fn connection_cut_mid_blob_fails_those_bundles_and_keeps_what_was_applied() {
    let site = upgraded_site();
    let cut = FaultyServer::start(&site.path("store"), |p| {
        if p.contains("/blobs/") {
            Behaviour::Reset
        } else {
            Behaviour::Normal
        }
    });
    let (sink_before, _) = site.sink_and_state();
    let out = AgentRun::once(&site)
        .source(&cut.url)
        .cluster(CLUSTER)
        .labels(LABELS)
        .run();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    for bundle in ["web", "monitoring"] {
        let line = said
            .lines()
            .find(|l| l.trim_start().starts_with(bundle))
            .unwrap_or_else(|| panic!("no line for {bundle}: {said}"));
        assert!(
            line.contains("Error") && line.contains(&format!("{}blobs/sha256/", cut.url)),
            "{said}"
        );
    }
    assert!(
        cut.requests().iter().any(|p| p.contains("/blobs/")),
        "the blobs were asked for"
    );
    let (sink_after, _) = site.sink_and_state();
    assert!(sink_after == sink_before, "manifests unchanged byte-for-byte: {said}");
    // The blob cache holds only whole, verified blobs: no half-received one.
    for (name, bytes) in snapshot(&site.path("state/blobs")) {
        assert_eq!(name, sha256_hex(&bytes), "cache entry {name} is a whole blob");
    }
    // The same store, whole: converges.
    let out = AgentRun::once(&site).cluster(CLUSTER).labels(LABELS).run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(site.manifests()["drover-web.yaml"].contains("web-v2"));
}

#[test]
fn unresolvable_store_host_is_a_clear_error_and_a_mirror_still_serves() {
    let site = upgraded_site();
    // In a network namespace of its own, the agent cannot send anything past it: the name
    // lookup fails there without a packet reaching any resolver.
    let unshare = require("unshare", "util-linux");
    let run = |sources: &[&str]| {
        let out = AgentRun::once(&site)
            .sources(sources)
            .cluster(CLUSTER)
            .labels(LABELS)
            .command_under(&unshare, &["--net"])
            .output()
            .unwrap();
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("unshare failed"),
            "this test runs the agent in its own network namespace (unshare --net needs root): {}",
            text(&out)
        );
        out
    };
    let before = site.sink_and_state();
    let out = run(&[UNRESOLVABLE]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(
        said.contains(&format!("{UNRESOLVABLE}index.json")),
        "names the URL: {said}"
    );
    assert!(said.contains("dns error"), "says the name did not resolve: {said}");
    assert!(site.sink_and_state() == before, "nothing changed: {said}");

    // With a mirror that works, the unresolvable source is reported and the mirror used.
    let store = site.store_url();
    let out = run(&[UNRESOLVABLE, &store]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        said.lines()
            .any(|l| l.contains("source problem") && l.contains("drover-does-not-exist.invalid")),
        "{said}"
    );
    assert!(site.manifests()["drover-web.yaml"].contains("web-v2"), "{said}");
}
