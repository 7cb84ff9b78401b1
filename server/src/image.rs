//! `drover image`: the agent's container image, built without Docker. One layer holds the
//! static `drover-agent` binary at `/drover-agent`, a CA bundle at
//! `/etc/ssl/certs/ca-certificates.crt`, an `/etc/passwd` and `/etc/group` naming the
//! non-root user 65532 (`nonroot`) the agent runs as, and empty `/tmp` and
//! `/var/lib/drover` mount points. The image is written as an OCI image layout directory
//! and/or pushed to a registry with the agent's own OCI client.
//!
//! It is reproducible: the layer is a tar with sorted entries, mtime 0, fixed modes and
//! owners, gzipped with a fixed header; the config carries no creation time. The same
//! binary, CA bundle and tag give the same image digest on any machine.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use drover_agent::format::Digest;
use drover_agent::oci::{Reference, Registry, RegistryOptions, MANIFEST_MEDIA_TYPE};
use drover_agent::source::Limits;
use flate2::{Compression, GzBuilder};
use serde_json::json;

use crate::error::{Error, Result};
use crate::oci_push::RegistryPush as _;
use crate::pack::GZIP_LEVEL;

/// The user the agent runs as in the image (and in manifests/: `runAsUser`).
pub const AGENT_UID: u32 = 65532;
/// Path of the agent binary in the image (its entrypoint).
pub const ENTRYPOINT: &str = "/drover-agent";
/// Where the CA bundle goes in the image (the Debian path, which rustls-based tools and
/// `SSL_CERT_FILE` users expect).
pub const CA_BUNDLE_PATH: &str = "etc/ssl/certs/ca-certificates.crt";
/// The host's CA bundle, copied in by default.
pub const DEFAULT_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Media type of the image config.
const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of the one layer.
const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Annotation naming a manifest's tag in an OCI layout's index.json.
const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// What goes into the image.
#[derive(Debug, Clone)]
pub struct ImageInput {
    /// The static agent binary.
    pub binary: PathBuf,
    /// PEM CA bundle to include.
    pub ca_bundle: PathBuf,
    /// Tag (also the `org.opencontainers.image.version` label).
    pub tag: String,
}

/// A built image: its blobs and manifest, ready to write or push.
#[derive(Debug, Clone)]
pub struct Image {
    /// The gzipped layer.
    pub layer: Vec<u8>,
    /// The config JSON.
    pub config: Vec<u8>,
    /// The manifest JSON.
    pub manifest: Vec<u8>,
    /// Tag it is written or pushed under.
    pub tag: String,
}

impl Image {
    /// Digest of the manifest: the image's identity (`NAME@sha256:…`).
    pub fn digest(&self) -> Digest {
        Digest::of(&self.manifest)
    }
}

/// One entry of the layer.
struct Entry {
    mode: u32,
    uid: u32,
    content: Option<Vec<u8>>,
}

/// Where `drover image` puts the image: a layout directory, a registry repository, or both.
#[derive(Debug, Default)]
pub struct ImageDestinations {
    /// OCI image layout directory to write.
    pub layout: Option<PathBuf>,
    /// `HOST[:PORT]/REPO` to push to, and how to reach it.
    pub push: Option<(String, RegistryOptions)>,
}

/// `drover image`: builds the image, then writes and/or pushes it, one line per destination.
pub fn run(input: &ImageInput, to: &ImageDestinations) -> Result<()> {
    let image = build(input)?;
    if let Some(dir) = &to.layout {
        write_layout(&image, dir)?;
        println!("wrote {}:{} {}", dir.display(), image.tag, image.digest());
    }
    if let Some((repository, options)) = &to.push {
        let digest = crate::runtime::start()?.block_on(push(&image, repository, options))?;
        println!("pushed {repository}:{} {digest}", image.tag);
    }
    Ok(())
}

