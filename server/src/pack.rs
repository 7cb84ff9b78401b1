//! Reproducible bundle tarballs: same files in, byte-identical `tar.gz` out, on any
//! machine (with the same drover version): entries sorted byte-wise by path, regular files
//! only, mode 0644, mtime 0, uid/gid 0, no user/group names, gzip header with mtime 0, no
//! file name and OS byte 255, compression level [`GZIP_LEVEL`].

use std::collections::BTreeMap;
use std::io::Write;

use flate2::{Compression, GzBuilder};

/// The gzip level of bundle blobs: 6, gzip's and zlib's default. On generated manifests it
/// gave the smallest blobs of levels 4 to 9 with the zlib-rs deflate, five times faster
/// than the level 9 of miniz_oxide used before (docs/performance.md, "Publish
/// throughput"). The level and the deflate implementation are part of what makes a digest:
/// changing either changes every digest once (agents then rewrite each bundle's file once,
/// with the same objects).
pub const GZIP_LEVEL: u32 = 6;

/// Packs `files` (relative path → content) into a gzip-compressed tar.
pub fn pack(files: &BTreeMap<&str, &[u8]>) -> std::io::Result<Vec<u8>> {
    let gz = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), Compression::new(GZIP_LEVEL));
    let mut builder = tar::Builder::new(gz);
    builder.mode(tar::HeaderMode::Deterministic);
    // A BTreeMap of &str iterates in byte-wise order of the UTF-8 paths.
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        builder.append_data(&mut header, path, *bytes)?;
    }
    let mut gz = builder.into_inner()?;
    gz.flush()?;
    gz.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_agent::render::{read_manifests, Limits};

    #[test]
    fn same_files_give_identical_bytes() {
        let files: BTreeMap<&str, &[u8]> = [("b.yaml", &b"b: 1\n"[..]), ("a/deep/x.yml", &b"x: 1\n"[..])].into();
        assert_eq!(pack(&files).expect("pack"), pack(&files).expect("pack"));
    }

    #[test]
    fn packed_bundle_reads_back_in_order_with_long_paths() {
        let long = format!("{}/m.yaml", "d".repeat(150));
        let files: BTreeMap<&str, &[u8]> = [("z.yaml", &b"z\n"[..]), (long.as_str(), &b"l\n"[..])].into();
        let blob = pack(&files).expect("pack");
        let back = read_manifests(&blob[..], "t", &Limits::default()).expect("valid bundle");
        let paths: Vec<&str> = back.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, [long.as_str(), "z.yaml"]);
    }
}

/// Publish → read round trips on random bundle trees: what `drover publish` packs, the
/// agent reads back file for file and renders back object for object.
#[cfg(test)]
mod properties {
    use super::*;
    use drover_agent::format::Digest;
    use drover_agent::render::{read_manifests, render_bundle, Limits, Rendered};
    use drover_agent::select::Cluster;
    use drover_agent::source::blob::VerifiedBlob;
    use proptest::prelude::*;
    use serde_norway::{Mapping, Value};

    /// A relative path of one to three segments ending in `.yaml` or `.yml`; directory
    /// names never end so, so no file is also a directory.
    fn manifest_path() -> impl Strategy<Value = String> {
        (
            prop::collection::vec("[a-z0-9_-]{1,8}", 0..3),
            "[a-z0-9_.-]{1,12}",
            prop::bool::ANY,
        )
            .prop_map(|(dirs, stem, long)| {
                let mut path: String = dirs.iter().map(|d| format!("{d}/")).collect();
                path.push_str(&stem);
                path.push_str(if long { ".yaml" } else { ".yml" });
                path
            })
    }

    /// A Kubernetes object with arbitrary string data. `$` is left out: it would be
    /// substitution syntax, which has its own tests.
    fn object() -> impl Strategy<Value = Mapping> {
        (
            prop::sample::select(&["ConfigMap", "Secret", "Namespace", "Widget"][..]),
            "[a-z0-9-]{1,20}",
            prop::collection::btree_map("[a-zA-Z0-9_.-]{1,10}", "[^$]{0,30}", 0..4),
        )
            .prop_map(|(kind, name, data)| {
                let mut metadata = Mapping::new();
                metadata.insert("name".into(), name.into());
                let mut object = Mapping::new();
                object.insert("apiVersion".into(), "v1".into());
                object.insert("kind".into(), kind.into());
                object.insert("metadata".into(), Value::Mapping(metadata));
                let data: Mapping = data.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
                object.insert("data".into(), Value::Mapping(data));
                object
            })
    }

    fn tree() -> impl Strategy<Value = BTreeMap<String, Vec<Mapping>>> {
        prop::collection::btree_map(manifest_path(), prop::collection::vec(object(), 1..4), 1..5)
    }

    fn manifest_text(objects: &[Mapping]) -> String {
        objects
            .iter()
            .map(|o| serde_norway::to_string(o).expect("an object serialises"))
            .collect::<Vec<_>>()
            .join("---\n")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn packed_tree_reads_and_renders_back_the_same_documents(tree in tree()) {
            let texts: BTreeMap<&str, String> = tree.iter().map(|(p, objs)| (p.as_str(), manifest_text(objs))).collect();
            let files: BTreeMap<&str, &[u8]> = texts.iter().map(|(p, t)| (*p, t.as_bytes())).collect();
            let blob = pack(&files).expect("pack");
            // Reproducible: packing again gives the same digest.
            prop_assert_eq!(Digest::of(&pack(&files).expect("pack")), Digest::of(&blob));

            let read = read_manifests(&blob[..], "prop", &Limits::default()).expect("a packed bundle reads");
            let read: Vec<(&str, &str)> = read.iter().map(|f| (f.path.as_str(), f.text.as_str())).collect();
            let expected: Vec<(&str, &str)> = texts.iter().map(|(p, t)| (*p, t.as_str())).collect();
            prop_assert_eq!(read, expected);

            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("blob");
            std::fs::write(&path, &blob).expect("write blob");
            let path = VerifiedBlob::check_file(path, &Digest::of(&blob), blob.len() as u64).expect("intact");
            let mut out = Rendered::default();
            render_bundle(&path, "prop", None, &Cluster::default(), &Limits::default(), &mut out).expect("a packed bundle renders");
            let rendered: Vec<Value> = out
                .documents()
                .map(|d| serde_norway::from_str(d).expect("a rendered document parses"))
                .collect();
            let objects: Vec<Value> = tree.values().flatten().cloned().map(Value::Mapping).collect();
            prop_assert_eq!(rendered, objects);
        }
    }
}
