//! The main path: publish the examples, serve them (drover serve, real nginx, file://),
//! run the agent --once, and check the manifests directory holds exactly the targeted
//! bundles, substituted; then change and un-target bundles.

use drover_e2e::{drover_serve, nginx, text, AgentRun, Site};

const SITE7: &[&str] = &["env=prod", "region=eu", "monitoring=on"];

/// The agent of site-7 with its usual labels.
fn site7(site: &Site) -> AgentRun {
    AgentRun::once(site).cluster("site-7").labels(SITE7)
}

fn assert_full_site7(site: &Site) {
    let m = site.manifests();
    let names: Vec<&str> = m.keys().map(String::as_str).collect();
    assert_eq!(names, ["drover-base.yaml", "drover-monitoring.yaml", "drover-web.yaml"]);
    let web = &m["drover-web.yaml"];
    assert!(web.contains("replicas: 5"), "site-7 gets its variant:\n{web}");
    assert!(
        web.contains("value: site-7") && web.contains("value: eu"),
        "substituted:\n{web}"
    );
    assert!(!web.contains("${cluster"), "no variable left:\n{web}");
    assert!(web.contains("namespace: web"), "bundle namespace applied:\n{web}");
    assert!(m["drover-monitoring.yaml"].contains("cluster: site-7"));
}

#[test]
fn agent_applies_targeted_bundles_served_by_drover_serve() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    let server = drover_serve(&site.path("store"));
    let out = site7(&site).source(&server.url).run();
    assert!(out.status.success(), "{}", text(&out));
    assert_full_site7(&site);
}

#[test]
fn agent_applies_targeted_bundles_served_by_nginx() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    let server = nginx(&site.path("store"), &site.path("nginx"));
    let out = site7(&site).source(&server.url).run();
    assert!(out.status.success(), "{}", text(&out));
    assert_full_site7(&site);
}

#[test]
fn agent_applies_from_a_file_store_like_a_usb_stick() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    let out = site7(&site).run();
    assert!(out.status.success(), "{}", text(&out));
    assert_full_site7(&site);
}

#[test]
fn cluster_gets_only_what_its_labels_select() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    let out = AgentRun::once(&site)
        .cluster("lab-3")
        .labels(&["env=lab", "monitoring=on"])
        .run();
    assert!(out.status.success(), "{}", text(&out));
    let m = site.manifests();
    assert_eq!(
        m.keys().collect::<Vec<_>>(),
        ["drover-base.yaml"],
        "lab: no web (env!=prod), no monitoring (NotIn lab)"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("NotTargeted"), "{stdout}");
}

#[test]
fn prod_cluster_other_than_site7_gets_the_default_variant() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    let out = AgentRun::once(&site)
        .cluster("site-9")
        .labels(&["env=prod", "region=us"])
        .run();
    assert!(out.status.success(), "{}", text(&out));
    let web = &site.manifests()["drover-web.yaml"];
    assert!(
        web.contains("replicas: 2") && web.contains("value: site-9") && web.contains("value: us"),
        "{web}"
    );
}

#[test]
fn unchanged_index_rewrites_nothing() {
    use std::os::unix::fs::MetadataExt;
    let site = Site::new().with_examples();
    site.publish(&[]);
    assert!(site7(&site).run().status.success());
    let inode = |f: &str| std::fs::metadata(site.path("manifests").join(f)).unwrap().ino();
    let before: Vec<u64> = ["drover-base.yaml", "drover-web.yaml"]
        .iter()
        .map(|f| inode(f))
        .collect();
    let stamps_before = drover_e2e::stamps(&site.path("manifests"));
    // A re-publish of the same input bumps the version but not a single blob.
    let out = site.publish(&[]);
    assert!(out.contains("0 new blobs"), "{out}");
    let run = site7(&site).run();
    assert!(run.status.success(), "{}", text(&run));
    let after: Vec<u64> = ["drover-base.yaml", "drover-web.yaml"]
        .iter()
        .map(|f| inode(f))
        .collect();
    assert_eq!(before, after, "files must not be replaced (k3s would re-apply them)");
    // Nor written in place, nor touched: k3s re-applies a file when its mtime changes.
    assert_eq!(
        stamps_before,
        drover_e2e::stamps(&site.path("manifests")),
        "nothing written"
    );
    assert!(String::from_utf8_lossy(&run.stdout).contains("version 2"));
}

