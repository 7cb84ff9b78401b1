//! The double against stock `kubectl` (v1.32), an independent client: if kubectl can
//! apply, read, select, scale, patch status and delete through it, and sees the errors
//! it expects from a real apiserver, the double is faithful where drover relies on it.
//!
//! Each test runs the built `kube-api-double` binary on a free port and kubectl with a
//! throwaway HOME, kubeconfig and cache directory, so ~/.kube is never read or written
//! (drover-e2e's `KubeApi` and `Kubectl`, which the end-to-end tests use too).
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;

use drover_e2e::{KubeApi, Kubectl};
use serde_json::Value;

/// A running `kube-api-double` (logging its requests) and a kubectl configured for it only.
struct Cluster {
    api: KubeApi,
    kubectl: Kubectl,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn start(extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let api = KubeApi::start_with(dir.path(), extra);
        Cluster {
            kubectl: api.kubectl(),
            api,
            dir,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a manifest into the temp dir and returns its path.
    fn manifest(&self, name: &str, yaml: &str) -> String {
        let p = self.path(name);
        std::fs::write(&p, yaml).unwrap();
        p.to_str().unwrap().to_string()
    }

    /// `kubectl ARGS -o json --show-managed-fields`, parsed.
    fn json(&self, args: &[&str]) -> Value {
        self.kubectl.json(&[args, &["--show-managed-fields"]].concat())
    }

    /// A raw DELETE with `preconditions.resourceVersion`; the whole response.
    fn http_delete_with_precondition(&self, path: &str, resource_version: &str) -> String {
        let body = format!(
            r#"{{"kind":"DeleteOptions","apiVersion":"v1","preconditions":{{"resourceVersion":"{resource_version}"}}}}"#
        );
        let mut stream = TcpStream::connect(("127.0.0.1", self.api.port())).unwrap();
        write!(
            stream,
            "DELETE {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }

    /// A plain GET on the double (for its test-only endpoints): (status, body).
    fn http_get(&self, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.api.port())).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            dechunk(body)
        } else {
            body.to_string()
        };
        (status, body)
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

/// Managers (manager, operation, subresource) owning `field` (e.g. `f:spec.f:replicas`).
fn owners(obj: &Value, field: &[&str]) -> Vec<String> {
    obj["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| {
            let mut node = &m["fieldsV1"];
            for seg in field {
                node = &node[format!("f:{seg}")];
            }
            !node.is_null()
        })
        .map(|m| {
            let mut who = format!(
                "{} {}",
                m["manager"].as_str().unwrap(),
                m["operation"].as_str().unwrap()
            );
            if let Some(sub) = m["subresource"].as_str() {
                who.push_str(&format!(" {sub}"));
            }
            who
        })
        .collect()
}

const APP: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: shop
  labels: {app: web, tier: front}
data:
  color: blue
  size: large
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: backend
  namespace: shop
  labels: {app: db}
data:
  engine: sqlite
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
"#;

fn rv(obj: &Value) -> String {
    obj["metadata"]["resourceVersion"].as_str().unwrap().to_string()
}

#[test]
fn multi_document_apply_then_get_and_label_selectors() {
    let c = Cluster::start(&[]);
    let file = c.manifest("app.yaml", APP);
    let out = c.kubectl.apply(&file, &[]);
    for line in [
        "namespace/shop serverside-applied",
        "configmap/settings serverside-applied",
        "configmap/backend serverside-applied",
        "deployment.apps/web serverside-applied",
    ] {
        assert!(out.contains(line), "{out}");
    }

    let deploy = c.json(&["get", "deployment", "web", "-n", "shop"]);
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_eq!(deploy["metadata"]["generation"], 1);
    assert!(!deploy["metadata"]["uid"].as_str().unwrap().is_empty());
    let entry = &deploy["metadata"]["managedFields"][0];
    assert_eq!(
        (entry["manager"].as_str(), entry["operation"].as_str()),
        (Some("kubectl"), Some("Apply"))
    );
    assert_eq!(owners(&deploy, &["spec", "replicas"]), ["kubectl Apply"]);
    assert_eq!(owners(&deploy, &["metadata", "labels", "app"]), ["kubectl Apply"]);

    // Short names and label selectors, in one namespace and across all of them.
    let names = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(["-o", "name"]);
        c.kubectl.ok(&a)
    };
    assert_eq!(names(&["get", "cm", "-A", "-l", "tier=front"]), "configmap/settings\n");
    assert_eq!(
        names(&["get", "cm", "-n", "shop", "-l", "app in (web,db)"]),
        "configmap/backend\nconfigmap/settings\n"
    );
    assert_eq!(
        names(&["get", "cm", "-n", "shop", "-l", "app notin (web)"]),
        "configmap/backend\n"
    );
    assert_eq!(
        names(&["get", "cm", "-n", "shop", "-l", "!tier"]),
        "configmap/backend\n"
    );
    assert_eq!(
        names(&["get", "cm", "-n", "shop", "-l", "app!=web,app"]),
        "configmap/backend\n"
    );
    assert_eq!(names(&["get", "deploy", "-n", "shop"]), "deployment.apps/web\n");
    assert_eq!(
        names(&["get", "cm", "-n", "shop", "--field-selector", "metadata.name=settings"]),
        "configmap/settings\n"
    );
    let table = c.kubectl.ok(&["get", "ns"]);
    for ns in ["default", "kube-system", "shop"] {
        assert!(table.contains(ns), "{table}");
    }
    let ns = c.json(&["get", "ns", "shop"]);
    assert_eq!(ns["status"]["phase"], "Active");
    assert_eq!(ns["metadata"]["labels"]["kubernetes.io/metadata.name"], "shop");
}

#[test]
fn reapplying_changes_only_what_changed() {
    let c = Cluster::start(&[]);
    let file = c.manifest("app.yaml", APP);
    c.kubectl.apply(&file, &[]);
    let cm = c.json(&["get", "cm", "settings", "-n", "shop"]);
    let deploy = c.json(&["get", "deploy", "web", "-n", "shop"]);

    // The same manifest again is a no-op: no resourceVersion moves.
    c.kubectl.apply(&file, &[]);
    assert_eq!(rv(&c.json(&["get", "cm", "settings", "-n", "shop"])), rv(&cm));
    assert_eq!(rv(&c.json(&["get", "deploy", "web", "-n", "shop"])), rv(&deploy));

    // One value changed and one key dropped: only the ConfigMap changes, and the dropped
    // key (owned by kubectl alone) is removed.
    let changed = APP.replace("color: blue\n  size: large", "color: green");
    c.kubectl.apply(&c.manifest("app2.yaml", &changed), &[]);
    let cm2 = c.json(&["get", "cm", "settings", "-n", "shop"]);
    assert_ne!(rv(&cm2), rv(&cm));
    assert_eq!(cm2["data"], serde_json::json!({"color": "green"}));
    assert_eq!(rv(&c.json(&["get", "deploy", "web", "-n", "shop"])), rv(&deploy));

    // A spec change bumps the generation; a label change does not.
    let scaled = APP.replace("replicas: 2", "replicas: 4");
    c.kubectl.apply(&c.manifest("app3.yaml", &scaled), &[]);
    let d = c.json(&["get", "deploy", "web", "-n", "shop"]);
    assert_eq!(
        (d["spec"]["replicas"].as_u64(), d["metadata"]["generation"].as_u64()),
        (Some(4), Some(2))
    );
    let relabelled = scaled.replace("  labels: {app: web}\nspec:", "  labels: {app: web, extra: x}\nspec:");
    c.kubectl.apply(&c.manifest("app4.yaml", &relabelled), &[]);
    let d = c.json(&["get", "deploy", "web", "-n", "shop"]);
    assert_eq!(
        (
            d["metadata"]["labels"]["extra"].as_str(),
            d["metadata"]["generation"].as_u64()
        ),
        (Some("x"), Some(2))
    );
}

#[test]
fn a_second_manager_conflicts_until_it_forces() {
    let c = Cluster::start(&[]);
    c.kubectl.apply(&c.manifest("app.yaml", APP), &[]);
    let other = c.manifest(
        "other.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec: {replicas: 5}\n",
    );

    let err = c
        .kubectl
        .fails(&["apply", "--server-side", "--field-manager", "other", "-f", &other]);
    assert!(
        err.contains("Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"),
        "{err}"
    );
    assert!(
        err.contains("--force-conflicts"),
        "kubectl recognised a 409 Conflict: {err}"
    );
    assert_eq!(c.json(&["get", "deploy", "web", "-n", "shop"])["spec"]["replicas"], 2);

    // Agreeing on the value is not a conflict: both own the field.
    let same = c.manifest(
        "same.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec: {replicas: 2}\n",
    );
    c.kubectl.apply(&same, &["--field-manager", "other"]);
    let d = c.json(&["get", "deploy", "web", "-n", "shop"]);
    assert_eq!(owners(&d, &["spec", "replicas"]), ["kubectl Apply", "other Apply"]);

    c.kubectl
        .apply(&other, &["--field-manager", "other", "--force-conflicts"]);
    let d = c.json(&["get", "deploy", "web", "-n", "shop"]);
    assert_eq!(d["spec"]["replicas"], 5);
    assert_eq!(owners(&d, &["spec", "replicas"]), ["other Apply"]);

    // An imperative change (kubectl scale, through /scale) takes the field too, and the
    // original applier then conflicts with it.
    assert!(c
        .kubectl
        .ok(&["scale", "deploy", "web", "-n", "shop", "--replicas=3"])
        .contains("scaled"));
    let d = c.json(&["get", "deploy", "web", "-n", "shop"]);
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(owners(&d, &["spec", "replicas"]), ["kubectl Update scale"]);
    let err = c
        .kubectl
        .fails(&["apply", "--server-side", "-f", &c.path("app.yaml").to_string_lossy()]);
    assert!(
        err.contains("conflict with \"kubectl\" with subresource \"scale\" using apps/v1: .spec.replicas"),
        "{err}"
    );

    // kubectl patch (strategic merge) is an Update by kubectl-patch.
    c.kubectl.ok(&[
        "patch",
        "cm",
        "settings",
        "-n",
        "shop",
        "-p",
        r#"{"data":{"color":"red"}}"#,
    ]);
    let cm = c.json(&["get", "cm", "settings", "-n", "shop"]);
    assert_eq!(owners(&cm, &["data", "color"]), ["kubectl-patch Update"]);
    let err = c
        .kubectl
        .fails(&["apply", "--server-side", "-f", &c.path("app.yaml").to_string_lossy()]);
    assert!(
        err.contains("conflict with \"kubectl-patch\" using v1: .data.color"),
        "{err}"
    );
}

#[test]
fn status_is_a_subresource() {
    let c = Cluster::start(&[]);
    c.kubectl.apply(&c.manifest("app.yaml", APP), &[]);
    let before = c.json(&["get", "deploy", "web", "-n", "shop"]);
    assert!(
        before["status"].is_null() || before["status"]["readyReplicas"].is_null(),
        "{before}"
    );

    let status = r#"{"status":{"observedGeneration":1,"replicas":2,"readyReplicas":2,"availableReplicas":2,
        "conditions":[{"type":"Available","status":"True","reason":"MinimumReplicasAvailable","message":"ok"}]}}"#;
    c.kubectl.ok(&[
        "patch",
        "deploy",
        "web",
        "-n",
        "shop",
        "--subresource=status",
        "--type=merge",
        "-p",
        status,
    ]);
    let d = c.json(&["get", "deploy", "web", "-n", "shop"]);
    assert_eq!(d["status"]["readyReplicas"], 2);
    assert_eq!(
        d["metadata"]["generation"], 1,
        "status writes leave the generation alone"
    );
    assert_eq!(
        owners(&d, &["status", "readyReplicas"]),
        ["kubectl-patch Update status"]
    );

    // The main resource ignores .status, whoever sends it.
    let with_status = APP.to_string() + "status:\n  readyReplicas: 0\n";
    c.kubectl.apply(&c.manifest("with-status.yaml", &with_status), &[]);
    c.kubectl.ok(&[
        "patch",
        "deploy",
        "web",
        "-n",
        "shop",
        "--type=merge",
        "-p",
        r#"{"status":{"readyReplicas":0}}"#,
    ]);
    assert_eq!(
        c.json(&["get", "deploy", "web", "-n", "shop"])["status"]["readyReplicas"],
        2
    );

    // kubectl wait reads it (over a watch).
    let out = c.kubectl.ok(&[
        "wait",
        "--for=condition=Available",
        "deploy/web",
        "-n",
        "shop",
        "--timeout=10s",
    ]);
    assert!(out.contains("condition met"), "{out}");
}

