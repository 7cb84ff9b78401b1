//! A `file://` store on a hostile or broken medium: a FIFO where a store file belongs must
//! not hang the agent. It is refused at once, naming the path, and nothing changes.

use std::time::Duration;

use drover_e2e::{text, AgentRun, Site};

const CLUSTER: &str = "site-1";
const LABELS: &[&str] = &["env=prod", "region=eu", "monitoring=on"];
/// Far longer than refusing takes; only a hang trips it.
const PATIENCE: Duration = Duration::from_secs(60);

fn mkfifo(path: &std::path::Path) {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo {}", path.display());
}

#[test]
fn a_fifo_in_place_of_the_index_or_signature_is_refused_at_once_naming_the_path() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    for file in ["index.json", "index.json.minisig"] {
        let path = site.path(&format!("store/{file}"));
        let saved = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        mkfifo(&path);
        let out = AgentRun::once(&site)
            .cluster(CLUSTER)
            .labels(LABELS)
            .run_within(PATIENCE);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(3), "{said}");
        assert!(
            said.contains(&format!("{}: not a regular file but a FIFO", path.display())),
            "names the path and what is there: {said}"
        );
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, saved).unwrap();
    }
}

#[test]
fn a_fifo_in_place_of_a_blob_fails_that_bundle_and_the_agent_goes_on() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    let blob = site.index_digests()["base"][0].clone();
    let hex = blob.trim_start_matches("sha256:");
    let path = site.path(&format!("store/blobs/sha256/{hex}"));
    std::fs::remove_file(&path).unwrap();
    mkfifo(&path);
    let out = AgentRun::once(&site)
        .cluster(CLUSTER)
        .labels(LABELS)
        .run_within(PATIENCE);
    let said = text(&out);
    assert!(matches!(out.status.code(), Some(1)), "{said}");
    assert!(said.contains("not a regular file but a FIFO"), "{said}");
}
