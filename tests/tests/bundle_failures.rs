//! Bundle-level failures: when one bundle's new blob is damaged, missing, unsafe or does
//! not render for this cluster, the agent exits 1, reports that bundle as Error with the
//! reason, keeps its previous manifests byte-for-byte, and still applies the other bundles
//! of the same index.

use std::collections::BTreeMap;

use drover_e2e::{drover_serve, minisign_sign, sha256_hex, text, AgentRun, Site};

const CLUSTER: &str = "site-1";
const LABELS: &[&str] = &["env=prod", "region=eu", "monitoring=on"];
/// web's target for site-1 (`clusterSelector env=prod`; the first target is site-7's).
const WEB_TARGET: usize = 1;

const WEB_V2: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-v2\ndata:\n  release: \"2\"\n";
const MONITORING_V2: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: monitoring-v2\ndata:\n  release: \"2\"\n";

/// A site that applied version 1 of the examples and then published version 2, in which
/// both web and monitoring changed. The agent has not seen version 2 yet.
struct Upgrade {
    site: Site,
    /// Manifests after applying version 1.
    v1: BTreeMap<String, String>,
    /// Blob digests of version 1 per bundle.
    v1_digests: BTreeMap<String, Vec<String>>,
}

impl Upgrade {
    fn new(labels: &[&str]) -> Self {
        let site = Site::new().with_examples();
        site.publish(&[]);
        let out = AgentRun::once(&site).cluster(CLUSTER).labels(labels).run();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let v1 = site.manifests();
        assert_eq!(
            v1.keys().collect::<Vec<_>>(),
            ["drover-base.yaml", "drover-monitoring.yaml", "drover-web.yaml"]
        );
        let v1_digests = site.index_digests();
        site.write("src/bundles/web/release.yaml", WEB_V2);
        site.write("src/bundles/monitoring/release.yaml", MONITORING_V2);
        site.publish(&[]);
        let v2 = site.index_digests();
        assert_eq!(v2["base"], v1_digests["base"]);
        assert_ne!(v2["web"][WEB_TARGET], v1_digests["web"][WEB_TARGET]);
        assert_ne!(v2["monitoring"], v1_digests["monitoring"]);
        Upgrade { site, v1, v1_digests }
    }

    /// Store path of web's version-2 blob for site-1.
    fn web_v2_blob(&self) -> String {
        let digest = &self.site.index_digests()["web"][WEB_TARGET];
        format!("store/blobs/sha256/{}", digest.strip_prefix("sha256:").unwrap())
    }

    /// Runs the agent and checks everything a bundle-level failure of web must leave:
    /// exit 1, web reported as Error with a message containing each of `expected`, web's
    /// manifests and recorded digest still those of version 1, monitoring at version 2,
    /// base unchanged.
    fn assert_web_failed(&self, labels: &[&str], expected: &[&str]) {
        self.assert_web_failed_from(&self.site.store_url(), labels, expected);
    }

    /// [`Upgrade::assert_web_failed`] with the agent reading `source`.
    fn assert_web_failed_from(&self, source: &str, labels: &[&str], expected: &[&str]) {
        let site = &self.site;
        let out = AgentRun::once(site)
            .source(source)
            .cluster(CLUSTER)
            .labels(labels)
            .run();
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let web = bundle_line(&out, "web");
        assert_eq!(web.0, "Error", "{}", text(&out));
        for e in expected {
            assert!(web.1.contains(e), "web's message should mention {e:?}: {}", text(&out));
        }
        assert_eq!(bundle_line(&out, "base").0, "Applied", "{}", text(&out));
        assert_eq!(bundle_line(&out, "monitoring").0, "Applied", "{}", text(&out));

        let now = site.manifests();
        assert_eq!(now["drover-web.yaml"], self.v1["drover-web.yaml"], "web kept at v1");
        assert_eq!(now["drover-base.yaml"], self.v1["drover-base.yaml"], "base unchanged");
        let monitoring = &now["drover-monitoring.yaml"];
        assert_ne!(monitoring, &self.v1["drover-monitoring.yaml"], "monitoring updated");
        assert!(monitoring.contains("name: monitoring-v2"), "{monitoring}");
        assert!(
            monitoring.contains(&site.index_digests()["monitoring"][0]),
            "monitoring file names its v2 blob: {monitoring}"
        );
        assert!(!now["drover-web.yaml"].contains("web-v2"));

        // The state still records web's v1 blob (what is in the sink), with the error.
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(site.path("state/state.json")).unwrap()).unwrap();
        let web_state = &state["bundles"]["web"];
        assert_eq!(web_state["status"], "Error", "{state:#}");
        assert_eq!(
            web_state["digest"].as_str(),
            Some(self.v1_digests["web"][WEB_TARGET].as_str()),
            "{state:#}"
        );
        assert_eq!(state["index"]["version"], index_json(site)["version"], "{state:#}");

