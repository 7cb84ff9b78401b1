//! Fuzz target `tarball`: an untrusted bundle blob (gzip-compressed tar) through the three
//! readers of the render stage: `check_tarball` (what `drover verify` runs),
//! `read_manifests`, and `render_bundle` (what the agent runs: streaming, spooling of
//! unsorted tarballs, YAML splitting, object checks). Limits are small so that bombs are
//! cut short quickly; the rules are the same as with the defaults.
//!
//! Input: the blob.
#![no_main]

use std::collections::BTreeMap;

use drover_agent::format::Digest;
use drover_agent::render::{check_tarball, read_manifests, render_bundle, Limits, Rendered};
use drover_agent::select::Cluster;
use drover_agent::source::blob::VerifiedBlob;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_unpacked_bytes: 1 << 20,
        max_entries: 256,
        max_document_bytes: 64 << 10,
    };
    let checked = check_tarball(data, "fuzz", &limits);
    let read = read_manifests(data, "fuzz", &limits);
    // check_tarball checks all that read_manifests does, and more.
    if let Ok(paths) = &checked {
        let files = read.as_ref().expect("a bundle check_tarball accepts reads");
        assert_eq!(paths, &files.iter().map(|f| f.path.clone()).collect::<Vec<_>>());
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let blob = dir.path().join("blob");
    std::fs::write(&blob, data).expect("write blob");
    let blob = VerifiedBlob::check_file(blob, &Digest::of(data), data.len() as u64).expect("the blob just written");
    let cluster = Cluster {
        name: "edge-1".into(),
        labels: BTreeMap::from([("env".into(), "prod".into())]),
    };
    let mut out = Rendered::default();
    if render_bundle(&blob, "fuzz", Some("apps"), &cluster, &limits, &mut out).is_ok() {
        assert!(
            checked.is_ok(),
            "render_bundle accepted a bundle check_tarball refuses: {checked:?}"
        );
    }
});
