//! k3os-config/: both configs parse, use only keys k3os documents, carry what they must
//! (cluster mode: the add-on exactly as shipped; host mode: an OpenRC service that passes
//! `sh -n`), and the host-mode config, with its paths moved into a temporary root, runs
//! the static agent and fills the k3s manifests directory.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;

use drover_e2e::{drover_serve, repo_root, require, run, snapshot, static_agent, text, AgentRun, Site};
use serde_json::Value;

/// Top-level keys of a k3os config.yaml, from the k3os README's configuration reference
/// (https://github.com/rancher/k3os#configuration-reference; docs/install.md).
const TOP_KEYS: &[&str] = &[
    "ssh_authorized_keys",
    "write_files",
    "hostname",
    "init_cmd",
    "boot_cmd",
    "run_cmd",
    "k3os",
];
/// Keys under `k3os:`.
const K3OS_KEYS: &[&str] = &[
    "data_sources",
    "modules",
    "sysctl",
    "ntp_servers",
    "dns_nameservers",
    "wifi",
    "password",
    "server_url",
    "token",
    "labels",
    "k3s_args",
    "environment",
    "taints",
];
/// Keys of a `write_files` entry.
const WRITE_FILE_KEYS: &[&str] = &["encoding", "content", "owner", "path", "permissions"];

fn config(name: &str) -> Value {
    let path = repo_root().join("k3os-config").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn keys_outside(map: &Value, allowed: &[&str]) -> Vec<String> {
    map.as_object()
        .unwrap()
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .cloned()
        .collect()
}

/// `write_files` as path → content.
fn files(config: &Value) -> BTreeMap<String, String> {
    config["write_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["content"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn configs_use_only_keys_k3os_documents() {
    for name in ["cluster-mode.yaml", "host-mode.yaml"] {
        let config = config(name);
        assert_eq!(
            keys_outside(&config, TOP_KEYS),
            Vec::<String>::new(),
            "{name}: top level"
        );
        if let Some(k3os) = config.get("k3os") {
            assert_eq!(keys_outside(k3os, K3OS_KEYS), Vec::<String>::new(), "{name}: k3os");
        }
        for file in config["write_files"].as_array().unwrap() {
            assert_eq!(
                keys_outside(file, WRITE_FILE_KEYS),
                Vec::<String>::new(),
                "{name}: write_files"
            );
            assert!(
                file["permissions"].is_string(),
                "{name}: permissions must be a quoted string: {file}"
            );
        }
        for cmds in ["boot_cmd", "run_cmd", "init_cmd"] {
            if let Some(list) = config.get(cmds) {
                assert!(list.as_array().unwrap().iter().all(Value::is_string), "{name}: {cmds}");
            }
        }
    }
}

#[test]
fn cluster_mode_writes_the_shipped_add_on() {
    let files = files(&config("cluster-mode.yaml"));
    let shipped = std::fs::read_to_string(repo_root().join("manifests/drover.yaml")).unwrap();
    assert!(
        files.get("/var/lib/rancher/k3s/server/manifests/drover.yaml") == Some(&shipped),
        "cluster-mode.yaml's add-on differs from manifests/drover.yaml"
    );
}

#[test]
fn host_mode_openrc_script_passes_sh_n() {
    let files = files(&config("host-mode.yaml"));
    let script = &files["/etc/init.d/drover-agent"];
    assert!(script.starts_with("#!/sbin/openrc-run\n"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drover-agent");
    std::fs::write(&path, script).unwrap();
    let out = run(&require("sh", "dash"), &["-n", path.to_str().unwrap()]);
    assert!(out.status.success(), "sh -n: {}", text(&out));
}

/// The value of `NAME="…"` in an OpenRC script.
fn script_var<'a>(script: &'a str, name: &str) -> &'a str {
    script
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=\"")))
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no {name}=\"…\" in the OpenRC script"))
}