#[test]
fn immutable_fields_and_missing_namespaces_are_refused() {
    let c = Cluster::start(&[]);
    c.kubectl.apply(&c.manifest("app.yaml", APP), &[]);
    let moved = APP.replace("matchLabels: {app: web}", "matchLabels: {app: other}");
    let err = c
        .kubectl
        .fails(&["apply", "--server-side", "-f", &c.manifest("moved.yaml", &moved)]);
    assert!(
        err.contains("The Deployment \"web\" is invalid: spec.selector: Invalid value:")
            && err.contains("field is immutable"),
        "{err}"
    );
    assert_eq!(
        c.json(&["get", "deploy", "web", "-n", "shop"])["spec"]["selector"]["matchLabels"]["app"],
        "web"
    );

    let stray = c.manifest(
        "stray.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: nowhere}\ndata: {a: b}\n",
    );
    let err = c.kubectl.fails(&["apply", "--server-side", "-f", &stray]);
    assert!(err.contains("namespaces \"nowhere\" not found"), "{err}");
    let err = c.kubectl.fails(&["get", "cm", "nothing", "-n", "shop"]);
    assert!(err.contains("configmaps \"nothing\" not found"), "{err}");
    let bad = c.manifest(
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Bad_Name, namespace: shop}\n",
    );
    let err = c.kubectl.fails(&["apply", "--server-side", "-f", &bad]);
    assert!(err.contains("metadata.name: Invalid value: \"Bad_Name\""), "{err}");
}

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: helmcharts.helm.cattle.io
spec:
  group: helm.cattle.io
  names: {kind: HelmChart, plural: helmcharts, singular: helmchart}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
    subresources: {status: {}}
