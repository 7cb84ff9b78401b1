//! Rendering, whole bundles at a time: reading, substitution, object checks, namespace
//! defaulting, streaming against reading all at once, and the allow-list.

use std::collections::BTreeSet;

use serde_norway::Mapping;

use super::objects::{parse_objects, str_field};
use super::renderer::default_namespace;
use super::scope::crd_scope;
use super::*;
use crate::allow::{api_group, builtin_scope, placement_offline, AllowList, Candidate};
use crate::error::Error;

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
        ..Limits::default()
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
        ..Limits::default()
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
fn namespaced_objects_get_the_bundle_namespace_cluster_scoped_do_not() {
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n\
                apiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n---\n\
                apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n  namespace: other\n---\n\
                apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: ws.x.io\n\
                spec:\n  scope: Cluster\n  names:\n    kind: Widget\n---\n\
                apiVersion: x.io/v1\nkind: Widget\nmetadata:\n  name: w\n";
    let objects = parse_objects(yaml, "t").expect("objects");
    let scoped = all_cluster_scoped_kinds(&objects);
    let namespaces: Vec<Option<String>> = objects
        .into_iter()
        .map(|mut o| {
            default_unless_cluster_scoped(&mut o, "web", &scoped);
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
    let list = "apiVersion: v1\nkind: List\nmetadata: {name: l}\nitems: [{apiVersion: v1, kind: Secret}]\n";
    let err = parse_objects(list, "t").expect_err("a list").to_string();
    assert!(err.contains("top-level \"items\""), "{err}");
    assert_eq!(
        parse_objects("---\n# only a comment\n", "t").expect("empty ok").len(),
        0
    );
}

/// Cluster-scoped custom kinds of a whole bundle: its CRDs'.
fn all_cluster_scoped_kinds(objects: &[Mapping]) -> BTreeSet<(String, String)> {
    objects
        .iter()
        .filter_map(crd_scope)
        .filter(|(_, cluster)| *cluster)
        .map(|(key, _)| key)
        .collect()
}

/// Defaults the namespace of `obj` unless the built-in table or `scoped` (a bundle's
/// cluster-scoped CRD kinds) says it is cluster-scoped.
fn default_unless_cluster_scoped(obj: &mut Mapping, ns: &str, scoped: &BTreeSet<(String, String)>) {
    let group = api_group(str_field(obj, "apiVersion").unwrap_or_default()).to_string();
    let kind = str_field(obj, "kind").unwrap_or_default().to_string();
    if !builtin_scope(&group, &kind).unwrap_or_else(|| scoped.contains(&(group, kind))) {
        default_namespace(obj, ns);
    }
}

/// Rendering as it was done before it streamed: every manifest read whole, substituted
/// whole, parsed whole, then namespaces defaulted knowing every CRD of the bundle.
fn render_all_at_once(blob: &[u8], namespace: Option<&str>) -> Result<Vec<String>> {
    let files = read_manifests(blob, "bundle web", &Limits::default())?;
    let mut objects = Vec::new();
    for f in &files {
        let at = format!("bundle web: {}", f.path);
        let text = substitute(&f.text, &cluster()).map_err(|m| Error::invalid(&at, m))?;
        objects.extend(parse_objects(&text, &at)?);
    }
    let scoped = all_cluster_scoped_kinds(&objects);
    Ok(objects
        .into_iter()
        .map(|mut obj| {
            if let Some(ns) = namespace {
                default_unless_cluster_scoped(&mut obj, ns, &scoped);
            }
            serde_norway::to_string(&obj).expect("serialise")
        })
        .collect())
}

/// The blob at `path`, checked against its own digest.
fn verified(path: std::path::PathBuf) -> VerifiedBlob {
    let bytes = std::fs::read(&path).expect("read blob");
    VerifiedBlob::check_file(path, &crate::format::Digest::of(&bytes), bytes.len() as u64).expect("intact")
}

fn render_streaming(blob: &[u8], namespace: Option<&str>, limits: &Limits) -> Result<Vec<String>> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("blob");
    std::fs::write(&path, blob).expect("write blob");
    let blob = verified(path);
    let mut out = Rendered::default();
    let rendering = render_bundle(&blob, "bundle web", namespace, &cluster(), limits, &mut out)?;
    assert_eq!(rendering.objects as usize, out.objects.len());
    let left: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").collect();
    assert_eq!(left.len(), 1, "no spool file is left behind");
    Ok(out.documents().map(str::to_string).collect())
}

fn config_map(i: usize) -> String {
    format!(
        "# object {i}\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\n\
         data:\n  site: ${{cluster.name}}\n  env: \"${{cluster.labels.env}}\"\n  script: |\n    echo ${{HOME}} ---\n"
    )
}

#[test]
fn a_many_document_file_renders_as_it_did_before_streaming() {
    let reg = tar::EntryType::Regular;
    let mut many = String::from("# leading comment\n");
    for i in 0..500 {
        many.push_str(&config_map(i));
        many.push_str(if i % 7 == 0 { "---\n---\n" } else { "--- # next\n" });
    }
    many.push_str("...\n");
    let other = "apiVersion: v1\nkind: Namespace\nmetadata: {name: web}\n---\n\
                 apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: other}\nspec: {ports: [{port: 80}]}\n";
    let blob = tar_gz(&[
        ("a.yaml", reg, other.as_bytes()),
        ("b/many.yml", reg, many.as_bytes()),
        ("c.txt", reg, b"not a manifest"),
    ]);
    let before = render_all_at_once(&blob, Some("web")).expect("old way");
    assert_eq!(before.len(), 502);
    assert_eq!(
        render_streaming(&blob, Some("web"), &Limits::default()).expect("streamed"),
        before
    );
    assert_eq!(
        render_streaming(&blob, None, &Limits::default()).expect("streamed"),
        render_all_at_once(&blob, None).expect("old way")
    );
}

#[test]
fn a_tarball_out_of_path_order_renders_in_path_order() {
    let reg = tar::EntryType::Regular;
    let (a, b) = (config_map(1), config_map(2));
    let blob = tar_gz(&[("z/b.yaml", reg, b.as_bytes()), ("a.yaml", reg, a.as_bytes())]);
    let docs = render_streaming(&blob, Some("web"), &Limits::default()).expect("rendered");
    assert_eq!(docs, render_all_at_once(&blob, Some("web")).expect("old way"));
    assert!(docs[0].contains("cm-1"), "{docs:?}");
    let dup = tar_gz(&[
        ("b.yaml", reg, b.as_bytes()),
        ("a.yaml", reg, a.as_bytes()),
        ("./b.yaml", reg, b""),
    ]);
    let err = render_streaming(&dup, None, &Limits::default()).expect_err("duplicate");
    assert!(err.to_string().contains("\"b.yaml\" appears twice"), "{err}");
    let dup = tar_gz(&[("a.yaml", reg, a.as_bytes()), ("./a.yaml", reg, a.as_bytes())]);
    let err = render_streaming(&dup, None, &Limits::default()).expect_err("duplicate");
    assert!(err.to_string().contains("\"a.yaml\" appears twice"), "{err}");
}

#[test]
fn a_crd_after_its_objects_still_keeps_them_cluster_scoped() {
    let reg = tar::EntryType::Regular;
    let widgets = "apiVersion: x.io/v1\nkind: Widget\nmetadata: {name: w}\n---\n\
                   apiVersion: x.io/v1\nkind: Gadget\nmetadata: {name: g}\n";
    let crd = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.x.io\n\
               spec:\n  scope: Cluster\n  names:\n    kind: Widget\n";
    let blob = tar_gz(&[
        ("a-widgets.yaml", reg, widgets.as_bytes()),
        ("z-crd.yaml", reg, crd.as_bytes()),
    ]);
    let docs = render_streaming(&blob, Some("web"), &Limits::default()).expect("rendered");
    assert_eq!(docs, render_all_at_once(&blob, Some("web")).expect("old way"));
    assert!(!docs[0].contains("namespace"), "Widget is cluster-scoped: {docs:?}");
    assert!(docs[1].contains("namespace: web"), "Gadget is namespaced: {docs:?}");
}

#[test]
fn a_document_over_the_limit_is_refused_naming_its_file() {
    let reg = tar::EntryType::Regular;
    let big = format!(
        "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big}}\ndata: {{x: \"{}\"}}\n",
        config_map(1),
        "x".repeat(4000)
    );
    let blob = tar_gz(&[
        ("a.yaml", reg, config_map(0).as_bytes()),
        ("big.yaml", reg, big.as_bytes()),
    ]);
    let limits = Limits {
        max_document_bytes: 1000,
        ..Limits::default()
    };
    let err = render_streaming(&blob, None, &limits).expect_err("too large");
    let msg = err.to_string();
    assert!(msg.contains("bundle web: big.yaml: document 2"), "{msg}");
    assert!(msg.contains("limit of 1000 bytes for one YAML document"), "{msg}");
    let err = check_tarball(&blob[..], "bundle web", &limits).expect_err("too large");
    assert!(err.to_string().contains("big.yaml"), "{err}");
    // The whole file is larger than the limit, each document is not.
    let many = config_map(1) + &format!("---\n{}", config_map(2)).repeat(20);
    let blob = tar_gz(&[("many.yaml", reg, many.as_bytes())]);
    assert!(many.len() > 1000);
    assert_eq!(render_streaming(&blob, None, &limits).expect("fits").len(), 21);
}

#[test]
fn yaml_errors_name_the_document_and_line_in_the_whole_file() {
    let reg = tar::EntryType::Regular;
    // A head with no document in it is not counted, as in the whole file.
    let mut text = String::from("# head\n\n---\n");
    for i in 0..5 {
        text.push_str(&config_map(i));
        text.push_str("---\n");
    }
    text.push_str("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad}\ndata: [unclosed\n");
    let blob = tar_gz(&[("m.yaml", reg, text.as_bytes())]);
    let streamed = render_streaming(&blob, None, &Limits::default()).expect_err("invalid");
    let whole = render_all_at_once(&blob, None).expect_err("invalid");
    assert_eq!(streamed.to_string(), whole.to_string());
    assert!(streamed.to_string().contains("document 6"), "{streamed}");
    assert!(streamed.to_string().contains("at line 63 column 1"), "{streamed}");
}

#[test]
fn substitution_errors_name_the_file() {
    let reg = tar::EntryType::Regular;
    let text = format!("{}---\nkind: x\nlabel: ${{cluster.labels.region}}\n", config_map(0));
    let blob = tar_gz(&[("m.yaml", reg, text.as_bytes())]);
    let err = render_streaming(&blob, None, &Limits::default()).expect_err("no label");
    assert!(err.to_string().contains("bundle web: m.yaml"), "{err}");
    assert!(err.to_string().contains("no label \"region\""), "{err}");
}

#[test]
fn a_gzip_bomb_stops_at_the_unpacked_limit() {
    let reg = tar::EntryType::Regular;
    let limits = Limits {
        max_unpacked_bytes: 64 << 10,
        ..Limits::default()
    };
    // Entries that declare more than the limit are refused before they are inflated.
    let blob = tar_gz(&[("filler.bin", reg, &vec![0u8; 100 << 10])]);
    let err = render_streaming(&blob, None, &limits).expect_err("bomb");
    assert!(err.to_string().contains("unpacks to more than 65536 bytes"), "{err}");
    // Entries that declare nothing (directories) still cost their headers: the
    // decompressed stream itself is counted.
    let dirs: Vec<String> = (0..1000).map(|i| format!("d{i}/")).collect();
    let entries: Vec<(&str, tar::EntryType, &[u8])> = dirs
        .iter()
        .map(|d| (d.as_str(), tar::EntryType::Directory, &b""[..]))
        .collect();
    let err = render_streaming(&tar_gz(&entries), None, &limits).expect_err("bomb");
    assert!(err.to_string().contains("unpacks to more than 65536 bytes"), "{err}");
}

#[test]
fn a_huge_long_name_record_is_refused_before_it_is_buffered() {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    let name = vec![b'a'; (MAX_HEADER_BYTES + 4096) as usize];
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::GNULongName);
    h.set_size(name.len() as u64);
    h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
    h.set_cksum();
    builder.append(&h, &name[..]).expect("append");
    let blob = builder.into_inner().expect("tar").finish().expect("gzip");
    let err = render_streaming(&blob, None, &Limits::default()).expect_err("long name");
    assert!(err.to_string().contains("path records longer than"), "{err}");
}

