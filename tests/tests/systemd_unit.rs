//! systemd/: the host-mode unit passes `systemd-analyze verify` without a warning, keeps
//! its sandbox (the `systemd-analyze security` exposure recorded in docs/install.md), and,
//! installed by systemd/install.sh into a temporary root laid out as k3s leaves a node,
//! its own directory setup (ExecStartPre, StateDirectory=) and ExecStart run the static
//! agent as the dedicated user, which fills the k3s manifests directory and writes nothing
//! outside the unit's ReadWritePaths= and StateDirectory=.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use drover_e2e::{bin, drover_serve, repo_root, require, run, snapshot, static_agent, text, AgentRun, Site};

const UNIT: &str = "drover-agent.service";
/// Where the distribution keeps its units (Debian's systemd package), copied into the
/// temporary root so that `systemd-analyze verify --root` finds the targets ours names.
const SYSTEM_UNITS: &str = "/usr/lib/systemd/system";
/// The highest exposure docs/install.md may record (systemd calls below 2.0 "OK").
const MAX_EXPOSURE: f64 = 1.5;

fn systemd_file(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("systemd").join(name)).unwrap()
}

/// Every `KEY=value` of the unit's `[Service]` section, in order (a key may repeat).
fn service_settings(unit: &str) -> Vec<(String, String)> {
    let mut section = "";
    let mut settings = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            section = line;
            continue;
        }
        let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("not KEY=value: {line}"));
        if section == "[Service]" {
            settings.push((key.to_string(), value.to_string()));
        }
    }
    settings
}

/// The one value of `key` in `[Service]`.
fn setting(unit: &str, key: &str) -> String {
    let values: Vec<String> = service_settings(unit)
        .into_iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(values.len(), 1, "{key}= in [Service]: {values:?}");
    values.into_iter().next().unwrap()
}

/// An Exec*= command line as words, without systemd's prefix characters (`+`, `-`, …).
fn command_words(value: &str) -> Vec<String> {
    let value = value.trim_start_matches(['+', '-', '@', ':', '!']);
    assert!(
        !value.contains(['"', '\'', '$', '%']),
        "quoting or expansion in {value}"
    );
    value.split_whitespace().map(String::from).collect()
}

fn systemd_analyze(args: &[&str]) -> Output {
    run(&require("systemd-analyze", "systemd"), args)
}

/// `systemd/install.sh --root ROOT` with `config` and the site's key and `binary`.
fn install(site: &Site, root: &Path, binary: &Path, config: &str) {
    site.write("drover-config.yaml", config);
    let script = repo_root().join("systemd/install.sh");
    let out = run(
        &require("sh", "dash"),
        &[
            script.to_str().unwrap(),
            "--binary",
            binary.to_str().unwrap(),
            "--key",
            &site.p("keys/drover.pub"),
            "--config",
            &site.p("drover-config.yaml"),
            "--root",
            root.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "systemd/install.sh --root: {}", text(&out));
}

#[test]
fn unit_passes_systemd_analyze_verify_without_warnings() {
    let site = Site::new();
    let root = site.path("root");
    install(&site, &root, &bin("drover-agent"), &systemd_file("config.yaml"));
    // verify also checks that every Exec*= program exists in the root.
    let units = root.join(SYSTEM_UNITS.trim_start_matches('/'));
    std::fs::create_dir_all(units.parent().unwrap()).unwrap();
    // cp -a: the distribution's units include symbolic links (aliases, masks).
    let out = run(
        &require("cp", "coreutils"),
        &["-a", SYSTEM_UNITS, units.to_str().unwrap()],
    );
    assert!(out.status.success(), "cp -a {SYSTEM_UNITS}: {}", text(&out));
    let unit = systemd_file(UNIT);
    let pre = command_words(&setting(&unit, "ExecStartPre"));
    let tool = root.join(pre[0].trim_start_matches('/'));
    std::fs::create_dir_all(tool.parent().unwrap()).unwrap();
    std::fs::copy(require("systemd-tmpfiles", "systemd"), tool).unwrap();

    let out = systemd_analyze(&["verify", &format!("--root={}", root.display()), UNIT]);
    // verify exits 0 on an unknown key or a bad value and only warns: none is allowed.
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        text(&out)
    );
}

