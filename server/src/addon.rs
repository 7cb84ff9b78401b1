//! `drover addon`: the k3s add-on (manifests/drover.yaml) with one cluster's values filled
//! in — store URLs, trusted keys, cluster name and labels, agent image, and optionally the
//! least-privilege RBAC of manifests/least-privilege/ for listed namespaces. The output
//! goes straight into /var/lib/rancher/k3s/server/manifests/drover.yaml.
//!
//! The shipped files are the template (compiled in with `include_str!`), so the add-on and
//! `drover addon` cannot drift apart. Values are set in the parsed documents, never pasted
//! into text, and the YAML is written by a serializer: a label value such as `yes`, `1.0`
//! or `a: b # c` stays the string it was.

use std::collections::BTreeMap;
use std::path::PathBuf;

use drover_agent::oci::RegistryOptions;
use drover_agent::source::{Limits, Source};
use drover_agent::verify::TrustedKeys;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// The drop-in add-on, as shipped (`kubectl kustomize manifests/base` plus a header).
pub const DROP_IN: &str = include_str!("../../manifests/drover.yaml");
/// Cluster-wide read rules of the least-privilege variant.
const LEAST_PRIVILEGE_CLUSTER: &str = include_str!("../../manifests/least-privilege/cluster.yaml");
/// Per-namespace bindings of the least-privilege variant (drover-system's is the model).
const LEAST_PRIVILEGE_NAMESPACES: &str = include_str!("../../manifests/least-privilege/namespaces.yaml");

/// Where the trusted keys are mounted in the agent's container (the Secret's volume).
pub const KEYS_MOUNT: &str = "/etc/drover/keys";
/// The agent's own namespace.
pub const NAMESPACE: &str = "drover-system";
/// Name of the ConfigMap holding the agent's config file.
const CONFIG_MAP: &str = "drover-agent-config";
/// Name of the Secret holding the trusted keys.
const KEYS_SECRET: &str = "drover-trusted-keys";
/// Name of the agent's Deployment, ClusterRole and bindings.
const AGENT: &str = "drover-agent";

/// One cluster's values for the add-on.
#[derive(Debug, Clone, Default)]
pub struct AddonOptions {
    /// Store URLs, in priority order (`sources:` of the agent config).
    pub sources: Vec<String>,
    /// Trusted minisign public key files; each is embedded under its file name.
    pub keys: Vec<PathBuf>,
    /// The cluster's name.
    pub cluster_name: String,
    /// The cluster's labels.
    pub labels: BTreeMap<String, String>,
    /// Agent image reference; `None` keeps the shipped one.
    pub image: Option<String>,
    /// Least privilege: the namespaces the agent may write to (besides drover-system).
    /// Empty: cluster-wide RBAC, as shipped.
    pub namespaces: Vec<String>,
}

/// The add-on documents for `opts`, as one multi-document YAML text.
pub fn run(opts: &AddonOptions) -> Result<()> {
    print!("{}", render(opts)?);
    Ok(())
}

