//! The k3s add-on: manifests/drover.yaml, its kustomize base, the least-privilege overlay
//! and `drover addon`'s output. Every document must round-trip through its k8s-openapi type
//! without losing a field (a typo'd field would be dropped), and stock `kubectl apply
//! --server-side` must accept each file against the kube API double.

use std::path::Path;

use drover_e2e::{drover_ok, kustomize, repo_root, text, AgentRun, KubeApi, Site};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde_json::Value;

fn documents(yaml: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).expect("YAML document"))
        .filter(|v| !v.is_null())
        .collect()
}

/// Deserializes `doc` into `T` and back; every field of `doc` must survive.
fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value) -> Value {
    let typed: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{e}: {doc:#}"));
    serde_json::to_value(typed).unwrap()
}

/// Checks each document against the k8s-openapi type of its kind; returns the kinds seen.
fn assert_strict(what: &str, yaml: &str) -> Vec<String> {
    let mut kinds = Vec::new();
    for doc in documents(yaml) {
        let kind = doc["kind"].as_str().unwrap_or_default().to_string();
        let back = match kind.as_str() {
            "Namespace" => round_trip::<Namespace>(&doc),
            "ServiceAccount" => round_trip::<ServiceAccount>(&doc),
            "ClusterRole" => round_trip::<ClusterRole>(&doc),
            "ClusterRoleBinding" => round_trip::<ClusterRoleBinding>(&doc),
            "Role" => round_trip::<Role>(&doc),
            "RoleBinding" => round_trip::<RoleBinding>(&doc),
            "ConfigMap" => round_trip::<ConfigMap>(&doc),
            "Secret" => round_trip::<Secret>(&doc),
            "Deployment" => round_trip::<Deployment>(&doc),
            other => panic!("{what}: kind {other:?} has no strict check here; add its k8s-openapi type"),
        };
        assert_eq!(
            back, doc,
            "{what}: {kind} {} lost fields (a typo?)",
            doc["metadata"]["name"]
        );
        kinds.push(kind);
    }
    kinds
}

/// `kubectl apply --server-side -f FILE` against a fresh API double; returns the double.
fn apply(dir: &Path, file: &Path) -> KubeApi {
    let api = KubeApi::start(dir);
    api.kubectl().apply(file.to_str().unwrap(), &[]);
    api
}

fn get_json(api: &KubeApi, args: &[&str]) -> Value {
    api.kubectl().json(&[&["get"], args].concat())
}

/// drover.yaml without its leading comment header.
fn drop_in_body() -> String {
    let text = std::fs::read_to_string(repo_root().join("manifests/drover.yaml")).unwrap();
    text.lines()
        .skip_while(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn drop_in_is_exactly_what_kustomize_renders_from_the_base() {
    let rendered = kustomize(&repo_root().join("manifests/base"));
    assert!(
        drop_in_body() == rendered,
        "manifests/drover.yaml differs from `kubectl kustomize manifests/base`; regenerate it (manifests/README.md)"
    );
}

#[test]
fn drop_in_documents_round_trip_through_their_k8s_types() {
    let kinds = assert_strict("manifests/drover.yaml", &drop_in_body());
    for kind in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Secret",
        "Deployment",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} in {kinds:?}");
    }
}

#[test]
fn drop_in_deployment_runs_restricted_with_probes_and_recreate() {
    let docs = documents(&drop_in_body());
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let typed: Deployment = serde_json::from_value(deployment.clone()).unwrap();
    let spec = typed.spec.unwrap();
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.strategy.unwrap().type_.as_deref(), Some("Recreate"));
    let pod = spec.template.spec.unwrap();
    let pod_security = pod.security_context.unwrap();
    assert_eq!(pod_security.run_as_non_root, Some(true));
    assert_eq!(pod_security.run_as_user, Some(65532));
    assert_eq!(pod_security.seccomp_profile.unwrap().type_, "RuntimeDefault");
    let container = &pod.containers[0];
    // The default image is what `drover image` tags by default and the air-gap tarball holds.
    let image = format!("drover-agent:{}", env!("CARGO_PKG_VERSION"));
    assert_eq!(
        container.image.as_deref(),
        Some(image.as_str()),
        "bump the add-on's image with the version"
    );
    let security = container.security_context.clone().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.capabilities.unwrap().drop, Some(vec!["ALL".to_string()]));
    let probe_path = |p: Option<&k8s_openapi::api::core::v1::Probe>| {
        p.and_then(|p| p.http_get.as_ref()).and_then(|h| h.path.clone())
    };
    assert_eq!(
        probe_path(container.liveness_probe.as_ref()).as_deref(),
        Some("/healthz")
    );
    assert_eq!(
        probe_path(container.readiness_probe.as_ref()).as_deref(),
        Some("/readyz")
    );
    // The probes reach the agent's listener only if it listens beyond loopback.
    let config_map = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    let config: Value = serde_norway::from_str(config_map["data"]["config.yaml"].as_str().unwrap()).unwrap();
    assert_eq!(config["listen"], "0.0.0.0:9090");
    assert_eq!(config["sink"], "kube");
}

