//! Authoring: kustomize overlays and Helm charts resolved at publish time (the examples of
//! docs/authoring.md, published as they are), values substituted by the agent, staged
//! rollouts that give clusters outside the wave the previous blob, paused bundles, and
//! what publishing refuses (dependency cycles, duplicate objects, bad names, oversized
//! bundles, a missing kubectl). A chart pulled from a chart repository is served by real
//! nginx from a repository made by hand with `tar`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use drover_e2e::{bin, copy_dir, drover, nginx, repo_root, require, run, snapshot, text, AgentRun, Site};

/// A site whose source is the authoring examples (examples/authoring/bundles).
fn authoring_site() -> Site {
    require("kubectl", "kubectl");
    let site = Site::new();
    copy_dir(
        &repo_root().join("examples/authoring/bundles"),
        &site.path("src/bundles"),
    );
    site
}

/// Runs `drover-agent --once` for `cluster` into `<dir>/manifests` and `<dir>/state`;
/// returns the manifests written (file name → text).
fn apply(site: &Site, dir: &str, cluster: &str, labels: &[&str]) -> BTreeMap<String, String> {
    let out = AgentRun::once(site)
        .under(site.path(dir))
        .cluster(cluster)
        .labels(labels)
        .run();
    assert!(out.status.success(), "agent for {cluster}: {}", text(&out));
    snapshot(&site.path(&format!("{dir}/manifests")))
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v).expect("manifests are UTF-8")))
        .collect()
}

/// `drover publish` that must fail; returns its stderr.
fn publish_fails(site: &Site) -> String {
    let (src, store, key) = (site.p("src"), site.p("store"), site.p("keys/drover.key"));
    let out = drover(&["publish", &src, "--store", &store, "--key", &key]);
    assert!(!out.status.success(), "publish should fail: {}", text(&out));
    assert!(
        !site.path("store/index.json").exists(),
        "a refused publish writes no index"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The bundle's blob digests in the store's index, in target order.
fn digests(site: &Site, bundle: &str) -> Vec<String> {
    site.index_digests().remove(bundle).unwrap_or_default()
}

#[test]
fn kustomize_overlays_become_two_variants_selected_by_labels() {
    let site = authoring_site();
    site.publish(&[]);
    let d = digests(&site, "shop");
    assert_eq!(d.len(), 3, "doNotDeploy, large, small: {d:?}");
    assert_ne!(d[1], d[2], "each overlay is its own blob");

    let (store, key) = (site.p("store"), site.p("keys/drover.pub"));
    let out = drover(&[
        "targets",
        &store,
        "--key",
        &key,
        "--cluster-name",
        "store-1",
        "--label",
        "size=large",
    ]);
    let said = text(&out);
    assert!(
        said.contains("overlay overlays/large") && said.contains(&d[1]),
        "{said}"
    );

    let large = apply(&site, "big", "store-1", &["size=large"]);
    let shop = &large["drover-shop.yaml"];
    assert!(
        shop.contains("replicas: 4") && shop.contains("shop-tuning-"),
        "large overlay:\n{shop}"
    );
    assert!(shop.contains("value: store-1"), "substituted after rendering:\n{shop}");

    let small = apply(&site, "small", "store-2", &["size=small"]);
    let shop = &small["drover-shop.yaml"];
    assert!(
        shop.contains("replicas: 1") && !shop.contains("shop-tuning"),
        "small overlay:\n{shop}"
    );

    let lab = apply(&site, "lab", "lab-1", &["env=lab", "size=large"]);
    assert!(
        !lab.contains_key("drover-shop.yaml"),
        "doNotDeploy excludes lab: {:?}",
        lab.keys()
    );
}

#[test]
fn helm_chart_becomes_a_helm_chart_object_whose_archive_lists_the_chart() {
    let site = authoring_site();
    site.publish(&[]);
    let m = apply(&site, "prod", "shop-9", &["env=prod", "region=eu"]);
    let object = &m["drover-hello.yaml"];
    for field in [
        "apiVersion: helm.cattle.io/v1",
        "kind: HelmChart",
        "namespace: kube-system",
        "targetNamespace: hello",
    ] {
        assert!(object.contains(field), "{field}:\n{object}");
    }
    // The target's values, merged over the bundle's, substituted for this cluster.
    assert!(object.contains("replicas: 3"), "target values:\n{object}");
    assert!(
        object.contains("hello from shop-9 in eu"),
        "substituted inside valuesContent:\n{object}"
    );
    assert!(!object.contains("${cluster"), "no variable left:\n{object}");

    // chartContent is a chart archive as `helm package` lays it out.
    let archive = site.path("hello.tgz");
    std::fs::write(&archive, chart_content(object)).expect("write archive");
    let listing = run(&require("tar", "tar"), &["tzf", archive.to_str().expect("utf-8")]);
    assert!(listing.status.success(), "{}", text(&listing));
    let entries: Vec<String> = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        entries,
        [
            "hello/Chart.yaml",
            "hello/templates/configmap.yaml",
            "hello/templates/deployment.yaml",
            "hello/values.yaml"
        ],
        "bundle.yaml stays out of the chart"
    );

    // Another cluster gets the bundle's values only.
    let m = apply(&site, "other", "shop-3", &["env=dev"]);
    let object = &m["drover-hello.yaml"];
    assert!(
        object.contains("hello from shop-3") && !object.contains("replicas: 3"),
        "{object}"
    );
}

#[test]
fn unknown_variable_in_values_is_an_error_for_that_bundle_only() {
    let site = authoring_site();
    site.publish(&[]);
    // A prod cluster without a region label: ${cluster.labels.region} cannot be filled.
    let out = AgentRun::once(&site)
        .under(site.path("x"))
        .cluster("p-1")
        .labels(&["env=prod"])
        .run();
    assert!(!out.status.success(), "a bundle error fails --once");
    assert!(text(&out).contains("region"), "{}", text(&out));
    let written = snapshot(&site.path("x/manifests"));
    assert!(
        written.contains_key("drover-shop.yaml"),
        "other bundles still apply: {:?}",
        written.keys()
    );
    assert!(
        !written.contains_key("drover-hello.yaml"),
        "never an empty string in place of the label"
    );
}

/// The decoded `spec.chartContent` of a HelmChart object (with coreutils' `base64 -d`).
fn chart_content(object: &str) -> Vec<u8> {
    let content = object
        .lines()
        .find_map(|l| l.trim().strip_prefix("chartContent: "))
        .expect("chartContent line");
    let decoded = Command::new(require("base64", "coreutils"))
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(content.as_bytes())?;
            child.wait_with_output()
        })
        .expect("base64 -d");
    assert!(decoded.status.success(), "chartContent is base64");
    decoded.stdout
}