#[test]
fn changed_bundle_is_rewritten_and_untargeted_bundle_becomes_a_tombstone() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    assert!(site7(&site).run().status.success());
    // New image for web; monitoring now only for env=staging clusters.
    let dep = site.path("src/bundles/web/site-7/deployment.yaml");
    let text_before = std::fs::read_to_string(&dep).unwrap();
    std::fs::write(&dep, text_before.replace("nginx:1.27-alpine", "nginx:1.28-alpine")).unwrap();
    site.write(
        "src/bundles/monitoring/bundle.yaml",
        "namespace: monitoring\ntargets:\n  - clusterSelector: {matchLabels: {env: staging}}\n",
    );
    site.publish(&[]);
    let out = site7(&site).run();
    assert!(out.status.success(), "{}", text(&out));
    let m = site.manifests();
    assert!(m["drover-web.yaml"].contains("nginx:1.28-alpine"));
    let tomb = &m["drover-monitoring.yaml"];
    drover_e2e::assert_tombstone(tomb, "monitoring");
    assert!(
        tomb.lines().all(|l| l.starts_with('#')),
        "tombstone holds no objects:\n{tomb}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Removed"));
}

#[test]
fn locally_edited_manifest_is_restored_on_the_next_cycle() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    assert!(site7(&site).run().status.success());
    let good = site.manifests()["drover-web.yaml"].clone();
    site.write("manifests/drover-web.yaml", "# someone edited this by hand\n");
    std::fs::remove_file(site.path("manifests/drover-base.yaml")).unwrap();
    let out = site7(&site).run();
    assert!(out.status.success(), "{}", text(&out));
    let m = site.manifests();
    assert_eq!(m["drover-web.yaml"], good);
    assert!(m.contains_key("drover-base.yaml"));
}

#[test]
fn agent_never_touches_files_it_did_not_write() {
    let site = Site::new().with_examples();
    site.write("manifests/traefik.yaml", "# k3s packaged component\n");
    site.write(
        "manifests/drover-unrelated.yaml",
        "# written by an operator, not in the index\n",
    );
    site.publish(&[]);
    assert!(site7(&site).run().status.success());
    let m = site.manifests();
    assert_eq!(m["traefik.yaml"], "# k3s packaged component\n");
    assert_eq!(
        m["drover-unrelated.yaml"],
        "# written by an operator, not in the index\n"
    );
}

#[test]
fn drover_verify_and_targets_explain_the_store() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    let verify = drover_e2e::drover_ok(&["verify", &site.p("store"), "--key", &site.p("keys/drover.pub")]);
    assert!(verify.contains("3 bundles, 4 blobs verified"), "{verify}");
    let targets = drover_e2e::drover_ok(&[
        "targets",
        &site.p("store"),
        "--key",
        &site.p("keys/drover.pub"),
        "--cluster-name",
        "lab-3",
        "--label",
        "env=lab",
    ]);
    let web = targets
        .lines()
        .find(|l| l.trim_start().starts_with("web"))
        .expect("web line");
    assert!(web.contains("not deployed"), "{targets}");
    let base = targets
        .lines()
        .find(|l| l.trim_start().starts_with("base"))
        .expect("base line");
    assert!(
        base.contains("deploy sha256:") && base.contains("clusterSelector={}"),
        "{targets}"
    );
}

#[test]
fn drover_verify_reports_a_tampered_blob() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    let digest = &site.index_digests()["base"][0];
    let blob = site.path(&format!("store/blobs/sha256/{}", &digest["sha256:".len()..]));
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[20] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let out = drover_e2e::drover(&["verify", &site.p("store"), "--key", &site.p("keys/drover.pub")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bundle base") && err.contains("does not match its digest"),
        "{err}"
    );
}

