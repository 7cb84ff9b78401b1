//! Verification: the only road from untrusted bytes to a [`VerifiedIndex`].
//!
//! Order matters and follows the trust model in docs/concepts.md:
//! 1. size limits were enforced by the source while reading;
//! 2. the minisign signature over the exact bytes is checked against the trusted keys
//!    *before* the JSON is parsed;
//! 3. the JSON is parsed and every field rule of format v1 is checked;
//! 4. the index must not be expired;
//! 5. its version must not be lower than the last one applied, and the same version must
//!    carry the same bytes (anti-rollback, anti-equivocation);
//! 6. its channel must be the one the agent follows ([`check_channel`]): a mirror cannot
//!    swap in another channel's index signed by the same key.

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::format::{rfc3339, Digest, Index};
use crate::keyfile::{KeyId, MinisignFile};
use crate::source::RawIndex;

/// One or more minisign public keys; a signature by any of them is accepted.
#[derive(Debug, Clone)]
pub struct TrustedKeys {
    keys: Vec<(PathBuf, Option<KeyId>, minisign_verify::PublicKey)>,
}

impl TrustedKeys {
    /// Loads public keys from files written by `minisign -G` or `drover keygen` (the
    /// two-line form with an untrusted comment) or holding just the base64 key line.
    pub fn load(paths: &[PathBuf]) -> Result<Self> {
        if paths.is_empty() {
            return Err(Error::Config("at least one trusted key (--key) is required".into()));
        }
        let keys = paths
            .iter()
            .map(|path| {
                let (id, key) = load_key(path)?;
                Ok((path.clone(), id, key))
            })
            .collect::<Result<_>>()?;
        Ok(TrustedKeys { keys })
    }

    /// Parses one public key from `text`, the content of a key file as [`TrustedKeys::load`]
    /// reads it; `path` names it in errors. This is the whole of key parsing (the fuzz
    /// target `minisign` drives it without touching the disk).
    pub fn from_key_text(path: &Path, text: &str) -> Result<Self> {
        let (id, key) = parse_key(path, text)?;
        Ok(TrustedKeys {
            keys: vec![(path.to_path_buf(), id, key)],
        })
    }

    /// The IDs of the trusted keys, in the order given (for reports and messages).
    pub fn ids(&self) -> Vec<KeyId> {
        self.keys.iter().filter_map(|(_, id, _)| *id).collect()
    }
}

fn load_key(path: &Path) -> Result<(Option<KeyId>, minisign_verify::PublicKey)> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Key {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    parse_key(path, &text)
}

fn parse_key(path: &Path, text: &str) -> Result<(Option<KeyId>, minisign_verify::PublicKey)> {
    let key_err = |message: String| Error::Key {
        path: path.to_path_buf(),
        message,
    };
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
        .ok_or_else(|| key_err("no key line found".into()))?;
    let key = minisign_verify::PublicKey::from_base64(line).map_err(|e| key_err(wrong_key_file(text, e)))?;
    Ok((MinisignFile::classify(text).key_id(), key))
}

/// Why `text` is not a public key, naming what it is when it is another minisign file.
fn wrong_key_file(text: &str, e: minisign_verify::Error) -> String {
    match MinisignFile::classify(text) {
        MinisignFile::SecretKey(_) => "not a minisign public key: this is a minisign secret key (like drover.key); trust its public half instead (drover.pub, written next to it by drover keygen)".into(),
        MinisignFile::Signature(id) => format!("not a minisign public key: this is a minisign signature (made by key ID {id})"),
        MinisignFile::PublicKey(_) | MinisignFile::Unknown => format!("not a minisign public key: {e}"),
    }
}

/// What the agent last applied, for the anti-rollback check.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// Version of the last applied index.
    pub version: u64,
    /// sha256 of its exact bytes.
    pub sha256: Digest,
}

/// An index whose signature, fields, expiry and version have all been checked. Only
/// [`verify_index`] makes one; the select, render and sink stages accept nothing else.
#[derive(Debug, Clone)]
pub struct VerifiedIndex {
    index: Index,
    sha256: Digest,
    /// The exact bytes that were verified (index, signature), to recognise them next time.
    verified: std::sync::Arc<(Vec<u8>, Vec<u8>)>,
    origin: String,
}

impl VerifiedIndex {
    /// The verified content.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// sha256 of the exact signed bytes.
    pub fn sha256(&self) -> &Digest {
        &self.sha256
    }

    /// The ID of the key that signed it (minisign refuses a signature whose key ID is not
    /// the verifying key's, so this is the trusted key that accepted it).
    pub fn signed_by(&self) -> Option<KeyId> {
        std::str::from_utf8(&self.verified.1)
            .ok()
            .and_then(|t| MinisignFile::classify(t).key_id())
    }

