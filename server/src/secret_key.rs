//! The publisher's signing key: loading the minisign secret key `drover publish` signs
//! with, and refusing, by name, the files people give in its place.

use std::path::Path;

use drover_agent::keyfile::MinisignFile;

use crate::error::{Error, Result};

/// Loads a secret key written by [`keygen`](crate::keygen::keygen) or by `minisign -G -W` (unencrypted).
///
/// Stock minisign 0.11 writes unencrypted keys with an all-zero checksum, which the
/// minisign crate rejects as corrupted; such a key is accepted when it proves itself by
/// signing a probe that its own public half verifies.
pub fn load_secret_key(path: &Path) -> Result<minisign::SecretKey> {
    let key_err = |message: String| Error::Key {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| key_err(e.to_string()))?;
    match MinisignFile::classify(&text) {
        MinisignFile::PublicKey(id) => {
            return Err(key_err(format!(
                "this is the public key (key ID {id}); signing needs the secret key (drover.key, written next to it by drover keygen)"
            )))
        }
        MinisignFile::Signature(id) => {
            return Err(key_err(format!("this is a signature (made by key ID {id}), not a secret key")))
        }
        MinisignFile::SecretKey(_) | MinisignFile::Unknown => {}
    }
    let sk_box =
        minisign::SecretKeyBox::from_string(&text).map_err(|e| key_err(format!("not a minisign secret key: {e}")))?;
    match minisign::SecretKey::from_unencrypted_box(sk_box) {
        Ok(sk) => Ok(sk),
        Err(first) => {
            let raw = text
                .lines()
                .nth(1)
                .and_then(|line| <ct_codecs::Base64 as ct_codecs::Decoder>::decode_to_vec(line.trim(), None).ok())
                .ok_or_else(|| key_err(format!("not a minisign secret key: {first}")))?;
            // Layout: sig_alg(2) kdf_alg(2) ...; kdf_alg 0x0000 means "not encrypted".
            if raw.get(2..4) != Some(&[0, 0][..]) {
                return Err(key_err(
                    "the key is encrypted; drover signs unattended, so make it with minisign -G -W or drover keygen"
                        .into(),
                ));
            }
            let sk = minisign::SecretKey::from_bytes(&raw).map_err(|e| key_err(format!("corrupt key: {e}")))?;
            prove_key(&sk).map_err(|m| key_err(format!("corrupt key: {m} ({first})")))?;
            Ok(sk)
        }
    }
}

/// Signs a probe and verifies it with the key's public half.
fn prove_key(sk: &minisign::SecretKey) -> Result<(), String> {
    let pk = minisign::PublicKey::from_secret_key(sk).map_err(|e| e.to_string())?;
    let probe = b"drover key self-test";
    let sig = minisign::sign(None, sk, &probe[..], None, None).map_err(|e| e.to_string())?;
    minisign::verify(&pk, &sig, std::io::Cursor::new(&probe[..]), true, false, false).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keygen::keygen;

    #[test]
    fn a_public_key_given_as_signing_key_is_named_with_its_key_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_sk, pk) = keygen(dir.path()).expect("keygen");
        let id = MinisignFile::classify(&std::fs::read_to_string(&pk).expect("read"))
            .key_id()
            .expect("id");
        let err = load_secret_key(&pk).expect_err("public key refused").to_string();
        assert!(err.contains(&format!("this is the public key (key ID {id})")), "{err}");
        assert!(err.contains("drover.key"), "{err}");
    }
}
