//! Two agents on one state directory would overwrite each other's record of what is
//! applied: the second is refused at start, naming the directory and the holder's pid, and
//! the directory is free again once the first one stops.

use std::time::Duration;

use drover_e2e::{text, AgentRun, Site};

const CLUSTER: &str = "site-1";
const LABELS: &[&str] = &["env=prod", "region=eu", "monitoring=on"];
/// Generous bound for a process that must end on its own; only a hang trips it.
const PATIENCE: Duration = Duration::from_secs(120);

#[test]
fn a_second_agent_on_a_state_directory_in_use_exits_2_naming_it_and_the_holders_pid() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    let mut first = AgentRun::daemon(&site).cluster(CLUSTER).labels(LABELS).start();
    first.wait_first_cycle();
    let applied = site.sink_and_state();

    let out = AgentRun::once(&site)
        .cluster(CLUSTER)
        .labels(LABELS)
        .run_within(PATIENCE);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains(&site.p("state")), "names the state directory: {said}");
    assert!(
        said.contains(&format!("pid {}", first.pid())),
        "names the holder's pid: {said}"
    );
    assert!(site.sink_and_state() == applied, "the refused agent changed nothing");

    first.signal("TERM");
    assert_eq!(first.wait_exit(PATIENCE), Some(0), "{}", first.log());
    let out = AgentRun::once(&site)
        .cluster(CLUSTER)
        .labels(LABELS)
        .run_within(PATIENCE);
    assert_eq!(
        out.status.code(),
        Some(0),
        "free again once the first stopped: {}",
        text(&out)
    );
}
