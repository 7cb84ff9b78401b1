//! The agent as a long-running daemon against real nginx: conditional polling, several
//! sources, sources going down and coming back, slow servers, signals, metrics and
//! status. Cycles are driven with `POST /sync` (which answers once its cycle is done) and
//! signals, never with sleeps, so no test depends on wall-clock timing to pass.

use std::time::Duration;

use drover_e2e::{
    access_log, free_port, nginx_on, snapshot, text, wait_for, AgentDaemon, AgentRun, Behaviour, FaultyServer,
    KillSearch, Landing, Site,
};

const CLUSTER: &str = "site-1";
const LABELS: &[&str] = &["env=prod", "region=eu", "monitoring=on"];
/// Generous bound for a process that must end on its own; only a hang trips it.
const PATIENCE: Duration = Duration::from_secs(120);

/// `run` as the agent of site-1 reading `sources`, with `extra` flags.
fn site1(run: AgentRun, sources: &[&str], extra: &[&str]) -> AgentRun {
    run.sources(sources).cluster(CLUSTER).labels(LABELS).args(extra)
}

fn start_daemon(site: &Site, sources: &[&str], extra: &[&str]) -> AgentDaemon {
    site1(AgentRun::daemon(site), sources, extra).start()
}

/// Runs `drover-agent --once` and returns (exit code, stdout + stderr); fails the test
/// instead of hanging if the agent does not end.
fn once(site: &Site, sources: &[&str], extra: &[&str]) -> (Option<i32>, String) {
    let out = site1(AgentRun::once(site), sources, extra).run_within(PATIENCE);
    (out.status.code(), text(&out))
}

/// Changes the monitoring bundle so the next publish has a new version with one new blob.
fn change_monitoring(site: &Site, marker: &str) {
    let path = site.path("src/bundles/monitoring/node-exporter.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        yaml.replacen("name: node-exporter\n", &format!("name: {marker}\n"), 1),
    )
    .unwrap();
}

/// A site with the examples published in `store/`, served by nginx at `/store/`.
struct Served {
    site: Site,
    port: u16,
    nginx: Option<drover_e2e::Daemon>,
}

