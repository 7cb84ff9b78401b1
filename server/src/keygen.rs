//! `drover keygen`: a minisign key pair that stock `minisign` reads and writes too.

use std::io::Write;
use std::path::{Path, PathBuf};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret_key::load_secret_key;

    #[test]
    fn keygen_refuses_to_overwrite_and_key_loads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (sk, _pk) = keygen(dir.path()).expect("keygen");
        load_secret_key(&sk).expect("secret key loads");
        assert!(keygen(dir.path()).is_err());
    }
}
