//! `drover sync SRC DST`: a copy is byte-identical and verifies; only missing blobs travel;
//! whatever goes wrong (a tampered blob or index, an older source, a killed process), DST
//! stays valid at the version it had, and running the sync again completes it.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use drover_e2e::{
    bin, copy_dir, drover, drover_ok, drover_serve, free_port, nginx_on, snapshot, text, wait_for, Behaviour,
    FaultyServer, Site,
};

/// The directory a killed sync may leave inside DST (invisible to readers of the store).
const STAGING_DIR: &str = ".drover-sync";

/// A site with the examples published at version 1 in `store/`.
fn published() -> Site {
    let site = Site::new().with_examples();
    site.publish(&[]);
    site
}

/// `drover sync SRC DST --key keys/drover.pub EXTRA…`, asserting success; returns stdout.
fn sync_ok(site: &Site, src: &str, dst: &str, extra: &[&str]) -> String {
    let key = site.p("keys/drover.pub");
    let mut args = vec!["sync", src, dst, "--key", &key];
    args.extend_from_slice(extra);
    drover_ok(&args)
}

/// `drover sync SRC DST --key keys/drover.pub`, asserting it fails with exit 1 and that
/// stderr mentions every string of `expected`.
fn sync_refused(site: &Site, src: &str, dst: &str, expected: &[&str]) {
    let key = site.p("keys/drover.pub");
    let out = drover(&["sync", src, dst, "--key", &key]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for e in expected {
        assert!(stderr.contains(e), "stderr should mention {e:?}: {}", text(&out));
    }
}

/// `drover verify DIR --key keys/drover.pub`, asserting it passes at `version`.
fn verifies_at(site: &Site, dir: &str, version: u64) {
    let out = drover_ok(&["verify", dir, "--key", &site.p("keys/drover.pub")]);
    assert!(
        out.contains(&format!(" version {version} ")),
        "expected version {version}: {out}"
    );
}

/// Adds a ConfigMap to bundle `bundle`, so its next publish gets a new blob.
fn change_bundle(site: &Site, bundle: &str, value: &str) {
    site.write(
        &format!("src/bundles/{bundle}/changed.yaml"),
        &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: changed\ndata:\n  value: \"{value}\"\n"),
    );
}

/// Digests in the store's index that are not in `before`, sorted.
fn new_digests(site: &Site, before: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let old: Vec<&String> = before.values().flatten().collect();
    let mut new: Vec<String> = site
        .index_digests()
        .into_values()
        .flatten()
        .filter(|d| !old.contains(&d))
        .collect();
    new.sort();
    new.dedup();
    new
}

/// Flips the last byte of a blob (same size, other content).
fn tamper_blob(site: &Site, digest: &str) {
    let path = site.path(&format!("store/blobs/sha256/{}", digest.trim_start_matches("sha256:")));
    let mut bytes = std::fs::read(&path).unwrap();
    *bytes.last_mut().unwrap() ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
}

/// `snapshot` of `dir` without the staging directory of an interrupted sync.
fn visible(dir: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    snapshot(dir)
        .into_iter()
        .filter(|(path, _)| !path.starts_with(STAGING_DIR))
        .collect()
}

#[test]
fn copy_into_a_new_directory_is_byte_identical_and_verifies() {
    let site = published();
    let out = sync_ok(&site, &site.p("store"), &site.p("usb"), &[]);
    assert!(
        out.contains("synced channel stable version 1") && out.contains("4 blobs copied"),
        "{out}"
    );
    assert!(
        out.contains("0 already there") && out.contains("index version (none) → 1"),
        "{out}"
    );
    assert_eq!(snapshot(&site.path("usb")), snapshot(&site.path("store")));
    verifies_at(&site, &site.p("usb"), 1);
}