impl Served {
    fn new(extra_conf: &str) -> Served {
        let site = Site::new().with_examples();
        site.publish(&[]);
        let port = free_port();
        let nginx = nginx_on(site.dir.path(), &site.path("nginx"), port, extra_conf);
        Served {
            site,
            port,
            nginx: Some(nginx),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/store/", self.port)
    }

    fn stop(&mut self) {
        self.nginx = None;
    }

    fn restart(&mut self, extra_conf: &str) {
        self.nginx = Some(nginx_on(
            self.site.dir.path(),
            &self.site.path("nginx"),
            self.port,
            extra_conf,
        ));
    }

    fn log(&self) -> Vec<String> {
        access_log(&self.site.path("nginx"))
    }

    /// Marks the access log now: lines before it are complete.
    fn mark(&self) -> usize {
        drover_e2e::mark_log(self.port, "", || self.log())
    }

    /// Every request answered since `mark`, and none from before.
    fn since(&self, mark: usize) -> Vec<String> {
        drover_e2e::log_since(self.port, "", || self.log(), mark)
    }

    /// The whole log once every request answered so far is in it (marks left out).
    fn settled_log(&self) -> Vec<String> {
        self.since(0)
    }
}

/// The value of a metric line `name{labels} value` (or `name value`) in /metrics.
fn metric(agent: &AgentDaemon, series: &str) -> f64 {
    let (status, body) = agent.get("/metrics");
    assert_eq!(status, 200);
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{series} not in /metrics:\n{body}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn unchanged_poll_is_one_conditional_get_answered_304() {
    let served = Served::new("");
    let site = &served.site;
    let agent = start_daemon(site, &[&served.url()], &[]);
    agent.wait_first_cycle();
    let first = served.settled_log();
    assert!(
        first.iter().any(|l| l.starts_with("GET /store/index.json 200 ")),
        "{first:?}"
    );
    assert!(
        first
            .iter()
            .any(|l| l.starts_with("GET /store/index.json.minisig 200 ")),
        "{first:?}"
    );
    let manifests = site.manifests();
    let state = std::fs::read(site.path("state/state.json")).unwrap();
    let written = || {
        let mut stamps = drover_e2e::stamps(&site.path("manifests"));
        stamps.insert("state".into(), drover_e2e::stamp(&site.path("state/state.json")));
        stamps
    };
    let stamps = written();

    for _ in 0..3 {
        let before = served.mark();
        let summary = agent.sync();
        assert_eq!(summary["result"], "unchanged", "{summary:#}");
        let requests = served.since(before);
        assert_eq!(requests.len(), 1, "one request per unchanged poll: {requests:?}");
        let fields: Vec<&str> = requests[0].split(' ').collect();
        assert_eq!(&fields[..3], ["GET", "/store/index.json", "304"], "{requests:?}");
        let wire: u64 = fields[3].parse::<u64>().unwrap() + fields[4].parse::<u64>().unwrap();
        assert!(
            wire <= 1024,
            "request + response headers are {wire} bytes: {requests:?}"
        );
    }
    assert_eq!(site.manifests(), manifests);
    assert!(
        std::fs::read(site.path("state/state.json")).unwrap() == state,
        "unchanged polls write no state"
    );
    assert_eq!(written(), stamps, "unchanged polls touch no manifest and no state file");

    // A new publish is noticed by the next poll and fetches only what changed.
    change_monitoring(site, "node-exporter-v2");
    site.publish(&[]);
    let before = served.mark();
    let summary = agent.sync();
    assert_eq!(summary["result"], "updated", "{summary:#}");
    assert_eq!(summary["version"], 2);
    let requests = served.since(before);
    let blobs: Vec<&String> = requests.iter().filter(|l| l.contains("/blobs/")).collect();
    assert_eq!(
        blobs.len(),
        1,
        "only the changed bundle's blob is fetched: {requests:?}"
    );
    assert!(site.manifests()["drover-monitoring.yaml"].contains("node-exporter-v2"));
    assert_eq!(metric(&agent, "drover_polls_total{result=\"unchanged\"}"), 3.0);
    assert_eq!(metric(&agent, "drover_polls_total{result=\"updated\"}"), 2.0);
    assert_eq!(metric(&agent, "drover_index_version"), 2.0);
}

#[test]
fn failover_reads_the_mirror_when_the_primary_is_down_and_never_rolls_back() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    drover_e2e::copy_dir(&site.path("store"), &site.path("mirror"));
    let mirror = format!("file://{}", site.p("mirror"));
    // Held bound and not listening for the whole test: down, and nobody else's.
    let down_port = drover_e2e::down_port();
    let down = format!("http://127.0.0.1:{}/store/", down_port.port);

    // Primary down, mirror at version 1: applied from the mirror, the primary reported.
    let (code, out) = once(&site, &[&down, &mirror], &["--connect-timeout", "2s"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("version 1 from") && out.contains("mirror"), "{out}");
    assert!(out.contains("source problem") && out.contains(&down), "{out}");

    // Primary back with version 2, mirror lagging at 1: version 2 wins, the lag is reported.
    change_monitoring(&site, "node-exporter-v2");
    site.publish(&[]);
    let port = free_port();
    let nginx = nginx_on(site.dir.path(), &site.path("nginx"), port, "");
    let primary = format!("http://127.0.0.1:{port}/store/");
    let (code, out) = once(&site, &[&primary, &mirror], &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("version 2 from"), "{out}");
    assert!(out.contains("older version 1"), "{out}");
    let applied = site.sink_and_state();

    // Primary down again, only the lagging mirror left: nothing rolls back.
    drop(nginx);
    let (code, out) = once(&site, &[&primary, &mirror], &["--connect-timeout", "2s"]);
    assert_eq!(code, Some(3), "{out}");
    assert!(
        out.contains("older than the applied version") || out.contains("rollback"),
        "{out}"
    );
    assert!(site.sink_and_state() == applied, "nothing rolled back: {out}");
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(site.path("state/status.json")).unwrap()).unwrap();
    assert_eq!(status["stale"], true, "{status:#}");
    assert_eq!(status["indexVersion"], 2, "{status:#}");
}

#[test]
fn source_down_for_several_cycles_keeps_everything_reports_stale_and_recovers() {
    let mut served = Served::new("");
    let site = &served.site;
    let agent = start_daemon(site, &[&served.url()], &["--connect-timeout", "2s"]);
    agent.wait_first_cycle();
    let applied = site.sink_and_state();
    let (_, first) = agent.get("/status");
    let first: serde_json::Value = serde_json::from_str(&first).unwrap();
    let last_success = first["lastSuccess"].clone();
    assert_eq!(first["stale"], false, "{first:#}");

    served.stop();
    for _ in 0..3 {
        let summary = agent.sync();
        assert_eq!(summary["result"], "error", "{summary:#}");
    }
    let site = &served.site;
    assert!(
        site.sink_and_state() == applied,
        "nothing is deleted while the source is down"
    );
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(site.path("state/status.json")).unwrap()).unwrap();
    assert_eq!(status["stale"], true, "{status:#}");
    assert_eq!(
        status["staleSince"], last_success,
        "stale since the last success: {status:#}"
    );
    assert!(
        status["lastError"].as_str().unwrap().contains("127.0.0.1"),
        "{status:#}"
    );
    assert_eq!(status["bundles"].as_array().unwrap().len(), 3, "{status:#}");
    assert_eq!(metric(&agent, "drover_stale"), 1.0);
    assert_eq!(metric(&agent, "drover_polls_total{result=\"error\"}"), 3.0);
    assert!(agent.log().contains("keeping what is applied"), "{}", agent.log());