fn render_allowed(yaml: &str, namespace: Option<&str>, allow: &AllowList) -> Result<Vec<String>> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("blob");
    std::fs::write(&path, tar_gz(&[("m.yaml", tar::EntryType::Regular, yaml.as_bytes())])).expect("write blob");
    let mut out = Rendered::default();
    let rendering = render_bundle(
        &verified(path),
        "bundle web",
        namespace,
        &cluster(),
        &Limits::default(),
        &mut out,
    )?;
    // As the dir sink checks them: no API server to ask.
    let placed = out.objects.iter().map(|o| Candidate {
        group: o.group(),
        kind: &o.kind,
        name: o.name_or_prefix(),
        placement: placement_offline(
            rendering.scopes.cluster_scoped(o.group(), &o.kind),
            o.namespace.as_deref(),
        ),
    });
    allow.check("bundle web", placed)?;
    Ok(out.documents().map(str::to_string).collect())
}

#[test]
fn the_allow_list_checks_the_namespace_after_the_bundle_default_is_applied() {
    let allow = AllowList::new(["web".to_string()], false).expect("allow");
    let yaml = "apiVersion: v1\nkind: Namespace\nmetadata: {name: web}\n---\n\
                apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n";
    assert_eq!(render_allowed(yaml, Some("web"), &allow).expect("allowed").len(), 2);
    let err = render_allowed(yaml, Some("shop"), &allow)
        .expect_err("outside")
        .to_string();
    assert!(err.contains("ConfigMap a in namespace shop"), "{err}");
}