/// Builds the image from `input`.
pub fn build(input: &ImageInput) -> Result<Image> {
    let (binary, ca) = read_input(input)?;
    let tar = layer_tar(&layer_entries(binary, ca))
        .map_err(|e| Error::source(&input.binary, format!("cannot build the layer: {e}")))?;
    let diff_id = Digest::of(&tar);
    let mut gz = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), Compression::new(GZIP_LEVEL));
    let layer = gz
        .write_all(&tar)
        .and_then(|()| gz.finish())
        .map_err(|e| Error::source(&input.binary, format!("cannot compress the layer: {e}")))?;
    let config = image_config(&input.tag, &diff_id);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": Digest::of(&config).to_string(), "size": config.len()},
        "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": Digest::of(&layer).to_string(), "size": layer.len()}],
    }))
    .expect("manifest serialises: plain data");
    Ok(Image {
        layer,
        config,
        manifest,
        tag: input.tag.clone(),
    })
}

/// Reads the binary and the CA bundle, checking that they are what they claim to be, and
/// checks the tag.
fn read_input(input: &ImageInput) -> Result<(Vec<u8>, Vec<u8>)> {
    let read = |path: &Path| std::fs::read(path).map_err(|e| Error::source(path, e.to_string()));
    let binary = read(&input.binary)?;
    if !binary.starts_with(b"\x7fELF") {
        return Err(Error::source(
            &input.binary,
            "not an ELF executable (build it with tests/build-static.sh)",
        ));
    }
    let ca = read(&input.ca_bundle)?;
    if !String::from_utf8_lossy(&ca).contains("-----BEGIN CERTIFICATE-----") {
        return Err(Error::source(&input.ca_bundle, "no PEM certificate in it"));
    }
    if !drover_agent::oci::is_valid_tag(&input.tag) {
        return Err(Error::Input {
            field: "--tag".into(),
            message: format!("{:?} is not an image tag ([A-Za-z0-9_][A-Za-z0-9._-]*)", input.tag),
        });
    }
    Ok((binary, ca))
}

/// The files and directories of the one layer, by path.
fn layer_entries(binary: Vec<u8>, ca: Vec<u8>) -> BTreeMap<&'static str, Entry> {
    let file = |mode, content| Entry {
        mode,
        uid: 0,
        content: Some(content),
    };
    let dir = |mode, uid| Entry {
        mode,
        uid,
        content: None,
    };
    let passwd =
        format!("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{AGENT_UID}:{AGENT_UID}:nonroot:/:/sbin/nologin\n");
    [
        ("drover-agent", file(0o755, binary)),
        ("etc/", dir(0o755, 0)),
        (
            "etc/group",
            file(0o644, format!("root:x:0:\nnonroot:x:{AGENT_UID}:\n").into_bytes()),
        ),
        ("etc/passwd", file(0o644, passwd.into_bytes())),
        ("etc/ssl/", dir(0o755, 0)),
        ("etc/ssl/certs/", dir(0o755, 0)),
        (CA_BUNDLE_PATH, file(0o644, ca)),
        ("tmp/", dir(0o1777, 0)),
        ("var/", dir(0o755, 0)),
        ("var/lib/", dir(0o755, 0)),
        ("var/lib/drover/", dir(0o700, AGENT_UID)),
    ]
    .into_iter()
    .collect()
}

/// The image config: user, entrypoint, CA bundle variable, labels and the layer's diff ID.
fn image_config(tag: &str, diff_id: &Digest) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": format!("{AGENT_UID}:{AGENT_UID}"),
            "Entrypoint": [ENTRYPOINT],
            "Env": [format!("SSL_CERT_FILE=/{CA_BUNDLE_PATH}")],
            "WorkingDir": "/",
            "Labels": {
                "org.opencontainers.image.title": "drover-agent",
                "org.opencontainers.image.description": "drover agent: pulls a signed drover store and applies it",
                "org.opencontainers.image.licenses": "Apache-2.0",
                "org.opencontainers.image.version": tag,
            },
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
        "history": [{"created_by": "drover image", "comment": "static drover-agent, CA bundle, user 65532"}],
    }))
    .expect("image config serialises: plain data")
}

/// The layer as a tar: entries sorted by path, mtime 0, fixed modes and owners.
fn layer_tar(entries: &BTreeMap<&str, Entry>) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, entry) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(entry.uid.into());
        header.set_gid(entry.uid.into());
        header.set_mode(entry.mode);
        match &entry.content {
            Some(bytes) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(bytes.len() as u64);
                builder.append_data(&mut header, path, bytes.as_slice())?;
            }
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                builder.append_data(&mut header, path, std::io::empty())?;
            }
        }
    }
    builder.into_inner()
}

