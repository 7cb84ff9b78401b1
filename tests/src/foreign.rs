//! The static agent for foreign CPUs (arm64, armv7): cross-built by `tests/build-static.sh
//! TARGET`, run on this x86_64 machine under Debian's qemu-user-static. A missing Rust
//! target, cross toolchain or qemu fails the test with a message saying how to install it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

use crate::{repo_root, require, run, text};

/// A foreign CPU the static agent is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Arch {
    /// 64-bit ARM (Raspberry Pi 4/5, Jetson, most industrial ARM boxes).
    Aarch64,
    /// 32-bit ARM with hardware floating point (Raspberry Pi 2/3 on a 32-bit OS).
    Armv7,
}

impl Arch {
    /// The Rust target triple `tests/build-static.sh` takes.
    pub fn target(self) -> &'static str {
        match self {
            Arch::Aarch64 => "aarch64-unknown-linux-gnu",
            Arch::Armv7 => "armv7-unknown-linux-gnueabihf",
        }
    }

    /// The qemu-user-static emulator that runs its binaries.
    pub fn qemu_name(self) -> &'static str {
        match self {
            Arch::Aarch64 => "qemu-aarch64-static",
            Arch::Armv7 => "qemu-arm-static",
        }
    }

    /// What `file` says about the machine of its executables.
    pub fn file_machine(self) -> &'static str {
        match self {
            Arch::Aarch64 => "ARM aarch64",
            Arch::Armv7 => "ARM, EABI5",
        }
    }
}

/// The emulator for `arch`'s binaries (a static executable, so it also runs in a chroot).
pub fn qemu(arch: Arch) -> PathBuf {
    require(arch.qemu_name(), "qemu-user-static")
}

/// The fully static `drover-agent` for `arch`, built once per test process by
/// `tests/build-static.sh TARGET` (a no-op when it is up to date; tests/run.sh builds it
/// before the tests, with the same profile).
pub fn foreign_agent(arch: Arch) -> PathBuf {
    static BUILT: OnceLock<Mutex<BTreeMap<Arch, PathBuf>>> = OnceLock::new();
    // One build at a time: two cargo builds of the same target would wait on each other's
    // lock anyway, and the map keeps each architecture's path once built.
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    built
        .entry(arch)
        .or_insert_with(|| {
            let out = Command::new("bash")
                .arg(repo_root().join("tests/build-static.sh"))
                .arg(arch.target())
                .output()
                .expect("run tests/build-static.sh");
            assert!(
                out.status.success(),
                "tests/build-static.sh {} failed (bash tests/run.sh installs the Rust target, the cross toolchain and qemu-user-static): {}",
                arch.target(),
                text(&out)
            );
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        })
        .clone()
}

/// Runs `binary ARGS…` (an `arch` executable) under qemu on this machine.
pub fn run_foreign(arch: Arch, binary: &Path, args: &[&str]) -> Output {
    let mut all = vec![binary.to_str().expect("utf-8 path")];
    all.extend_from_slice(args);
    run(&qemu(arch), &all)
}

/// Puts `arch`'s agent at `/drover-agent` and its emulator at `/qemu` in the directory
/// `root` (nothing else), for [`chroot_foreign`].
pub fn install_in_chroot(arch: Arch, root: &Path) {
    std::fs::create_dir_all(root).unwrap();
    std::fs::copy(foreign_agent(arch), root.join("drover-agent")).unwrap();
    std::fs::copy(qemu(arch), root.join("qemu")).unwrap();
}

/// Runs `chroot ROOT /qemu ARGS…` (the test runs as root, as CI does): `arch`'s binary
/// alone in `root` with its static emulator, no libc, no /proc, no /dev.
pub fn chroot_foreign(root: &Path, args: &[&str]) -> Output {
    let mut all = vec![root.to_str().expect("utf-8 path"), "/qemu"];
    all.extend_from_slice(args);
    run(&require("chroot", "coreutils"), &all)
}
