//! `kill -9` at random points of 200 agent runs while new versions are published: after
//! every kill, k3s would see only whole manifests files, each exactly as some version
//! writes it, and the state is whole; the next complete run converges to what a clean run
//! of the last version writes and removes the temporary files the kills left.

use std::time::Duration;

use drover_e2e::{snapshot, text, AgentRun, Ended, Site, Versions};

const CLUSTER: &str = "site-1";
const LABELS: &[&str] = &["env=prod", "region=eu", "monitoring=on"];
const CYCLES: usize = 200;
const VERSIONS: usize = 5;
/// Kills land between 0 and a window after the start that starts here (a debug agent's
/// whole run takes a few tens of milliseconds) and adapts to this machine's speed: it
/// shrinks after a run that ended before its kill and grows after one that was killed, so
/// most kills hit a run mid-cycle and some let it end, on a fast machine or a loaded one.
const FIRST_KILL_WINDOW_US: u64 = 40_000;

#[test]
fn sigkill_at_random_points_across_200_runs_never_leaves_a_partial_manifest() {
    let site = Site::new();
    let versions = Versions::publish(&site, VERSIONS, CLUSTER, LABELS);
    let dir = site.path("cluster");
    let mut seed: u64 = std::env::var("DROVER_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let first_seed = seed;
    let (mut killed, mut finished) = (0, 0);
    let mut window_us = FIRST_KILL_WINDOW_US;
    for cycle in 0..CYCLES {
        // Versions move forward as an operator publishes: each is live for a stretch of runs.
        let store = &versions.stores[cycle * VERSIONS / CYCLES];
        let run = AgentRun::once(&site)
            .source(store)
            .cluster(CLUSTER)
            .labels(LABELS)
            .under(&dir);
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        match run.kill_after(Duration::from_micros((seed >> 33) % window_us)) {
            Ended::Finished => {
                finished += 1;
                window_us = (window_us * 3 / 4).max(100);
            }
            Ended::Killed => {
                killed += 1;
                window_us = window_us * 21 / 20 + 1;
            }
        }
        versions.assert_consistent(
            &dir.join("manifests"),
            &dir.join("state"),
            &format!("run {cycle} (DROVER_CRASH_SEED={first_seed})"),
        );
    }
    assert!(
        killed > CYCLES / 2,
        "most runs were killed mid-way ({killed} killed, {finished} ended)"
    );

    let out = AgentRun::once(&site)
        .source(versions.stores.last().unwrap())
        .cluster(CLUSTER)
        .labels(LABELS)
        .under(&dir)
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        snapshot(&dir.join("manifests")),
        versions.last,
        "converged, no leftovers"
    );
    let stray: Vec<String> = snapshot(&dir.join("state"))
        .into_keys()
        .filter(|n| n.rsplit('/').next().is_some_and(|f| f.starts_with('.')))
        .collect();
    assert!(
        stray.is_empty(),
        "temporary files left in the state directory: {stray:?}"
    );
}

/// A power cut, unlike `kill -9`, loses what is only in the page cache. The agent's
/// answer is the usual one, and this checks it with `strace -f -y`: every file renamed
/// into the manifests or state directory was fsynced (under its temporary name) before
/// the rename, and its directory was fsynced after it. status.json, the agent's report of
/// the cycle, is rewritten every cycle and is not part of the claim.
#[test]
fn every_file_is_fsynced_before_its_rename_and_its_directory_after() {
    let strace = drover_e2e::require("strace", "strace");
    let site = Site::new();
    let versions = Versions::publish(&site, 2, CLUSTER, LABELS);
    let dir = site.path("cluster");
    let mut checked = Vec::new();
    for (n, store) in versions.stores.iter().enumerate() {
        let log = site.path(&format!("strace-{n}.log"));
        let run = AgentRun::once(&site)
            .source(store)
            .cluster(CLUSTER)
            .labels(LABELS)
            .under(&dir);
        let trace = [
            "-f",
            "-y",
            "-qq",
            "-e",
            "trace=fsync,fdatasync,rename,renameat,renameat2",
            "-o",
        ];
        let out = run
            .command_under(&strace, &[&trace[..], &[log.to_str().unwrap()]].concat())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let log = std::fs::read_to_string(&log).unwrap();
        checked.extend(check_fsync_order(&log, &dir));
    }
    for kind in ["manifests", "state"] {
        assert!(
            checked.iter().any(|p| p.starts_with(dir.join(kind))),
            "no rename into {kind}/ was traced: {checked:?}"
        );
    }
}

/// Checks every rename into `dir`/manifests or `dir`/state in an `strace -f -y` log and
/// returns the destinations it checked.
fn check_fsync_order(log: &str, dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let calls: Vec<&str> = log
        .lines()
        .map(|l| l.split_once(' ').map_or(l, |(_, c)| c).trim())
        .collect();
    let synced = |at: usize, path: &str, before: bool| {
        let range = if before { &calls[..at] } else { &calls[at + 1..] };
        range.iter().any(|c| {
            (c.starts_with("fsync(") || c.starts_with("fdatasync("))
                && c.contains(&format!("<{path}>)"))
                && c.ends_with("= 0")
        })
    };
    let mut checked = Vec::new();
    for (at, call) in calls.iter().enumerate() {
        if !call.starts_with("rename") || !call.ends_with("= 0") {
            continue;
        }
        let quoted: Vec<&str> = call.split('"').skip(1).step_by(2).collect();
        let [from, to] = quoted[..] else {
            panic!("unexpected rename line: {call}")
        };
        let to_path = std::path::Path::new(to);
        let inside = to_path.starts_with(dir.join("manifests")) || to_path.starts_with(dir.join("state"));
        if !inside || to_path.file_name().is_some_and(|f| f == "status.json") {
            continue;
        }
        assert!(
            synced(at, from, true),
            "{from} renamed to {to} without an fsync first:\n{log}"
        );
        let parent = to_path.parent().unwrap().to_str().unwrap();
        assert!(
            synced(at, parent, false),
            "{parent} not fsynced after {to} was renamed in:\n{log}"
        );
        checked.push(to_path.to_path_buf());
    }
    checked
}