        // The blob cache holds every blob now in the sink, and nothing else but verified
        // blobs (recently used ones are kept for instant rollback): no temporary file, and
        // no bytes that failed verification.
        let cached = drover_e2e::snapshot(&site.path("state/blobs"));
        for (name, bytes) in &cached {
            assert_eq!(
                name,
                &sha256_hex(bytes),
                "cache entry {name} holds exactly the blob it names"
            );
        }
        for b in state["bundles"].as_object().unwrap().values() {
            if let Some(d) = b["digest"].as_str() {
                let hex = d.strip_prefix("sha256:").unwrap();
                assert!(cached.contains_key(hex), "applied blob {hex} is cached: {state:#}");
            }
        }
    }
}

/// `(status, message)` of a bundle's line in the agent's report
/// (`  <name>  <status>  <message>`).
fn bundle_line(out: &std::process::Output, name: &str) -> (String, String) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rest = stdout
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(name).filter(|r| r.starts_with(' ')))
        .unwrap_or_else(|| panic!("no report line for {name}: {}", text(out)))
        .trim_start();
    let (status, message) = rest.split_once(' ').unwrap_or((rest, ""));
    (status.to_string(), message.trim().to_string())
}

/// The store's index.json, parsed.
fn index_json(site: &Site) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(site.path("store/index.json")).unwrap()).unwrap()
}

