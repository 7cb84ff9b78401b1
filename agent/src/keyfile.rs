//! What kind of minisign file a piece of text is (public key, secret key, signature), and
//! its key ID, so that a wrong file gets a diagnosis that names the right one instead of a
//! base64 or checksum error.
//!
//! Layouts (minisign's documentation, base64 line after the `untrusted comment:` line):
//! public key `Ed` + key ID (8) + Ed25519 key (32) = 42 bytes; secret key `Ed` + KDF (2) +
//! checksum alg (2) + salt (32) + opslimit (8) + memlimit (8) + key ID (8) + key (64) +
//! checksum (32) = 158 bytes, the key ID and key encrypted unless the KDF is `\0\0`;
//! signature `Ed`/`ED` + key ID (8) + signature (64) = 74 bytes.

use std::fmt;

use ct_codecs::{Base64, Decoder};

/// A minisign key ID: 8 bytes, shown as minisign shows it (hex, most significant first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyId([u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().rev().try_for_each(|b| write!(f, "{b:02X}"))
    }
}

/// What a minisign file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinisignFile {
    /// A public key (`drover.pub`, `minisign.pub`).
    PublicKey(KeyId),
    /// A secret key; the ID is `None` when the key is encrypted.
    SecretKey(Option<KeyId>),
    /// A signature (`*.minisig`), with the ID of the key that made it.
    Signature(KeyId),
    /// None of these.
    Unknown,
}

impl MinisignFile {
    /// Classifies `text` by the length and header of its first base64 line.
    pub fn classify(text: &str) -> Self {
        let Some(raw) = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
            .and_then(|line| Base64::decode_to_vec(line, None).ok())
        else {
            return MinisignFile::Unknown;
        };
        let id_at = |at: usize| raw.get(at..at + 8).and_then(|b| b.try_into().ok()).map(KeyId);
        match (raw.len(), raw.get(..2)) {
            (42, Some(b"Ed")) => id_at(2).map_or(MinisignFile::Unknown, MinisignFile::PublicKey),
            (158, Some(b"Ed")) => MinisignFile::SecretKey(id_at(54).filter(|_| raw.get(2..4) == Some(&[0, 0][..]))),
            (74, Some(b"Ed" | b"ED")) => id_at(2).map_or(MinisignFile::Unknown, MinisignFile::Signature),
            _ => MinisignFile::Unknown,
        }
    }

    /// The key ID, when the file shows one.
    pub fn key_id(self) -> Option<KeyId> {
        match self {
            MinisignFile::PublicKey(id) | MinisignFile::Signature(id) => Some(id),
            MinisignFile::SecretKey(id) => id,
            MinisignFile::Unknown => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> minisign::KeyPair {
        minisign::KeyPair::generate_unencrypted_keypair().expect("keypair")
    }

    #[test]
    fn tells_a_public_key_from_a_secret_key_and_a_signature_with_one_key_id() {
        let kp = pair();
        let public = kp.pk.to_box().expect("pk box").into_string();
        let secret = kp.sk.to_box(None).expect("sk box").into_string();
        let sig = minisign::sign(None, &kp.sk, &b"x"[..], None, None)
            .expect("sign")
            .into_string();
        let id = MinisignFile::classify(&public).key_id().expect("public key id");
        assert_eq!(MinisignFile::classify(&public), MinisignFile::PublicKey(id));
        assert_eq!(MinisignFile::classify(&secret), MinisignFile::SecretKey(Some(id)));
        assert_eq!(MinisignFile::classify(&sig), MinisignFile::Signature(id));
    }

    #[test]
    fn shows_the_key_id_as_minisign_prints_it() {
        let public = "untrusted comment: minisign public key: A1C65BD77F96CE0F\nRWQPzpZ/11vGoVXbLgEjqaomoIQEYCESwR4HMf7qjsO83VhakZFSqTSF\n";
        let id = MinisignFile::classify(public).key_id().expect("key id");
        assert_eq!(id.to_string(), "A1C65BD77F96CE0F");
    }

    #[test]
    fn anything_else_is_unknown() {
        for text in [
            "",
            "hello",
            "untrusted comment: x\nnot base64!",
            "untrusted comment: x\nAAAA\n",
        ] {
            assert_eq!(MinisignFile::classify(text), MinisignFile::Unknown, "{text:?}");
        }
    }
}
