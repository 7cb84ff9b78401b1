//! The kube sink at fleet scale, against the in-repo Kubernetes API double with stock
//! kubectl as the other tool and the independent reader: what it refuses to take over or
//! delete (KEP-3659 ownership), and what an unchanged cycle costs the API server.

use drover_e2e::{applyset_id, text, AgentRun, KubeApi, Kubectl, Site};

/// The double, killed on drop, and kubectl for it.
struct Api {
    double: KubeApi,
    kubectl: Kubectl,
}

impl Api {
    fn start(site: &Site) -> Api {
        let double = KubeApi::start_with(site.dir.path(), &["--auto-ready"]);
        Api {
            kubectl: double.kubectl(),
            double,
        }
    }

    /// `kubectl apply --server-side ARGS` with kubectl's ApplySet support switched on
    /// (`KUBECTL_APPLYSET=true`, as kubectl 1.32 requires for `--applyset`).
    fn kubectl_applyset(&self, args: &[&str]) -> String {
        std::fs::create_dir_all(self.double.kubeconfig.with_file_name("kube-home")).unwrap();
        let all = [&["apply", "--server-side"], args].concat();
        let out = self
            .kubectl
            .command(&all)
            .env("KUBECTL_APPLYSET", "true")
            .output()
            .expect("run kubectl");
        assert!(out.status.success(), "{}", self.kubectl.describe(&all, &out));
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        self.kubectl.json(args)
    }
}

/// `drover-agent --once --sink kube:…` for site-7 with `extra` flags.
fn agent(site: &Site, api: &Api, extra: &[&str]) -> (Option<i32>, String) {
    let out = AgentRun::once(site)
        .kube(&api.double.kubeconfig)
        .cluster("site-7")
        .args(extra)
        .run();
    (out.status.code(), text(&out))
}

fn line_of<'a>(out: &'a str, bundle: &str) -> &'a str {
    out.lines()
        .find(|l| l.trim_start().starts_with(bundle))
        .unwrap_or_else(|| panic!("no line for {bundle}: {out}"))
}

fn config_map(name: &str, namespace: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {namespace}}}\ndata: {{a: b}}\n")
}

/// Bundle `web`: Namespace web and ConfigMap web/settings.
fn web_bundle(site: &Site) {
    site.write("src/bundles/web/bundle.yaml", "namespace: web\n");
    site.write(
        "src/bundles/web/objects.yaml",
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: web}}\n---\n{}",
            config_map("settings", "web")
        ),
    );
}

#[test]
fn refuses_an_applyset_kubectl_owns_and_prunes_nothing_of_it() {
    let site = Site::new();
    web_bundle(&site);
    site.publish(&[]);
    let api = Api::start(&site);
    // kubectl's own ApplySet under the name drover would use for bundle web.
    let theirs = site.path("theirs.yaml");
    std::fs::write(
        &theirs,
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: drover-system}}\n---\n{}",
            config_map("theirs", "drover-system")
        ),
    )
    .unwrap();
    api.kubectl.apply(theirs.to_str().unwrap(), &[]);
    api.kubectl_applyset(&[
        "-n",
        "drover-system",
        "--prune",
        "--applyset=configmap/drover-applyset-web",
        "-f",
        site.path("theirs.yaml").to_str().unwrap(),
    ]);
    let before = api.json(&["get", "configmap", "drover-applyset-web", "-n", "drover-system"]);
    let tooling = before["metadata"]["annotations"]["applyset.kubernetes.io/tooling"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(tooling.starts_with("kubectl/"), "{before:#}");

    let (code, out) = agent(&site, &api, &[]);
    assert_eq!(code, Some(1), "{out}");
    let web = line_of(&out, "web");
    assert!(web.contains("Error"), "{out}");
    assert!(
        out.contains(&format!("drover-applyset-web: belongs to {tooling}")),
        "names the parent and its tooling: {out}"
    );
    assert!(
        api.kubectl.exists("configmap", "theirs", "drover-system"),
        "nothing pruned"
    );
    assert!(!api.kubectl.exists("configmap", "settings", "web"), "nothing applied");
    let after = api.json(&["get", "configmap", "drover-applyset-web", "-n", "drover-system"]);
    assert_eq!(
        after["metadata"]["annotations"], before["metadata"]["annotations"],
        "the parent is untouched"
    );
}