#[test]
fn host_mode_runs_the_static_agent_and_fills_the_manifests_directory() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    let expected = AgentRun::once(&site)
        .cluster("site-7")
        .labels(&["env=prod", "region=eu", "monitoring=on"])
        .run();
    assert!(expected.status.success(), "{}", text(&expected));
    let serve = drover_serve(&site.path("store"));

    // Lay the node out under a temporary root: write_files as k3os would, the binary where
    // the operator copies it, every absolute path of the agent's moved under the root.
    let root = site.path("node");
    let rooted = |s: &str| {
        ["/etc/drover", "/var/lib/", "/usr/local/", "/var/log/"]
            .iter()
            .fold(s.to_string(), |acc, p| {
                acc.replace(p, &format!("{}{p}", root.display()))
            })
    };
    let key = std::fs::read_to_string(site.path("keys/drover.pub")).unwrap();
    for (path, content) in files(&config("host-mode.yaml")) {
        let content = match path.as_str() {
            "/etc/drover/drover.pub" => key.clone(),
            "/etc/drover/config.yaml" => content
                .replace("https://drover.example.com/stores/stable", &serve.url)
                .replace("clusterName: my-cluster", "clusterName: site-7")
                .replace("labels: {}", "labels: {env: prod, region: eu, monitoring: \"on\"}"),
            _ => content,
        };
        let target = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, rooted(&content)).unwrap();
    }
    let bin = root.join("usr/local/bin/drover-agent");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::fs::copy(static_agent(), &bin).unwrap();

    let script = std::fs::read_to_string(root.join("etc/init.d/drover-agent")).unwrap();
    let command = script_var(&script, "command");
    assert_eq!(Path::new(command), bin);
    // One cycle instead of the daemon, and no listener on the fixed port 9090.
    let agent = AgentRun::bare()
        .program(command)
        .args(script_var(&script, "command_args").split_whitespace())
        .one_cycle();

    // As the dedicated user boot_cmd makes, with only the rights start_pre gives it.
    assert_eq!(script_var(&script, "command_user"), "drover:drover");
    let boot = config("host-mode.yaml")["boot_cmd"].to_string();
    assert!(boot.contains("-u 65532") && boot.contains("-g 65532"), "{boot}");
    let mode = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    // The temporary directories above the emulated root stand in for / and may be opened;
    // below the root, the node is laid out as a real one: /var, /var/lib, /var/log, /etc
    // and /usr/local 0755 root, and k3s's own directories 0700 root as k3s makes them, with
    // k3s's coredns.yaml in the manifests directory.
    let mut dir = Some(root.as_path());
    while let Some(d) = dir.filter(|d| d.starts_with(site.path(""))) {
        mode(d, 0o755);
        dir = d.parent();
    }
    for d in ["var/lib", "var/log"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for d in [
        "var",
        "var/lib",
        "var/log",
        "etc",
        "etc/drover",
        "usr",
        "usr/local",
        "usr/local/bin",
    ] {
        mode(&root.join(d), 0o755);
    }
    let manifests = root.join("var/lib/rancher/k3s/server/manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    for d in ["var/lib/rancher", "var/lib/rancher/k3s", "var/lib/rancher/k3s/server"] {
        mode(&root.join(d), 0o700);
    }
    let coredns = manifests.join("coredns.yaml");
    std::fs::write(&coredns, "# k3s's own add-on\n").unwrap();
    mode(&coredns, 0o600);

    // Then start_pre, as OpenRC runs it: its own `mkdir -p` and `checkpath` lines.
    let applied = apply_start_pre(&script);
    assert!(applied >= 5, "start_pre has {applied} mkdir/checkpath lines");
    let state = root.join("var/lib/drover");
    let perm = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(perm(&root.join("var/lib/rancher/k3s/server")), 0o710);
    assert_eq!(perm(&manifests), 0o1770);
    assert_eq!(perm(&state), 0o700);

    let out = agent.command().uid(65532).gid(65532).output().unwrap();
    assert!(out.status.success(), "host-mode agent as uid 65532: {}", text(&out));
    let mut written = snapshot(&manifests);
    assert_eq!(
        written.remove("coredns.yaml").as_deref(),
        Some(&b"# k3s's own add-on\n"[..])
    );
    assert!(!written.is_empty());
    assert_eq!(written, snapshot(&site.path("manifests")));
    assert!(state.join("state.json").is_file(), "state directory not used");
    // The sticky bit: the drover user may not remove k3s's files from the directory.
    let rm = std::process::Command::new(require("rm", "coreutils"))
        .arg("-f")
        .arg(&coredns)
        .uid(65532)
        .gid(65532)
        .output()
        .unwrap();
    assert!(!rm.status.success(), "uid 65532 removed coredns.yaml");
    assert!(coredns.is_file());
}

/// Runs the `mkdir -p` and `checkpath` lines of the OpenRC script's `start_pre` (paths
/// already moved into the temporary root) the way busybox mkdir and OpenRC's checkpath
/// do: checkpath makes the path if it is missing (never its parents), then sets mode and
/// owner, with drover → 65532 and root → 0. Returns how many lines it ran.
fn apply_start_pre(script: &str) -> usize {
    let body = script
        .split_once("start_pre() {")
        .and_then(|(_, rest)| rest.split_once("\n}"))
        .map(|(body, _)| body)
        .expect("start_pre() { … } in the OpenRC script");
    let id = |name: &str| match name {
        "root" => 0,
        "drover" => 65532,
        other => panic!("unknown user or group {other:?} in start_pre"),
    };
    let mut applied = 0;
    for line in body.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first() {
            Some(&"mkdir") => {
                assert_eq!(words.get(1), Some(&"-p"), "{line}");
                for path in &words[2..] {
                    std::fs::create_dir_all(path).unwrap();
                }
            }
            Some(&"checkpath") => {
                let path = Path::new(words.last().unwrap());
                let flag = |f: &str| {
                    let at = words
                        .iter()
                        .position(|w| *w == f)
                        .unwrap_or_else(|| panic!("{f} in {line}"));
                    words[at + 1]
                };
                if words.contains(&"--directory") {
                    if !path.is_dir() {
                        std::fs::create_dir(path).unwrap_or_else(|e| panic!("{line}: {e}"));
                    }
                } else {
                    assert!(words.contains(&"--file"), "{line}");
                    if !path.exists() {
                        std::fs::File::create(path).unwrap_or_else(|e| panic!("{line}: {e}"));
                    }
                }
                let (user, group) = flag("--owner").split_once(':').unwrap();
                std::os::unix::fs::chown(path, Some(id(user)), Some(id(group))).expect("chown needs root");
                let mode = u32::from_str_radix(flag("--mode"), 8).unwrap();
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
            }
            _ => continue,
        }
        applied += 1;
    }
    applied
}
