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