/// Writes `image` as an OCI image layout in `dir` (created if missing; blobs are added, and
/// index.json names this image under its tag, replacing an entry of the same tag).
pub fn write_layout(image: &Image, dir: &Path) -> Result<()> {
    let io = |path: &Path, e: std::io::Error| Error::source(path, e.to_string());
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(|e| io(&blobs, e))?;
    for bytes in [&image.layer, &image.config, &image.manifest] {
        let path = blobs.join(Digest::of(bytes).hex());
        drover_agent::fsutil::write_atomic(&path, bytes)?;
    }
    let index_path = dir.join("index.json");
    let mut manifests: Vec<serde_json::Value> = match std::fs::read(&index_path) {
        Ok(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes)
            .map_err(|e| Error::source(&index_path, format!("not an OCI image index: {e}")))?["manifests"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io(&index_path, e)),
    };
    manifests.retain(|m| m["annotations"][REF_NAME_ANNOTATION] != image.tag.as_str());
    manifests.push(json!({
        "mediaType": MANIFEST_MEDIA_TYPE,
        "digest": image.digest().to_string(),
        "size": image.manifest.len(),
        "annotations": {REF_NAME_ANNOTATION: image.tag},
    }));
    let layout = dir.join("oci-layout");
    drover_agent::fsutil::write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let index =
        json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests});
    let bytes = serde_json::to_vec(&index).expect("index serialises: plain data");
    Ok(drover_agent::fsutil::write_atomic(&index_path, &bytes)?)
}

/// Pushes `image` to `repository` (`HOST[:PORT]/REPO`, tagged with the image's tag): layer
/// and config first (skipped when present), the manifest last.
pub async fn push(image: &Image, repository: &str, options: &RegistryOptions) -> Result<Digest> {
    let reference = Reference::parse(&format!("oci://{repository}:{}", image.tag))?;
    let registry = Registry::new(&reference.host, options, &Limits::default())?;
    for blob in [&image.layer, &image.config] {
        let digest = Digest::of(blob);
        if !registry.has_blob(&reference.repository, &digest).await? {
            registry
                .push_blob_bytes(&reference.repository, &digest, blob.clone())
                .await?;
        }
    }
    Ok(registry
        .put_manifest(&reference.repository, &reference.tag, &image.manifest)
        .await?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn input(dir: &Path, binary: &[u8]) -> ImageInput {
        std::fs::write(dir.join("agent"), binary).unwrap();
        std::fs::write(
            dir.join("ca.crt"),
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        ImageInput {
            binary: dir.join("agent"),
            ca_bundle: dir.join("ca.crt"),
            tag: "0.1.0".into(),
        }
    }

    #[test]
    fn same_input_gives_the_same_image_digest() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let one = build(&input(a.path(), b"\x7fELF one")).unwrap();
        let two = build(&input(b.path(), b"\x7fELF one")).unwrap();
        assert_eq!(one.digest(), two.digest());
        let other = build(&input(b.path(), b"\x7fELF two")).unwrap();
        assert_ne!(one.digest(), other.digest());
    }

    #[test]
    fn layer_holds_the_agent_executable_and_a_non_root_user() {
        let dir = tempfile::tempdir().unwrap();
        let image = build(&input(dir.path(), b"\x7fELF agent")).unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(image.layer.as_slice()));
        let mut seen = BTreeMap::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mode = entry.header().mode().unwrap();
            let mut content = String::new();
            std::io::Read::read_to_string(&mut entry, &mut content).ok();
            seen.insert(path, (mode, content));
        }
        assert_eq!(seen["drover-agent"].0, 0o755);
        assert!(seen["etc/passwd"].1.contains("nonroot:x:65532:65532:"));
        assert!(seen.contains_key(CA_BUNDLE_PATH));
    }

    #[test]
    fn rejects_a_binary_that_is_not_elf() {
        let dir = tempfile::tempdir().unwrap();
        let err = build(&input(dir.path(), b"#!/bin/sh\n")).unwrap_err().to_string();
        assert!(err.contains("agent") && err.contains("ELF"), "{err}");
    }
}
