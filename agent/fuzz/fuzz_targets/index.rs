//! Fuzz target `index`: untrusted `index.json` + `index.json.minisig` bytes through
//! verification (signature parsing and checking, then — for input that gets past it, as
//! the seed does — parsing, field rules, expiry and rollback), and the parse + validate +
//! select path on its own, since no fuzzer forges an Ed25519 signature.
//!
//! Input: the index bytes, a NUL byte, the signature bytes (no NUL: all index, no signature).
#![no_main]

use std::collections::BTreeMap;
use std::path::Path;

use drover_agent::format::{Digest, Index};
use drover_agent::select::{first_match, Cluster};
use drover_agent::source::RawIndex;
use drover_agent::error::Error;
use drover_agent::verify::{verify_index, Applied, TrustedKeys};
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;

/// The public half of the key that signed the seed index (corpus/index/signed-*).
const PUBLIC_KEY: &str = include_str!("../fuzz.pub");

fuzz_target!(|data: &[u8]| {
    let (bytes, signature) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let keys = TrustedKeys::from_key_text(Path::new("fuzz.pub"), PUBLIC_KEY).expect("fuzz.pub is a valid key");
    let raw = RawIndex {
        bytes: bytes.to_vec(),
        signature: signature.to_vec(),
        origin: "fuzz/index.json".into(),
        not_modified: false,
    };
    // 2026-06-01T00:00:00Z: before the seed's expiry.
    let now = OffsetDateTime::from_unix_timestamp(1_780_272_000).expect("valid timestamp");
    if let Ok(verified) = verify_index(&raw, &keys, now, None) {
        // What was verified is what was parsed.
        assert_eq!(verified.sha256(), &Digest::of(bytes));
        check_rollback(&raw, &keys, now, verified.index().version, verified.sha256());
    }

    // Steps 3 onwards, as verify_index runs them once the signature holds.
    let Ok(index) = serde_json::from_slice::<Index>(bytes) else {
        return;
    };
    if index.validate("fuzz/index.json").is_err() {
        return;
    }
    let cluster = Cluster {
        name: "edge-1".into(),
        labels: BTreeMap::from([("env".into(), "prod".into()), ("region".into(), "eu".into())]),
    };
    for bundle in &index.bundles {
        if let Some(chosen) = first_match(&bundle.targets, &cluster) {
            assert!(chosen.target < bundle.targets.len());
        }
    }
    let _ = index.blobs();
    // What the publisher writes, an agent reads back as the same index.
    if let Ok(json) = serde_json::to_vec(&index) {
        let back: Index = serde_json::from_slice(&json).expect("a serialised index parses");
        assert_eq!(back, index);
        back.validate("fuzz/reserialised")
            .expect("a serialised valid index stays valid");
    }
});

/// Anti-rollback on an index that verifies at `version` with digest `sha256`: an older or
/// the same applied version (same bytes) lets it through; a newer applied version, or the
/// same version with other bytes, is refused as a rollback and nothing else.
fn check_rollback(raw: &RawIndex, keys: &TrustedKeys, now: OffsetDateTime, version: u64, sha256: &Digest) {
    let other = Digest::of(b"another index");
    let verify = |version: u64, sha256: &Digest| {
        let applied = Applied {
            version,
            sha256: sha256.clone(),
        };
        verify_index(raw, keys, now, Some(&applied))
    };
    if let Some(older) = version.checked_sub(1) {
        assert!(verify(older, &other).is_ok(), "a newer index than the applied one is taken");
    }
    assert!(verify(version, sha256).is_ok(), "the applied index itself is taken again");
    let same_version_other_bytes = verify(version, &other);
    assert!(
        matches!(same_version_other_bytes, Err(Error::Rollback { .. })),
        "same version, other bytes: {same_version_other_bytes:?}"
    );
    if let Some(newer) = version.checked_add(1) {
        let older_than_applied = verify(newer, &other);
        assert!(
            matches!(older_than_applied, Err(Error::Rollback { .. })),
            "older than applied: {older_than_applied:?}"
        );
    }
}