#[test]
fn chart_from_a_repository_is_pulled_at_publish_and_checked_against_its_digest() {
    use sha2::Digest as _;
    let site = Site::new();
    // A chart repository by hand: a chart packaged with tar, and index.yaml naming it.
    site.write("chart/web/Chart.yaml", "apiVersion: v2\nname: web\nversion: 1.2.3\n");
    site.write(
        "chart/web/templates/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\n",
    );
    std::fs::create_dir_all(site.path("repo/charts")).expect("mkdir");
    let tgz = site.p("repo/charts/web-1.2.3.tgz");
    let out = run(&require("tar", "tar"), &["czf", &tgz, "-C", &site.p("chart"), "web"]);
    assert!(out.status.success(), "{}", text(&out));
    let archive = std::fs::read(&tgz).expect("archive");
    let index = |digest: &str| {
        format!(
            "apiVersion: v1\nentries:\n  web:\n  - name: web\n    version: 1.2.3\n    digest: {digest}\n    urls: [charts/web-1.2.3.tgz]\n  - name: web\n    version: 1.0.0\n    urls: [charts/web-1.0.0.tgz]\n"
        )
    };
    site.write(
        "repo/index.yaml",
        &index(&format!("{:x}", sha2::Sha256::digest(&archive))),
    );
    let server = nginx(&site.path("repo"), &site.path("nginx"));
    site.write(
        "src/bundles/web/bundle.yaml",
        &format!("namespace: web\nchart: {{repo: '{}/', name: web, version: 1.2.3}}\nvalues: {{site: '${{cluster.name}}'}}\n", server.url.trim_end_matches('/')),
    );
    site.publish(&[]);
    let m = apply(&site, "c", "site-4", &[]);
    let object = &m["drover-web.yaml"];
    assert!(
        object.contains("site: site-4") && object.contains("version: 1.2.3"),
        "{object}"
    );
    assert_eq!(
        chart_content(object),
        archive,
        "the repository's archive, byte for byte"
    );

    // An archive that does not match the index's digest is refused, naming its URL.
    site.write("repo/index.yaml", &index(&"0".repeat(64)));
    let err = publish_fails_keeping(&site);
    assert!(err.contains("charts/web-1.2.3.tgz") && err.contains("sha256"), "{err}");
    // A version the repository does not have.
    site.write("repo/index.yaml", &index("").replace("    digest: \n", ""));
    site.write(
        "src/bundles/web/bundle.yaml",
        &format!("chart: {{repo: '{}', name: web, version: 9.9.9}}\n", server.url),
    );
    let err = publish_fails_keeping(&site);
    assert!(err.contains("index.yaml") && err.contains("9.9.9"), "{err}");
}