#[test]
fn kubectl_server_side_apply_accepts_the_drop_in() {
    let dir = tempfile::tempdir().unwrap();
    let api = apply(dir.path(), &repo_root().join("manifests/drover.yaml"));
    let deployment = get_json(&api, &["deployment", "drover-agent", "-n", "drover-system"]);
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    get_json(&api, &["clusterrolebinding", "drover-agent"]);
}

#[test]
fn least_privilege_overlay_is_strict_and_applies() {
    let site = Site::new();
    let yaml = kustomize(&repo_root().join("manifests/least-privilege"));
    let kinds = assert_strict("manifests/least-privilege", &yaml);
    assert!(kinds.iter().filter(|k| *k == "RoleBinding").count() >= 2, "{kinds:?}");
    site.write("least.yaml", &yaml);
    let api = apply(&site.path("api"), &site.path("least.yaml"));
    let bindings = get_json(&api, &["clusterrolebindings"]);
    let names: Vec<&str> = bindings["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["metadata"]["name"].as_str())
        .collect();
    assert!(
        !names.contains(&"drover-agent"),
        "cluster-wide write binding left in: {names:?}"
    );
    get_json(&api, &["rolebinding", "drover-agent", "-n", "shop"]);
}

/// The agent config file held by the ConfigMap drover-agent-config among `docs`.
fn agent_config(docs: &[Value]) -> Value {
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "drover-agent-config")
        .expect("ConfigMap drover-agent-config");
    serde_norway::from_str(cm["data"]["config.yaml"].as_str().unwrap()).unwrap()
}

#[test]
fn least_privilege_overlay_turns_on_the_allow_list_for_its_namespaces() {
    let docs = documents(&kustomize(&repo_root().join("manifests/least-privilege")));
    let mut config = agent_config(&docs);
    // Write access (a RoleBinding) and the allow-list name the same namespaces, except the
    // agent's own drover-system, which bundles must not write to.
    let bound: Vec<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "RoleBinding")
        .filter_map(|d| d["metadata"]["namespace"].as_str())
        .filter(|ns| *ns != "drover-system")
        .collect();
    assert_eq!(bound, ["shop"]);
    assert_eq!(config["allowNamespaces"], serde_json::json!(bound));
    // Apart from the allow-list, the overlay's config is the base's (the patch repeats it).
    config.as_object_mut().unwrap().remove("allowNamespaces");
    assert_eq!(config, agent_config(&documents(&drop_in_body())));
}

/// `drover addon --source SOURCE --key KEY --cluster-name CLUSTER EXTRA…`: the add-on it prints.
fn addon(source: &str, key: &str, cluster: &str, extra: &[&str]) -> String {
    let mut args = vec!["addon", "--source", source, "--key", key, "--cluster-name", cluster];
    args.extend_from_slice(extra);
    drover_ok(&args)
}

