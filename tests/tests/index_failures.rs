//! Index-level failures: whatever is wrong with the channel index (its signature, its
//! bytes, its age, its version, its size, or the source itself), the agent exits 3, says
//! what the problem is, and leaves the manifests and state directories byte-for-byte as
//! they were.

use drover_e2e::{drover_ok, drover_serve, minisign_sign, text, AgentRun, Site};

const CLUSTER: &str = "site-1";
const LABELS: &[&str] = &["env=prod", "region=eu", "monitoring=on"];
/// The agent's default limit on index.json (8 MiB).
const INDEX_LIMIT: usize = 8 << 20;

/// A site whose agent has applied version 1 of the examples from the file:// store.
fn applied_site() -> Site {
    let site = Site::new().with_examples();
    site.publish(&[]);
    apply_ok(&site, &site.store_url());
    site
}

/// Runs the agent and asserts it applied every bundle.
fn apply_ok(site: &Site, source: &str) {
    let out = AgentRun::once(site)
        .source(source)
        .cluster(CLUSTER)
        .labels(LABELS)
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let names: Vec<String> = site.manifests().into_keys().collect();
    assert_eq!(
        names,
        ["drover-base.yaml", "drover-monitoring.yaml", "drover-web.yaml"],
        "{}",
        text(&out)
    );
}

/// Runs the agent against `source` and asserts exit code 3, that stderr contains every
/// string of `expected`, and that the manifests and state directories did not change.
fn assert_refused(site: &Site, source: &str, expected: &[&str]) {
    let before = site.sink_and_state();
    let out = AgentRun::once(site)
        .source(source)
        .cluster(CLUSTER)
        .labels(LABELS)
        .run();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("index not applied, nothing changed"), "{}", text(&out));
    for e in expected {
        assert!(stderr.contains(e), "stderr should mention {e:?}: {}", text(&out));
    }
    assert!(
        site.sink_and_state() == before,
        "manifests or state changed after a refused index: {}",
        text(&out)
    );
}