"#;

const CHART: &str = r#"
apiVersion: helm.cattle.io/v1
kind: HelmChart
metadata:
  name: traefik
  namespace: kube-system
  labels: {app: traefik}
spec:
  chart: traefik
  valuesContent: |
    replicas: 1
"#;

#[test]
fn crds_add_kinds_to_discovery_until_deleted() {
    let c = Cluster::start(&[]);
    let builtins = c.kubectl.ok(&["api-resources"]);
    for line in [
        "configmaps ",
        "deployments ",
        "customresourcedefinitions ",
        "clusterroles ",
    ] {
        assert!(builtins.contains(line), "{builtins}");
    }
    assert!(
        !builtins.contains("helmcharts"),
        "HelmChart is not built in: {builtins}"
    );
    assert!(c
        .kubectl
        .fails(&["get", "helmcharts", "-A"])
        .contains("the server doesn't have a resource type"));

    c.kubectl.apply(&c.manifest("crd.yaml", CRD), &[]);
    let established = c.kubectl.ok(&[
        "get",
        "crd",
        "helmcharts.helm.cattle.io",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
    ]);
    assert_eq!(established, "True");
    let resources = c.kubectl.ok(&["api-resources", "--api-group=helm.cattle.io"]);
    assert!(
        resources.contains("helmcharts") && resources.contains("HelmChart"),
        "{resources}"
    );

    c.kubectl.apply(&c.manifest("chart.yaml", CHART), &[]);
    let chart = c.json(&["get", "helmchart", "traefik", "-n", "kube-system"]);
    assert_eq!(chart["spec"]["chart"], "traefik");
    assert_eq!(chart["metadata"]["generation"], 1);
    assert_eq!(
        c.kubectl
            .ok(&["get", "helmcharts", "-A", "-l", "app=traefik", "-o", "name"]),
        "helmchart.helm.cattle.io/traefik\n"
    );
    assert!(c
        .kubectl
        .ok(&["delete", "helmchart", "traefik", "-n", "kube-system"])
        .contains("deleted"));
    assert!(c
        .kubectl
        .fails(&["get", "helmchart", "traefik", "-n", "kube-system"])
        .contains("not found"));

    c.kubectl.apply(&c.manifest("chart.yaml", CHART), &[]);
    c.kubectl.ok(&["delete", "crd", "helmcharts.helm.cattle.io"]);
    assert!(!c.kubectl.ok(&["api-resources"]).contains("helmcharts"));
    let (_, objects) = c.http_get("/_double/objects");
    assert!(
        !objects.contains("HelmChart"),
        "custom resources go with their CRD: {objects}"
    );
}