/// The add-on's YAML for `opts`.
pub fn render(opts: &AddonOptions) -> Result<String> {
    let keys = read_keys(&opts.keys)?;
    check_values(opts)?;
    let mut docs = parse_documents(DROP_IN, "manifests/drover.yaml")?;
    for doc in &mut docs {
        match (kind(doc), name(doc)) {
            ("ConfigMap", CONFIG_MAP) => set_config(doc, opts, &keys)?,
            ("Secret", KEYS_SECRET) => {
                doc["stringData"] = keys.iter().map(|(n, k)| (n.clone(), json!(k))).collect();
            }
            ("Deployment", AGENT) => {
                if let Some(image) = &opts.image {
                    doc["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image);
                }
            }
            _ => {}
        }
    }
    if !opts.namespaces.is_empty() {
        docs = least_privilege(docs, &opts.namespaces)?;
    }
    roll_on_config_change(&mut docs);
    let mut out = String::from(
        "# drover-agent as a k3s add-on, made by `drover addon` (docs/install.md).\n\
         # Copy to /var/lib/rancher/k3s/server/manifests/drover.yaml on a k3s server.\n",
    );
    for doc in &docs {
        out.push_str("---\n");
        if kind(doc) == "Namespace" && name(doc) != NAMESPACE {
            out.push_str(NAMESPACE_WARNING);
        }
        out.push_str(&to_yaml(doc)?);
    }
    Ok(out)
}

/// Written above each listed Namespace: k3s deletes an object that disappears from a file
/// it applied, and deleting a namespace deletes every workload in it.
const NAMESPACE_WARNING: &str =
    "# A namespace your bundles write to. Removing this object from the file (emptying the\n\
     # file, or dropping the namespace from --namespaces) makes k3s DELETE the namespace and\n\
     # every workload in it. To uninstall, delete the file instead (docs/install.md).\n";

/// Annotates the Deployment's pod template with a digest of the config file and the
/// trusted keys: the agent reads both only at start, so when k3s re-applies a changed
/// add-on the changed annotation rolls the pod, and the new values take effect.
fn roll_on_config_change(docs: &mut [Value]) {
    let mut digest = Sha256::new();
    for doc in docs.iter() {
        match (kind(doc), name(doc)) {
            ("ConfigMap", CONFIG_MAP) => digest.update(doc["data"].to_string()),
            ("Secret", KEYS_SECRET) => digest.update(doc["stringData"].to_string()),
            _ => {}
        }
    }
    let hex: String = digest.finalize().iter().map(|b| format!("{b:02x}")).collect();
    for doc in docs.iter_mut() {
        if kind(doc) == "Deployment" && name(doc) == AGENT {
            doc["spec"]["template"]["metadata"]["annotations"]["checksum/config"] = json!(hex);
        }
    }
}

/// Parses a multi-document YAML text into JSON values (`what` names it in errors).
pub fn parse_documents(text: &str, what: &str) -> Result<Vec<Value>> {
    serde_norway::Deserializer::from_str(text)
        .map(|d| {
            serde::Deserialize::deserialize(d).map_err(|e| Error::Input {
                field: what.to_string(),
                message: format!("not YAML: {e}"),
            })
        })
        .filter(|v: &Result<Value>| !matches!(v, Ok(Value::Null)))
        .collect()
}

fn to_yaml(value: &impl serde::Serialize) -> Result<String> {
    serde_norway::to_string(value).map_err(|e| Error::Input {
        field: "output".into(),
        message: format!("cannot write YAML: {e}"),
    })
}

fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or_default()
}

fn name(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or_default()
}

/// Reads and checks each key file; returns (file name in the Secret, content).
fn read_keys(paths: &[PathBuf]) -> Result<Vec<(String, String)>> {
    if paths.is_empty() {
        return Err(input("--key", "at least one trusted public key file is required"));
    }
    // Each file read once, checked by the agent's own parser: a key the agent would refuse
    // is refused here.
    let contents = paths
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).map_err(|e| drover_agent::Error::Key {
                path: path.clone(),
                message: e.to_string(),
            })?;
            TrustedKeys::from_key_text(path, &text)?;
            Ok(text)
        })
        .collect::<Result<Vec<String>>>()?;
    let mut keys = Vec::new();
    for (path, content) in paths.iter().zip(contents) {
        let file = path
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| n.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)))
            .ok_or_else(|| Error::source(path, "key file names must be [A-Za-z0-9._-] (they become Secret keys)"))?
            .to_string();
        if keys.iter().any(|(n, _)| *n == file) {
            return Err(Error::source(path, format!("two keys are named {file}; rename one")));
        }
        keys.push((file, content));
    }
    Ok(keys)
}

fn check_values(opts: &AddonOptions) -> Result<()> {
    if opts.sources.is_empty() {
        return Err(input("--source", "at least one store URL is required"));
    }
    for source in &opts.sources {
        Source::parse_with(source, &Limits::default(), &RegistryOptions::default())?;
    }
    if opts.cluster_name.trim().is_empty() {
        return Err(input("--cluster-name", "must not be empty"));
    }
    if let Some(image) = &opts.image {
        if image.is_empty() || image.chars().any(|c| c.is_whitespace()) {
            return Err(input("--image", format!("{image:?} is not an image reference")));
        }
    }
    for ns in &opts.namespaces {
        if ns == NAMESPACE {
            return Err(input(
                "--namespaces",
                format!("{NAMESPACE} is the agent's own namespace (always writable for its bookkeeping); bundles may not write there"),
            ));
        }
        if drover_agent::format::check_dns_label(ns).is_err() {
            return Err(input(
                "--namespaces",
                format!("{ns:?} is not a namespace name (lowercase letters, digits, '-')"),
            ));
        }
    }
    Ok(())
}

fn input(field: &str, message: impl Into<String>) -> Error {
    Error::Input {
        field: field.to_string(),
        message: message.into(),
    }
}