/// The overall exposure `systemd-analyze security --offline=yes` gives the unit.
fn exposure() -> f64 {
    let unit = repo_root().join("systemd").join(UNIT);
    let out = systemd_analyze(&["security", "--offline=yes", "--no-pager", unit.to_str().unwrap()]);
    assert!(out.status.success(), "systemd-analyze security: {}", text(&out));
    let report = String::from_utf8_lossy(&out.stdout);
    let line = report
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no overall exposure level in {report}"));
    let (_, score) = line.rsplit_once(": ").unwrap();
    score.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn unit_exposure_is_the_score_docs_record() {
    let score = exposure();
    assert!(score <= MAX_EXPOSURE, "exposure {score} > {MAX_EXPOSURE}");
    let docs = std::fs::read_to_string(repo_root().join("docs/install.md")).unwrap();
    let recorded = format!("exposure level **{score:.1}**");
    assert!(docs.contains(&recorded), "docs/install.md does not record `{recorded}`");
}

#[test]
fn unit_sandbox_allows_writes_only_to_the_configs_sink_and_state() {
    let unit = systemd_file(UNIT);
    let config: serde_json::Value = serde_norway::from_str(&systemd_file("config.yaml")).unwrap();
    let sink = config["sink"].as_str().unwrap().strip_prefix("dir:").unwrap();
    assert_eq!(setting(&unit, "ReadWritePaths"), sink);
    let state = config["stateDir"].as_str().unwrap();
    assert_eq!(format!("/var/lib/{}", setting(&unit, "StateDirectory")), state);
    assert_eq!(setting(&unit, "StateDirectoryMode"), "0700");
    for (key, value) in [
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("MemoryDenyWriteExecute", "yes"),
        ("User", "drover"),
        ("Group", "drover"),
    ] {
        assert_eq!(setting(&unit, key), value, "{key}=");
    }
    let filters: Vec<String> = service_settings(&unit)
        .into_iter()
        .filter(|(k, _)| k == "SystemCallFilter")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(
        filters.first().map(String::as_str),
        Some("@system-service"),
        "{filters:?}"
    );
    let exec = command_words(&setting(&unit, "ExecStart"));
    assert_eq!(exec[1..], ["--config", "/etc/drover/config.yaml"]);
    let sysusers = systemd_file("drover-agent.sysusers");
    assert!(
        sysusers.lines().any(|l| l.starts_with("u drover 65532 ")),
        "the unit's User=drover is not made by drover-agent.sysusers: {sysusers}"
    );
}

/// uid and gid of `name` in `root`'s /etc/passwd.
fn user_ids(root: &Path, name: &str) -> (u32, u32) {
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f[0] == name)
        .map(|f| (f[2].parse().unwrap(), f[3].parse().unwrap()))
        .unwrap_or_else(|| panic!("no user {name} in {}/etc/passwd: {passwd}", root.display()))
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Lays a node out under `root` as k3s leaves it: its directories 0700 root, its own
/// coredns.yaml in the manifests directory; the temporary directories above `root` stand
/// in for / and may be traversed. Returns the manifests directory.
fn k3s_node(site: &Site, root: &Path) -> PathBuf {
    let manifests = root.join("var/lib/rancher/k3s/server/manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let mut dir = Some(root);
    while let Some(d) = dir.filter(|d| d.starts_with(site.path(""))) {
        set_mode(d, 0o755);
        dir = d.parent();
    }
    for d in ["var", "var/lib"] {
        set_mode(&root.join(d), 0o755);
    }
    for d in [
        "var/lib/rancher",
        "var/lib/rancher/k3s",
        "var/lib/rancher/k3s/server",
        "var/lib/rancher/k3s/server/manifests",
    ] {
        set_mode(&root.join(d), 0o700);
    }
    let coredns = manifests.join("coredns.yaml");
    std::fs::write(&coredns, "# k3s's own add-on\n").unwrap();
    set_mode(&coredns, 0o600);
    manifests
}

/// Every file and directory under `root` except those under `except`: path → (mode, size).
fn tree(root: &Path, except: &[PathBuf]) -> BTreeMap<PathBuf, (u32, u64)> {
    let mut seen = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if except.iter().any(|e| path.starts_with(e)) {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path.clone());
            }
            seen.insert(path, (meta.mode(), meta.len()));
        }
    }
    seen
}