/// `drover publish` that must fail on a store that already has an index; returns stderr.
fn publish_fails_keeping(site: &Site) -> String {
    let before = std::fs::read(site.path("store/index.json")).expect("published before");
    let (src, store, key) = (site.p("src"), site.p("store"), site.p("keys/drover.key"));
    let out = drover(&["publish", &src, "--store", &store, "--key", &key]);
    assert!(!out.status.success(), "publish should fail: {}", text(&out));
    assert_eq!(
        std::fs::read(site.path("store/index.json")).expect("index"),
        before,
        "index kept"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A bundle whose content is `value`, with `extra` settings in its bundle.yaml.
fn write_app(site: &Site, value: &str, extra: &str) {
    site.write(
        "src/bundles/app/cm.yaml",
        &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  value: \"{value}\"\n"),
    );
    site.write("src/bundles/app/bundle.yaml", extra);
}

#[test]
fn cluster_outside_the_wave_with_nothing_applied_gets_the_previous_digest() {
    let site = Site::new();
    write_app(&site, "v1", "");
    site.publish(&[]);
    write_app(&site, "v2", "rollout: {percent: 10}\n");
    site.publish(&[]);
    // Find one cluster on each side of the 10 % wave, as drover targets reports it.
    let (store, key) = (site.p("store"), site.p("keys/drover.pub"));
    let side = |name: &str| {
        let out = drover(&["targets", &store, "--key", &key, "--cluster-name", name]);
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).contains("outside the 10% wave")
    };
    let names: Vec<String> = (0..200).map(|i| format!("site-{i}")).collect();
    let outside = names.iter().find(|n| side(n)).expect("a cluster outside a 10% wave");
    let inside = names.iter().find(|n| !side(n)).expect("a cluster inside a 10% wave");

    let fresh = apply(&site, "fresh", outside, &[]);
    assert!(
        fresh["drover-app.yaml"].contains("value: v1"),
        "previous blob:\n{}",
        fresh["drover-app.yaml"]
    );
    let canary = apply(&site, "canary", inside, &[]);
    assert!(
        canary["drover-app.yaml"].contains("value: v2"),
        "{}",
        canary["drover-app.yaml"]
    );

    // At 100 % the wave is everyone: the outside cluster moves on.
    write_app(&site, "v2", "rollout: {percent: 100}\n");
    site.publish(&[]);
    let moved = apply(&site, "fresh", outside, &[]);
    assert!(
        moved["drover-app.yaml"].contains("value: v2"),
        "{}",
        moved["drover-app.yaml"]
    );
}

#[test]
fn paused_bundle_keeps_its_digest() {
    let site = Site::new();
    write_app(&site, "v1", "");
    site.publish(&[]);
    let before = apply(&site, "c", "site-1", &[]);
    write_app(&site, "v2", "paused: true\n");
    site.publish(&[]);
    let after = apply(&site, "c", "site-1", &[]);
    assert_eq!(after, before, "paused: still v1");
    assert!(after["drover-app.yaml"].contains("value: v1"));
}

#[test]
fn depends_on_cycle_is_rejected_at_publish_naming_the_bundles() {
    let site = Site::new();
    for (name, dep) in [("a", "b"), ("b", "a")] {
        site.write(
            &format!("src/bundles/{name}/cm.yaml"),
            &format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\n"),
        );
        site.write(
            &format!("src/bundles/{name}/bundle.yaml"),
            &format!("dependsOn: [{dep}]\n"),
        );
    }
    let err = publish_fails(&site);
    assert!(err.contains("cycle") && err.contains("a -> b -> a"), "{err}");
    assert!(
        err.contains("bundles/a/bundle.yaml") && err.contains("dependsOn"),
        "{err}"
    );
}

#[test]
fn unknown_depends_on_and_out_of_range_percent_name_the_bundle_file() {
    let site = Site::new();
    site.write(
        "src/bundles/app/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\n",
    );
    site.write("src/bundles/app/bundle.yaml", "dependsOn: [missing]\n");
    let err = publish_fails(&site);
    assert!(
        err.contains("bundles/app/bundle.yaml") && err.contains("dependsOn") && err.contains("missing"),
        "{err}"
    );

    site.write("src/bundles/app/bundle.yaml", "rollout: {percent: 101}\n");
    let err = publish_fails(&site);
    assert!(
        err.contains("bundles/app/bundle.yaml") && err.contains("rollout.percent") && err.contains("101"),
        "{err}"
    );
}