    served.restart("");
    let summary = agent.sync();
    assert_eq!(summary["result"], "unchanged", "{summary:#}");
    assert_eq!(metric(&agent, "drover_stale"), 0.0);
    let (_, now) = agent.get("/status");
    let now: serde_json::Value = serde_json::from_str(&now).unwrap();
    assert_eq!(now["stale"], false, "{now:#}");
    assert!(served.site.sink_and_state() == applied, "recovery changed nothing");
}

#[test]
fn trickling_and_silent_servers_cannot_stall_the_agent_past_its_timeouts() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    let timeouts = [
        "--read-timeout",
        "1s",
        "--request-timeout",
        "3s",
        "--blob-timeout",
        "3s",
    ];

    // Index endpoints that trickle or never answer: the file mirror still serves.
    let trickle = FaultyServer::start(&site.path("store"), |_| Behaviour::Trickle);
    let silent = FaultyServer::start(&site.path("store"), |_| Behaviour::Silent);
    let (code, out) = once(&site, &[&trickle.url, &silent.url, &site.store_url()], &timeouts);
    assert_eq!(code, Some(0), "{out}");
    let problems: Vec<&str> = out.lines().filter(|l| l.contains("source problem")).collect();
    assert_eq!(problems.len(), 2, "{out}");
    assert!(problems.iter().all(|p| p.contains("timed out")), "{out}");
    assert!(
        problems[0].contains(&trickle.url) && problems[1].contains(&silent.url),
        "{out}"
    );

    // A blob that trickles: that bundle fails with a timeout, nothing half-written lands.
    let site = Site::new().with_examples();
    site.publish(&[]);
    let slow_blobs = FaultyServer::start(&site.path("store"), |p| {
        if p.contains("/blobs/") {
            Behaviour::Trickle
        } else {
            Behaviour::Normal
        }
    });
    let (code, out) = once(&site, &[&slow_blobs.url], &timeouts);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("timed out"), "{out}");
    assert!(site.manifests().is_empty(), "{out}");
    let leftovers: Vec<String> = snapshot(&site.path("state/blobs")).into_keys().collect();
    assert!(leftovers.is_empty(), "no partial blob kept: {leftovers:?}");
}

#[test]
fn sigterm_stops_the_daemon_with_exit_0_even_mid_download() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    let agent_idle = {
        let mut agent = start_daemon(&site, &[&site.store_url()], &[]);
        agent.wait_first_cycle();
        agent.signal("TERM");
        agent.wait_exit(PATIENCE)
    };
    assert_eq!(agent_idle, Some(0));
    let applied = site.sink_and_state();

    change_monitoring(&site, "node-exporter-v2");
    site.publish(&[]);
    let slow = FaultyServer::start(&site.path("store"), |p| {
        if p.contains("/blobs/") {
            Behaviour::Trickle
        } else {
            Behaviour::Normal
        }
    });
    let mut agent = start_daemon(&site, &[&slow.url], &[]);
    wait_for("the blob download to start", PATIENCE, || {
        slow.requests().iter().any(|p| p.contains("/blobs/"))
    });
    agent.signal("TERM");
    assert_eq!(agent.wait_exit(PATIENCE), Some(0), "{}", agent.log());
    assert!(
        site.sink_and_state().0 == applied.0,
        "the interrupted update left the sink as it was"
    );
}

/// Adds (or rewrites) a ConfigMap naming `round` in the monitoring and web bundles, so the
/// next publish changes two manifest files.
fn change_round(site: &Site, round: usize) {
    for bundle in ["monitoring", "web"] {
        site.write(
            &format!("src/bundles/{bundle}/round.yaml"),
            &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: round\ndata:\n  round: \"{round}\"\n"),
        );
    }
}