    /// Where the index was read from.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

/// Verifies `raw` against `keys` at time `now`, refusing anything older than `applied`.
pub fn verify_index(
    raw: &RawIndex,
    keys: &TrustedKeys,
    now: OffsetDateTime,
    applied: Option<&Applied>,
) -> Result<VerifiedIndex> {
    let what = raw.origin.as_str();
    // Step 2: signature over the exact bytes, before any parsing.
    check_signature(raw, keys)?;
    // Step 3: parse and check fields.
    let index = Index::parse(&raw.bytes, what)?;
    check_time_and_version(index, raw, None, now, applied)
}

/// [`verify_index`], except that when `raw` is byte-for-byte the index and signature of
/// `known` (verified before by this process, with the same keys) the signature is not
/// checked and the JSON not parsed again. Expiry and anti-rollback are always checked.
/// This is what makes an unchanged poll cheap: Ed25519 verification is most of its CPU.
pub fn verify_index_reusing(
    raw: &RawIndex,
    keys: &TrustedKeys,
    now: OffsetDateTime,
    applied: Option<&Applied>,
    known: Option<&VerifiedIndex>,
) -> Result<VerifiedIndex> {
    match known {
        Some(k) if k.verified.0 == raw.bytes && k.verified.1 == raw.signature => {
            check_time_and_version(k.index.clone(), raw, Some(k), now, applied)
        }
        _ => verify_index(raw, keys, now, applied),
    }
}

/// Which channel an agent follows: the one it was told to, else the one it last applied.
#[derive(Debug, Clone, Copy)]
pub enum ChannelPin<'a> {
    /// `--channel` / `channel:` in the agent config.
    Configured(&'a str),
    /// The channel of the last applied index (trust on first use).
    LastApplied(&'a str),
    /// Neither: a new agent without `--channel` takes the first valid index's channel.
    Any,
}

/// Step 6: `verified` must belong to the channel `pin` names. Run on every verified index
/// before it is compared with others or used.
pub fn check_channel(verified: &VerifiedIndex, pin: ChannelPin<'_>) -> Result<()> {
    let (expected, why) = match pin {
        ChannelPin::Configured(c) => (c, "--channel"),
        ChannelPin::LastApplied(c) => (c, "the channel it last applied; set --channel to move it"),
        ChannelPin::Any => return Ok(()),
    };
    let found = &verified.index.channel;
    if found == expected {
        return Ok(());
    }
    Err(Error::WrongChannel {
        what: verified.origin.clone(),
        found: found.clone(),
        expected: expected.to_string(),
        why,
    })
}

/// Steps 4 and 5: expiry, then rollback and equivocation.
fn check_time_and_version(
    index: Index,
    raw: &RawIndex,
    known: Option<&VerifiedIndex>,
    now: OffsetDateTime,
    applied: Option<&Applied>,
) -> Result<VerifiedIndex> {
    let what = raw.origin.as_str();
    if index.expires <= now {
        return Err(Error::Expired {
            what: what.to_string(),
            expires: rfc3339(index.expires),
            now: rfc3339(now),
        });
    }
    let sha256 = known.map_or_else(|| Digest::of(&raw.bytes), |k| k.sha256.clone());
    if let Some(applied) = applied {
        if index.version < applied.version {
            return Err(Error::Rollback {
                what: what.to_string(),
                message: format!(
                    "version {} is older than version {} already applied (rollback refused)",
                    index.version, applied.version
                ),
            });
        }
        if index.version == applied.version && sha256 != applied.sha256 {
            return Err(Error::Rollback {
                what: what.to_string(),
                message: format!(
                    "version {} was already applied with different content ({} now, {} then); a publisher must increase the version",
                    index.version,
                    sha256.short(),
                    applied.sha256.short()
                ),
            });
        }
    }
    let verified = known.map_or_else(
        || std::sync::Arc::new((raw.bytes.clone(), raw.signature.clone())),
        |k| std::sync::Arc::clone(&k.verified),
    );
    Ok(VerifiedIndex {
        index,
        sha256,
        verified,
        origin: raw.origin.clone(),
    })
}

fn check_signature(raw: &RawIndex, keys: &TrustedKeys) -> Result<()> {
    let what = raw.origin.as_str();
    let sig_err = |message: String| Error::Signature {
        what: what.to_string(),
        message,
    };
    let text = std::str::from_utf8(&raw.signature).map_err(|_| sig_err("signature file is not text".into()))?;
    let signature = minisign_verify::Signature::decode(text)
        .map_err(|e| sig_err(format!("signature file is not a minisign signature: {e}")))?;
    let mut refusals = Vec::new();
    for (path, id, key) in &keys.keys {
        // Legacy (non-prehashed) signatures are accepted: `minisign -S -l` makes them and
        // the format allows both; both are Ed25519 over the exact bytes.
        match key.verify(&raw.bytes, &signature, true) {
            Ok(()) => return Ok(()),
            Err(minisign_verify::Error::UnexpectedKeyId) => refusals.push(format!(
                "{}{}: signed by a different key{}",
                path.display(),
                id.map(|id| format!(" (key ID {id})")).unwrap_or_default(),
                MinisignFile::classify(text)
                    .key_id()
                    .map(|id| format!(" (key ID {id})"))
                    .unwrap_or_default(),
            )),
            Err(e) => refusals.push(format!("{}: {e}", path.display())),
        }
    }
    Err(sig_err(format!("no trusted key accepts it ({})", refusals.join("; "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Signer {
        pk_path: PathBuf,
        kp: minisign::KeyPair,
        _dir: tempfile::TempDir,
    }

    fn signer() -> Signer {
        let dir = tempfile::tempdir().expect("tempdir");
        let kp = minisign::KeyPair::generate_unencrypted_keypair().expect("keypair");
        let pk_path = dir.path().join("k.pub");
        std::fs::write(&pk_path, kp.pk.to_box().expect("pk box").into_string()).expect("write pk");
        Signer { pk_path, kp, _dir: dir }
    }

    fn index_json(version: u64, expires: &str) -> Vec<u8> {
        format!(
            r#"{{"apiVersion":"drover.dev/v1","kind":"Index","channel":"stable","version":{version},"expires":"{expires}","bundles":[]}}"#
        )
        .into_bytes()
    }

    fn signed(s: &Signer, bytes: Vec<u8>) -> RawIndex {
        let sig = minisign::sign(Some(&s.kp.pk), &s.kp.sk, &bytes[..], None, None).expect("sign");
        RawIndex {
            bytes,
            signature: sig.into_string().into_bytes(),
            origin: "test/index.json".into(),
            not_modified: false,
        }
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::parse("2026-06-01T00:00:00Z", &time::format_description::well_known::Rfc3339).expect("time")
    }

    #[test]
    fn a_secret_key_given_as_trusted_key_is_named_as_such() {
        let s = signer();
        let secret = s.kp.sk.to_box(None).expect("sk box").into_string();
        let err = TrustedKeys::from_key_text(Path::new("keys/drover.key"), &secret)
            .expect_err("secret key refused")
            .to_string();
        assert!(
            err.contains("keys/drover.key") && err.contains("this is a minisign secret key"),
            "{err}"
        );
        assert!(err.contains("drover.pub"), "{err}");
    }

    #[test]
    fn a_signature_by_another_key_names_both_key_ids_and_a_verified_index_its_signer() {
        let (trusted, other) = (signer(), signer());
        let keys = TrustedKeys::load(std::slice::from_ref(&trusted.pk_path)).expect("key loads");
        let [trusted_id] = keys.ids()[..] else {
            panic!("one key id")
        };
        let raw = signed(&other, index_json(1, "2027-01-01T00:00:00Z"));
        let other_id = MinisignFile::classify(std::str::from_utf8(&raw.signature).expect("text")).key_id();
        let err = verify_index(&raw, &keys, now(), None)
            .expect_err("other key refused")
            .to_string();
        assert!(
            err.contains(&format!(
                "(key ID {trusted_id}): signed by a different key (key ID {})",
                other_id.expect("id")
            )),
            "{err}"
        );
        let good = verify_index(
            &signed(&trusted, index_json(1, "2027-01-01T00:00:00Z")),
            &keys,
            now(),
            None,
        )
        .expect("verifies");
        assert_eq!(good.signed_by(), Some(trusted_id));
    }

    #[test]
    fn key_text_parses_as_the_key_file_does_and_errors_name_the_path() {
        let s = signer();
        let text = std::fs::read_to_string(&s.pk_path).expect("read pk");
        let keys = TrustedKeys::from_key_text(&s.pk_path, &text).expect("key text parses");
        let raw = signed(&s, index_json(1, "2027-01-01T00:00:00Z"));
        verify_index(&raw, &keys, now(), None).expect("signed by the parsed key");
        let err = TrustedKeys::from_key_text(Path::new("keys/broken.pub"), "untrusted comment: x\nnot-base64!")
            .expect_err("garbage refused")
            .to_string();
        assert!(
            err.contains("keys/broken.pub") && err.contains("not a minisign public key"),
            "{err}"
        );
    }

    #[test]
    fn accepts_index_signed_by_a_trusted_key() {
        let s = signer();
        let keys = TrustedKeys::load(std::slice::from_ref(&s.pk_path)).expect("keys");
        let v = verify_index(&signed(&s, index_json(3, "2027-01-01T00:00:00Z")), &keys, now(), None).expect("valid");
        assert_eq!(v.index().version, 3);
    }

    #[test]
    fn rejects_index_signed_by_unknown_key() {
        let (s, other) = (signer(), signer());
        let keys = TrustedKeys::load(std::slice::from_ref(&other.pk_path)).expect("keys");
        let err = verify_index(&signed(&s, index_json(3, "2027-01-01T00:00:00Z")), &keys, now(), None)
            .expect_err("unknown key");
        assert!(matches!(err, Error::Signature { .. }), "{err}");
    }

    #[test]
    fn any_listed_key_may_sign() {
        let (s, other) = (signer(), signer());
        let keys = TrustedKeys::load(&[other.pk_path.clone(), s.pk_path.clone()]).expect("keys");
        verify_index(&signed(&s, index_json(3, "2027-01-01T00:00:00Z")), &keys, now(), None).expect("second key signs");
    }

    #[test]
    fn rejects_bytes_changed_after_signing_before_parsing_them() {
        let s = signer();
        let keys = TrustedKeys::load(std::slice::from_ref(&s.pk_path)).expect("keys");
        let mut raw = signed(&s, index_json(3, "2027-01-01T00:00:00Z"));
        raw.bytes = b"{ not even json".to_vec();
        let err = verify_index(&raw, &keys, now(), None).expect_err("tampered");
        assert!(matches!(err, Error::Signature { .. }), "signature checked first: {err}");
    }

    #[test]
    fn reuse_skips_nothing_but_the_signature_of_identical_bytes() {
        let s = signer();
        let keys = TrustedKeys::load(std::slice::from_ref(&s.pk_path)).expect("keys");
        let raw = signed(&s, index_json(3, "2026-07-01T00:00:00Z"));
        let known = verify_index(&raw, &keys, now(), None).expect("valid");
        let again = verify_index_reusing(&raw, &keys, now(), None, Some(&known)).expect("same bytes");
        assert_eq!(again.sha256(), known.sha256());
        // Still expires.
        let later = now() + time::Duration::days(60);
        let err = verify_index_reusing(&raw, &keys, later, None, Some(&known)).expect_err("expired");
        assert!(matches!(err, Error::Expired { .. }), "{err}");
        // Other signature bytes: fully verified again, so a bad one is refused.
        let mut forged = raw.clone();
        forged.signature = signed(&signer(), index_json(3, "2026-07-01T00:00:00Z")).signature;
        let err = verify_index_reusing(&forged, &keys, now(), None, Some(&known)).expect_err("other signer");
        assert!(matches!(err, Error::Signature { .. }), "{err}");
        // Other index bytes with the known signature: refused.
        let mut tampered = raw.clone();
        tampered.bytes = index_json(4, "2026-07-01T00:00:00Z");
        let err = verify_index_reusing(&tampered, &keys, now(), None, Some(&known)).expect_err("tampered");
        assert!(matches!(err, Error::Signature { .. }), "{err}");
    }

    #[test]
    fn rejects_expired_index() {
        let s = signer();
        let keys = TrustedKeys::load(std::slice::from_ref(&s.pk_path)).expect("keys");
        let err =
            verify_index(&signed(&s, index_json(3, "2026-01-01T00:00:00Z")), &keys, now(), None).expect_err("expired");
        assert!(matches!(err, Error::Expired { .. }), "{err}");
    }

    #[test]
    fn rejects_lower_version_and_same_version_with_other_bytes() {
        let s = signer();
        let keys = TrustedKeys::load(std::slice::from_ref(&s.pk_path)).expect("keys");
        let raw = signed(&s, index_json(3, "2027-01-01T00:00:00Z"));
        let same = Applied {
            version: 3,
            sha256: Digest::of(&raw.bytes),
        };
        verify_index(&raw, &keys, now(), Some(&same)).expect("same bytes again is fine");
        let newer = Applied {
            version: 4,
            sha256: Digest::of(b"x"),
        };
        assert!(matches!(
            verify_index(&raw, &keys, now(), Some(&newer)),
            Err(Error::Rollback { .. })
        ));
        let other = Applied {
            version: 3,
            sha256: Digest::of(b"x"),
        };
        assert!(matches!(
            verify_index(&raw, &keys, now(), Some(&other)),
            Err(Error::Rollback { .. })
        ));
    }

    #[test]
    fn rejects_garbage_signature_file() {
        let s = signer();
        let keys = TrustedKeys::load(std::slice::from_ref(&s.pk_path)).expect("keys");
        let mut raw = signed(&s, index_json(3, "2027-01-01T00:00:00Z"));
        raw.signature = b"untrusted comment: x\nnot base64 at all\n".to_vec();
        assert!(matches!(
            verify_index(&raw, &keys, now(), None),
            Err(Error::Signature { .. })
        ));
    }
}
