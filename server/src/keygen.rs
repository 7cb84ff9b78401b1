//! `drover keygen`: a minisign key pair that stock `minisign` reads and writes too.

use std::io::Write;
use std::path::{Path, PathBuf};

use drover_agent::keyfile::MinisignFile;

use crate::error::{Error, Result};

/// File name of the secret key written by [`keygen`].
pub const SECRET_KEY_FILE: &str = "drover.key";
/// File name of the public key written by [`keygen`].
pub const PUBLIC_KEY_FILE: &str = "drover.pub";

/// `drover keygen --out DIR`: makes the key pair and says where each half goes.
pub fn run(dir: &Path) -> Result<()> {
    let (sk, pk) = keygen(dir)?;
    println!("secret key: {} (keep it off the clusters)", sk.display());
    println!("public key: {} (give it to every agent with --key)", pk.display());
    Ok(())
}

/// Writes `DIR/drover.key` (unencrypted minisign secret key, mode 0600) and
/// `DIR/drover.pub`. Refuses to overwrite an existing key: losing a signing key that
/// agents trust means re-keying the whole fleet.
pub fn keygen(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let sk_path = dir.join(SECRET_KEY_FILE);
    let pk_path = dir.join(PUBLIC_KEY_FILE);
    for path in [&sk_path, &pk_path] {
        if path.exists() {
            return Err(Error::Key {
                path: path.clone(),
                message: "already exists; refusing to overwrite a key (move it away first)".into(),
            });
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| drover_agent::Error::io(dir, e))?;
    let key_err = |path: &Path, e: &dyn std::fmt::Display| Error::Key {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let kp = minisign::KeyPair::generate_unencrypted_keypair().map_err(|e| key_err(&sk_path, &e))?;
    let sk_box = kp
        .sk
        .to_box(Some("drover secret key (unencrypted)"))
        .map_err(|e| key_err(&sk_path, &e))?;
    let pk_box = kp.pk.to_box().map_err(|e| key_err(&pk_path, &e))?;
    write_new(&sk_path, sk_box.into_string().as_bytes(), 0o600)?;
    write_new(&pk_path, pk_box.into_string().as_bytes(), 0o644)?;
    Ok((sk_path, pk_path))
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| drover_agent::Error::io(path, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| drover_agent::Error::io(path, e).into())
}

/// Loads a secret key written by [`keygen`] or by `minisign -G -W` (unencrypted).
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

    #[test]
    fn keygen_refuses_to_overwrite_and_key_loads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (sk, _pk) = keygen(dir.path()).expect("keygen");
        load_secret_key(&sk).expect("secret key loads");
        assert!(keygen(dir.path()).is_err());
    }
}
