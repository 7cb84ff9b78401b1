//! Disk full while the agent writes its state and the manifests: a small tmpfs holds both
//! directories and is filled to leave 0, 1, 2, … pages free before a run that applies a
//! new version. Every run that cannot finish says "No space left on device" naming the
//! file, leaves only whole files of the old or new version, and once space frees the next
//! run converges. An index-level failure (an index that cannot be read, on the full disk)
//! leaves both directories byte for byte as they were, status.json (its report) aside.

use std::collections::BTreeSet;

use drover_e2e::{restore, sha256_hex, snapshot, text, AgentRun, Site, Tmpfs, Versions};

const CLUSTER: &str = "site-1";
const LABELS: &[&str] = &["env=prod", "region=eu", "monitoring=on"];
const PAGE: u64 = 4096;
/// More pages than any run needs; the loop ends at the first level that is enough.
const MAX_PAGES: u64 = 64;

#[test]
fn disk_full_at_any_point_keeps_whole_files_and_converges_once_space_frees() {
    let site = Site::new();
    let versions = Versions::publish(&site, 2, CLUSTER, LABELS);
    let (v1, v2) = (&versions.stores[0], &versions.stores[1]);
    let disk = Tmpfs::mount(&site.path("disk"), "2m");
    let (manifests, state) = (disk.path.join("manifests"), disk.path.join("state"));
    let run = |store: &str| {
        AgentRun::once(&site)
            .source(store)
            .cluster(CLUSTER)
            .labels(LABELS)
            .under(&disk.path)
            .run()
    };
    let out = run(v1);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (sink_before, state_before) = (snapshot(&manifests), snapshot(&state));

    // A full disk and an index that cannot be used (no store there): index-level, so
    // both directories stay byte for byte as they were.
    let filler = disk.fill_leaving(0);
    let out = run(&format!("file://{}", site.p("nowhere")));
    let said = text(&out);
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(said.contains("index not applied, nothing changed"), "{said}");
    assert!(
        snapshot(&manifests) == sink_before,
        "a refused index changed the manifests"
    );
    let mut state_now = snapshot(&state);
    state_now.remove("status.json");
    let mut state_then = state_before.clone();
    state_then.remove("status.json");
    assert!(
        state_now == state_then,
        "a refused index changed the state: {:?}",
        changed_files(&state_then, &state_now)
    );
    std::fs::remove_file(filler).unwrap();

    let mut failures = Vec::new();
    let mut failed_paths = BTreeSet::new();
    let mut index_level = 0;
    for pages in 0..=MAX_PAGES {
        // Back to version 1 as applied, then a disk with `pages` pages free.
        for dir in [&manifests, &state] {
            std::fs::remove_dir_all(dir).unwrap();
        }
        restore(&manifests, &sink_before);
        restore(&state, &state_before);
        let filler = disk.fill_leaving(pages * PAGE);
        let out = run(v2);
        let context = format!("{pages} pages free");
        if out.status.code() == Some(0) {
            assert!(snapshot(&manifests) == versions.last, "{context}: {}", text(&out));
            assert!(!failures.is_empty(), "even a full disk did not stop the run");
            break;
        }
        let said = text(&out);
        assert!(
            matches!(out.status.code(), Some(1 | 3)),
            "{context}: exit 1 (bundle) or 3 (index/state): {said}"
        );
        assert!(said.contains("No space left on device"), "{context}: {said}");
        for dir in ["manifests", "state"] {
            if said.contains(&format!("/disk/{dir}")) {
                failed_paths.insert(dir);
            }
        }
        versions.assert_consistent(&manifests, &state, &context);
        if said.contains("index not applied, nothing changed") {
            // An index-level failure changed nothing: both directories byte for byte as
            // they were (status.json aside: it is the agent's report of this very failure).
            // Exit 3 alone does not say so: a state record that could not be saved is 3 too.
            index_level += 1;
            assert!(
                snapshot(&manifests) == sink_before,
                "{context}: exit 3 changed the manifests"
            );
            let without_report = |mut files: std::collections::BTreeMap<String, Vec<u8>>| {
                files.remove("status.json");
                files
            };
            assert!(
                without_report(snapshot(&state)) == without_report(state_before.clone()),
                "{context}: exit 3 changed the state directory: {:?}\n{said}",
                changed_files(&state_before, &snapshot(&state))
            );
        }
        // Whatever stopped the run, the state that is there is whole and never claims a
        // bundle file that is not in the sink (checked by the convergence below too).
        let state_json: serde_json::Value = match std::fs::read(state.join("state.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap(),
            Err(e) => panic!("{context}: state.json lost: {e}"),
        };
        assert_claims_match_sink(&state_json, &manifests, &context);
        failures.push((pages, out.status.code()));

        // Space frees: the next run converges to version 2.
        std::fs::remove_file(filler).unwrap();
        let out = run(v2);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{context}, then space freed: {}",
            text(&out)
        );
        assert!(snapshot(&manifests) == versions.last, "{context}, then space freed");
    }
    eprintln!(
        "failures (pages free, exit code): {failures:?}; failed writing in {failed_paths:?}; {index_level} index-level"
    );
    assert!(
        failed_paths.contains("manifests") && failed_paths.contains("state"),
        "the disk filled up both while writing manifests and while writing state: {failed_paths:?}"
    );
}

/// Every bundle the state records as Applied names the sha256 of the file in the sink.
fn assert_claims_match_sink(state: &serde_json::Value, manifests: &std::path::Path, context: &str) {
    for (name, bundle) in state["bundles"].as_object().unwrap() {
        if bundle["status"] != "Applied" {
            continue;
        }
        let file = manifests.join(format!("drover-{name}.yaml"));
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{context}: {}: {e}", file.display()));
        let hex = sha256_hex(&bytes);
        assert_eq!(
            bundle["fileSha256"].as_str().map(|s| s.trim_start_matches("sha256:")),
            Some(hex.as_str()),
            "{context}: state claims {name} Applied with another file: {state:#}"
        );
    }
}

/// The files that differ between two snapshots (added, removed or changed).
fn changed_files(
    a: &std::collections::BTreeMap<String, Vec<u8>>,
    b: &std::collections::BTreeMap<String, Vec<u8>>,
) -> Vec<String> {
    a.keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}