/// The manifests directory without the agent's temporary (dot) files.
fn visible_files(site: &Site) -> std::collections::BTreeMap<String, Vec<u8>> {
    snapshot(&site.path("manifests"))
        .into_iter()
        .filter(|(n, _)| !n.starts_with('.'))
        .collect()
}

/// What a clean `--once` run of the current store writes (into `dir/`), and how long it took.
fn clean_run(site: &Site, dir: &str) -> (std::collections::BTreeMap<String, Vec<u8>>, Duration) {
    let started = std::time::Instant::now();
    let out = site1(AgentRun::once(site), &[&site.store_url()], &[])
        .under(site.path(dir))
        .run_within(PATIENCE);
    let took = started.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    (snapshot(&site.path(&format!("{dir}/manifests"))), took)
}

/// Where a kill landed, judged by what it left on disk. (The agent rewrites state.json
/// before the manifests, to record the version it is applying, and again after them.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Window {
    /// The agent ended before the signal.
    Finished,
    /// Nothing in the manifests or state.json had changed yet.
    BeforeAnyWrite,
    /// state.json rewritten, no changed manifest written yet.
    StateBeforeFiles,
    /// Some changed manifests written, others not: the kill landed mid-apply.
    BetweenFiles,
    /// Every changed manifest written, the agent not done.
    AfterFiles,
}

/// Which side of the manifest writes a window is on.
fn landing(window: Window) -> Landing {
    match window {
        Window::BeforeAnyWrite | Window::StateBeforeFiles => Landing::Early,
        Window::BetweenFiles => Landing::Inside,
        Window::AfterFiles | Window::Finished => Landing::Late,
    }
}

/// Checks what a kill left (every manifest is whole: byte for byte the file of the version
/// before or of the new one; state.json parses) and says which window it landed in.
fn classify(
    site: &Site,
    before: &(std::collections::BTreeMap<String, Vec<u8>>, Option<Vec<u8>>),
    new: &std::collections::BTreeMap<String, Vec<u8>>,
    ended: drover_e2e::Ended,
    round: usize,
) -> Window {
    let now = visible_files(site);
    for (name, bytes) in &now {
        assert!(
            Some(bytes) == before.0.get(name) || Some(bytes) == new.get(name),
            "round {round}: {name} is neither the old nor the new file:\n{}",
            String::from_utf8_lossy(bytes)
        );
    }
    let state = std::fs::read(site.path("state/state.json")).ok();
    if let Some(state) = &state {
        assert!(
            serde_json::from_slice::<serde_json::Value>(state).is_ok(),
            "round {round}: state.json is always whole"
        );
    }
    let changed: Vec<&String> = new.keys().filter(|n| before.0.get(*n) != new.get(*n)).collect();
    let written = changed.iter().filter(|n| now.get(**n) == new.get(**n)).count();
    if matches!(ended, drover_e2e::Ended::Finished) {
        Window::Finished
    } else if written == changed.len() {
        Window::AfterFiles
    } else if written > 0 {
        Window::BetweenFiles
    } else if state != before.1 {
        Window::StateBeforeFiles
    } else {
        Window::BeforeAnyWrite
    }
}

