//! Fuzz target `minisign`: our parsing of public key files (`TrustedKeys::from_key_text`,
//! what `--key FILE` reads) and the signature check of `verify_index` (UTF-8, then
//! minisign-verify's `.minisig` decoding, then Ed25519) on a signed index.
//!
//! Input: key file text, a NUL byte, signature file text, and optionally a NUL byte and
//! the index bytes to check (the seed index when absent). A key that does not parse is
//! replaced by the seed's key, so signature parsing is reached either way.
//!
//! Invariant: `verify_index` is `Ok` only for the genuine signature of the genuine bytes:
//! the index is the seed index byte for byte, and the signature file carries the seed
//! signature's Ed25519 signature, trusted comment and global signature. (A differently
//! encoded copy that minisign-verify accepted would also stop here: malleability worth
//! knowing about.)
#![no_main]

use std::path::Path;

use drover_agent::source::RawIndex;
use drover_agent::verify::{verify_index, TrustedKeys};
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;

/// The key that signed [`SEED_INDEX`].
const PUBLIC_KEY: &str = include_str!("../fuzz.pub");
/// The index the seed signature signs.
const SEED_INDEX: &[u8] = include_bytes!("../seed/index.json");
/// The genuine signature of [`SEED_INDEX`] (corpus/minisign holds it as an input too).
const SEED_SIGNATURE: &str = include_str!("../seed/index.json.minisig");

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == 0);
    let key = parts.next().unwrap_or_default();
    let signature = parts.next().unwrap_or_default();
    let index = parts.next().unwrap_or(SEED_INDEX);
    let path = Path::new("fuzz.pub");
    let keys = TrustedKeys::from_key_text(path, &String::from_utf8_lossy(key))
        .unwrap_or_else(|_| TrustedKeys::from_key_text(path, PUBLIC_KEY).expect("fuzz.pub is a valid key"));
    let raw = RawIndex {
        bytes: index.to_vec(),
        signature: signature.to_vec(),
        origin: "fuzz/index.json".into(),
        not_modified: false,
    };
    let now = OffsetDateTime::from_unix_timestamp(1_780_272_000).expect("valid timestamp");
    if verify_index(&raw, &keys, now, None).is_ok() {
        assert!(index == SEED_INDEX, "a signature verified bytes it was not made for");
        let text = std::str::from_utf8(signature).expect("a verified signature is text");
        assert_eq!(
            signed_parts(text),
            signed_parts(SEED_SIGNATURE),
            "a signature other than the genuine one verified"
        );
    }
    // minisign-verify's own parser, including the trusted comment the agent never reads.
    if let Ok(text) = std::str::from_utf8(signature) {
        if let Ok(sig) = minisign_verify::Signature::decode(text) {
            let _ = sig.trusted_comment();
        }
    }
});

/// The parts of a `.minisig` file the signatures cover: the signature line, the trusted
/// comment and the global signature line (the untrusted comment is free text).
fn signed_parts(text: &str) -> Option<(&str, &str, &str)> {
    let mut lines = text.lines().skip(1).map(str::trim);
    let signature = lines.next()?;
    let trusted = lines.next()?.strip_prefix("trusted comment:")?.trim();
    let global = lines.next()?;
    Some((signature, trusted, global))
}