fn read(site: &Site, rel: &str) -> Vec<u8> {
    std::fs::read(site.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn write(site: &Site, rel: &str, bytes: &[u8]) {
    std::fs::write(site.path(rel), bytes).unwrap_or_else(|e| panic!("{rel}: {e}"));
}

/// The store's index.json, parsed.
fn index_json(site: &Site) -> serde_json::Value {
    serde_json::from_slice(&read(site, "store/index.json")).unwrap()
}

/// Publishes, then makes the index one that expired in 2020 and signs it again (publish
/// itself refuses `--expires-in 0s`, an index no agent could use).
fn publish_expired(site: &Site) {
    site.publish(&[]);
    let mut index = index_json(site);
    index["expires"] = serde_json::json!("2020-01-01T00:00:00Z");
    write_signed_index(site, &serde_json::to_vec(&index).unwrap());
}

/// Replaces store/index.json with `bytes` and signs it with the site's own key using
/// stock minisign, so the signature is valid.
fn write_signed_index(site: &Site, bytes: &[u8]) {
    write(site, "store/index.json", bytes);
    minisign_sign(&site.path("keys/drover.key"), &site.path("store/index.json"));
}

/// Replaces `"channel": "stable"` in `bytes` by `"channel": "<to>"` (same JSON, other text).
fn rename_channel(bytes: &[u8], to: &str) -> Vec<u8> {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(text.contains(r#""channel": "stable""#), "{text}");
    text.replacen(r#""channel": "stable""#, &format!(r#""channel": "{to}""#), 1)
        .into_bytes()
}

#[test]
fn rejects_index_signed_by_unknown_key() {
    let site = applied_site();
    drover_ok(&["keygen", "--out", &site.p("other")]);
    site.publish(&[]);
    // Version 2 is otherwise valid: only the key that signed it is wrong.
    minisign_sign(&site.path("other/drover.key"), &site.path("store/index.json"));
    assert_refused(
        &site,
        &site.store_url(),
        &["signature rejected", "signed by a different key"],
    );
}

#[test]
fn rejects_index_bytes_modified_after_signing() {
    let site = applied_site();
    site.publish(&[]);
    let tampered = rename_channel(&read(&site, "store/index.json"), "stablx");
    // Still valid JSON, same length: only the signature can tell.
    serde_json::from_slice::<serde_json::Value>(&tampered).unwrap();
    write(&site, "store/index.json", &tampered);
    assert_refused(
        &site,
        &site.store_url(),
        &["index.json", "signature rejected", "verification failed"],
    );
}

#[test]
fn rejects_signature_of_other_bytes() {
    let site = applied_site();
    site.publish(&[]);
    let v2_signature = read(&site, "store/index.json.minisig");
    site.publish(&[]);
    // Version 3 with the (genuine) signature of version 2.
    write(&site, "store/index.json.minisig", &v2_signature);
    assert_refused(&site, &site.store_url(), &["signature rejected", "verification failed"]);
}

#[test]
fn rejects_truncated_signature() {
    let site = applied_site();
    site.publish(&[]);
    let signature = read(&site, "store/index.json.minisig");
    write(&site, "store/index.json.minisig", &signature[..signature.len() / 2]);
    assert_refused(
        &site,
        &site.store_url(),
        &["signature rejected", "not a minisign signature"],
    );
    // Only the first two lines (the signature proper, without the trusted comment and
    // the global signature over it).
    let two_lines: Vec<&[u8]> = signature.split_inclusive(|b| *b == b'\n').take(2).collect();
    write(&site, "store/index.json.minisig", &two_lines.concat());
    assert_refused(&site, &site.store_url(), &["signature rejected"]);
    // And the trusted comment without its global signature.
    let three_lines: Vec<&[u8]> = signature.split_inclusive(|b| *b == b'\n').take(3).collect();
    write(&site, "store/index.json.minisig", &three_lines.concat());
    assert_refused(&site, &site.store_url(), &["signature rejected"]);
    // An empty file.
    write(&site, "store/index.json.minisig", b"");
    assert_refused(&site, &site.store_url(), &["signature rejected"]);
}

#[test]
fn rejects_garbage_signature() {
    let site = applied_site();
    site.publish(&[]);
    write(
        &site,
        "store/index.json.minisig",
        b"untrusted comment: trust me\nthis is not base64 at all!\ntrusted comment: no\n###\n",
    );
    assert_refused(
        &site,
        &site.store_url(),
        &["signature rejected", "not a minisign signature"],
    );
    // Not even text.
    write(&site, "store/index.json.minisig", &[0xff, 0xfe, 0x00, 0x80, 0x81]);
    assert_refused(&site, &site.store_url(), &["signature rejected", "not text"]);
}

#[test]
fn rejects_expired_index() {
    let site = applied_site();
    publish_expired(&site);
    assert_refused(&site, &site.store_url(), &["expired", "re-publish"]);
}

#[test]
fn rejects_rollback_to_an_older_version() {
    let site = applied_site();
    let v1 = (read(&site, "store/index.json"), read(&site, "store/index.json.minisig"));
    site.publish(&[]);
    apply_ok(&site, &site.store_url());
    // A mirror (or an attacker) serves the genuine, still unexpired version 1 again.
    write(&site, "store/index.json", &v1.0);
    write(&site, "store/index.json.minisig", &v1.1);
    assert_refused(
        &site,
        &site.store_url(),
        &["version 1 is older than version 2", "rollback refused"],
    );
}

#[test]
fn rejects_same_version_with_different_content() {
    let site = applied_site();
    site.publish(&[]);
    apply_ok(&site, &site.store_url());
    let v2 = read(&site, "store/index.json");
    assert_eq!(index_json(&site)["version"], 2);
    // A second, correctly signed index that also claims version 2 (equivocation).
    write_signed_index(&site, &rename_channel(&v2, "other"));
    assert_eq!(index_json(&site)["version"], 2);
    assert_refused(
        &site,
        &site.store_url(),
        &["version 2 was already applied with different content"],
    );
    // The very same bytes again are fine.
    write_signed_index(&site, &v2);
    apply_ok(&site, &site.store_url());
}

#[test]
fn rejects_malformed_json_even_when_correctly_signed() {
    let site = applied_site();
    write_signed_index(
        &site,
        b"{\"apiVersion\": \"drover.dev/v1\", \"kind\": \"Index\", \"version\": 9,",
    );
    assert_refused(&site, &site.store_url(), &["index.json", "not a valid format v1 index"]);
}

#[test]
fn rejects_wrong_api_version_even_when_correctly_signed() {
    let site = applied_site();
    site.publish(&[]);
    let mut index = index_json(&site);
    index["apiVersion"] = "drover.dev/v2".into();
    write_signed_index(&site, &serde_json::to_vec_pretty(&index).unwrap());
    assert_refused(&site, &site.store_url(), &["apiVersion", "drover.dev/v2"]);
}

/// A valid version-2 index padded (with an unknown field, which v1 readers ignore) to
/// exactly `len` bytes.
fn padded_index(site: &Site, len: usize) -> Vec<u8> {
    let mut index = index_json(site);
    index["padding"] = "".into();
    let empty = serde_json::to_vec(&index).unwrap().len();
    index["padding"] = "x".repeat(len - empty).into();
    let bytes = serde_json::to_vec(&index).unwrap();
    assert_eq!(bytes.len(), len);
    bytes
}

#[test]
fn rejects_index_over_the_size_limit() {
    let site = applied_site();
    site.publish(&[]);
    assert_eq!(index_json(&site)["version"], 2);
    let at_limit = padded_index(&site, INDEX_LIMIT);
    write_signed_index(&site, &padded_index(&site, INDEX_LIMIT + 1));
    assert_refused(
        &site,
        &site.store_url(),
        &["index.json", "larger than the limit of 8388608 bytes"],
    );
    let server = drover_serve(&site.path("store"));
    assert_refused(
        &site,
        &server.url,
        &[
            &format!("{}index.json", server.url),
            "larger than the limit of 8388608 bytes",
        ],
    );
    // One byte less is within the limit and is applied.
    write_signed_index(&site, &at_limit);
    apply_ok(&site, &site.store_url());
}

#[test]
fn rejects_missing_index_file() {
    let site = applied_site();
    site.publish(&[]);
    // `drover serve` refuses to start on a store without an index, so the index
    // disappears while it is serving.
    let server = drover_serve(&site.path("store"));
    std::fs::remove_file(site.path("store/index.json")).unwrap();
    assert_refused(&site, &site.store_url(), &[&site.p("store/index.json"), "No such file"]);
    assert_refused(&site, &server.url, &[&format!("{}index.json", server.url), "404"]);
}

#[test]
fn rejects_missing_signature_file() {
    let site = applied_site();
    site.publish(&[]);
    std::fs::remove_file(site.path("store/index.json.minisig")).unwrap();
    assert_refused(
        &site,
        &site.store_url(),
        &[&site.p("store/index.json.minisig"), "No such file"],
    );
}

#[test]
fn rejects_unreachable_source() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    let server = drover_serve(&site.path("store"));
    apply_ok(&site, &server.url);
    let url = server.url.clone();
    // The server goes away: its port now refuses connections.
    drop(server);
    assert_refused(&site, &url, &[&format!("{url}index.json"), "Connection refused"]);
    // A port that nothing ever listened on.
    let unused_port = drover_e2e::down_port();
    let unused = format!("http://127.0.0.1:{}/", unused_port.port);
    assert_refused(&site, &unused, &[&format!("{unused}index.json"), "Connection refused"]);
}

#[test]
fn index_failure_on_first_run_writes_nothing() {
    let site = Site::new().with_examples();
    drover_ok(&["keygen", "--out", &site.p("other")]);
    let store = site.store_url();
    let unused_port = drover_e2e::down_port();
    let unused = format!("http://127.0.0.1:{}/", unused_port.port);
    // No store at all, then an unreachable server, then a store signed by another key,
    // then an expired store; nothing may appear in the manifests or state directories.
    assert_refused(&site, &store, &["index.json", "No such file"]);
    assert_refused(&site, &unused, &[&unused]);
    site.publish(&[]);
    minisign_sign(&site.path("other/drover.key"), &site.path("store/index.json"));
    assert_refused(&site, &store, &["signed by a different key"]);
    publish_expired(&site);
    assert_refused(&site, &store, &["expired"]);
    let (manifests, state) = site.sink_and_state();
    assert!(manifests.is_empty(), "manifests written: {:?}", manifests.keys());
    assert!(state.is_empty(), "state written: {:?}", state.keys());
    assert!(!site.path("state/state.json").exists());
    // Once the store is good, the same agent applies it.
    site.publish(&[]);
    apply_ok(&site, &store);
}

#[test]
fn rejects_signature_whose_trusted_comment_was_altered() {
    let site = applied_site();
    site.publish(&[]);
    let signature = String::from_utf8(read(&site, "store/index.json.minisig")).unwrap();
    assert!(
        signature.contains("trusted comment: drover index channel=stable version=2"),
        "{signature}"
    );
    // The Ed25519 signature over index.json is untouched; only the global signature over
    // the trusted comment no longer matches.
    let altered = signature.replace("version=2", "version=9");
    write(&site, "store/index.json.minisig", altered.as_bytes());
    assert_refused(&site, &site.store_url(), &["signature rejected"]);
}

#[test]
fn rejects_signature_over_its_size_limit() {
    let site = applied_site();
    site.publish(&[]);
    // A genuine signature followed by enough junk to pass the 16 KiB limit.
    let mut signature = read(&site, "store/index.json.minisig");
    signature.resize((16 << 10) + 1, b'#');
    write(&site, "store/index.json.minisig", &signature);
    assert_refused(
        &site,
        &site.store_url(),
        &["index.json.minisig", "larger than the limit of 16384 bytes"],
    );
}

#[test]
fn rejects_index_of_another_channel_signed_by_the_same_key() {
    // One key signs two channels; a mirror serves the other channel's index, at a higher
    // version, where this cluster's channel should be (TUF: wrong software installation).
    let site = applied_site();
    site.publish(&[]);
    let canary = rename_channel(&read(&site, "store/index.json"), "canary");
    write_signed_index(&site, &canary);
    assert_refused(
        &site,
        &site.store_url(),
        &[
            r#"index of channel "canary""#,
            r#"follows channel "stable""#,
            "--channel",
        ],
    );

    // Moving the cluster is a decision made on the cluster: --channel says so.
    let out = AgentRun::once(&site)
        .cluster(CLUSTER)
        .labels(LABELS)
        .args(["--channel", "canary"])
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let state: serde_json::Value = serde_json::from_slice(&read(&site, "state/state.json")).unwrap();
    assert_eq!(state["index"]["channel"], "canary", "{state}");

    // From then on the agent follows canary: stable is the other channel now (--force:
    // the store holds canary's index, and publish refuses to replace a channel otherwise).
    site.publish(&["--force"]);
    assert_refused(
        &site,
        &site.store_url(),
        &[r#"index of channel "stable""#, r#"follows channel "canary""#],
    );
}

#[test]
fn configured_channel_refuses_the_first_index_of_another_channel() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    let out = AgentRun::once(&site)
        .cluster(CLUSTER)
        .labels(LABELS)
        .args(["--channel", "edge"])
        .run();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"index of channel "stable", but this agent follows channel "edge" (--channel)"#),
        "{stderr}"
    );
    assert!(site.manifests().is_empty(), "nothing may be applied");
}

#[test]
fn moving_to_a_channel_with_lower_versions_applies_it_and_still_refuses_its_rollback() {
    let site = applied_site();
    site.publish(&[]);
    site.publish(&[]);
    apply_ok(&site, &site.store_url());
    assert_eq!(index_json(&site)["version"], 3);
    // Another channel, published into its own store: its versions start again at 1.
    let canary = format!("file://{}", site.p("canary"));
    let publish_canary = || {
        drover_ok(&[
            "publish",
            &site.p("src"),
            "--store",
            &site.p("canary"),
            "--key",
            &site.p("keys/drover.key"),
            "--channel",
            "canary",
        ])
    };
    publish_canary();
    let canary_v1 = (
        read(&site, "canary/index.json"),
        read(&site, "canary/index.json.minisig"),
    );
    let with_channel = |source: &str, channel: &str| {
        AgentRun::once(&site)
            .source(source)
            .cluster(CLUSTER)
            .labels(LABELS)
            .args(["--channel", channel])
            .run()
    };
    let out = with_channel(&canary, "canary");
    assert_eq!(
        out.status.code(),
        Some(0),
        "canary version 1 after stable version 3: {}",
        text(&out)
    );

    // Within canary, anti-rollback holds as before.
    publish_canary();
    assert_eq!(with_channel(&canary, "canary").status.code(), Some(0));
    write(&site, "canary/index.json", &canary_v1.0);
    write(&site, "canary/index.json.minisig", &canary_v1.1);
    let before = site.sink_and_state();
    let out = with_channel(&canary, "canary");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains("version 1 is older than version 2"),
        "{}",
        text(&out)
    );
    assert!(site.sink_and_state() == before, "a refused index changed something");

    // Back to stable: checked against stable's own last version (3), kept in state.json.
    let state: serde_json::Value = serde_json::from_slice(&read(&site, "state/state.json")).unwrap();
    assert_eq!(state["otherChannels"]["stable"]["version"], 3, "{state}");
    let out = with_channel(&site.store_url(), "stable");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let state: serde_json::Value = serde_json::from_slice(&read(&site, "state/state.json")).unwrap();
    assert_eq!(state["otherChannels"]["canary"]["version"], 2, "{state}");
    assert_eq!(state["index"]["channel"], "stable", "{state}");
}