#[test]
fn the_allow_list_names_every_refused_object_and_refuses_the_whole_bundle() {
    let allow = AllowList::new(["web".to_string()], false).expect("allow");
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n---\n\
                apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: kube-system}\n---\n\
                apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: admin}\n---\n\
                apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: ws.x.io\n\
                spec:\n  scope: Cluster\n  names:\n    kind: Widget\n";
    let err = render_allowed(yaml, Some("web"), &allow).expect_err("refused");
    assert!(matches!(err, Error::NotAllowed { .. }), "{err}");
    let err = err.to_string();
    for refused in [
        "Secret s in namespace kube-system",
        "ClusterRole admin (cluster-scoped)",
        "CustomResourceDefinition ws.x.io (cluster-scoped)",
    ] {
        assert!(err.contains(refused), "{refused}: {err}");
    }
    assert!(!err.contains("ConfigMap ok"), "{err}");
    let allow = AllowList::new(["web".to_string(), "kube-system".to_string()], true).expect("allow");
    assert_eq!(render_allowed(yaml, Some("web"), &allow).expect("all allowed").len(), 4);
}

#[test]
fn the_allow_list_treats_unknown_kinds_without_namespace_as_cluster_scoped() {
    let allow = AllowList::new(["web".to_string()], false).expect("allow");
    // A kind defined cluster-scoped by a CRD later in the bundle, and an object with no
    // namespace and no bundle default: both refused.
    let yaml = "apiVersion: x.io/v1\nkind: Widget\nmetadata: {name: w}\n---\n\
                apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: ws.x.io\n\
                spec:\n  scope: Cluster\n  names:\n    kind: Widget\n";
    let allow_cluster = AllowList::new(["web".to_string()], true).expect("allow");
    assert_eq!(
        render_allowed(yaml, Some("web"), &allow_cluster)
            .expect("allowed")
            .len(),
        2
    );
    let err = render_allowed(yaml, Some("web"), &allow)
        .expect_err("refused")
        .to_string();
    assert!(err.contains("Widget w (cluster-scoped)"), "{err}");
    let lone = "apiVersion: x.io/v1\nkind: Gadget\nmetadata: {name: g}\n";
    let err = render_allowed(lone, None, &allow).expect_err("refused").to_string();
    assert!(err.contains("Gadget g (scope of Gadget.x.io unknown"), "{err}");
}