#[test]
fn sigkill_at_any_point_then_restart_converges() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    // Reference: what a clean run of the final version produces (published after the rounds).
    change_monitoring(&site, "node-exporter-v2");
    let reference = Site::new().with_examples();
    change_monitoring(&reference, "node-exporter-v2");

    // Killed mid-download.
    let slow = FaultyServer::start(&site.path("store"), |p| {
        if p.contains("/blobs/") {
            Behaviour::Trickle
        } else {
            Behaviour::Normal
        }
    });
    let agent = start_daemon(&site, &[&slow.url], &[]);
    wait_for("the blob download to start", PATIENCE, || {
        slow.requests().iter().any(|p| p.contains("/blobs/"))
    });
    agent.signal("KILL");
    drop(agent);

    // Killed at chosen points of cycles that each apply a new version changing two files.
    let mut kills = KillSearch::from_env();
    let seed = kills.seed();
    let mut round = 0;
    while round < 12 || (kills.inside() == 0 && round < 80) {
        change_round(&site, round);
        site.publish(&[]);
        let new = clean_run(&site, &format!("clean-{round}"));
        kills.calibrate(new.1);
        let before = (visible_files(&site), std::fs::read(site.path("state/state.json")).ok());
        let delay = kills.next_delay();
        let ended = site1(AgentRun::once(&site), &[&site.store_url()], &[]).kill_after(delay);
        let window = classify(&site, &before, &new.0, ended, round);
        kills.record(delay, format!("{window:?}"), landing(window));
        round += 1;
    }
    eprintln!(
        "kills per window after {round} rounds (seed {seed}): {:?}",
        kills.counts
    );
    assert!(
        kills.inside() > 0,
        "no kill landed while the manifests were being written (seed {seed}): {:?}",
        kills.counts
    );
    change_round(&reference, round - 1);
    reference.publish(&[]);
    let (code, out) = once(&reference, &[&reference.store_url()], &[]);
    assert_eq!(code, Some(0), "{out}");

    // The next full cycle converges to what a clean run produces.
    let (code, out) = once(&site, &[&site.store_url()], &[]);
    assert_eq!(code, Some(0), "{out}");
    let visible = |s: &Site| -> Vec<(String, String)> {
        s.manifests().into_iter().filter(|(n, _)| !n.starts_with('.')).collect()
    };
    assert_eq!(visible(&site), visible(&reference));
    let leftovers: Vec<String> = snapshot(&site.path("state/blobs"))
        .into_keys()
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(
        leftovers.is_empty(),
        "interrupted downloads are cleaned up: {leftovers:?}"
    );
}

#[test]
fn sighup_and_post_sync_run_a_cycle_at_once() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    let agent = start_daemon(&site, &[&site.store_url()], &[]);
    agent.wait_first_cycle();
    change_monitoring(&site, "node-exporter-v2");
    site.publish(&[]);
    agent.signal("HUP");
    wait_for("SIGHUP to apply version 2", PATIENCE, || {
        site.manifests()["drover-monitoring.yaml"].contains("node-exporter-v2")
    });
    change_monitoring(&site, "node-exporter-v3");
    site.publish(&[]);
    let summary = agent.sync();
    assert_eq!(summary["version"], 3, "{summary:#}");
    assert!(site.manifests()["drover-monitoring.yaml"].contains("node-exporter-v3"));
    let (code, body) = agent.get("/healthz");
    assert_eq!((code, body.trim()), (200, "ok"));
    let (code, body) = agent.get("/readyz");
    assert_eq!(code, 200, "{body}");
}

#[test]
fn metrics_count_verify_failures_and_fetched_bytes() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    let agent = start_daemon(&site, &[&site.store_url()], &[]);
    agent.wait_first_cycle();
    let fetched = metric(&agent, "drover_fetched_bytes_total");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(site.path("state/state.json")).unwrap()).unwrap();
    let mut expected =
        snapshot(&site.path("store"))["index.json"].len() + snapshot(&site.path("store"))["index.json.minisig"].len();
    for b in state["bundles"].as_object().unwrap().values() {
        let hex = b["digest"].as_str().unwrap().strip_prefix("sha256:").unwrap();
        expected += std::fs::read(site.path(&format!("store/blobs/sha256/{hex}")))
            .unwrap()
            .len();
    }
    assert_eq!(
        fetched as usize, expected,
        "first cycle reads the index, its signature and this cluster's blobs once"
    );
    assert_eq!(
        metric(&agent, "drover_bundle_state{bundle=\"web\",state=\"Applied\"}"),
        1.0
    );

    // Tamper with the index after signing: refused, counted, nothing changed.
    let index = site.path("store/index.json");
    let mut bytes = std::fs::read(&index).unwrap();
    let at = bytes.iter().position(|b| *b == b'"').unwrap();
    bytes.insert(at, b' ');
    std::fs::write(&index, bytes).unwrap();
    let summary = agent.sync();
    assert_eq!(summary["result"], "error", "{summary:#}");
    assert!(summary["error"].as_str().unwrap().contains("signature"), "{summary:#}");
    assert_eq!(metric(&agent, "drover_verify_failures_total"), 1.0);
    assert_eq!(metric(&agent, "drover_polls_total{result=\"error\"}"), 1.0);
    assert_eq!(metric(&agent, "drover_index_version"), 1.0);
    let (_, metrics) = agent.get("/metrics");
    assert!(metrics.contains("drover_cycle_duration_seconds_count 2"), "{metrics}");
    assert!(metrics.contains("drover_agent_info{"), "{metrics}");
}

