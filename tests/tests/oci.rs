//! Stores in a real OCI registry (Debian's `docker-registry`, the CNCF distribution
//! registry): `drover sync` to and from `oci://`, agents reading `oci://` sources, read back
//! by an independent client (skopeo), with basic auth and registry garbage collection.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use drover_e2e::{bin, drover, require, snapshot, text, wait_for, AgentRun, Behaviour, FaultyServer, Registry, Site};

const CLUSTER: &str = "site-7";
const LABELS: &[&str] = &["env=prod", "region=eu", "monitoring=on"];

fn sync(args: &[&str]) -> std::process::Output {
    let mut all = vec!["sync"];
    all.extend_from_slice(args);
    drover(&all)
}

fn sync_ok(args: &[&str]) -> String {
    let out = sync(args);
    assert_eq!(out.status.code(), Some(0), "drover sync {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn channel(registry: &Registry) -> String {
    format!("oci://{}/fleet/edge:stable", registry.host)
}

/// Runs `drover-agent --once` reading `source` into `dir`/manifests.
fn agent_once(site: &Site, dir: &Path, source: &str, extra: &[&str]) -> std::process::Output {
    AgentRun::once(site)
        .source(source)
        .cluster(CLUSTER)
        .labels(LABELS)
        .under(dir)
        .args(extra)
        .run()
}

fn change_monitoring(site: &Site, marker: &str) {
    let path = site.path("src/bundles/monitoring/node-exporter.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        yaml.replacen("name: node-exporter\n", &format!("name: {marker}\n"), 1),
    )
    .unwrap();
}

fn published() -> Site {
    let site = Site::new().with_examples();
    site.publish(&[]);
    site
}

#[test]
fn dir_to_registry_to_dir_round_trip_is_byte_identical_and_skopeo_reads_it() {
    let site = published();
    let registry = Registry::start(&site.path("registry"), None);
    let key = site.p("keys/drover.pub");
    let oci = channel(&registry);
    sync_ok(&[&site.p("store"), &oci, "--key", &key, "--insecure"]);
    sync_ok(&[&oci, &site.p("copy"), "--key", &key, "--insecure"]);
    assert!(
        snapshot(&site.path("copy")) == snapshot(&site.path("store")),
        "round trip is byte-identical"
    );

    // An independent OCI client sees a drover channel: artifactType, index, signature and
    // every blob of the store as layers with drover's media types.
    let skopeo = require("skopeo", "skopeo");
    let out = Command::new(skopeo)
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/fleet/edge:stable", registry.host))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        manifest["artifactType"], "application/vnd.drover.channel.v1",
        "{manifest:#}"
    );
    let layers = manifest["layers"].as_array().unwrap();
    let store_blobs = snapshot(&site.path("store/blobs/sha256"));
    assert_eq!(layers.len(), 2 + store_blobs.len(), "{manifest:#}");
    assert_eq!(layers[0]["mediaType"], "application/vnd.drover.index.v1+json");
    assert_eq!(layers[1]["mediaType"], "application/vnd.drover.index.sig.v1");
    for layer in &layers[2..] {
        assert_eq!(layer["mediaType"], "application/vnd.drover.bundle.v1.tar+gzip");
        let hex = layer["digest"].as_str().unwrap().strip_prefix("sha256:").unwrap();
        assert!(store_blobs.contains_key(hex), "bundle digests are the store's: {hex}");
    }

    // A second sync has nothing to upload: no upload session is opened.
    let before = registry.mark();
    let out = sync_ok(&[&site.p("store"), &oci, "--key", &key, "--insecure"]);
    let uploads: Vec<String> = registry
        .requests_since(before)
        .iter()
        .filter(|r| r.starts_with("POST ") || r.starts_with("PUT "))
        .cloned()
        .collect();
    assert!(
        uploads.is_empty(),
        "nothing uploaded the second time: {uploads:?}\n{out}"
    );
}

