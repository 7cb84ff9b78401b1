//! Stock minisign, as a publisher without the drover CLI would use it.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::process::{require, text};

/// Signs `file` with stock `minisign -S` and the unencrypted secret key `key`, writing
/// `FILE.minisig` next to it (as a publisher without the drover CLI would).
pub fn minisign_sign(key: &Path, file: &Path) {
    let minisign = require("minisign", "minisign");
    let out = Command::new(minisign)
        .args(["-S", "-s", key.to_str().unwrap(), "-m", file.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .expect("run minisign");
    assert!(
        out.status.success(),
        "minisign -S -m {} failed: {}",
        file.display(),
        text(&out)
    );
}
