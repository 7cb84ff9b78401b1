//! Rendering: turn a verified bundle blob into the manifests this cluster gets.
//!
//! A bundle is a gzip-compressed tar. Its regular files ending in `.yaml`/`.yml` are the
//! manifests, taken in byte-wise lexical order of their paths; other regular files and
//! directories are ignored. A symlink, hard link, device, fifo or any other special entry,
//! an absolute path or a `..` component makes the whole bundle invalid, as does going past
//! the unpacked-size or entry-count limits (gzip bombs).
//!
//! Each manifest is then substituted (`${cluster.name}`, `${cluster.labels.<key>}`; an
//! unknown variable is an error, never an empty string), split into YAML documents, checked
//! to be Kubernetes objects, and namespaced objects without a namespace get the bundle's.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Component, Path};

use serde::Deserialize;
use serde_norway::{Mapping, Value};

use crate::error::{Error, Result};
use crate::select::Cluster;

/// Default limit on the total unpacked size of a bundle's entries.
pub const DEFAULT_MAX_UNPACKED_BYTES: u64 = 256 << 20;
/// Default limit on the number of entries in a bundle tarball.
pub const DEFAULT_MAX_ENTRIES: u64 = 100_000;

/// Limits that bound the work and memory a bundle may cost.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest total size of all entries once unpacked, in bytes.
    pub max_unpacked_bytes: u64,
    /// Most entries a tarball may hold.
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_unpacked_bytes: DEFAULT_MAX_UNPACKED_BYTES,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

/// A bundle's manifests, ready for a sink.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The objects, each a YAML document without the `---` separator.
    pub documents: Vec<String>,
}

/// One manifest file of a bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestFile {
    /// Normalised relative path inside the tarball (`/`-separated, no `./`).
    pub path: String,
    /// File content.
    pub text: String,
}

/// Reads, substitutes and validates the bundle blob at `blob`. `what` names the bundle in
/// errors; `namespace` is the bundle's default namespace.
pub fn render_bundle(
    blob: &Path,
    what: &str,
    namespace: Option<&str>,
    cluster: &Cluster,
    limits: &Limits,
) -> Result<Rendered> {
    let file = std::fs::File::open(blob).map_err(|e| Error::io(blob, e))?;
    let files = read_manifests(std::io::BufReader::new(file), what, limits)?;
    let mut objects = Vec::new();
    for f in &files {
        let at = format!("{what}: {}", f.path);
        let text = substitute(&f.text, cluster).map_err(|m| Error::invalid(&at, m))?;
        objects.extend(parse_objects(&text, &at)?);
    }
    let cluster_scoped = cluster_scoped_kinds(&objects);
    let documents = objects
        .into_iter()
        .map(|mut obj| {
            if let Some(ns) = namespace {
                default_namespace(&mut obj, ns, &cluster_scoped);
            }
            serde_norway::to_string(&obj).map_err(|e| Error::invalid(what, format!("cannot write YAML: {e}")))
        })
        .collect::<Result<_>>()?;
    Ok(Rendered { documents })
}

/// Reads the manifest files of a gzip-compressed tar, enforcing the bundle rules.
pub fn read_manifests(reader: impl Read, what: &str, limits: &Limits) -> Result<Vec<ManifestFile>> {
    let bad = |message: String| Error::invalid(what, message);
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(reader));
    let mut files = Vec::new();
    let (mut entries, mut unpacked) = (0u64, 0u64);
    for entry in archive.entries().map_err(|e| bad(format!("not a tar.gz: {e}")))? {
        let mut entry = entry.map_err(|e| bad(format!("not a valid tar.gz: {e}")))?;
        entries += 1;
        if entries > limits.max_entries {
            return Err(bad(format!("more than {} entries", limits.max_entries)));
        }
        let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = safe_path(&raw_path).map_err(|m| bad(format!("entry {raw_path:?}: {m}")))?;
        let kind = entry.header().entry_type();
        if kind.is_dir() || kind.is_pax_global_extensions() {
            continue;
        }
        if !kind.is_file() {
            return Err(bad(format!(
                "entry {raw_path:?} is a {kind:?}; only regular files and directories are allowed"
            )));
        }
        unpacked += entry.size();
        if unpacked > limits.max_unpacked_bytes {
            return Err(bad(format!("unpacks to more than {} bytes", limits.max_unpacked_bytes)));
        }
        if !(path.ends_with(".yaml") || path.ends_with(".yml")) {
            continue;
        }
        let size = entry.size();
        let mut bytes = Vec::with_capacity(size as usize);
        (&mut entry)
            .take(size)
            .read_to_end(&mut bytes)
            .map_err(|e| bad(format!("entry {raw_path:?}: {e}")))?;
        let text = String::from_utf8(bytes).map_err(|_| bad(format!("entry {raw_path:?} is not UTF-8")))?;
        files.push(ManifestFile { path, text });
    }
    files.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    if let Some(w) = files.windows(2).find(|w| w[0].path == w[1].path) {
        return Err(bad(format!("entry {:?} appears twice", w[0].path)));
    }
    Ok(files)
}