/// nginx DAV location receiving agent reports under /reports/, listed as JSON.
const DAV: &str = "    location /reports/ {\n      dav_methods PUT;\n      create_full_put_path on;\n      \
                   client_max_body_size 1m;\n      autoindex on;\n      autoindex_format json;\n    }";

#[test]
fn status_report_lands_in_a_dav_directory_on_change_and_drover_status_reads_it() {
    let served = Served::new(DAV);
    let site = &served.site;
    std::fs::create_dir_all(site.path("reports")).unwrap();
    let reports = format!("http://127.0.0.1:{}/reports/", served.port);
    let agent = start_daemon(site, &[&served.url()], &["--report-url", &reports]);
    agent.wait_first_cycle();
    let report = site.path(&format!("reports/{CLUSTER}.json"));
    wait_for("the first report", PATIENCE, || report.exists());
    let sent: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(sent["kind"], "ClusterStatus", "{sent:#}");
    assert_eq!(sent["cluster"], CLUSTER);
    assert_eq!(sent["indexVersion"], 1);
    assert_eq!(sent["stale"], false);
    let states: Vec<&str> = sent["bundles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["Applied", "Applied", "Applied"], "{sent:#}");

    // Nothing changed: no new report (heartbeats are minutes apart).
    let puts = |log: &[String]| log.iter().filter(|l| l.starts_with("PUT /reports/")).count();
    assert_eq!(puts(&served.settled_log()), 1, "{:?}", served.log());
    assert_eq!(agent.sync()["result"], "unchanged");
    assert_eq!(
        puts(&served.settled_log()),
        1,
        "an unchanged cycle sends no report: {:?}",
        served.log()
    );

    // A change is reported at once.
    change_monitoring(site, "node-exporter-v2");
    site.publish(&[]);
    assert_eq!(agent.sync()["result"], "updated");
    assert_eq!(puts(&served.settled_log()), 2, "{:?}", served.log());
    let sent: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(sent["indexVersion"], 2, "{sent:#}");
    assert_eq!(metric(&agent, "drover_reports_total{result=\"sent\"}"), 2.0);

    // The fleet view reads the reports back through nginx's listing.
    let out = drover_e2e::drover(&["status", &reports, "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let fleet: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(fleet["totals"]["clusters"], 1, "{fleet:#}");
    assert_eq!(fleet["indexVersions"][0]["version"], 2, "{fleet:#}");
    let bundles = fleet["bundles"].as_array().unwrap();
    assert_eq!(bundles.len(), 3, "{fleet:#}");
    assert!(bundles.iter().all(|b| b["states"]["Applied"] == 1), "{fleet:#}");
}

#[test]
fn failed_report_never_fails_the_cycle() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    let nowhere_port = drover_e2e::down_port();
    let nowhere = format!("http://127.0.0.1:{}/reports/", nowhere_port.port);
    let (code, out) = once(
        &site,
        &[&site.store_url()],
        &["--report-url", &nowhere, "--connect-timeout", "2s"],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("status report not sent"), "{out}");
    assert_eq!(site.manifests().len(), 3, "{out}");
}

#[test]
fn https_source_with_a_private_ca_needs_ca_file_and_nothing_changes_without_it() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    let pki = site.path("pki");
    drover_e2e::test_pki(&pki);
    let tls_port = free_port();
    let tls = format!(
        "    listen 127.0.0.1:{tls_port} ssl;\n    ssl_certificate {p}/server.pem;\n    ssl_certificate_key {p}/server.key;",
        p = pki.display()
    );
    let _nginx = nginx_on(site.dir.path(), &site.path("nginx"), free_port(), &tls);
    let url = format!("https://127.0.0.1:{tls_port}/store/");

    // The private CA is not among the built-in roots: refused, nothing written.
    let (code, out) = once(&site, &[&url], &[]);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.to_lowercase().contains("certificate"), "{out}");
    assert!(site.manifests().is_empty(), "{out}");

    // Trusted with --ca-file: applied over TLS.
    let ca = pki.join("ca.pem");
    let (code, out) = once(&site, &[&url], &["--ca-file", ca.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(site.manifests().len(), 3, "{out}");

    // Or through $SSL_CERT_FILE, as the agent image sets it: a new version is read over TLS.
    change_monitoring(&site, "ssl-cert-file");
    site.publish(&[]);
    let out = site1(AgentRun::once(&site), &[&url], &[])
        .env("SSL_CERT_FILE", &ca)
        .run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let monitoring = &site.manifests()["drover-monitoring.yaml"];
    assert!(monitoring.contains("ssl-cert-file"), "{}", text(&out));
}
