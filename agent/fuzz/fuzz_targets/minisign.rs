//! Fuzz target `minisign`: our parsing of public key files (`TrustedKeys::from_key_text`,
//! what `--key FILE` reads) and the signature check of `verify_index` (UTF-8, then
//! minisign-verify's `.minisig` decoding, then Ed25519) on a fixed signed index.
//!
//! Input: key file text, a NUL byte, signature file text. A key that does not parse is
//! replaced by the seed's key, so signature parsing is reached either way.
#![no_main]

use std::path::Path;

use drover_agent::source::RawIndex;
use drover_agent::verify::{verify_index, TrustedKeys};
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;

/// The key that signed [`SEED_INDEX`].
const PUBLIC_KEY: &str = include_str!("../fuzz.pub");
/// The index the seed signature (corpus/minisign/valid) signs.
const SEED_INDEX: &[u8] = include_bytes!("../seed/index.json");

fuzz_target!(|data: &[u8]| {
    let (key, signature) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let path = Path::new("fuzz.pub");
    let keys = TrustedKeys::from_key_text(path, &String::from_utf8_lossy(key))
        .unwrap_or_else(|_| TrustedKeys::from_key_text(path, PUBLIC_KEY).expect("fuzz.pub is a valid key"));
    let raw = RawIndex {
        bytes: SEED_INDEX.to_vec(),
        signature: signature.to_vec(),
        origin: "fuzz/index.json".into(),
        not_modified: false,
    };
    let now = OffsetDateTime::from_unix_timestamp(1_780_272_000).expect("valid timestamp");
    let _ = verify_index(&raw, &keys, now, None);
    // minisign-verify's own parser, including the trusted comment the agent never reads.
    if let Ok(text) = std::str::from_utf8(signature) {
        if let Ok(sig) = minisign_verify::Signature::decode(text) {
            let _ = sig.trusted_comment();
        }
    }
});