#[test]
fn drover_serve_answers_if_none_match_with_304() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    let server = drover_serve(&site.path("store"));
    let curl = drover_e2e::require("curl", "curl");
    let url = format!("{}index.json", server.url);
    let head = drover_e2e::run(&curl, &["-s", "-D", "-", "-o", "/dev/null", &url]);
    let headers = String::from_utf8_lossy(&head.stdout).to_string();
    let etag = headers
        .lines()
        .find_map(|l| l.strip_prefix("etag: ").or_else(|| l.strip_prefix("ETag: ")))
        .expect("etag header")
        .trim()
        .to_string();
    let again = drover_e2e::run(
        &curl,
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download}",
            "-H",
            &format!("If-None-Match: {etag}"),
            &url,
        ],
    );
    assert_eq!(String::from_utf8_lossy(&again.stdout), "304 0");
    let outside = drover_e2e::run(
        &curl,
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            // Without --path-as-is curl folds `/../` away and never sends the traversal.
            "--path-as-is",
            &format!("{}../keys/drover.key", server.url),
        ],
    );
    assert_eq!(String::from_utf8_lossy(&outside.stdout), "404");
}

/// Paths that try to leave the store, sent byte for byte as written (no client
/// normalises them): dot segments, percent-encoded dots and slashes, backslashes, a NUL.
/// The key they aim at exists, so a server that followed any of them would answer 200.
#[test]
fn drover_serve_never_answers_a_path_outside_the_store() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    let key = std::fs::read_to_string(site.path("store/../keys/drover.key")).unwrap();
    let secret = key.lines().last().unwrap().trim().to_string();
    assert!(secret.len() > 20, "the target of the traversal exists: {key}");
    let server = drover_serve(&site.path("store"));
    let port: u16 = server
        .url
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        drover_e2e::http(port, "GET", "/index.json").0,
        200,
        "the server answers"
    );
    let attempts = [
        "/../keys/drover.key",
        "/blobs/../../keys/drover.key",
        "/blobs/sha256/../../../keys/drover.key",
        "/%2e%2e/keys/drover.key",
        "/%2E%2E/keys/drover.key",
        "/%2e%2e%2fkeys%2fdrover.key",
        "/blobs/..%2f..%2fkeys%2fdrover.key",
        "/..%5ckeys%5cdrover.key",
        "/..\\keys\\drover.key",
        "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "//etc/passwd",
    ];
    for path in attempts {
        let (status, body) = drover_e2e::http(port, "GET", path);
        assert_eq!(status, 404, "{path:?} answered {status}: {body}");
        assert!(!body.contains(&secret), "{path:?} leaked the key");
    }
    // A NUL is not a valid request-target byte; a 400 is the right answer to it.
    for path in ["/index.json\0", "/\0/../keys/drover.key", "/%00/../keys/drover.key"] {
        let (status, body) = drover_e2e::http(port, "GET", path);
        assert!(status == 400 || status == 404, "{path:?} answered {status}: {body}");
        assert!(!body.contains(&secret), "{path:?} leaked the key");
    }
}

#[test]
fn changed_cluster_labels_re_render_and_a_missing_label_is_an_error() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    assert!(site7(&site).run().status.success());
    let out = AgentRun::once(&site)
        .cluster("site-7")
        .labels(&["env=prod", "region=us", "monitoring=on"])
        .run();
    assert!(out.status.success(), "{}", text(&out));
    let web = site.manifests()["drover-web.yaml"].clone();
    assert!(
        web.contains("value: us") && !web.contains("value: eu"),
        "same index, new labels:\n{web}"
    );
    // Without the label the variable is unknown: an error, and the last good file stays.
    let out = AgentRun::once(&site)
        .cluster("site-7")
        .labels(&["env=prod", "monitoring=on"])
        .run();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no label \"region\""),
        "{}",
        text(&out)
    );
    assert_eq!(site.manifests()["drover-web.yaml"], web);
}

#[test]
fn failed_removal_is_retried_on_the_next_cycle() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    assert!(site7(&site).run().status.success());
    // Without monitoring=on the bundle must go; make its file impossible to replace.
    let file = site.path("manifests/drover-monitoring.yaml");
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir(&file).unwrap();
    std::fs::write(file.join("keep"), "x").unwrap();
    let labels = ["env=prod", "region=eu"];
    let out = AgentRun::once(&site).cluster("site-7").labels(&labels).run();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("could not remove"),
        "{}",
        text(&out)
    );
    std::fs::remove_dir_all(&file).unwrap();
    let out = AgentRun::once(&site).cluster("site-7").labels(&labels).run();
    assert!(out.status.success(), "{}", text(&out));
    let tomb = &site.manifests()["drover-monitoring.yaml"];
    drover_e2e::assert_tombstone(tomb, "monitoring");
    assert!(tomb.lines().all(|l| l.starts_with('#')), "removal retried:\n{tomb}");
}