const WIDGET_CRD: &str = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n\
                          metadata: {name: widgets.x.io}\nspec:\n  group: x.io\n  scope: SCOPE\n  \
                          names: {kind: Widget, plural: widgets}\n";

#[test]
fn a_cluster_scoped_custom_kind_is_refused_even_when_it_names_an_allowed_namespace() {
    // The API server ignores metadata.namespace on a cluster-scoped object.
    let allow = AllowList::new(["web".to_string()], false).expect("allow");
    let yaml = format!(
        "{}---\napiVersion: x.io/v1\nkind: Widget\nmetadata: {{name: w, namespace: web}}\n",
        WIDGET_CRD.replace("SCOPE", "Cluster")
    );
    // The kube sink places it by the bundle's CRD too, before it asks discovery.
    let err = render_allowed(&yaml, Some("web"), &allow)
        .expect_err("refused")
        .to_string();
    assert!(err.contains("Widget w (cluster-scoped)"), "{err}");
}

#[test]
fn on_the_dir_sink_a_kind_of_unknown_scope_needs_its_crd_in_the_bundle() {
    let allow = AllowList::new(["web".to_string()], false).expect("allow");
    let widget = "apiVersion: x.io/v1\nkind: Widget\nmetadata: {name: w, namespace: web}\n";
    let err = render_allowed(widget, Some("web"), &allow)
        .expect_err("unknown scope")
        .to_string();
    assert!(
        err.contains("Widget w in namespace web (scope of Widget.x.io unknown") && err.contains("kube sink"),
        "{err}"
    );
    // Allowing cluster-scoped objects is not enough when the namespace is not listed.
    let other = widget.replace("namespace: web", "namespace: shop");
    let allow_cluster = AllowList::new(["web".to_string()], true).expect("allow");
    assert!(render_allowed(&other, Some("web"), &allow_cluster).is_err());
    assert_eq!(
        render_allowed(widget, Some("web"), &allow_cluster)
            .expect("both ways")
            .len(),
        1
    );
    // A Namespaced CRD of the same group and kind, even after the object, places it
    // (the CRD itself is cluster-scoped, and named).
    let namespaced = WIDGET_CRD.replace("SCOPE", "Namespaced");
    let after = format!("{widget}---\n{namespaced}");
    let err = render_allowed(&after, Some("web"), &allow)
        .expect_err("the CRD itself is cluster-scoped")
        .to_string();
    assert!(
        err.contains("CustomResourceDefinition widgets.x.io") && !err.contains("Widget w"),
        "{err}"
    );
    let other_after = format!("{other}---\n{namespaced}");
    let err = render_allowed(&other_after, Some("web"), &allow_cluster)
        .expect_err("namespaced outside the list")
        .to_string();
    assert!(
        err.contains("Widget w in namespace shop") && !err.contains("unknown"),
        "{err}"
    );
    // A CRD of another group says nothing about x.io's Widget.
    let elsewhere = format!("{widget}---\n{}", namespaced.replace("group: x.io", "group: y.io"));
    assert!(render_allowed(&elsewhere, Some("web"), &allow).is_err());
}