/// Replaces sources, keys, cluster name and labels in the ConfigMap's config file, keeping
/// the shipped settings (sink, state directory, interval, listener).
fn set_config(doc: &mut Value, opts: &AddonOptions, keys: &[(String, String)]) -> Result<()> {
    edit_config(doc, |config| {
        config["sources"] = json!(opts.sources);
        config["keys"] = keys.iter().map(|(n, _)| json!(format!("{KEYS_MOUNT}/{n}"))).collect();
        config["clusterName"] = json!(opts.cluster_name);
        config["labels"] = json!(opts.labels);
    })
}

/// Parses the ConfigMap's config file, lets `edit` change it, and writes it back.
fn edit_config(doc: &mut Value, edit: impl FnOnce(&mut Value)) -> Result<()> {
    let text = doc["data"]["config.yaml"].as_str().unwrap_or_default();
    let mut config: Value = serde_norway::from_str(text).map_err(|e| Error::Input {
        field: "manifests/drover.yaml ConfigMap drover-agent-config".into(),
        message: format!("config.yaml is not YAML: {e}"),
    })?;
    edit(&mut config);
    doc["data"]["config.yaml"] = json!(to_yaml(&config)?);
    Ok(())
}

/// Swaps the cluster-wide binding for the least-privilege RBAC: cluster-wide read, and the
/// write ClusterRole bound in drover-system and in each of `namespaces`, which are created.
/// The agent's allow-list gets the same namespaces: without it a bundle reaching outside
/// them would be half applied before the API's 403, and a HelmChart in a listed namespace
/// would let helm-controller install anything cluster-wide as cluster-admin. drover-system
/// is not on the list: the agent's own bookkeeping there is exempt, and bundles must not
/// write there.
fn least_privilege(docs: Vec<Value>, namespaces: &[String]) -> Result<Vec<Value>> {
    let binding_model = parse_documents(LEAST_PRIVILEGE_NAMESPACES, "manifests/least-privilege/namespaces.yaml")?
        .into_iter()
        .find(|d| kind(d) == "RoleBinding" && d["metadata"]["namespace"] == NAMESPACE)
        .ok_or_else(|| {
            input(
                "manifests/least-privilege/namespaces.yaml",
                "no RoleBinding in drover-system",
            )
        })?;
    // check_values refused drover-system in the list.
    let mut listed: Vec<&String> = namespaces.iter().collect();
    listed.sort();
    listed.dedup();
    let mut out: Vec<Value> = docs
        .into_iter()
        .filter(|d| !(kind(d) == "ClusterRoleBinding" && name(d) == AGENT))
        .collect();
    for doc in &mut out {
        if kind(doc) == "ConfigMap" && name(doc) == CONFIG_MAP {
            edit_config(doc, |config| config["allowNamespaces"] = json!(listed))?;
        }
    }
    out.extend(parse_documents(
        LEAST_PRIVILEGE_CLUSTER,
        "manifests/least-privilege/cluster.yaml",
    )?);
    out.push(binding_model.clone());
    for ns in listed {
        out.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
        let mut binding = binding_model.clone();
        binding["metadata"]["namespace"] = json!(ns);
        out.push(binding);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key_file(dir: &std::path::Path) -> PathBuf {
        let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        let path = dir.join("drover.pub");
        std::fs::write(&path, kp.pk.to_box().unwrap().to_string()).unwrap();
        path
    }

    fn options(dir: &std::path::Path) -> AddonOptions {
        AddonOptions {
            sources: vec!["https://store.example.net/stable".into()],
            keys: vec![key_file(dir)],
            cluster_name: "shop-42".into(),
            ..Default::default()
        }
    }

    fn config_of(docs: &[Value]) -> Value {
        let cm = docs.iter().find(|d| name(d) == CONFIG_MAP).unwrap();
        serde_norway::from_str(cm["data"]["config.yaml"].as_str().unwrap()).unwrap()
    }

    #[test]
    fn keeps_yaml_special_values_as_strings() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = options(dir.path());
        opts.cluster_name = "yes".into();
        opts.labels = [
            ("env".to_string(), "a: b # c".to_string()),
            ("version".into(), "1.10".into()),
            ("empty".into(), String::new()),
            ("multi".into(), "line\n  two".into()),
        ]
        .into();
        let docs = parse_documents(&render(&opts).unwrap(), "output").unwrap();
        let config = config_of(&docs);
        assert_eq!(config["clusterName"], json!("yes"));
        assert_eq!(config["labels"], json!(opts.labels));
    }

    #[test]
    fn embeds_the_key_and_points_the_config_at_it() {
        let dir = tempfile::tempdir().unwrap();
        let opts = options(dir.path());
        let docs = parse_documents(&render(&opts).unwrap(), "output").unwrap();
        let secret = docs.iter().find(|d| name(d) == KEYS_SECRET).unwrap();
        let key = std::fs::read_to_string(&opts.keys[0]).unwrap();
        assert_eq!(secret["stringData"], json!({"drover.pub": key}));
        assert_eq!(config_of(&docs)["keys"], json!(["/etc/drover/keys/drover.pub"]));
        assert_eq!(config_of(&docs)["sink"], json!("kube"));
    }

    #[test]
    fn rejects_a_file_that_is_not_a_minisign_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = options(dir.path());
        let bad = dir.path().join("bad.pub");
        std::fs::write(&bad, "hello\n").unwrap();
        opts.keys = vec![bad];
        let err = render(&opts).unwrap_err().to_string();
        assert!(err.contains("bad.pub"), "{err}");
    }

    #[test]
    fn rejects_a_namespace_that_is_not_a_dns_label() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = options(dir.path());
        opts.namespaces = vec!["Shop_1".into()];
        let err = render(&opts).unwrap_err().to_string();
        assert!(err.contains("--namespaces") && err.contains("Shop_1"), "{err}");
    }

    #[test]
    fn least_privilege_binds_write_access_per_listed_namespace_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = options(dir.path());
        opts.namespaces = vec!["cafe".into(), "shop".into()];
        let docs = parse_documents(&render(&opts).unwrap(), "output").unwrap();
        let bindings: Vec<(&str, &str)> = docs
            .iter()
            .filter(|d| kind(d).ends_with("RoleBinding"))
            .map(|d| (kind(d), d["metadata"]["namespace"].as_str().unwrap_or("")))
            .collect();
        assert_eq!(
            bindings,
            [
                ("ClusterRoleBinding", ""),
                ("RoleBinding", "drover-system"),
                ("RoleBinding", "cafe"),
                ("RoleBinding", "shop")
            ]
        );
        let read = docs
            .iter()
            .find(|d| name(d) == "drover-agent-read" && kind(d) == "ClusterRole");
        assert!(read.is_some());
        assert_eq!(config_of(&docs)["allowNamespaces"], json!(["cafe", "shop"]));
    }

    #[test]
    fn a_config_change_changes_the_pod_template() {
        let dir = tempfile::tempdir().unwrap();
        let checksum = |opts: &AddonOptions| {
            let docs = parse_documents(&render(opts).unwrap(), "output").unwrap();
            let deployment = docs.iter().find(|d| kind(d) == "Deployment").unwrap();
            deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"].clone()
        };
        let opts = options(dir.path());
        let first = checksum(&opts);
        assert!(first.is_string(), "{first}");
        assert_eq!(checksum(&opts), first, "same values, same pod template");
        let mut changed = opts.clone();
        changed.labels.insert("env".into(), "prod".into());
        assert_ne!(checksum(&changed), first);
        let mut narrowed = opts;
        narrowed.namespaces = vec!["shop".into()];
        assert_ne!(checksum(&narrowed), first);
    }

    #[test]
    fn without_namespaces_the_agent_has_no_allow_list() {
        let dir = tempfile::tempdir().unwrap();
        let docs = parse_documents(&render(&options(dir.path())).unwrap(), "output").unwrap();
        assert!(config_of(&docs).get("allowNamespaces").is_none());
    }

    #[test]
    fn rejects_the_agents_own_namespace_in_the_list() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = options(dir.path());
        opts.namespaces = vec!["shop".into(), NAMESPACE.into()];
        let err = render(&opts).unwrap_err().to_string();
        assert!(err.contains("--namespaces") && err.contains(NAMESPACE), "{err}");
    }

    #[test]
    fn warns_above_each_listed_namespace_that_removing_it_deletes_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = options(dir.path());
        opts.namespaces = vec!["shop".into()];
        let text = render(&opts).unwrap();
        let at = text.find("kind: Namespace\nmetadata:\n  name: shop").unwrap();
        let before = &text[..at];
        let doc_start = before.rfind("---\n").unwrap();
        assert!(
            before[doc_start..].contains("DELETE the namespace"),
            "{}",
            &before[doc_start..]
        );
    }
}