#[test]
fn duplicate_objects_and_invalid_names_are_refused_naming_the_files() {
    let site = Site::new();
    let cm = |name: &str| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n");
    site.write("src/bundles/app/one.yaml", &cm("app"));
    site.write("src/bundles/app/two.yaml", &cm("app"));
    let err = publish_fails(&site);
    assert!(
        err.contains("one.yaml") && err.contains("two.yaml") && err.contains("ConfigMap app"),
        "{err}"
    );

    site.write("src/bundles/app/two.yaml", &cm("App_2"));
    let err = publish_fails(&site);
    assert!(err.contains("two.yaml") && err.contains("RFC 1123"), "{err}");
}

#[test]
fn kustomize_output_is_checked_like_any_manifest() {
    let site = Site::new();
    require("kubectl", "kubectl");
    site.write("src/bundles/app/kustomization.yaml", "resources: [a.yaml, b.yaml]\n");
    site.write(
        "src/bundles/app/a.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Bad_Name}\n",
    );
    site.write(
        "src/bundles/app/b.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: ok}\n",
    );
    let err = publish_fails(&site);
    assert!(err.contains("kustomize.yaml") && err.contains("RFC 1123"), "{err}");
}

#[test]
fn bundle_over_max_bundle_size_is_refused() {
    let site = Site::new();
    site.write(
        "src/bundles/app/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata: {x: '1'}\n",
    );
    let (src, store, key) = (site.p("src"), site.p("store"), site.p("keys/drover.key"));
    let out = drover(&[
        "publish",
        &src,
        "--store",
        &store,
        "--key",
        &key,
        "--max-bundle-size",
        "10",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bundles/app") && err.contains("--max-bundle-size"),
        "{err}"
    );
    site.publish(&["--max-bundle-size", "1KiB"]);
}

#[test]
fn missing_kubectl_and_kustomize_errors_name_the_overlay() {
    let site = authoring_site();
    let (src, store, key) = (site.p("src"), site.p("store"), site.p("keys/drover.key"));
    let publish_with = |kubectl: &str| {
        let out = Command::new(bin("drover"))
            .args(["publish", &src, "--store", &store, "--key", &key])
            .env("DROVER_KUBECTL", kubectl)
            .output()
            .expect("run drover");
        assert!(!out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = publish_with("/nonexistent/kubectl");
    assert!(err.contains("not found") && err.contains("install"), "{err}");

    site.write(
        "src/bundles/shop/overlays/large/kustomization.yaml",
        "resources: [../../missing]\n",
    );
    let err = publish_with("kubectl");
    assert!(err.contains("overlays/large") && err.contains("kustomize"), "{err}");
}

#[test]
fn kustomize_remote_resources_are_refused_before_kubectl_runs() {
    let site = authoring_site();
    // A kubectl that cannot run: the refusal must come first, with no network.
    site.write(
        "src/bundles/shop/overlays/large/kustomization.yaml",
        "resources:\n- ../../base\n- https://github.com/org/repo//deploy?ref=v1\n",
    );
    let (src, store, key) = (site.p("src"), site.p("store"), site.p("keys/drover.key"));
    let out = Command::new(bin("drover"))
        .args(["publish", &src, "--store", &store, "--key", &key])
        .env("DROVER_KUBECTL", "/nonexistent/kubectl")
        .output()
        .expect("run drover");
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("overlays/large/kustomization.yaml") && err.contains("resources[1]") && err.contains("remote"),
        "{err}"
    );
    assert!(!err.contains("not found"), "kubectl never ran: {err}");
    assert!(!site.path("store/index.json").exists(), "nothing published");
}

#[test]
fn dry_run_prints_the_targets_and_writes_nothing() {
    let site = authoring_site();
    let (src, store, key) = (site.p("src"), site.p("store"), site.p("keys/drover.key"));
    let out = drover(&["publish", &src, "--store", &store, "--key", &key, "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("doNotDeploy") && stdout.contains("bundle hello"),
        "{stdout}"
    );
    assert!(!Path::new(&store).exists(), "nothing written");
}

#[test]
fn diff_counts_changed_targets_per_bundle() {
    let site = authoring_site();
    site.publish(&[]);
    copy_dir(&site.path("store"), &site.path("before"));
    site.write("src/bundles/hello/values.yaml", "replicas: 2\nmessage: hello\n");
    site.publish(&[]);
    let out = drover(&["diff", &site.p("before"), &site.p("store")]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("changed hello (2 targets change)"), "{stdout}");
    assert!(stdout.contains("1 bundle differs, 1 unchanged"), "{stdout}");
}
