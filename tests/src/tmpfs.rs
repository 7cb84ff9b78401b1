//! A small tmpfs mounted for one test: a disk that can be filled.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process::{require, text};

/// A small tmpfs mounted for one test (a disk that can be filled), unmounted on drop.
/// Mounting needs root (CAP_SYS_ADMIN); without it the test fails saying so.
pub struct Tmpfs {
    /// The mount point.
    pub path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` reads it, e.g. `1m`) at `path`.
    pub fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let mount = require("mount", "mount");
        let out = Command::new(mount)
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "drover-test"])
            .arg(path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "this test fills a small tmpfs and must run as root to mount it (mount -t tmpfs): {}",
            text(&out)
        );
        Tmpfs {
            path: path.to_path_buf(),
        }
    }

    /// Fills the file system with a file `.filler` until exactly `free` bytes (a multiple of
    /// the page size) are left; returns the filler's path.
    pub fn fill_leaving(&self, free: u64) -> PathBuf {
        use std::io::Write;
        let filler = self.path.join(".filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 << 10];
        let mut written = 0u64;
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling {}: {e}", filler.display()),
            }
        }
        file.set_len(written.saturating_sub(free)).unwrap();
        file.sync_all().unwrap();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