#[test]
fn agent_from_registry_applies_what_it_applies_from_http_and_polls_with_one_head() {
    let site = published();
    let registry = Registry::start(&site.path("registry"), None);
    let oci = channel(&registry);
    sync_ok(&[
        &site.p("store"),
        &oci,
        "--key",
        &site.p("keys/drover.pub"),
        "--insecure",
    ]);
    let served = drover_e2e::drover_serve(&site.path("store"));

    let out = agent_once(&site, &site.path("via-http"), &served.url, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = agent_once(&site, &site.path("via-oci"), &oci, &["--insecure-registry"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        snapshot(&site.path("via-oci/manifests")) == snapshot(&site.path("via-http/manifests")),
        "same manifests from both transports"
    );

    // Daemon: an unchanged poll is one HEAD of the manifest.
    let agent = AgentRun::daemon(&site)
        .source(&oci)
        .arg("--insecure-registry")
        .cluster(CLUSTER)
        .labels(LABELS)
        .under(site.path("via-oci"))
        .start();
    agent.wait_first_cycle();
    let before = registry.mark();
    assert_eq!(agent.sync()["result"], "unchanged");
    let requests = registry.requests_since(before);
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(
        requests[0].starts_with("HEAD /v2/fleet/edge/manifests/stable "),
        "{requests:?}"
    );
    assert!(requests[0].ends_with(" 200"), "{requests:?}");

    // A new channel version is picked up through the registry, fetching one new bundle.
    change_monitoring(&site, "node-exporter-v2");
    site.publish(&[]);
    sync_ok(&[
        &site.p("store"),
        &oci,
        "--key",
        &site.p("keys/drover.pub"),
        "--insecure",
    ]);
    let before = registry.mark();
    let summary = agent.sync();
    assert_eq!(summary["result"], "updated", "{summary:#}");
    let blob_gets = registry
        .requests_since(before)
        .iter()
        .filter(|r| r.starts_with("GET /v2/fleet/edge/blobs/"))
        .count();
    assert_eq!(blob_gets, 3, "index, signature and the one changed bundle");
}

#[test]
fn tampered_source_blob_is_refused_and_neither_it_nor_a_tag_reaches_the_registry() {
    let site = published();
    let registry = Registry::start(&site.path("registry"), None);
    let blobs = site.path("store/blobs/sha256");
    let victim = std::fs::read_dir(&blobs).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&victim).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&victim, bytes).unwrap();
    let out = sync(&[
        &site.p("store"),
        &channel(&registry),
        "--key",
        &site.p("keys/drover.pub"),
        "--insecure",
    ]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("does not match its digest"), "{}", text(&out));
    let manifests: Vec<String> = registry
        .requests_since(0)
        .into_iter()
        .filter(|r| r.starts_with("PUT /v2/fleet/edge/manifests/"))
        .collect();
    assert!(manifests.is_empty(), "no channel tag written: {manifests:?}");
    // Blobs verified before the tampered one may already be uploaded (docs/air-gap.md: an
    // interrupted push leaves blobs no manifest references); the tampered one never is.
    let victim_hex = victim.file_name().unwrap().to_str().unwrap().to_string();
    let tampered_hex = drover_e2e::sha256_hex(&std::fs::read(&victim).unwrap());
    let uploads_of_victim: Vec<String> = registry
        .requests()
        .into_iter()
        .filter(|r| r.contains(&victim_hex) && !r.starts_with("HEAD "))
        .collect();
    assert!(
        uploads_of_victim.is_empty(),
        "tampered blob sent: {uploads_of_victim:?}"
    );
    // The access log can lag the registry's work; its storage cannot.
    let stored = snapshot(&site.path("registry/data"));
    for (path, bytes) in &stored {
        assert!(!path.contains("/_manifests/"), "a manifest or tag was stored: {path}");
        assert!(!path.contains(&victim_hex), "the tampered blob was stored: {path}");
        assert_ne!(
            drover_e2e::sha256_hex(bytes),
            tampered_hex,
            "tampered bytes stored at {path}"
        );
    }
}

