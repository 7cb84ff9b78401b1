//! The namespace allow-list with the `dir` sink: a bundle with any object outside the
//! allowed namespaces (or cluster-scoped, unless allowed) is refused whole, every refused
//! object is named, the bundle's previous manifests stay byte-for-byte, and the other
//! bundles of the same index still apply.

use drover_e2e::{text, AgentRun, Site};

const LABELS: &[&str] = &["env=prod", "region=eu", "monitoring=on"];

/// `drover-agent --once` for site-1 with `extra` flags; returns (exit code, stdout+stderr).
fn agent(site: &Site, extra: &[&str]) -> (Option<i32>, String) {
    let out = AgentRun::once(site).cluster("site-1").labels(LABELS).args(extra).run();
    (out.status.code(), text(&out))
}

/// The report line of `bundle` in the agent's output.
fn line_of<'a>(out: &'a str, bundle: &str) -> &'a str {
    out.lines()
        .find(|l| l.trim_start().strip_prefix(bundle).is_some_and(|r| r.starts_with(' ')))
        .unwrap_or_else(|| panic!("no line for {bundle}: {out}"))
}

#[test]
fn objects_outside_the_allowed_namespaces_refuse_the_whole_bundle_and_keep_the_previous_version() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    // Set through the config file: base's Namespace objects are the allowed namespaces
    // themselves, web and monitoring stay inside them.
    site.write("agent.yaml", "allowNamespaces: [web, monitoring]\n");
    let config = ["--config", &site.p("agent.yaml")];
    let (code, out) = agent(&site, &config);
    assert_eq!(code, Some(0), "{out}");
    let v1 = site.manifests();
    assert_eq!(v1.len(), 3, "{out}");

    // Version 2: web also reaches into kube-system, makes a cluster-wide binding, and has
    // a HelmChart in its own namespace (the helm-controller would install it anywhere).
    site.write(
        "src/bundles/web/escape.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: stolen, namespace: kube-system}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: web-admin}\n\
         roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\n\
         subjects: [{kind: ServiceAccount, name: default, namespace: web}]\n---\n\
         apiVersion: helm.cattle.io/v1\nkind: HelmChart\nmetadata: {name: anything}\n\
         spec: {chart: anything, targetNamespace: kube-system}\n",
    );
    site.write(
        "src/bundles/monitoring/release.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: monitoring-v2}\n",
    );
    site.publish(&[]);
    let (code, out) = agent(&site, &config);
    assert_eq!(code, Some(1), "{out}");
    let web = line_of(&out, "web");
    assert!(web.contains("Error"), "{out}");
    for named in [
        "Secret stolen in namespace kube-system",
        "ClusterRoleBinding web-admin (cluster-scoped)",
        "HelmChart anything in namespace web (its controller writes cluster-wide)",
        "namespace allow-list",
    ] {
        assert!(web.contains(named), "web's line names {named:?}: {out}");
    }
    assert!(line_of(&out, "monitoring").contains("Applied"), "{out}");
    let now = site.manifests();
    assert_eq!(now["drover-web.yaml"], v1["drover-web.yaml"], "web kept byte-for-byte");
    assert_eq!(now["drover-base.yaml"], v1["drover-base.yaml"]);
    assert!(
        now["drover-monitoring.yaml"].contains("monitoring-v2"),
        "other bundles apply"
    );
    assert!(
        !now.values().any(|m| m.contains("stolen")),
        "nothing of the refused bundle"
    );
    assert_eq!(
        std::fs::read_dir(site.path("manifests")).unwrap().count(),
        3,
        "no temporary file left"
    );

    // The flags replace the file's list: with kube-system and cluster-scoped objects
    // allowed, the same index applies.
    let (code, out) = agent(
        &site,
        &[
            "--config",
            &site.p("agent.yaml"),
            "--allow-namespace",
            "web",
            "--allow-namespace",
            "monitoring",
            "--allow-namespace",
            "kube-system",
            "--allow-cluster-scoped",
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(site.manifests()["drover-web.yaml"].contains("stolen"), "{out}");
}

#[test]
fn objects_with_neither_namespace_nor_bundle_default_count_as_cluster_scoped() {
    let site = Site::new();
    site.write(
        "src/bundles/plain/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain}\n",
    );
    site.publish(&[]);
    let (code, out) = agent(&site, &["--allow-namespace", "default"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        line_of(&out, "plain").contains("ConfigMap plain (cluster-scoped)"),
        "{out}"
    );
    assert!(site.manifests().is_empty(), "nothing written: {out}");
}

#[test]
fn allow_cluster_scoped_without_namespaces_is_a_configuration_error() {
    let site = Site::new();
    let (code, out) = agent(&site, &["--allow-cluster-scoped"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("allowClusterScoped"), "{out}");
}

#[test]
fn on_the_dir_sink_kinds_of_unknown_scope_fail_closed_and_namespaces_do_not_make_cluster_objects_local() {
    let site = Site::new();
    site.write("src/bundles/app/bundle.yaml", "namespace: web\n");
    // A custom kind whose CRD is installed on the cluster but not in the bundle, and a
    // built-in cluster-scoped kind that names an allowed namespace (the API server
    // ignores it).
    site.write(
        "src/bundles/app/objects.yaml",
        "apiVersion: x.example.com/v1\nkind: Widget\nmetadata: {name: w}\n---\n\
         apiVersion: networking.k8s.io/v1\nkind: ServiceCIDR\nmetadata: {name: wide, namespace: web}\n\
         spec: {cidrs: [10.96.0.0/12]}\n",
    );
    site.publish(&[]);
    let (code, out) = agent(&site, &["--allow-namespace", "web"]);
    assert_eq!(code, Some(1), "{out}");
    let app = line_of(&out, "app");
    for named in [
        "Widget w in namespace web (scope of Widget.x.example.com unknown",
        "kube sink",
        "ServiceCIDR wide (cluster-scoped)",
    ] {
        assert!(app.contains(named), "app's line names {named:?}: {out}");
    }
    assert!(site.manifests().is_empty(), "nothing written: {out}");

    // With the Widget's CRD in the bundle saying Namespaced, only the ServiceCIDR is left.
    site.write(
        "src/bundles/app/crd.yaml",
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n\
         metadata: {name: widgets.x.example.com}\n\
         spec: {group: x.example.com, scope: Namespaced, names: {kind: Widget, plural: widgets}}\n",
    );
    site.publish(&[]);
    let (code, out) = agent(&site, &["--allow-namespace", "web"]);
    assert_eq!(code, Some(1), "{out}");
    let app = line_of(&out, "app");
    assert!(
        !app.contains("Widget w") && app.contains("ServiceCIDR wide") && app.contains("CustomResourceDefinition"),
        "{out}"
    );
    let (code, out) = agent(&site, &["--allow-namespace", "web", "--allow-cluster-scoped"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(site.manifests()["drover-app.yaml"].contains("name: w"), "{out}");
}