#[test]
fn scope_follows_the_api_group_not_the_kind_name() {
    let allow = AllowList::new(["web".to_string()], false).expect("allow");
    // Built-in cluster-scoped kinds: the namespace they name does not count.
    for (api_version, kind) in [
        ("networking.k8s.io/v1", "ServiceCIDR"),
        ("resource.k8s.io/v1", "DeviceClass"),
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy"),
        ("storage.k8s.io/v1", "VolumeAttributesClass"),
    ] {
        let yaml = format!("apiVersion: {api_version}\nkind: {kind}\nmetadata: {{name: x, namespace: web}}\n");
        let err = render_allowed(&yaml, Some("web"), &allow)
            .expect_err("cluster-scoped")
            .to_string();
        assert!(err.contains(&format!("{kind} x (cluster-scoped)")), "{err}");
    }
    // Only the core group's Namespace is a namespace; another group's is unknown.
    let fake = "apiVersion: example.com/v1\nkind: Namespace\nmetadata: {name: web}\n";
    let err = render_allowed(fake, None, &allow)
        .expect_err("not a namespace")
        .to_string();
    assert!(err.contains("scope of Namespace.example.com unknown"), "{err}");
    // k3s's HelmChartConfig is namespaced; its HelmChart still counts as cluster-wide.
    let config = "apiVersion: helm.cattle.io/v1\nkind: HelmChartConfig\nmetadata: {name: traefik}\n";
    assert_eq!(
        render_allowed(config, Some("web"), &allow).expect("namespaced").len(),
        1
    );
    let chart = config.replace("HelmChartConfig", "HelmChart");
    let err = render_allowed(&chart, Some("web"), &allow)
        .expect_err("cluster-wide")
        .to_string();
    assert!(
        err.contains("HelmChart traefik in namespace web (its controller writes cluster-wide)"),
        "{err}"
    );
}