#[test]
fn refuses_an_object_that_belongs_to_another_applyset() {
    let site = Site::new();
    web_bundle(&site);
    site.publish(&[]);
    let api = Api::start(&site);
    // kubectl manages web/settings in its own ApplySet "tools" in namespace web.
    let settings = site.path("settings.yaml");
    std::fs::write(
        &settings,
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: web}}\n---\n{}",
            config_map("settings", "web")
        ),
    )
    .unwrap();
    api.kubectl.apply(settings.to_str().unwrap(), &[]);
    std::fs::write(&settings, config_map("settings", "web")).unwrap();
    api.kubectl_applyset(&[
        "-n",
        "web",
        "--prune",
        "--applyset=configmap/tools",
        "-f",
        settings.to_str().unwrap(),
    ]);
    let kubectls = applyset_id("tools", "web", "ConfigMap", "");
    let label = |api: &Api| {
        api.json(&["get", "configmap", "settings", "-n", "web"])["metadata"]["labels"]["applyset.kubernetes.io/part-of"]
            .clone()
    };
    assert_eq!(label(&api), kubectls.as_str());

    let (code, out) = agent(&site, &api, &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(line_of(&out, "web").contains("Error"), "{out}");
    assert!(
        out.contains(&format!(
            "ConfigMap web/settings: already belongs to ApplySet {kubectls}"
        )),
        "{out}"
    );
    assert_eq!(label(&api), kubectls.as_str(), "not relabelled");

    // A manifest naming another set itself is refused the same way, before any write.
    site.write(
        "src/bundles/web/objects.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: other\n  namespace: web\n  labels:\n    \
         applyset.kubernetes.io/part-of: applyset-someone-else-v1\n",
    );
    site.publish(&[]);
    let (code, out) = agent(&site, &api, &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("ConfigMap web/other: already belongs to ApplySet applyset-someone-else-v1"),
        "{out}"
    );
    assert!(!api.kubectl.exists("configmap", "other", "web"));
}

#[test]
fn prune_leaves_labelled_objects_drover_never_applied_or_outside_its_namespaces() {
    let site = Site::new();
    web_bundle(&site);
    site.write("src/bundles/web/extra.yaml", &config_map("extra", "web"));
    site.publish(&[]);
    let api = Api::start(&site);
    let (code, out) = agent(&site, &api, &["--allow-namespace", "web"]);
    assert_eq!(code, Some(0), "{out}");

    // Another field manager's objects carrying web's ApplySet label, one in kube-system.
    let web_id = applyset_id("drover-applyset-web", "drover-system", "ConfigMap", "");
    let planted = site.path("planted.yaml");
    let labelled = |name: &str, ns: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels:\n    \
             applyset.kubernetes.io/part-of: {web_id}\ndata: {{a: b}}\n"
        )
    };
    std::fs::write(
        &planted,
        format!(
            "{}---\n{}",
            labelled("planted", "kube-system"),
            labelled("handmade", "web")
        ),
    )
    .unwrap();
    api.kubectl
        .apply(planted.to_str().unwrap(), &["--field-manager=someone-else"]);

    // Version 2: extra leaves the bundle; only it is drover's to delete.
    std::fs::remove_file(site.path("src/bundles/web/extra.yaml")).unwrap();
    site.publish(&[]);
    for extra in [&["--allow-namespace", "web"][..], &[]] {
        let (code, out) = agent(&site, &api, extra);
        assert_eq!(code, Some(0), "{out}");
        let web = line_of(&out, "web");
        assert!(web.contains("2 left in place"), "{extra:?}: {out}");
        assert!(api.kubectl.exists("configmap", "planted", "kube-system"), "{extra:?}");
        assert!(api.kubectl.exists("configmap", "handmade", "web"), "{extra:?}");
    }
    assert!(
        !api.kubectl.exists("configmap", "extra", "web"),
        "drover's own member pruned"
    );
}