#[test]
fn installed_unit_runs_the_static_agent_as_its_user_and_writes_only_its_paths() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    let expected = AgentRun::once(&site)
        .cluster("site-7")
        .labels(&["env=prod", "region=eu", "monitoring=on"])
        .run();
    assert!(expected.status.success(), "{}", text(&expected));
    let serve = drover_serve(&site.path("store"));

    // The node, then the install sequence into it, with every absolute path of the
    // agent's (config, ExecStart) moved under the root.
    let root = site.path("node");
    let manifests = k3s_node(&site, &root);
    let rooted = |s: &str| {
        ["/etc/drover", "/var/lib/", "/usr/local/"]
            .iter()
            .fold(s.to_string(), |acc, p| {
                acc.replace(p, &format!("{}{p}", root.display()))
            })
    };
    let config = systemd_file("config.yaml")
        .replace("https://drover.example.com/stores/stable", &serve.url)
        .replace("clusterName: my-cluster", "clusterName: site-7")
        .replace("labels: {}", "labels: {env: prod, region: eu, monitoring: \"on\"}");
    install(&site, &root, &static_agent(), &rooted(&config));
    let unit = std::fs::read_to_string(root.join("etc/systemd/system").join(UNIT)).unwrap();
    assert_eq!(unit, systemd_file(UNIT), "install.sh changed the unit");
    let (uid, gid) = user_ids(&root, &setting(&unit, "User"));
    assert_eq!((uid, gid), (65532, 65532));

    // The unit's directory setup: its ExecStartPre (as root) against the root, then what
    // StateDirectory= and StateDirectoryMode= make systemd do.
    let pre = command_words(&setting(&unit, "ExecStartPre"));
    assert!(pre[0].ends_with("/systemd-tmpfiles"), "{pre:?}");
    let mut args = vec![format!("--root={}", root.display())];
    args.extend(pre[1..].iter().cloned());
    let out = run(
        &require("systemd-tmpfiles", "systemd"),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(out.status.success(), "ExecStartPre {pre:?}: {}", text(&out));
    let server = root.join("var/lib/rancher/k3s/server");
    assert_eq!((mode(&server), std::fs::metadata(&server).unwrap().gid()), (0o710, gid));
    assert_eq!(
        (mode(&manifests), std::fs::metadata(&manifests).unwrap().gid()),
        (0o1770, gid)
    );
    let state = root.join("var/lib").join(setting(&unit, "StateDirectory"));
    std::fs::create_dir_all(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(uid), Some(gid)).unwrap();
    set_mode(
        &state,
        u32::from_str_radix(&setting(&unit, "StateDirectoryMode"), 8).unwrap(),
    );

    // ExecStart, as the unit's user: one cycle instead of the daemon, no listener on 9090.
    let writable = vec![PathBuf::from(rooted(&setting(&unit, "ReadWritePaths"))), state.clone()];
    let before = tree(&root, &writable);
    let exec = command_words(&rooted(&setting(&unit, "ExecStart")));
    let out = std::process::Command::new(&exec[0])
        .args(&exec[1..])
        .args(["--once", "--listen", "off"])
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap();
    assert!(out.status.success(), "ExecStart as uid {uid}: {}", text(&out));
    let mut written = snapshot(&manifests);
    assert_eq!(
        written.remove("coredns.yaml").as_deref(),
        Some(&b"# k3s's own add-on\n"[..])
    );
    assert!(!written.is_empty());
    assert_eq!(written, snapshot(&site.path("manifests")));
    assert!(state.join("state.json").is_file(), "state directory not used");
    assert_eq!(
        tree(&root, &writable),
        before,
        "the agent changed files outside ReadWritePaths= and StateDirectory="
    );

    // The sticky bit: the agent's user may not remove k3s's files from the directory.
    let rm = std::process::Command::new(require("rm", "coreutils"))
        .arg("-f")
        .arg(manifests.join("coredns.yaml"))
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap();
    assert!(!rm.status.success(), "uid {uid} removed coredns.yaml");
}