#[test]
fn deleting_a_namespace_deletes_what_is_in_it() {
    let c = Cluster::start(&[]);
    c.kubectl.apply(&c.manifest("app.yaml", APP), &[]);
    let out = c.kubectl.ok(&["delete", "namespace", "shop"]);
    assert!(out.contains("namespace \"shop\" deleted"), "{out}");
    assert!(c
        .kubectl
        .fails(&["get", "ns", "shop"])
        .contains("namespaces \"shop\" not found"));
    assert_eq!(c.kubectl.ok(&["get", "cm,deploy", "-A", "-l", "app", "-o", "name"]), "");
    let err = c.kubectl.fails(&["delete", "namespace", "default"]);
    assert!(err.contains("this namespace may not be deleted"), "{err}");
}

#[test]
fn auto_ready_makes_workloads_ready_and_crds_can_take_time() {
    let c = Cluster::start(&["--auto-ready", "--crd-establish-delay", "300"]);
    c.kubectl.apply(&c.manifest("app.yaml", APP), &[]);
    let out = c
        .kubectl
        .ok(&["rollout", "status", "deploy/web", "-n", "shop", "--timeout=10s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let d = c.json(&["get", "deploy", "web", "-n", "shop"]);
    assert_eq!(d["status"]["readyReplicas"], 2);
    assert!(owners(&d, &["status", "readyReplicas"]).contains(&"kube-controller-manager Update status".to_string()));

    let job = c.manifest(
        "job.yaml",
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: migrate, namespace: shop}\n\
         spec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: m, image: busybox}]\n",
    );
    c.kubectl.apply(&job, &[]);
    let out = c.kubectl.ok(&[
        "wait",
        "--for=condition=Complete",
        "job/migrate",
        "-n",
        "shop",
        "--timeout=10s",
    ]);
    assert!(out.contains("condition met"), "{out}");

    c.kubectl.apply(&c.manifest("crd.yaml", CRD), &[]);
    let out = c.kubectl.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/helmcharts.helm.cattle.io",
        "--timeout=10s",
    ]);
    assert!(out.contains("condition met"), "{out}");
    c.kubectl.apply(&c.manifest("chart.yaml", CHART), &[]);
    assert_eq!(
        c.kubectl.ok(&["get", "helmcharts", "-A", "-o", "name"]),
        "helmchart.helm.cattle.io/traefik\n"
    );
}

