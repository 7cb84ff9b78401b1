//! Fuzz target `yaml`: one manifest file's text through `${cluster.*}` substitution, the
//! publisher's `check_manifest`, and the agent's rendering (document splitting, parsing,
//! Kubernetes object checks, namespace defaulting) of a bundle holding just that file.
//!
//! Input: the manifest text (UTF-8; other input is refused by the agent before YAML).
#![no_main]

use std::collections::BTreeMap;
use std::io::Write;

use drover_agent::format::Digest;
use drover_agent::render::{check_manifest, render_bundle, substitute, Limits, Rendered};
use drover_agent::select::Cluster;
use drover_agent::source::blob::VerifiedBlob;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let cluster = Cluster {
        name: "edge-1".into(),
        labels: BTreeMap::from([("env".into(), "prod".into()), ("region".into(), "eu-west".into())]),
    };
    let substituted = substitute(text, &cluster);
    if !text.contains("${") {
        assert_eq!(substituted.as_deref(), Ok(text), "text without ${{ is left alone");
    }
    let _ = check_manifest(text, "fuzz.yaml");

    let limits = Limits {
        max_unpacked_bytes: 1 << 20,
        max_entries: 16,
        max_document_bytes: 16 << 10,
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let blob = dir.path().join("blob");
    let bytes = bundle_of(data);
    std::fs::write(&blob, &bytes).expect("write blob");
    let blob = VerifiedBlob::check_file(blob, &Digest::of(&bytes), bytes.len() as u64).expect("the blob just written");
    let mut out = Rendered::default();
    let rendered = render_bundle(&blob, "fuzz", Some("apps"), &cluster, &limits, &mut out);
    if rendered.is_ok() {
        // Whatever the agent renders must itself be a valid manifest again.
        for document in out.documents() {
            check_manifest(document, "rendered").expect("a rendered object is a valid manifest");
        }
    }
});

/// A bundle holding `text` as its only manifest, packed as `drover publish` packs.
fn bundle_of(text: &[u8]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(text.len() as u64);
    header.set_mode(0o644);
    tar.append_data(&mut header, "m.yaml", text).expect("in-memory tar");
    let mut gz = tar.into_inner().expect("in-memory tar");
    gz.flush().expect("in-memory gzip");
    gz.finish().expect("in-memory gzip")
}