/// Normalises a tar entry path, refusing absolute paths and `..` components.
fn safe_path(raw: &str) -> Result<String, String> {
    if raw.starts_with('/') {
        return Err("absolute paths are not allowed".into());
    }
    let mut parts = Vec::new();
    for c in Path::new(raw).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => return Err("'..' components are not allowed".into()),
            Component::RootDir | Component::Prefix(_) => return Err("absolute paths are not allowed".into()),
        }
    }
    Ok(parts.join("/"))
}

/// Replaces `${cluster.name}` and `${cluster.labels.<key>}`. `$${` stands for a literal
/// `${`. Other `${…}` (shell scripts in ConfigMaps, for example) are left alone; but any
/// `${cluster.…}` that is not one of the two forms, or names a label the cluster does not
/// have, is an error.
pub fn substitute(text: &str, cluster: &Cluster) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        if rest[..at].ends_with('$') {
            // `$${` escape: emit everything before the extra `$`, then a literal `${`.
            out.push_str(&rest[..at - 1]);
            out.push_str("${");
            rest = &rest[at + 2..];
            continue;
        }
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        if !after.starts_with("cluster.") {
            out.push_str("${");
            rest = after;
            continue;
        }
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated variable \"${{{}\"", first_line(after)))?;
        let var = &after[..end];
        let value =
            match var.strip_prefix("cluster.") {
                Some("name") => cluster.name.as_str(),
                Some(other) => match other.strip_prefix("labels.") {
                    Some(key) => cluster.labels.get(key).map(String::as_str).ok_or_else(|| {
                        format!("variable ${{{var}}}: cluster {:?} has no label {key:?}", cluster.name)
                    })?,
                    None => {
                        return Err(format!(
                            "unknown variable ${{{var}}} (known: ${{cluster.name}}, ${{cluster.labels.<key>}})"
                        ))
                    }
                },
                None => unreachable!("checked starts_with(\"cluster.\") above"),
            };
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn first_line(s: &str) -> &str {
    let line = s.lines().next().unwrap_or("");
    &line[..line.len().min(40)]
}

/// Checks that `text` is YAML made of Kubernetes objects, as the agent will require after
/// substitution (`${cluster.*}` placeholders inside values parse as strings). The publisher
/// calls this so a broken manifest is refused before it reaches any cluster.
pub fn check_manifest(text: &str, what: &str) -> Result<()> {
    parse_objects(text, what).map(|_| ())
}

/// Splits a manifest into objects, refusing documents that are not Kubernetes objects.
fn parse_objects(text: &str, what: &str) -> Result<Vec<Mapping>> {
    let mut objects = Vec::new();
    for (n, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let at = format!("{what}: document {}", n + 1);
        let value = Value::deserialize(doc).map_err(|e| Error::invalid(&at, format!("not valid YAML: {e}")))?;
        match value {
            Value::Null => continue,
            Value::Mapping(map) => {
                check_object(&map).map_err(|m| Error::invalid(&at, m))?;
                objects.push(map);
            }
            other => {
                return Err(Error::invalid(
                    &at,
                    format!("expected a Kubernetes object (a mapping), found {}", type_name(&other)),
                ))
            }
        }
    }
    Ok(objects)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

fn str_field<'a>(map: &'a Mapping, key: &str) -> Option<&'a str> {
    map.get(key).and_then(Value::as_str)
}