#[test]
fn second_sync_copies_nothing_and_rewrites_nothing() {
    let site = published();
    sync_ok(&site, &site.p("store"), &site.p("usb"), &[]);
    let mtime = |rel: &str| std::fs::metadata(site.path(rel)).unwrap().modified().unwrap();
    let before = (mtime("usb/index.json"), mtime("usb/index.json.minisig"));
    let stamps_before = drover_e2e::stamps(&site.path("usb"));
    let out = sync_ok(&site, &site.p("store"), &site.p("usb"), &[]);
    assert!(out.contains("0 blobs copied (0 B), 4 already there"), "{out}");
    assert!(out.contains("index version 1 unchanged"), "{out}");
    assert_eq!((mtime("usb/index.json"), mtime("usb/index.json.minisig")), before);
    assert_eq!(
        drover_e2e::stamps(&site.path("usb")),
        stamps_before,
        "not a byte written"
    );
    assert_eq!(snapshot(&site.path("usb")), snapshot(&site.path("store")));
}

#[test]
fn a_new_version_copies_only_the_changed_blob() {
    let site = published();
    sync_ok(&site, &site.p("store"), &site.p("usb"), &[]);
    let before = site.index_digests();
    change_bundle(&site, "base", "v2");
    site.publish(&[]);
    let out = sync_ok(&site, &site.p("store"), &site.p("usb"), &[]);
    assert!(
        out.contains("1 blob copied") && out.contains("3 already there"),
        "{out}"
    );
    assert!(out.contains("index version 1 → 2"), "{out}");
    let new = new_digests(&site, &before);
    assert_eq!(new.len(), 1, "{new:?}");
    // The old blob stays (agents still on version 1 may fetch it), as in the source.
    assert_eq!(snapshot(&site.path("usb")), snapshot(&site.path("store")));
    verifies_at(&site, &site.p("usb"), 2);
}

#[test]
fn copy_from_nginx_over_http_is_byte_identical_and_verifies() {
    let site = published();
    let port = free_port();
    let _nginx = nginx_on(site.dir.path(), &site.path("nginx"), port, "");
    let url = format!("http://127.0.0.1:{port}/store/");
    let out = sync_ok(&site, &url, &site.p("mirror"), &[]);
    assert!(out.contains("4 blobs copied"), "{out}");
    assert_eq!(snapshot(&site.path("mirror")), snapshot(&site.path("store")));
    verifies_at(&site, &site.p("mirror"), 1);
}

#[test]
fn a_tampered_blob_is_refused_and_the_destination_stays_byte_for_byte_as_it_was() {
    let site = published();
    sync_ok(&site, &site.p("store"), &site.p("usb"), &[]);
    let before_digests = site.index_digests();
    change_bundle(&site, "base", "v2");
    change_bundle(&site, "monitoring", "v2");
    site.publish(&[]);
    let new = new_digests(&site, &before_digests);
    assert_eq!(new.len(), 2, "{new:?}");
    // Blobs are copied in digest order: the good one is fetched (and staged) first.
    tamper_blob(&site, &new[1]);
    let before = snapshot(&site.path("usb"));
    sync_refused(
        &site,
        &site.p("store"),
        &site.p("usb"),
        &["does not match its digest", "nothing changed there"],
    );
    assert!(
        snapshot(&site.path("usb")) == before,
        "DST changed after a refused sync"
    );
    verifies_at(&site, &site.p("usb"), 1);
}

#[test]
fn a_tampered_index_is_refused_before_anything_is_written() {
    let site = published();
    let index = site.path("store/index.json");
    let tampered = std::fs::read_to_string(&index)
        .unwrap()
        .replacen("\"version\": 1", "\"version\": 9", 1);
    std::fs::write(&index, tampered).unwrap();
    sync_refused(&site, &site.p("store"), &site.p("usb"), &["signature rejected"]);
    assert!(!site.path("usb").exists(), "DST created for a refused sync");
}