#[test]
fn refuses_a_bundle_that_writes_the_agents_own_records() {
    let site = Site::new();
    web_bundle(&site);
    site.publish(&[]);
    let api = Api::start(&site);
    let (code, out) = agent(&site, &api, &[]);
    assert_eq!(code, Some(0), "{out}");
    let parent = || api.json(&["get", "configmap", "drover-applyset-web", "-n", "drover-system"]);
    let before = parent();

    site.write(
        "src/bundles/evil/parent.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: drover-applyset-web\n  namespace: drover-system\n  \
         annotations: {applyset.kubernetes.io/contains-group-kinds: Secret}\n",
    );
    site.write(
        "src/bundles/status/status.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: drover-status, namespace: drover-system}\ndata: {x: y}\n",
    );
    site.publish(&[]);
    let (code, out) = agent(&site, &api, &[]);
    assert_eq!(code, Some(1), "{out}");
    for bundle in ["evil", "status"] {
        let line = line_of(&out, bundle);
        assert!(line.contains("Error") && line.contains("agent's own records"), "{out}");
    }
    assert!(line_of(&out, "web").contains("Ready"), "{out}");
    assert_eq!(parent()["metadata"]["annotations"], before["metadata"]["annotations"]);
}

/// The requests the double received since the last [`clear`].
fn requests(api: &Api) -> Vec<serde_json::Value> {
    let (status, body) = drover_e2e::http(api.double.port(), "GET", "/_double/requests");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("request log {body:?}: {e}"))
}

fn clear(api: &Api) {
    let (status, body) = drover_e2e::http(api.double.port(), "DELETE", "/_double/requests");
    assert_eq!(status, 200, "{body}");
}

/// Whether `request` asks discovery (`/api`, `/apis`, a group, a group version).
fn is_discovery(request: &serde_json::Value) -> bool {
    let path = request["path"].as_str().unwrap_or_default();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    matches!(
        segments.as_slice(),
        ["api"] | ["api", _] | ["apis"] | ["apis", _] | ["apis", _, _]
    )
}