/// The system calls a `SystemCallFilter=` entry names, groups (`@…`) expanded with
/// `systemd-analyze syscall-filter`, into `out`.
fn expand_syscalls(entry: &str, out: &mut BTreeSet<String>) {
    if !entry.starts_with('@') {
        out.insert(entry.to_string());
        return;
    }
    let listing = systemd_analyze(&["syscall-filter", "--no-pager", entry]);
    assert!(listing.status.success(), "syscall-filter {entry}: {}", text(&listing));
    for line in String::from_utf8_lossy(&listing.stdout).lines().skip(1) {
        let word = line.trim();
        if !word.is_empty() && !word.starts_with('#') {
            expand_syscalls(word, out);
        }
    }
}

/// What the unit's `SystemCallFilter=` lines allow: the first (an allow-list) minus every
/// `~` line after it.
fn allowed_syscalls(unit: &str) -> BTreeSet<String> {
    let filters: Vec<String> = service_settings(unit)
        .into_iter()
        .filter(|(k, _)| k == "SystemCallFilter")
        .map(|(_, v)| v)
        .collect();
    let (allow, deny) = filters.split_first().expect("a SystemCallFilter= line");
    assert!(
        !allow.starts_with('~'),
        "the first SystemCallFilter= is not an allow-list"
    );
    let mut allowed = BTreeSet::new();
    allow.split_whitespace().for_each(|e| expand_syscalls(e, &mut allowed));
    let mut denied = BTreeSet::new();
    for line in deny {
        let line = line.strip_prefix('~').expect("later SystemCallFilter= lines deny");
        line.split_whitespace().for_each(|e| expand_syscalls(e, &mut denied));
    }
    allowed.difference(&denied).cloned().collect()
}

#[test]
fn static_agent_makes_only_system_calls_the_units_filter_allows() {
    // The sandbox cannot be enforced here (systemd is not PID 1), so check its tightest
    // part against the agent itself: every system call of a cycle over HTTP, traced.
    let site = Site::new().with_examples();
    site.publish(&[]);
    let serve = drover_serve(&site.path("store"));
    let trace = site.p("trace");
    let (key, sink, state) = (
        site.p("keys/drover.pub"),
        format!("dir:{}", site.p("manifests")),
        site.p("state"),
    );
    let agent = static_agent();
    let mut args = vec!["-f", "-qq", "-o", &trace, agent.to_str().unwrap()];
    args.extend(["--source", &serve.url, "--key", &key, "--cluster-name", "site-7"]);
    args.extend(["--sink", &sink, "--state-dir", &state, "--listen", "off", "--once"]);
    for l in ["env=prod", "region=eu", "monitoring=on"] {
        args.extend(["--label", l]);
    }
    let out = run(&require("strace", "strace"), &args);
    assert!(out.status.success(), "agent under strace: {}", text(&out));
    // Lines are `PID name(args…) = result`; the exec of the agent itself is strace's.
    let used: BTreeSet<String> = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .nth(1)?
                .split_once('(')
                .map(|(name, _)| name.to_string())
        })
        .filter(|name| !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .collect();
    assert!(
        used.contains("connect") && used.contains("openat"),
        "trace looks incomplete: {used:?}"
    );
    let allowed = allowed_syscalls(&systemd_file(UNIT));
    let refused: Vec<&String> = used.difference(&allowed).collect();
    assert!(
        refused.is_empty(),
        "the unit's SystemCallFilter= refuses {refused:?} (of {used:?})"
    );
}