fn check_object(map: &Mapping) -> Result<(), String> {
    for key in ["apiVersion", "kind"] {
        if str_field(map, key).is_none_or(str::is_empty) {
            return Err(format!("not a Kubernetes object: missing string field {key:?}"));
        }
    }
    let metadata = map
        .get("metadata")
        .and_then(Value::as_mapping)
        .ok_or("not a Kubernetes object: missing \"metadata\" mapping")?;
    if str_field(metadata, "name").is_none() && str_field(metadata, "generateName").is_none() {
        return Err("not a Kubernetes object: metadata has neither \"name\" nor \"generateName\"".into());
    }
    Ok(())
}

/// Built-in kinds that are cluster-scoped (everything else is assumed namespaced).
const CLUSTER_SCOPED: &[&str] = &[
    "APIService",
    "CertificateSigningRequest",
    "ClusterRole",
    "ClusterRoleBinding",
    "ComponentStatus",
    "CSIDriver",
    "CSINode",
    "CustomResourceDefinition",
    "FlowSchema",
    "IngressClass",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding",
    "MutatingWebhookConfiguration",
    "Namespace",
    "Node",
    "PersistentVolume",
    "PriorityClass",
    "PriorityLevelConfiguration",
    "RuntimeClass",
    "StorageClass",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "ValidatingWebhookConfiguration",
    "VolumeAttachment",
];

/// Cluster-scoped kinds: the built-in list plus kinds of CRDs in the bundle with
/// `spec.scope: Cluster`.
fn cluster_scoped_kinds(objects: &[Mapping]) -> BTreeSet<String> {
    let mut kinds: BTreeSet<String> = CLUSTER_SCOPED.iter().map(|k| k.to_string()).collect();
    for obj in objects {
        if str_field(obj, "kind") != Some("CustomResourceDefinition") {
            continue;
        }
        let spec = obj.get("spec").and_then(Value::as_mapping);
        if spec.and_then(|s| str_field(s, "scope")) == Some("Cluster") {
            if let Some(kind) = spec
                .and_then(|s| s.get("names"))
                .and_then(Value::as_mapping)
                .and_then(|n| str_field(n, "kind"))
            {
                kinds.insert(kind.to_string());
            }
        }
    }
    kinds
}

