//! Distribution: the fully static agent binary (alone in an empty chroot, syncing from a
//! store on loopback) and the agent's OCI image built by `drover image` without Docker,
//! read back by skopeo from a real docker-registry and exported as the docker-archive
//! tarball k3s imports from /var/lib/rancher/k3s/agent/images/.

use std::path::Path;

use drover_e2e::{drover_ok, drover_serve, require, run, snapshot, static_agent, text, AgentRun, Registry, Site};
use serde_json::Value;

const LABELS: &[&str] = &["env=prod", "region=eu", "monitoring=on"];

/// A site with the examples published, and the manifests a normal (dynamic) agent writes
/// for site-7 from it: what the static agent must write too.
fn published_site() -> Site {
    let site = Site::new().with_examples();
    site.publish(&[]);
    let out = AgentRun::once(&site).cluster("site-7").labels(LABELS).run();
    assert!(out.status.success(), "{}", text(&out));
    site
}

/// The static agent copied to `/drover-agent` of a root file system, with no flags yet.
fn rooted_agent() -> AgentRun {
    AgentRun::bare().program("/drover-agent")
}

/// Runs `agent` in `chroot CHROOT_ARGS…` (the test runs as root, as CI does).
fn chroot(chroot_args: &[&str], agent: &AgentRun) -> std::process::Output {
    agent
        .command_under(&require("chroot", "coreutils"), chroot_args)
        .output()
        .unwrap()
}

/// One cycle of the agent in the chroot, for site-7 reading `source`, with the key,
/// manifests and state at the root.
fn once(source: &str) -> AgentRun {
    rooted_agent()
        .source(source)
        .key("/keys/drover.pub")
        .cluster("site-7")
        .dir_sink("/manifests")
        .state_dir("/state")
        .labels(LABELS)
        .one_cycle()
}

#[test]
fn static_agent_is_statically_linked() {
    let agent = static_agent();
    let file = text(&run(&require("file", "file"), &[agent.to_str().unwrap()]));
    assert!(
        file.contains("statically linked") || file.contains("static-pie linked"),
        "{file}"
    );
    assert!(!file.contains("interpreter"), "a dynamic loader is named: {file}");
    let ldd = run(&require("ldd", "libc-bin"), &[agent.to_str().unwrap()]);
    let ldd = text(&ldd);
    assert!(
        ldd.contains("statically linked") || ldd.contains("not a dynamic executable"),
        "{ldd}"
    );
}

#[test]
fn static_agent_syncs_alone_in_an_empty_chroot() {
    let site = published_site();
    let root = site.path("chroot");
    std::fs::create_dir_all(root.join("keys")).unwrap();
    std::fs::copy(static_agent(), root.join("drover-agent")).unwrap();
    std::fs::copy(site.path("keys/drover.pub"), root.join("keys/drover.pub")).unwrap();
    // Nothing else: no libc, no /dev, no /etc, no /proc.
    let version = chroot(&[root.to_str().unwrap()], &rooted_agent().arg("--version"));
    assert!(version.status.success(), "{}", text(&version));
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("drover-agent "));

    let serve = drover_serve(&site.path("store"));
    assert!(serve.url.starts_with("http://127.0.0.1:"), "{}", serve.url);
    let out = chroot(&[root.to_str().unwrap()], &once(&serve.url));
    assert!(out.status.success(), "static agent in chroot: {}", text(&out));
    assert_eq!(snapshot(&root.join("manifests")), snapshot(&site.path("manifests")));
}