/// A tar.gz with raw header names (so `..` and absolute paths can be written, as an
/// attacker would) and link entries pointing at `link_to`.
fn tar_gz(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut builder = tar::Builder::new(gz);
    for (path, kind, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        if kind.is_symlink() || kind.is_hard_link() {
            h.set_link_name("deployment.yaml").unwrap();
        }
        h.set_cksum();
        builder.append(&h, *data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

/// A valid manifest to put next to the bad entry, so only that entry is wrong.
const GOOD: &[u8] = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fine\n";

/// Stores `blob` under its digest and points every web target of the (version 2) index at
/// it, re-signing the index with stock minisign and the publisher's key.
fn replace_web_blob(site: &Site, blob: &[u8]) {
    let hex = sha256_hex(blob);
    std::fs::write(site.path(&format!("store/blobs/sha256/{hex}")), blob).unwrap();
    let mut index = index_json(site);
    assert_eq!(index["version"], 2, "above the applied version 1");
    let web = index["bundles"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|b| b["name"] == "web")
        .unwrap();
    for target in web["targets"].as_array_mut().unwrap() {
        target["digest"] = format!("sha256:{hex}").into();
        target["size"] = blob.len().into();
    }
    std::fs::write(
        site.path("store/index.json"),
        serde_json::to_vec_pretty(&index).unwrap(),
    )
    .unwrap();
    minisign_sign(&site.path("keys/drover.key"), &site.path("store/index.json"));
}

#[test]
fn tampered_blob_fails_only_that_bundle() {
    let up = Upgrade::new(LABELS);
    let blob = up.web_v2_blob();
    let good = std::fs::read(up.site.path(&blob)).unwrap();
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0x01;
    std::fs::write(up.site.path(&blob), &bad).unwrap();
    up.assert_web_failed(LABELS, &[&blob, "does not match its digest"]);

    // Once the store holds the right bytes again, the next cycle applies web too.
    std::fs::write(up.site.path(&blob), &good).unwrap();
    let out = AgentRun::once(&up.site).cluster(CLUSTER).labels(LABELS).run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(up.site.manifests()["drover-web.yaml"].contains("name: web-v2"));
}

#[test]
fn blob_of_the_wrong_size_fails_only_that_bundle() {
    let up = Upgrade::new(LABELS);
    let blob = up.web_v2_blob();
    let mut bytes = std::fs::read(up.site.path(&blob)).unwrap();
    let size = bytes.len();
    bytes.extend_from_slice(b"trailing bytes");
    std::fs::write(up.site.path(&blob), &bytes).unwrap();
    up.assert_web_failed(
        LABELS,
        &[
            &blob,
            &format!("size mismatch: index says {size} bytes, got {}", size + 14),
        ],
    );
}

#[test]
fn truncated_blob_fails_only_that_bundle() {
    // Fewer bytes than the signed size: a cut-short copy on a mirror or USB stick.
    let up = Upgrade::new(LABELS);
    let blob = up.web_v2_blob();
    let bytes = std::fs::read(up.site.path(&blob)).unwrap();
    let size = bytes.len();
    std::fs::write(up.site.path(&blob), &bytes[..size / 2]).unwrap();
    up.assert_web_failed(
        LABELS,
        &[
            &blob,
            &format!("size mismatch: index says {size} bytes, got {}", size / 2),
        ],
    );
}

#[test]
fn missing_blob_fails_only_that_bundle() {
    let up = Upgrade::new(LABELS);
    let blob = up.web_v2_blob();
    std::fs::remove_file(up.site.path(&blob)).unwrap();
    up.assert_web_failed(LABELS, &[&blob, "No such file"]);
}

/// Replaces web's blob by a tarball of a good deployment.yaml plus `entry` (name, type,
/// content), and asserts that only bundle web fails, with every string of `expected`.
fn web_with_entry_fails(entry: (&str, tar::EntryType, &[u8]), expected: &[&str]) {
    let up = Upgrade::new(LABELS);
    replace_web_blob(
        &up.site,
        &tar_gz(&[("deployment.yaml", tar::EntryType::Regular, GOOD), entry]),
    );
    up.assert_web_failed(LABELS, expected);
}

#[test]
fn blob_with_parent_dir_entry_fails_only_that_bundle() {
    web_with_entry_fails(
        ("../evil.yaml", tar::EntryType::Regular, GOOD),
        &["bundle web", "../evil.yaml", "'..' components are not allowed"],
    );
}

#[test]
fn blob_with_absolute_path_fails_only_that_bundle() {
    web_with_entry_fails(
        ("/etc/evil.yaml", tar::EntryType::Regular, GOOD),
        &["bundle web", "/etc/evil.yaml", "absolute paths are not allowed"],
    );
}

#[test]
fn blob_with_symlink_fails_only_that_bundle() {
    web_with_entry_fails(
        ("link.yaml", tar::EntryType::Symlink, b""),
        &[
            "bundle web",
            "link.yaml",
            "Symlink",
            "only regular files and directories",
        ],
    );
}

#[test]
fn blob_with_hard_link_fails_only_that_bundle() {
    web_with_entry_fails(
        ("hard.yaml", tar::EntryType::Link, b""),
        &["bundle web", "hard.yaml", "Link", "only regular files and directories"],
    );
}

#[test]
fn blob_with_device_node_fails_only_that_bundle() {
    web_with_entry_fails(
        ("dev/sda", tar::EntryType::Block, b""),
        &["bundle web", "dev/sda", "Block", "only regular files and directories"],
    );
}

#[test]
fn blob_with_yaml_that_is_not_a_kubernetes_object_fails_only_that_bundle() {
    web_with_entry_fails(
        ("values.yaml", tar::EntryType::Regular, b"replicas: 3\nimage: nginx\n"),
        &[
            "bundle web",
            "values.yaml",
            "document 1",
            "missing string field \"apiVersion\"",
        ],
    );
}

#[test]
fn blob_with_a_list_of_objects_fails_only_that_bundle() {
    // k3s applies every item of a document with `items`, whatever its kind: a way around
    // every per-object check (the namespace allow-list among them) if it were let through.
    web_with_entry_fails(
        (
            "list.yaml",
            tar::EntryType::Regular,
            b"apiVersion: v1\nkind: List\nmetadata: {name: innocent}\nitems:\n\
              - {apiVersion: v1, kind: Secret, metadata: {name: stolen, namespace: kube-system}}\n",
        ),
        &[
            "bundle web",
            "list.yaml",
            "document 1",
            "top-level \"items\"",
            "not allowed",
        ],
    );
}

#[test]
fn blob_with_yaml_alias_bomb_fails_only_that_bundle() {
    // "Billion laughs": 9 levels of 9 aliases each would expand to 9^9 strings.
    let mut bomb = String::from("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\ndata:\n  a0: &a0 lol\n");
    for level in 1..=9 {
        let below = vec![format!("*a{}", level - 1); 9].join(", ");
        bomb.push_str(&format!("  a{level}: &a{level} [{below}]\n"));
    }
    let up = Upgrade::new(LABELS);
    replace_web_blob(
        &up.site,
        &tar_gz(&[("deployment.yaml", tar::EntryType::Regular, bomb.as_bytes())]),
    );
    up.assert_web_failed(LABELS, &["bundle web", "deployment.yaml", "repetition limit exceeded"]);
}

#[test]
fn blob_with_malformed_yaml_fails_only_that_bundle() {
    web_with_entry_fails(
        ("broken.yaml", tar::EntryType::Regular, b"kind: [unclosed\n"),
        &["bundle web", "broken.yaml", "not valid YAML"],
    );
}

#[test]
fn blob_that_is_not_a_tarball_fails_only_that_bundle() {
    let up = Upgrade::new(LABELS);
    replace_web_blob(&up.site, b"this is not gzip at all\n");
    up.assert_web_failed(LABELS, &["bundle web", "tar.gz"]);
}

#[test]
fn unknown_variable_keeps_previous_manifests_of_that_bundle() {
    // Version 1 was applied while the cluster had a region label; it has none now. web's
    // blob changes in version 2, so the agent must render it again and meets the variable.
    let up = Upgrade::new(LABELS);
    let without_region = &["env=prod", "monitoring=on"];
    up.assert_web_failed(without_region, &["region", "no label"]);
}

#[test]
fn unknown_variable_on_first_run_applies_the_other_bundles() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    let out = AgentRun::once(&site).cluster(CLUSTER).labels(&["env=prod"]).run();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let web = bundle_line(&out, "web");
    assert_eq!(web.0, "Error", "{}", text(&out));
    assert!(web.1.contains("${cluster.labels.region}"), "{}", text(&out));
    assert!(web.1.contains("no label \"region\""), "{}", text(&out));
    assert_eq!(bundle_line(&out, "base").0, "Applied", "{}", text(&out));
    assert_eq!(bundle_line(&out, "monitoring").0, "NotTargeted", "{}", text(&out));
    let manifests = site.manifests();
    assert_eq!(manifests.keys().collect::<Vec<_>>(), ["drover-base.yaml"]);
    assert!(manifests["drover-base.yaml"].contains("kind: Namespace"));
}

#[test]
fn tampered_blob_over_http_fails_only_that_bundle() {
    let up = Upgrade::new(LABELS);
    let blob = up.web_v2_blob();
    let mut bytes = std::fs::read(up.site.path(&blob)).unwrap();
    bytes[0] ^= 0x80;
    std::fs::write(up.site.path(&blob), &bytes).unwrap();
    let server = drover_serve(&up.site.path("store"));
    let url = format!("{}{}", server.url, blob.strip_prefix("store/").unwrap());
    up.assert_web_failed_from(&server.url, LABELS, &[&url, "does not match its digest"]);
}

#[test]
fn broken_dependency_holds_back_its_dependents_on_first_run() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    let base = &site.index_digests()["base"][0];
    let blob = format!("store/blobs/sha256/{}", base.strip_prefix("sha256:").unwrap());
    let mut bytes = std::fs::read(site.path(&blob)).unwrap();
    bytes[10] ^= 0x01;
    std::fs::write(site.path(&blob), &bytes).unwrap();
    let out = AgentRun::once(&site).cluster(CLUSTER).labels(LABELS).run();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let base = bundle_line(&out, "base");
    assert_eq!(base.0, "Error", "{}", text(&out));
    assert!(base.1.contains("does not match its digest"), "{}", text(&out));
    for dependent in ["web", "monitoring"] {
        let line = bundle_line(&out, dependent);
        assert_eq!(line.0, "PendingDependency", "{}", text(&out));
        assert!(line.1.contains("waiting for base"), "{}", text(&out));
    }
    assert!(
        site.manifests().is_empty(),
        "nothing applied: {:?}",
        site.manifests().keys()
    );
}

/// A tar.gz whose single manifest has a harmless header name, `ok.yaml`, but whose real
/// path comes from an extension entry before it (`kind`: a PAX extended header or a GNU
/// long name), as an attacker would smuggle `../evil.yaml` past a naive header check.
fn tar_gz_with_extension(kind: tar::EntryType, data: &[u8]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut builder = tar::Builder::new(gz);
    let mut ext = tar::Header::new_ustar();
    ext.set_entry_type(kind);
    ext.set_size(data.len() as u64);
    ext.set_mode(0o644);
    ext.set_path("././@LongLink").unwrap();
    ext.set_cksum();
    builder.append(&ext, data).unwrap();
    let mut file = tar::Header::new_ustar();
    file.set_entry_type(tar::EntryType::Regular);
    file.set_size(GOOD.len() as u64);
    file.set_mode(0o644);
    file.set_path("ok.yaml").unwrap();
    file.set_cksum();
    builder.append(&file, GOOD).unwrap();
    builder.into_inner().unwrap().finish().unwrap()
}

#[test]
fn blob_with_parent_dir_path_in_pax_header_fails_only_that_bundle() {
    let up = Upgrade::new(LABELS);
    let record = "path=../evil.yaml\n";
    let pax = format!("{} {record}", record.len() + 3);
    assert_eq!(pax.len(), record.len() + 3);
    replace_web_blob(
        &up.site,
        &tar_gz_with_extension(tar::EntryType::XHeader, pax.as_bytes()),
    );
    up.assert_web_failed(
        LABELS,
        &["bundle web", "../evil.yaml", "'..' components are not allowed"],
    );
}

#[test]
fn blob_with_parent_dir_path_in_gnu_long_name_fails_only_that_bundle() {
    let up = Upgrade::new(LABELS);
    replace_web_blob(
        &up.site,
        &tar_gz_with_extension(tar::EntryType::GNULongName, b"../evil.yaml\0"),
    );
    up.assert_web_failed(
        LABELS,
        &["bundle web", "../evil.yaml", "'..' components are not allowed"],
    );
}