#[test]
fn addon_output_is_strict_applies_and_carries_the_values() {
    let site = Site::new();
    let key = site.p("keys/drover.pub");
    let yaml = addon(
        "https://store.example.net/stable",
        &key,
        "shop-7",
        &[
            "--source",
            "file:///media/usb/store",
            "--label",
            "tier=yes",
            "--label",
            // Valid label values YAML would misread unquoted (a float): the add-on must quote.
            "version=1.10",
            "--image",
            "registry.example.net/drover-agent:0.1.0",
            "--namespaces",
            "shop,cafe",
        ],
    );
    assert_strict("drover addon", &yaml);
    site.write("addon.yaml", &yaml);
    let api = apply(&site.path("api"), &site.path("addon.yaml"));
    let cm = get_json(&api, &["configmap", "drover-agent-config", "-n", "drover-system"]);
    let config: Value = serde_norway::from_str(cm["data"]["config.yaml"].as_str().unwrap()).unwrap();
    assert_eq!(config["clusterName"], "shop-7");
    assert_eq!(config["labels"]["tier"], "yes");
    assert_eq!(config["labels"]["version"], "1.10");
    assert_eq!(config["sources"][1], "file:///media/usb/store");
    assert_eq!(config["keys"][0], "/etc/drover/keys/drover.pub");
    // Least privilege turns on the agent's allow-list: a bundle reaching outside the
    // listed namespaces is refused whole instead of half applied.
    assert_eq!(config["allowNamespaces"], serde_json::json!(["cafe", "shop"]));
    assert!(
        yaml.contains("DELETE the namespace"),
        "no warning above the listed namespaces"
    );
    let secret = documents(&yaml).into_iter().find(|d| d["kind"] == "Secret").unwrap();
    assert_eq!(
        secret["stringData"]["drover.pub"].as_str().unwrap(),
        std::fs::read_to_string(&key).unwrap()
    );
    let deployment = get_json(&api, &["deployment", "drover-agent", "-n", "drover-system"]);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example.net/drover-agent:0.1.0"
    );
    get_json(&api, &["rolebinding", "drover-agent", "-n", "cafe"]);
}

#[test]
fn addon_config_is_accepted_by_the_agent_config_parser() {
    // The filled-in config file, with the key path pointed at the real key, must be a
    // config the agent takes: run it once against a store it cannot reach and check the
    // failure is about the store, not the configuration (exit 3, not 2).
    let site = Site::new();
    let key = site.p("keys/drover.pub");
    let yaml = addon("http://127.0.0.1:9/none", &key, "c1", &[]);
    let docs = documents(&yaml);
    let cm = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    let config = cm["data"]["config.yaml"]
        .as_str()
        .unwrap()
        .replace("/etc/drover/keys/drover.pub", &key)
        .replace("/var/lib/drover", &site.p("state"))
        .replace("sink: kube", &format!("sink: dir:{}", site.p("manifests")))
        .replace("0.0.0.0:9090", "off");
    site.write("config.yaml", &config);
    let out = AgentRun::bare()
        .args(["--config", &site.p("config.yaml"), "--once", "--connect-timeout", "2s"])
        .run();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
}

/// The `kubectl` command lines of install.md's uninstall procedure (`\` continuations joined).
fn documented_uninstall_commands() -> Vec<Vec<String>> {
    let doc = std::fs::read_to_string(repo_root().join("docs/install.md")).unwrap();
    let section = doc
        .split_once("## Uninstalling the agent")
        .and_then(|(_, rest)| rest.split_once("```sh\n"))
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(block, _)| block.replace("\\\n", " "))
        .expect("a sh block in install.md's \"Uninstalling the agent\"");
    section
        .lines()
        .filter_map(|l| l.strip_prefix("kubectl "))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn documented_uninstall_removes_the_agent_and_keeps_the_listed_namespaces_and_workloads() {
    let site = Site::new();
    let key = site.p("keys/drover.pub");
    let yaml = addon(
        "https://store.example.net/stable",
        &key,
        "shop-7",
        &["--namespaces", "shop,cafe"],
    );
    site.write("addon.yaml", &yaml);
    let api = apply(&site.path("api"), &site.path("addon.yaml"));
    // A workload a bundle put into a listed namespace.
    site.write(
        "workload.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: menu, namespace: shop}\ndata: {soup: tomato}\n",
    );
    api.kubectl().apply(&site.p("workload.yaml"), &[]);

    let commands = documented_uninstall_commands();
    assert!(commands.len() >= 3, "{commands:?}");
    for command in &commands {
        let args: Vec<&str> = command.iter().map(String::as_str).collect();
        api.kubectl().ok(&args);
    }

    let gone = |args: &[&str]| {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        !api.kubectl().run(&all).status.success()
    };
    assert!(gone(&["namespace", "drover-system"]));
    assert!(gone(&["clusterrole", "drover-agent"]));
    assert!(gone(&["clusterrole", "drover-agent-read"]));
    assert!(gone(&["clusterrolebinding", "drover-agent-read"]));
    assert!(gone(&["rolebinding", "drover-agent", "-n", "shop"]));
    assert!(gone(&["rolebinding", "drover-agent", "-n", "cafe"]));
    get_json(&api, &["namespace", "cafe"]);
    let menu = get_json(&api, &["configmap", "menu", "-n", "shop"]);
    assert_eq!(menu["data"]["soup"], "tomato");
}