fn default_namespace(obj: &mut Mapping, namespace: &str, cluster_scoped: &BTreeSet<String>) {
    if str_field(obj, "kind").is_some_and(|k| cluster_scoped.contains(k)) {
        return;
    }
    if let Some(Value::Mapping(metadata)) = obj.get_mut("metadata") {
        if !metadata.contains_key("namespace") {
            metadata.insert("namespace".into(), namespace.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Cluster {
        Cluster {
            name: "site-7".into(),
            labels: [("env".to_string(), "prod".to_string())].into(),
        }
    }

    fn tar_gz(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        for (path, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            // set_path refuses `..`, so write the name bytes directly, as an attacker would.
            h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            if kind.is_symlink() || kind.is_hard_link() {
                h.set_link_name("target").expect("link name");
            }
            h.set_cksum();
            builder.append(&h, *data).expect("append");
        }
        builder.into_inner().expect("finish tar").finish().expect("finish gzip")
    }

    fn read(entries: &[(&str, tar::EntryType, &[u8])]) -> Result<Vec<ManifestFile>> {
        read_manifests(&tar_gz(entries)[..], "bundle web", &Limits::default())
    }

    #[test]
    fn manifests_come_in_bytewise_path_order_and_other_files_are_ignored() {
        let reg = tar::EntryType::Regular;
        let files = read(&[
            ("b.yaml", reg, b"b"),
            ("./a/z.yml", reg, b"az"),
            ("README.md", reg, b"x"),
            ("B.yaml", reg, b"B"),
        ])
        .expect("valid");
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["B.yaml", "a/z.yml", "b.yaml"]);
    }

    #[test]
    fn rejects_parent_dir_absolute_and_special_entries() {
        let reg = tar::EntryType::Regular;
        for (path, kind) in [
            ("../evil.yaml", reg),
            ("a/../../evil.yaml", reg),
            ("/etc/evil.yaml", reg),
            ("link.yaml", tar::EntryType::Symlink),
            ("hard.yaml", tar::EntryType::Link),
            ("dev", tar::EntryType::Char),
            ("blk", tar::EntryType::Block),
            ("fifo", tar::EntryType::Fifo),
        ] {
            let err = read(&[("ok.yaml", reg, b"a: 1"), (path, kind, b"")]).expect_err(path);
            assert!(err.to_string().contains("bundle web"), "{err}");
        }
    }

    #[test]
    fn rejects_bundle_past_unpacked_limit() {
        let limits = Limits {
            max_unpacked_bytes: 10,
            max_entries: 100,
        };
        let blob = tar_gz(&[("a.yaml", tar::EntryType::Regular, &[b' '; 11])]);
        let err = read_manifests(&blob[..], "b", &limits).expect_err("too big");
        assert!(err.to_string().contains("more than 10 bytes"), "{err}");
    }

    #[test]
    fn rejects_bundle_past_entry_limit() {
        let limits = Limits {
            max_unpacked_bytes: 1000,
            max_entries: 2,
        };
        let reg = tar::EntryType::Regular;
        let blob = tar_gz(&[("a", reg, b""), ("b", reg, b""), ("c", reg, b"")]);
        assert!(read_manifests(&blob[..], "b", &limits).is_err());
    }

    #[test]
    fn rejects_garbage_that_is_not_gzip() {
        assert!(read_manifests(&b"definitely not gzip"[..], "b", &Limits::default()).is_err());
    }

    #[test]
    fn substitutes_cluster_name_and_labels() {
        let out = substitute("host: ${cluster.name}.${cluster.labels.env}.example", &cluster()).expect("ok");
        assert_eq!(out, "host: site-7.prod.example");
    }

    #[test]
    fn unknown_variable_is_an_error_not_an_empty_string() {
        let err = substitute("x: ${cluster.labels.region}", &cluster()).expect_err("missing label");
        assert!(err.contains("region"), "{err}");
        assert!(substitute("x: ${cluster.zone}", &cluster()).is_err());
        assert!(substitute("x: ${cluster.name", &cluster()).is_err());
    }

    #[test]
    fn other_dollar_braces_and_escapes_are_left_for_the_workload() {
        let out = substitute("run: echo ${HOME} $${cluster.name} ${cluster.name}", &cluster()).expect("ok");
        assert_eq!(out, "run: echo ${HOME} ${cluster.name} site-7");
    }

    #[test]
    fn namespaced_objects_get_the_bundle_namespace_cluster_scoped_do_not() {
        let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n\
                    apiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n---\n\
                    apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n  namespace: other\n---\n\
                    apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: ws.x.io\n\
                    spec:\n  scope: Cluster\n  names:\n    kind: Widget\n---\n\
                    apiVersion: x.io/v1\nkind: Widget\nmetadata:\n  name: w\n";
        let objects = parse_objects(yaml, "t").expect("objects");
        let scoped = cluster_scoped_kinds(&objects);
        let namespaces: Vec<Option<String>> = objects
            .into_iter()
            .map(|mut o| {
                default_namespace(&mut o, "web", &scoped);
                o["metadata"]["namespace"].as_str().map(str::to_string)
            })
            .collect();
        assert_eq!(namespaces, [Some("web".into()), None, Some("other".into()), None, None]);
    }

    #[test]
    fn rejects_yaml_that_is_not_a_kubernetes_object() {
        assert!(parse_objects("- a\n- b\n", "t").is_err());
        assert!(parse_objects("kind: ConfigMap\nmetadata: {name: a}\n", "t").is_err());
        assert!(parse_objects("apiVersion: v1\nkind: ConfigMap\n", "t").is_err());
        assert!(parse_objects("a: [unclosed\n", "t").is_err());
        assert_eq!(
            parse_objects("---\n# only a comment\n", "t").expect("empty ok").len(),
            0
        );
    }
}