#[test]
fn interrupted_push_leaves_the_old_channel_and_a_rerun_completes() {
    let site = published();
    let registry = Registry::start(&site.path("registry"), None);
    let oci = channel(&registry);
    let key = site.p("keys/drover.pub");
    sync_ok(&[&site.p("store"), &oci, "--key", &key, "--insecure"]);
    sync_ok(&[&oci, &site.p("v1"), "--key", &key, "--insecure"]);

    change_monitoring(&site, "node-exporter-v2");
    site.publish(&[]);
    let slow = FaultyServer::start(&site.path("store"), |p| {
        if p.contains("/blobs/") {
            Behaviour::Trickle
        } else {
            Behaviour::Normal
        }
    });
    let mut child = Command::new(bin("drover"))
        .args(["sync", &slow.url, &oci, "--key", &key, "--insecure"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the blob download to start", Duration::from_secs(60), || {
        slow.requests().iter().any(|p| p.contains("/blobs/"))
    });
    child.kill().unwrap();
    child.wait().unwrap();

    // Still version 1, whole.
    sync_ok(&[&oci, &site.p("after-kill"), "--key", &key, "--insecure"]);
    assert!(
        snapshot(&site.path("after-kill")) == snapshot(&site.path("v1")),
        "old channel intact"
    );
    // Re-run completes.
    sync_ok(&[&site.p("store"), &oci, "--key", &key, "--insecure"]);
    sync_ok(&[&oci, &site.p("v2"), "--key", &key, "--insecure"]);
    let (v2, store) = (snapshot(&site.path("v2")), snapshot(&site.path("store")));
    assert!(v2["index.json"] == store["index.json"], "new channel complete");
    for (name, bytes) in &v2 {
        assert!(store.get(name) == Some(bytes), "{name} is the store's");
    }
    let out = drover(&["verify", &site.p("v2"), "--key", &key]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn basic_auth_registry_needs_credentials_from_flags_or_docker_config() {
    let site = published();
    let htpasswd = require("htpasswd", "apache2-utils");
    let out = Command::new(htpasswd)
        .args(["-Bbn", "robot", "s3cret"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    std::fs::write(site.path("htpasswd"), &out.stdout).unwrap();
    let registry = Registry::start(&site.path("registry"), Some(&site.path("htpasswd")));
    let oci = channel(&registry);
    let key = site.p("keys/drover.pub");

    let out = sync(&[&site.p("store"), &oci, "--key", &key, "--insecure"]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("user name and password"), "{}", text(&out));

    std::fs::write(site.path("password"), "s3cret\n").unwrap();
    sync_ok(&[
        &site.p("store"),
        &oci,
        "--key",
        &key,
        "--insecure",
        "--username",
        "robot",
        "--password-file",
        &site.p("password"),
    ]);

    // The agent takes credentials from a docker config.json (a dockerconfigjson Secret).
    let auth = {
        let out = Command::new("base64")
            .arg("-w0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        out.stdin.as_ref().unwrap().write_all(b"robot:s3cret").unwrap();
        String::from_utf8(out.wait_with_output().unwrap().stdout).unwrap()
    };
    std::fs::write(
        site.path("config.json"),
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, registry.host),
    )
    .unwrap();
    let out = agent_once(
        &site,
        &site.path("cluster"),
        &oci,
        &["--insecure-registry", "--registry-config", &site.p("config.json")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(snapshot(&site.path("cluster/manifests")).len(), 3);
}

#[test]
fn registry_garbage_collection_keeps_every_bundle_of_the_channel() {
    let site = published();
    let registry = Registry::start(&site.path("registry"), None);
    let oci = channel(&registry);
    let key = site.p("keys/drover.pub");
    sync_ok(&[&site.p("store"), &oci, "--key", &key, "--insecure"]);
    change_monitoring(&site, "node-exporter-v2");
    site.publish(&[]);
    sync_ok(&[&site.p("store"), &oci, "--key", &key, "--insecure"]);

    let gc = Command::new(require("docker-registry", "docker-registry"))
        .args([
            "garbage-collect",
            "--delete-untagged",
            registry.config.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(gc.status.success(), "{}", text(&gc));
    let gc_log = text(&gc);
    assert!(
        gc_log.contains("blob eligible for deletion"),
        "the old manifest's own blobs go: {gc_log}"
    );
    sync_ok(&[&oci, &site.p("after-gc"), "--key", &key, "--insecure"]);
    let copied = snapshot(&site.path("after-gc/blobs/sha256"));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(site.path("store/index.json")).unwrap()).unwrap();
    for bundle in index["bundles"].as_array().unwrap() {
        for target in bundle["targets"].as_array().unwrap() {
            let hex = target["digest"].as_str().unwrap().strip_prefix("sha256:").unwrap();
            assert!(
                copied.contains_key(hex),
                "bundle blob {hex} survived garbage collection"
            );
        }
    }
}

#[test]
fn registry_to_registry_sync_mounts_within_a_registry_and_copies_across() {
    let site = published();
    let a = Registry::start(&site.path("registry-a"), None);
    let b = Registry::start(&site.path("registry-b"), None);
    let key = site.p("keys/drover.pub");
    let source = channel(&a);
    sync_ok(&[&site.p("store"), &source, "--key", &key, "--insecure"]);

    // Another repository of the same registry: bundles are mounted, not uploaded again.
    let mirror = format!("oci://{}/mirror/edge:stable", a.host);
    let before = a.mark();
    sync_ok(&[&source, &mirror, "--key", &key, "--insecure"]);
    let requests = a.requests_since(before);
    let mounts = requests
        .iter()
        .filter(|r| r.contains("mount=") && r.ends_with(" 201"))
        .count();
    let bundles = snapshot(&site.path("store/blobs/sha256")).len();
    assert_eq!(mounts, bundles, "every bundle mounted: {requests:?}");

    // Another registry: copied, and the copy reads back byte-identical.
    let far = channel(&b);
    sync_ok(&[&mirror, &far, "--key", &key, "--insecure"]);
    sync_ok(&[&far, &site.p("copy"), "--key", &key, "--insecure"]);
    assert!(
        snapshot(&site.path("copy")) == snapshot(&site.path("store")),
        "byte-identical across registries"
    );
}

#[test]
fn tls_registry_with_a_private_ca_and_client_certificates() {
    let site = published();
    let pki = site.path("pki");
    drover_e2e::test_pki(&pki);
    let tls = format!(
        "  tls:\n    certificate: {p}/server.pem\n    key: {p}/server.key\n    clientcas:\n      - {p}/ca.pem\n",
        p = pki.display()
    );
    let registry = Registry::start_with(&site.path("registry"), None, &tls);
    let oci = channel(&registry);
    let key = site.p("keys/drover.pub");
    let (ca_file, client_cert) = (pki.join("ca.pem"), pki.join("client-bundle.pem"));
    let (ca_file, client_cert) = (ca_file.to_str().unwrap(), client_cert.to_str().unwrap());

    // The private CA is not trusted by default.
    let out = sync(&[&site.p("store"), &oci, "--key", &key]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).to_lowercase().contains("certificate"), "{}", text(&out));
    // Trusted CA, but no client certificate: the registry refuses the handshake.
    let out = sync(&[&site.p("store"), &oci, "--key", &key, "--ca-file", ca_file]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("manifests/stable: error sending request"),
        "fails at the TLS handshake for the tag, not later: {}",
        text(&out)
    );
    // Both: the channel is pushed, and an agent with the same options applies it.
    sync_ok(&[
        &site.p("store"),
        &oci,
        "--key",
        &key,
        "--ca-file",
        ca_file,
        "--client-cert",
        client_cert,
    ]);
    let out = agent_once(
        &site,
        &site.path("cluster"),
        &oci,
        &["--registry-ca-file", ca_file, "--registry-client-cert", client_cert],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(snapshot(&site.path("cluster/manifests")).len(), 3);
}
