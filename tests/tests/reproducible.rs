//! Bundles are reproducible: the same input gives byte-identical blobs and digests, in any
//! directory, with any key, at any time.

use drover_e2e::{copy_dir, repo_root, snapshot, Site};

#[test]
fn same_input_gives_same_digests_in_different_stores_and_keys() {
    let a = Site::new().with_examples();
    let b = Site::new();
    // Different source location too: the digest depends on content only.
    copy_dir(&repo_root().join("examples/bundles"), &b.path("elsewhere/src/bundles"));
    a.publish(&[]);
    let out = drover_e2e::drover_ok(&[
        "publish",
        &b.p("elsewhere/src"),
        "--store",
        &b.p("store"),
        "--key",
        &b.p("keys/drover.key"),
        "--channel",
        "other",
    ]);
    assert!(out.contains("version 1"), "{out}");
    assert_eq!(a.index_digests(), b.index_digests());
    let blobs = |s: &Site| snapshot(&s.path("store/blobs"));
    assert_eq!(blobs(&a), blobs(&b), "blob files byte-identical");
}

#[test]
fn blobs_can_be_checked_with_sha256sum() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    let sha256sum = drover_e2e::require("sha256sum", "coreutils");
    for (name, bytes) in snapshot(&site.path("store/blobs/sha256")) {
        let path = site.path(&format!("store/blobs/sha256/{name}"));
        let out = drover_e2e::run(&sha256sum, &[path.to_str().unwrap()]);
        let sum = String::from_utf8_lossy(&out.stdout);
        assert!(sum.starts_with(&name), "{name}: {sum}");
        // And stock tar lists it (regular files, no surprises).
        assert!(!bytes.is_empty());
        let tar = drover_e2e::require("tar", "tar");
        let listing = drover_e2e::run(&tar, &["-tvzf", path.to_str().unwrap()]);
        assert!(listing.status.success(), "{}", drover_e2e::text(&listing));
        for line in String::from_utf8_lossy(&listing.stdout).lines() {
            assert!(line.starts_with("-rw-r--r-- 0/0"), "entry {line}");
            assert!(line.contains("1970-01-01"), "mtime 0: {line}");
        }
    }
}

/// The fixed input of the golden tests: two small bundles, one with a `bundle.yaml`.
fn golden_site() -> Site {
    let site = Site::new();
    site.write(
        "src/bundles/hello/configmap.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hello\n  namespace: default\ndata:\n  greeting: hello, ${cluster.name}\n",
    );
    site.write(
        "src/bundles/world/bundle.yaml",
        "namespace: world\ndependsOn: [hello]\ntargets:\n  - clusterSelector: {matchLabels: {env: prod}}\n",
    );
    site.write(
        "src/bundles/world/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: world\ndata:\n  a: \"1\"\n",
    );
    site.publish(&[]);
    site
}

// Golden values, computed once and checked in. A change in the tar or gzip code (zlib-rs),
// in YAML handling or in index serialisation that alters them re-rolls every cluster, so
// it must fail here and be a decision, not an accident. To recompute, write the three
// files of `golden_site` under src/bundles/ and run:
//   drover keygen --out keys && drover publish src --store store --key keys/drover.key
//   ls store/blobs/sha256/                                    # the two bundle digests
//   sed -E 's/"expires": "[^"]*"/"expires": "EXPIRES"/' store/index.json | sha256sum
const GOLDEN_HELLO: &str = "cd69eac6e30957cdb1ddd83ae354d2fe3752213353ec527f9257f0fbf6b9b3f3";
const GOLDEN_WORLD: &str = "8991afa8682a3331717bc1d5f68ecc3a0dec168ab5986c103051299d03efc733";
const GOLDEN_INDEX_WITHOUT_EXPIRY: &str = "31ebedc58d9d8d654299b694134bb5b56e69cff7a65b6438f32c3551ef2cd8ea";

#[test]
fn a_fixed_bundle_has_the_same_digest_on_every_machine_and_version() {
    let site = golden_site();
    let digests = site.index_digests();
    assert_eq!(digests["hello"], [format!("sha256:{GOLDEN_HELLO}")]);
    assert_eq!(digests["world"], [format!("sha256:{GOLDEN_WORLD}")]);
    for hex in [GOLDEN_HELLO, GOLDEN_WORLD] {
        let bytes = std::fs::read(site.path(&format!("store/blobs/sha256/{hex}"))).unwrap();
        assert_eq!(drover_e2e::sha256_hex(&bytes), hex, "the blob file is the pinned bytes");
    }
}

#[test]
fn a_fixed_index_serialises_to_the_same_bytes_apart_from_its_expiry() {
    let site = golden_site();
    let index = std::fs::read_to_string(site.path("store/index.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&index).unwrap();
    let expires = parsed["expires"].as_str().unwrap();
    // The one field that depends on when it was published (now + the default 30 days).
    let pinned = index.replacen(&format!("\"expires\": \"{expires}\""), "\"expires\": \"EXPIRES\"", 1);
    assert_ne!(
        pinned, index,
        "the expiry is where the golden form expects it:\n{index}"
    );
    assert_eq!(
        drover_e2e::sha256_hex(pinned.as_bytes()),
        GOLDEN_INDEX_WITHOUT_EXPIRY,
        "index.json bytes changed:\n{index}"
    );
}