fn discovery_requests(api: &Api) -> Vec<String> {
    requests(api)
        .iter()
        .filter(|r| is_discovery(r))
        .map(|r| r["path"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The state of `bundle` in the agent's status ConfigMap.
fn state_of(api: &Api, bundle: &str) -> String {
    let status = api.json(&["get", "configmap", "drover-status", "-n", "drover-system"]);
    let report: serde_json::Value = serde_json::from_str(status["data"]["status.json"].as_str().unwrap()).unwrap();
    let found = report["bundles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == bundle)
        .unwrap_or_else(|| panic!("no {bundle} in {report:#}"))
        .clone();
    found["state"].as_str().unwrap().to_string()
}

#[test]
fn an_unchanged_cycle_asks_discovery_nothing_after_the_first() {
    let site = Site::new().with_examples();
    site.publish(&[]);
    let api = Api::start(&site);
    let daemon = AgentRun::daemon(&site)
        .kube(&api.double.kubeconfig)
        .cluster("site-7")
        .labels(&["env=prod", "region=eu", "monitoring=on"])
        .start();
    daemon.wait_first_cycle();
    assert_eq!(state_of(&api, "web"), "Ready", "{}", daemon.log());
    clear(&api);
    daemon.sync();
    assert_eq!(discovery_requests(&api), Vec::<String>::new(), "{}", daemon.log());
    assert_eq!(state_of(&api, "web"), "Ready", "{}", daemon.log());
}

const WIDGET_CRD: &str = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n\
    metadata: {name: widgets.example.com}\nspec:\n  group: example.com\n  scope: Namespaced\n  \
    names: {plural: widgets, singular: widget, kind: Widget}\n  versions:\n  - name: v1\n    served: true\n    \
    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        \
    x-kubernetes-preserve-unknown-fields: true\n";

#[test]
fn discovery_is_asked_again_when_a_kind_appears_and_when_it_disappears() {
    let site = Site::new();
    site.write("src/bundles/widgets/bundle.yaml", "namespace: default\n");
    site.write(
        "src/bundles/widgets/gear.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: gear}\nspec: {teeth: 12}\n",
    );
    site.publish(&[]);
    let api = Api::start(&site);
    let daemon = AgentRun::daemon(&site)
        .kube(&api.double.kubeconfig)
        .cluster("site-7")
        .start();
    daemon.wait_first_cycle();
    assert_eq!(state_of(&api, "widgets"), "Error", "no such kind yet: {}", daemon.log());

    // Someone else installs the CRD: the next cycle finds the kind and applies.
    let crd = site.path("crd.yaml");
    std::fs::write(&crd, WIDGET_CRD).unwrap();
    api.kubectl.apply(crd.to_str().unwrap(), &[]);
    daemon.sync();
    assert_eq!(state_of(&api, "widgets"), "Ready", "{}", daemon.log());
    assert!(api.kubectl.exists("widgets.example.com", "gear", "default"));
    clear(&api);
    daemon.sync();
    assert_eq!(discovery_requests(&api), Vec::<String>::new(), "{}", daemon.log());

    // Someone else removes it: the kind is unknown again, and said so.
    api.kubectl.ok(&["delete", "crd", "widgets.example.com"]);
    daemon.sync();
    assert_eq!(state_of(&api, "widgets"), "Error", "{}", daemon.log());
    let status = api.json(&["get", "configmap", "drover-status", "-n", "drover-system"]);
    assert!(
        status["data"]["status.json"].as_str().unwrap().contains("unknown kind"),
        "{status:#}"
    );

    // And back: applied again.
    api.kubectl.apply(crd.to_str().unwrap(), &[]);
    daemon.sync();
    assert_eq!(state_of(&api, "widgets"), "Ready", "{}", daemon.log());
    assert!(api.kubectl.exists("widgets.example.com", "gear", "default"));
}

/// Bundles `a` and `b`: each a Namespace and three ConfigMaps in it.
fn small_fleet(site: &Site) {
    for bundle in ["a", "b"] {
        let mut yaml = format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {bundle}}}\n");
        for i in 0..3 {
            yaml.push_str(&format!("---\n{}", config_map(&format!("cm{i}"), bundle)));
        }
        site.write(&format!("src/bundles/{bundle}/objects.yaml"), &yaml);
    }
}

#[test]
fn an_unchanged_cycle_lists_each_kind_once_per_bundle_and_writes_only_its_status() {
    let site = Site::new();
    small_fleet(&site);
    site.publish(&[]);
    let api = Api::start(&site);
    let daemon = AgentRun::daemon(&site)
        .kube(&api.double.kubeconfig)
        .cluster("site-7")
        .start();
    daemon.wait_first_cycle();
    assert_eq!(state_of(&api, "a"), "Ready", "{}", daemon.log());
    clear(&api);
    daemon.sync();
    let seen: Vec<String> = requests(&api)
        .iter()
        .map(|r| format!("{} {}", r["method"].as_str().unwrap(), r["path"].as_str().unwrap()))
        .collect();
    let lists: Vec<&String> = seen
        .iter()
        .filter(|r| r.as_str() == "GET /api/v1/namespaces" || r.as_str() == "GET /api/v1/configmaps")
        .collect();
    assert_eq!(lists.len(), 4, "one LIST per kind per bundle: {seen:#?}");
    let writes: Vec<&String> = seen.iter().filter(|r| !r.starts_with("GET ")).collect();
    assert_eq!(
        writes,
        [
            "PATCH /api/v1/namespaces/drover-system",
            "PATCH /api/v1/namespaces/drover-system/configmaps/drover-status"
        ],
        "only the status report is written: {seen:#?}"
    );
    // Per bundle one LIST per kind (2); per cycle the parents' LIST and the status writes.
    assert_eq!(seen.len(), 2 * 2 + 3, "{seen:#?}");
    assert_eq!(seen[0], "GET /api/v1/namespaces/drover-system/configmaps", "{seen:#?}");
}

#[test]
fn drift_is_restored_and_counted_but_another_managers_own_field_is_not_drift() {
    let site = Site::new();
    small_fleet(&site);
    // `kubectl patch` takes the fields it sets (without force that is a conflict, which
    // kube_sink.rs covers): with force drover takes them back.
    site.write("src/bundles/a/bundle.yaml", "force: true\n");
    site.publish(&[]);
    let api = Api::start(&site);
    let run = || agent(&site, &api, &[]);
    let (code, out) = run();
    assert_eq!(code, Some(0), "{out}");
    let (_, out) = run();
    assert!(line_of(&out, "a").contains("0 drifted"), "{out}");

    // Deleted, a field drover owns edited, a label removed: each restored and counted.
    api.kubectl.ok(&["delete", "configmap", "cm0", "-n", "a"]);
    api.kubectl.ok(&[
        "patch",
        "configmap",
        "cm1",
        "-n",
        "a",
        "--type=merge",
        "-p",
        r#"{"data":{"a":"edited"}}"#,
    ]);
    api.kubectl.ok(&[
        "label",
        "configmap",
        "cm2",
        "-n",
        "a",
        "applyset.kubernetes.io/part-of-",
    ]);
    let (code, out) = run();
    assert_eq!(code, Some(0), "{out}");
    assert!(line_of(&out, "a").contains("3 drifted"), "{out}");
    assert!(line_of(&out, "b").contains("0 drifted"), "{out}");
    assert!(api.kubectl.exists("configmap", "cm0", "a"));
    let cm = |name: &str| api.json(&["get", "configmap", name, "-n", "a"]);
    assert_eq!(cm("cm1")["data"]["a"], "b", "owned field restored");
    assert!(cm("cm2")["metadata"]["labels"]["applyset.kubernetes.io/part-of"].is_string());

    // Another manager adds a field drover does not own: kept, and not drift.
    let extra = site.path("extra.yaml");
    std::fs::write(
        &extra,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm1, namespace: a}\ndata: {theirs: x}\n",
    )
    .unwrap();
    api.kubectl
        .apply(extra.to_str().unwrap(), &["--field-manager=someone-else"]);
    let (code, out) = run();
    assert_eq!(code, Some(0), "{out}");
    assert!(line_of(&out, "a").contains("0 drifted"), "{out}");
    assert_eq!(cm("cm1")["data"]["theirs"], "x", "left alone (server-side apply)");
    let (_, out) = run();
    assert!(line_of(&out, "a").contains("0 drifted"), "{out}");
}

#[test]
fn a_removed_bundle_is_pruned_only_inside_the_allow_list() {
    let site = Site::new();
    site.write(
        "src/bundles/web/objects.yaml",
        &format!(
            "{}---\n{}",
            config_map("settings", "web"),
            config_map("elsewhere", "other")
        ),
    );
    site.write("src/bundles/stay/objects.yaml", &config_map("stay", "web"));
    site.publish(&[]);
    let api = Api::start(&site);
    let namespaces = site.path("namespaces.yaml");
    std::fs::write(
        &namespaces,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: web}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n",
    )
    .unwrap();
    api.kubectl.apply(namespaces.to_str().unwrap(), &[]);
    // Applied before the agent was restricted to namespace web.
    let (code, out) = agent(&site, &api, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(api.kubectl.exists("configmap", "elsewhere", "other"));

    std::fs::remove_dir_all(site.path("src/bundles/web")).unwrap();
    site.publish(&[]);
    let (code, out) = agent(&site, &api, &["--allow-namespace", "web"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        !api.kubectl.exists("configmap", "settings", "web"),
        "inside the allow-list: pruned"
    );
    assert!(
        api.kubectl.exists("configmap", "elsewhere", "other"),
        "outside it: left"
    );
    assert!(api.kubectl.exists("configmap", "stay", "web"));
}
