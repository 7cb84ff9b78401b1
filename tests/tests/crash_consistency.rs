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