/// "Billion laughs": nine levels of aliases, each repeating the one below nine times,
/// expand to 9^9 (387 million) strings from a few hundred bytes.
fn alias_bomb() -> String {
    let mut yaml = String::from("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\ndata:\n  a0: &a0 lol\n");
    for level in 1..=9 {
        let below = vec![format!("*a{}", level - 1); 9].join(", ");
        yaml.push_str(&format!("  a{level}: &a{level} [{below}]\n"));
    }
    yaml
}

#[test]
fn a_yaml_alias_bomb_is_refused_by_the_parser_repetition_limit() {
    let blob = tar_gz(&[("m.yaml", tar::EntryType::Regular, alias_bomb().as_bytes())]);
    let err = render_streaming(&blob, None, &Limits::default()).expect_err("alias bomb");
    let err = err.to_string();
    assert!(err.contains("bundle web: m.yaml: document 1"), "{err}");
    assert!(err.contains("repetition limit exceeded"), "{err}");
    // The publisher's check refuses it the same way.
    assert!(check_manifest(&alias_bomb(), "m.yaml").is_err());
}

#[test]
fn ordinary_anchors_and_aliases_still_render_expanded() {
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, labels: &l {app: web}}\n\
                data: {copy: *l}\n";
    let objects = parse_objects(yaml, "t").expect("aliases are YAML");
    assert_eq!(objects[0]["data"]["copy"], objects[0]["metadata"]["labels"]);
}

#[test]
fn a_tarball_with_more_entries_than_the_default_limit_is_refused() {
    // A million tiny entries would be refused the same way, after the first 100 001.
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_path("d/").expect("path");
    h.set_size(0);
    h.set_mode(0o755);
    h.set_cksum();
    let tar = h.as_bytes().repeat(DEFAULT_MAX_ENTRIES as usize + 1);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).expect("gzip");
    let blob = gz.finish().expect("gzip");
    let err = render_streaming(&blob, None, &Limits::default()).expect_err("too many entries");
    assert!(
        err.to_string()
            .contains(&format!("more than {DEFAULT_MAX_ENTRIES} entries")),
        "{err}"
    );
}