#[test]
fn without_a_key_the_copy_is_unverified_but_blobs_are_still_checked() {
    let site = published();
    let out = drover(&["sync", &site.p("store"), &site.p("usb")]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not verified"),
        "{}",
        text(&out)
    );
    assert_eq!(snapshot(&site.path("usb")), snapshot(&site.path("store")));

    let before_digests = site.index_digests();
    change_bundle(&site, "base", "v2");
    site.publish(&[]);
    tamper_blob(&site, &new_digests(&site, &before_digests)[0]);
    let before = snapshot(&site.path("usb"));
    let out = drover(&["sync", &site.p("store"), &site.p("usb")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(snapshot(&site.path("usb")) == before, "DST changed: {}", text(&out));
}

#[test]
fn an_older_source_is_refused_naming_both_versions_unless_forced() {
    let site = published();
    copy_dir(&site.path("store"), &site.path("old"));
    change_bundle(&site, "base", "v2");
    site.publish(&[]);
    sync_ok(&site, &site.p("store"), &site.p("usb"), &[]);
    let before = snapshot(&site.path("usb"));
    sync_refused(
        &site,
        &site.p("old"),
        &site.p("usb"),
        &["version 2", "version 1", "--force"],
    );
    assert!(
        snapshot(&site.path("usb")) == before,
        "DST changed after a refused rollback"
    );
    verifies_at(&site, &site.p("usb"), 2);

    let out = drover(&[
        "sync",
        &site.p("old"),
        &site.p("usb"),
        "--key",
        &site.p("keys/drover.pub"),
        "--force",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--force"),
        "{}",
        text(&out)
    );
    verifies_at(&site, &site.p("usb"), 1);
}

fn trickle_blobs(path: &str) -> Behaviour {
    if path.starts_with("/blobs/") {
        Behaviour::Trickle
    } else {
        Behaviour::Normal
    }
}

#[test]
fn a_sync_killed_while_copying_leaves_the_old_version_and_a_rerun_completes_it() {
    let site = published();
    sync_ok(&site, &site.p("store"), &site.p("usb"), &[]);
    let before = snapshot(&site.path("usb"));
    change_bundle(&site, "base", "v2");
    change_bundle(&site, "web", "v2");
    site.publish(&[]);

    // A source that sends blobs one byte every 100 ms: the sync is surely mid-copy when
    // it is killed.
    let slow = FaultyServer::start(&site.path("store"), trickle_blobs);
    let mut child = Command::new(bin("drover"))
        .args(["sync", &slow.url, &site.p("usb"), "--key", &site.p("keys/drover.pub")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn drover sync");
    wait_for("the sync to request a blob", Duration::from_secs(30), || {
        slow.requests().iter().any(|p| p.starts_with("/blobs/"))
    });
    child.kill().expect("kill drover sync");
    child.wait().expect("reap drover sync");

    assert!(
        site.path("usb").join(STAGING_DIR).is_dir(),
        "the sync was killed before it started copying"
    );
    assert!(visible(&site.path("usb")) == before, "DST changed by a killed sync");
    verifies_at(&site, &site.p("usb"), 1);

    let server = drover_serve(&site.path("store"));
    let out = sync_ok(&site, &server.url, &site.p("usb"), &[]);
    assert!(out.contains("index version 1 → 2"), "{out}");
    assert_eq!(snapshot(&site.path("usb")), snapshot(&site.path("store")));
    verifies_at(&site, &site.p("usb"), 2);
}

#[test]
fn dry_run_lists_what_it_would_copy_and_writes_nothing() {
    let site = published();
    let out = sync_ok(&site, &site.p("store"), &site.p("usb"), &["--dry-run"]);
    assert!(out.starts_with("would copy 4 blobs"), "{out}");
    for digest in site.index_digests().into_values().flatten() {
        assert!(out.contains(&digest), "{digest} not listed: {out}");
    }
    assert!(!site.path("usb").exists(), "dry run created DST");

    sync_ok(&site, &site.p("store"), &site.p("usb"), &[]);
    let before_digests = site.index_digests();
    change_bundle(&site, "base", "v2");
    site.publish(&[]);
    let before = snapshot(&site.path("usb"));
    let out = sync_ok(&site, &site.p("store"), &site.p("usb"), &["--dry-run"]);
    let new = new_digests(&site, &before_digests);
    assert!(
        out.starts_with("would copy 1 blob (") && out.contains("3 already there; index version 1 → 2"),
        "{out}"
    );
    assert!(out.contains(&new[0]) && out.contains("base"), "{out}");
    assert!(snapshot(&site.path("usb")) == before, "dry run changed DST");
}

#[test]
fn an_http_destination_is_refused_as_read_only() {
    let site = published();
    sync_refused(&site, &site.p("store"), "http://127.0.0.1:9/store/", &["read only"]);
}