#[test]
fn with_a_ready_delay_workloads_are_seen_unready_then_ready_through_a_status_write() {
    let c = Cluster::start(&["--auto-ready", "--ready-delay", "1500"]);
    c.kubectl.apply(&c.manifest("app.yaml", APP), &[]);
    let fresh = c.json(&["get", "deploy", "web", "-n", "shop"]);
    assert!(
        fresh["status"]["readyReplicas"].is_null(),
        "not ready right after the write: {fresh:#}"
    );
    let out = c
        .kubectl
        .ok(&["rollout", "status", "deploy/web", "-n", "shop", "--timeout=20s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let ready = c.json(&["get", "deploy", "web", "-n", "shop"]);
    assert_eq!(ready["status"]["readyReplicas"], 2);
    assert_ne!(rv(&ready), rv(&fresh), "becoming ready moved the resourceVersion");
    assert!(owners(&ready, &["status", "readyReplicas"]).contains(&"kube-controller-manager Update status".to_string()));

    // A spec change: seen with observedGeneration behind until the controller catches up.
    c.kubectl.ok(&["scale", "deploy/web", "-n", "shop", "--replicas=3"]);
    let scaled = c.json(&["get", "deploy", "web", "-n", "shop"]);
    assert!(
        scaled["status"]["observedGeneration"].as_u64() < scaled["metadata"]["generation"].as_u64(),
        "observedGeneration behind right after the change: {scaled:#}"
    );
    c.kubectl
        .ok(&["rollout", "status", "deploy/web", "-n", "shop", "--timeout=20s"]);
    let caught_up = c.json(&["get", "deploy", "web", "-n", "shop"]);
    assert_eq!(caught_up["status"]["readyReplicas"], 3, "{caught_up:#}");
}

#[test]
fn a_write_with_a_stale_resource_version_is_a_409_conflict() {
    let c = Cluster::start(&[]);
    c.kubectl.apply(&c.manifest("app.yaml", APP), &[]);
    let read = c.kubectl.json(&["get", "configmap", "settings", "-n", "shop"]);
    // Someone else writes after our read: our copy's resourceVersion is stale now.
    c.kubectl
        .ok(&["label", "configmap", "settings", "-n", "shop", "touched=yes"]);
    let mut stale = read.clone();
    stale["data"]["mine"] = Value::from("1");
    let file = c.manifest("stale.json", &stale.to_string());
    let err = c.kubectl.fails(&["replace", "-f", &file]);
    assert!(
        err.contains("Error from server (Conflict)") && err.contains("the object has been modified"),
        "{err}"
    );
    let now = c.kubectl.json(&["get", "configmap", "settings", "-n", "shop"]);
    assert!(
        now["data"]["mine"].is_null(),
        "the stale write changed nothing: {now:#}"
    );
    // With the current resourceVersion the same write goes through.
    let mut fresh = stale;
    fresh["metadata"]["resourceVersion"] = now["metadata"]["resourceVersion"].clone();
    let file = c.manifest("fresh.json", &fresh.to_string());
    c.kubectl.ok(&["replace", "-f", &file]);
    let after = c.kubectl.json(&["get", "configmap", "settings", "-n", "shop"]);
    assert_eq!(after["data"]["mine"], "1");
    // And a delete whose precondition names an old resourceVersion is refused the same way.
    let raw = c.http_delete_with_precondition(
        "/api/v1/namespaces/shop/configmaps/settings",
        read["metadata"]["resourceVersion"].as_str().unwrap(),
    );
    assert!(raw.starts_with("HTTP/1.1 409"), "{raw}");
}

#[test]
fn a_foreign_controller_annotates_applyset_members_and_apply_keeps_its_field() {
    let c = Cluster::start(&["--foreign-writer-interval", "100"]);
    let member = c.manifest(
        "member.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: member\n  namespace: default\n  \
         labels: {applyset.kubernetes.io/part-of: applyset-x-v1}\ndata: {a: b}\n",
    );
    c.kubectl.apply(&member, &["--field-manager=drover"]);
    let applied = c.json(&["get", "configmap", "member", "-n", "default"]);
    let annotated = || {
        let cm = c.json(&["get", "configmap", "member", "-n", "default"]);
        (!cm["metadata"]["annotations"]["example.com/last-seen"].is_null()).then_some(cm)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // The first read may already carry the annotation: wait for a write after it.
    let seen = loop {
        if let Some(cm) = annotated().filter(|cm| rv(cm) != rv(&applied)) {
            break cm;
        }
        assert!(std::time::Instant::now() < deadline, "never annotated");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_ne!(rv(&seen), rv(&applied), "the foreign write moved the resourceVersion");
    assert!(owners(&seen, &["metadata", "annotations", "example.com/last-seen"])
        .contains(&"someone-elses-controller Update".to_string()));
    // Re-applying the same manifest leaves the other manager's annotation alone.
    c.kubectl.apply(&member, &["--field-manager=drover"]);
    assert!(annotated().is_some(), "apply kept the foreign annotation");
}

#[test]
fn a_request_past_the_real_servers_size_limit_is_a_413() {
    let c = Cluster::start(&["--max-request-bytes", "3145728"]);
    let big = "x".repeat(3 << 20);
    let file = c.manifest(
        "big.yaml",
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big, namespace: default}}\ndata:\n  blob: {big}\n"
        ),
    );
    let err = c.kubectl.fails(&["apply", "--server-side", "-f", &file]);
    assert!(err.contains("Request entity too large: limit is 3145728"), "{err}");
    let small = c.manifest(
        "small.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: small, namespace: default}\ndata: {a: b}\n",
    );
    c.kubectl.apply(&small, &[]);
}

#[test]
fn the_request_log_shows_what_clients_sent() {
    let c = Cluster::start(&[]);
    c.kubectl.apply(
        &c.manifest("app.yaml", APP),
        &["--force-conflicts", "--field-manager", "drover"],
    );
    let (status, body) = c.http_get("/_double/requests");
    assert_eq!(status, 200);
    let requests: Vec<Value> = serde_json::from_str(&body).unwrap();
    let apply = requests
        .iter()
        .find(|r| r["method"] == "PATCH" && r["path"] == "/apis/apps/v1/namespaces/shop/deployments/web")
        .unwrap_or_else(|| panic!("no apply of the Deployment in {body}"));
    assert_eq!(apply["contentType"], "application/apply-patch+yaml");
    let query = apply["query"].as_str().unwrap();
    assert!(
        query.contains("fieldManager=drover") && query.contains("force=true"),
        "{query}"
    );

    // Watches stream newline-delimited events and end at timeoutSeconds.
    let (status, events) = c.http_get("/api/v1/namespaces/shop/configmaps?watch=true&timeoutSeconds=1");
    assert_eq!(status, 200);
    let types: Vec<String> = events
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(types, ["ADDED", "ADDED"], "{events}");
}
