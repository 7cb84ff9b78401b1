//! The fully static agent binary, built by tests/build-static.sh.

use std::path::PathBuf;
use std::process::Command;

use crate::fsutil::repo_root;
use crate::process::text;

/// The fully static `drover-agent` (x86_64, glibc linked in, no NSS), built once per test
/// process by `tests/build-static.sh` (a no-op when it is up to date; tests/run.sh builds
/// it before the tests).
pub fn static_agent() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = Command::new("bash")
                .arg(repo_root().join("tests/build-static.sh"))
                .output()
                .expect("run tests/build-static.sh");
            assert!(out.status.success(), "tests/build-static.sh failed: {}", text(&out));
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        })
        .clone()
}
