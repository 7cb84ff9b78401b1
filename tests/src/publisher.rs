//! The publisher binary, `drover`: one-shot commands and `drover serve`.

use std::path::Path;
use std::process::{Command, Output};

use crate::process::{bin, run, spawn_announcing, text, Daemon};

/// Runs `drover ARGS`.
pub fn drover(args: &[&str]) -> Output {
    run(&bin("drover"), args)
}

/// Runs `drover ARGS` and asserts success.
pub fn drover_ok(args: &[&str]) -> String {
    let out = drover(args);
    assert!(out.status.success(), "drover {args:?} failed: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts `drover serve STORE --listen 127.0.0.1:0` and returns it with its URL.
pub fn drover_serve(store: &Path) -> Daemon {
    let (child, line) = spawn_announcing(
        Command::new(bin("drover")).args(["serve", store.to_str().unwrap(), "--listen", "127.0.0.1:0"]),
        "drover serve",
    );
    let url = line
        .trim()
        .rsplit(" on ")
        .next()
        .filter(|u| u.starts_with("http://"))
        .unwrap_or_else(|| panic!("drover serve printed {line:?}"))
        .to_string();
    Daemon { child, url }
}