#[test]
fn static_agent_resolves_names_from_etc_hosts_without_nss() {
    // glibc's NSS cannot be loaded by a static binary; the pure-Rust resolver reads
    // /etc/hosts and /etc/resolv.conf itself.
    let site = published_site();
    let root = site.path("chroot");
    std::fs::create_dir_all(root.join("keys")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::copy(static_agent(), root.join("drover-agent")).unwrap();
    std::fs::copy(site.path("keys/drover.pub"), root.join("keys/drover.pub")).unwrap();
    // Both families: the resolver asks for A and AAAA, and an AAAA answer missing from
    // /etc/hosts would go to the (here absent) DNS server and wait for its timeout.
    std::fs::write(
        root.join("etc/hosts"),
        "127.0.0.1 store.drover.test\n::1 store.drover.test\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
    let serve = drover_serve(&site.path("store"));
    let url = serve.url.replace("127.0.0.1", "store.drover.test");
    let out = chroot(&[root.to_str().unwrap()], &once(&url));
    assert!(
        out.status.success(),
        "static agent resolving via /etc/hosts: {}",
        text(&out)
    );
    assert_eq!(snapshot(&root.join("manifests")), snapshot(&site.path("manifests")));
}

fn skopeo_json(args: &[&str]) -> Value {
    let out = run(&require("skopeo", "skopeo"), args);
    assert!(out.status.success(), "skopeo {args:?}: {}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The CA bundle put into the image (the host's, as by default).
fn ca_bundle() -> &'static str {
    let path = "/etc/ssl/certs/ca-certificates.crt";
    assert!(
        Path::new(path).is_file(),
        "{path} is needed by this test: apt-get install ca-certificates (bash tests/run.sh installs it)"
    );
    path
}

#[test]
fn agent_image_is_reproducible_pushes_and_exports_for_k3s_air_gap() {
    let site = Site::new();
    let registry = Registry::start(&site.path("registry"), None);
    let agent = static_agent();
    let agent = agent.to_str().unwrap();
    let (one, two) = (site.p("layout-1"), site.p("layout-2"));
    let repo = format!("{}/drover-agent", registry.host);
    let image = |layout: &str, extra: &[&str]| {
        let mut args = vec![
            "image",
            "--binary",
            agent,
            "--ca-bundle",
            ca_bundle(),
            "--tag",
            "0.1.0",
            "--layout",
            layout,
        ];
        args.extend_from_slice(extra);
        drover_ok(&args)
    };
    let printed = image(&one, &["--push", &repo, "--insecure"]);
    image(&two, &[]);
    let index = |dir: &str| -> Value {
        serde_json::from_slice(&std::fs::read(Path::new(dir).join("index.json")).unwrap()).unwrap()
    };
    let digest = index(&one)["manifests"][0]["digest"].as_str().unwrap().to_string();
    assert_eq!(digest, index(&two)["manifests"][0]["digest"], "two builds, two digests");
    assert!(printed.contains(&digest), "{printed}");

    let reference = format!("docker://{repo}:0.1.0");
    let inspect = skopeo_json(&["inspect", "--tls-verify=false", &reference]);
    assert_eq!(inspect["Digest"], digest.as_str());
    assert_eq!(inspect["Architecture"], "amd64");
    assert_eq!(inspect["Os"], "linux");
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 1);
    let config = skopeo_json(&["inspect", "--tls-verify=false", "--config", &reference]);
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/drover-agent"]));
    assert_eq!(config["config"]["Labels"]["org.opencontainers.image.version"], "0.1.0");

    // The air-gap tarball k3s imports at start from /var/lib/rancher/k3s/agent/images/.
    let archive = site.p("drover-agent-image.tar");
    let out = run(
        &require("skopeo", "skopeo"),
        &[
            "copy",
            "--src-tls-verify=false",
            &reference,
            &format!("docker-archive:{archive}:drover-agent:0.1.0"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let unpacked = site.path("archive");
    std::fs::create_dir_all(&unpacked).unwrap();
    tar::Archive::new(std::fs::File::open(&archive).unwrap())
        .unpack(&unpacked)
        .unwrap();
    let manifest: Value = serde_json::from_slice(&std::fs::read(unpacked.join("manifest.json")).unwrap()).unwrap();
    let entry = &manifest[0];
    let tags: Vec<&str> = entry["RepoTags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        tags.iter()
            .any(|t| *t == "drover-agent:0.1.0" || *t == "docker.io/library/drover-agent:0.1.0"),
        "{tags:?}"
    );
    let layers = entry["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);

    // The image's one layer is a working root file system: the agent runs in it as 65532.
    let rootfs = site.path("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    let layer = std::fs::read(unpacked.join(layers[0].as_str().unwrap())).unwrap();
    if layer.starts_with(&[0x1f, 0x8b]) {
        tar::Archive::new(flate2::read::GzDecoder::new(layer.as_slice()))
            .unpack(&rootfs)
            .unwrap();
    } else {
        tar::Archive::new(layer.as_slice()).unpack(&rootfs).unwrap();
    }
    let out = chroot(
        &["--userspec=65532:65532", rootfs.to_str().unwrap()],
        &rooted_agent().arg("--version"),
    );
    assert!(
        out.status.success(),
        "agent in the image's rootfs as 65532: {}",
        text(&out)
    );
}
