//! drover stores in OCI registries (docs/format.md, "OCI layout").
//!
//! A channel is a tag in one repository. The tag points at an OCI image manifest with
//! `artifactType` [`CHANNEL_ARTIFACT_TYPE`] and a small config blob of its own media type;
//! its layers are `index.json`, `index.json.minisig` and every bundle blob the index
//! references, each with a drover media type and its store path in the
//! `org.opencontainers.image.title` annotation. Listing the bundles as layers keeps them
//! safe from registry garbage collection, and a bundle's digest in the registry is the same
//! sha256 as in `blobs/sha256/` of a store directory.

pub mod client;

pub use client::{Registry, RegistryOptions};

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, Error, Result};
use crate::format::{Digest, BLOB_DIR, INDEX_FILE, SIGNATURE_FILE};

/// Media type of the channel manifest (a plain OCI image manifest).
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// `artifactType` of a channel manifest.
pub const CHANNEL_ARTIFACT_TYPE: &str = "application/vnd.drover.channel.v1";
/// Media type of the channel's config blob.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.drover.channel.config.v1+json";
/// Media type of the `index.json` layer.
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.drover.index.v1+json";
/// Media type of the `index.json.minisig` layer.
pub const SIGNATURE_MEDIA_TYPE: &str = "application/vnd.drover.index.sig.v1";
/// Media type of a bundle layer.
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.drover.bundle.v1.tar+gzip";
/// Annotation holding a layer's path in a store directory.
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";
/// Largest manifest accepted (a channel of ~20,000 bundles).
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// The OCI distribution spec's tag rule: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn is_valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 128
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && !tag.starts_with(['.', '-'])
}

/// `oci://HOST[:PORT]/REPO/PATH:CHANNEL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Registry host and optional port.
    pub host: String,
    /// Repository path.
    pub repository: String,
    /// Tag (the channel).
    pub tag: String,
}

impl Reference {
    /// Parses `oci://HOST[:PORT]/REPO:TAG` (the scheme is optional).
    pub fn parse(spec: &str) -> Result<Self> {
        let err = |why: &'static str| -> Error {
            ConfigError::Reference {
                spec: spec.to_string(),
                why,
            }
            .into()
        };
        let rest = spec.strip_prefix("oci://").unwrap_or(spec);
        let (host, path) = rest.split_once('/').ok_or_else(|| err("no repository"))?;
        let (repository, tag) = path.rsplit_once(':').ok_or_else(|| err("no :CHANNEL tag"))?;
        if host.is_empty() || host.contains(['@', '?', '#']) {
            return Err(err("bad host"));
        }
        let repo_ok = !repository.is_empty()
            && repository.split('/').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            });
        if !repo_ok {
            return Err(err("repository must be lowercase path components [a-z0-9._-]"));
        }
        if !is_valid_tag(tag) {
            return Err(err("tag must be [A-Za-z0-9_.-], at most 128 characters"));
        }
        Ok(Reference {
            host: host.to_string(),
            repository: repository.to_string(),
            tag: tag.to_string(),
        })
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "oci://{}/{}:{}", self.host, self.repository, self.tag)
    }
}

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Annotations (drover sets the store path as the title).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
}

impl Descriptor {
    fn new(media_type: &str, bytes_digest: Digest, size: u64, title: &str) -> Self {
        Descriptor {
            media_type: media_type.into(),
            digest: bytes_digest,
            size,
            annotations: [(TITLE_ANNOTATION.to_string(), title.to_string())].into(),
        }
    }
}

/// A channel manifest as drover writes and reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelManifest {
    /// Always 2.
    pub schema_version: u32,
    /// Always [`MANIFEST_MEDIA_TYPE`].
    pub media_type: String,
    /// Always [`CHANNEL_ARTIFACT_TYPE`].
    #[serde(default)]
    pub artifact_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// index.json, its signature, then the bundles by digest.
    pub layers: Vec<Descriptor>,
    /// Channel and version, for people browsing the registry.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// The blobs of a channel, located in its manifest.
#[derive(Debug, Clone)]
pub struct ChannelLayers {
    /// The `index.json` layer.
    pub index: Descriptor,
    /// The `index.json.minisig` layer.
    pub signature: Descriptor,
    /// Bundle layers.
    pub bundles: Vec<Descriptor>,
}

/// The config blob's content: channel and version (informational; agents trust only the
/// signed index).
pub fn config_blob(channel: &str, version: u64) -> Vec<u8> {
    serde_json::json!({"channel": channel, "version": version})
        .to_string()
        .into_bytes()
}

impl ChannelManifest {
    /// The manifest for a channel whose config blob is `config`, index `index`, signature
    /// `signature` and bundle blobs `bundles` (digest, size).
    pub fn new(
        channel: &str,
        version: u64,
        config: &[u8],
        index: &[u8],
        signature: &[u8],
        bundles: &[(Digest, u64)],
    ) -> Self {
        let mut layers = vec![
            Descriptor::new(INDEX_MEDIA_TYPE, Digest::of(index), index.len() as u64, INDEX_FILE),
            Descriptor::new(
                SIGNATURE_MEDIA_TYPE,
                Digest::of(signature),
                signature.len() as u64,
                SIGNATURE_FILE,
            ),
        ];
        let mut bundles = bundles.to_vec();
        bundles.sort();
        bundles.dedup();
        layers.extend(bundles.into_iter().map(|(digest, size)| {
            let title = format!("{BLOB_DIR}/{}", digest.hex());
            Descriptor::new(BUNDLE_MEDIA_TYPE, digest, size, &title)
        }));
        ChannelManifest {
            schema_version: 2,
            media_type: MANIFEST_MEDIA_TYPE.into(),
            artifact_type: Some(CHANNEL_ARTIFACT_TYPE.into()),
            config: Descriptor {
                media_type: CONFIG_MEDIA_TYPE.into(),
                digest: Digest::of(config),
                size: config.len() as u64,
                annotations: Default::default(),
            },
            layers,
            annotations: [
                ("dev.drover.channel".to_string(), channel.to_string()),
                ("dev.drover.version".to_string(), version.to_string()),
            ]
            .into(),
        }
    }

    /// Serialised bytes (what is pushed, and what the manifest digest is computed over).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("manifest serialises: plain data")
    }

    /// Parses a manifest read from `what` and finds the drover layers in it.
    pub fn parse(bytes: &[u8], what: &str) -> Result<ChannelLayers> {
        let m: ChannelManifest = serde_json::from_slice(bytes)
            .map_err(|e| Error::invalid(what, format!("not an OCI image manifest: {e}")))?;
        if m.artifact_type.as_deref() != Some(CHANNEL_ARTIFACT_TYPE) && m.config.media_type != CONFIG_MEDIA_TYPE {
            return Err(Error::invalid(
                what,
                format!(
                    "not a drover channel (artifactType {:?}, config {:?}; expected {CHANNEL_ARTIFACT_TYPE})",
                    m.artifact_type, m.config.media_type
                ),
            ));
        }
        let pick = |media: &str| {
            let mut found = m.layers.iter().filter(|l| l.media_type == media);
            match (found.next(), found.next()) {
                (Some(l), None) => Ok(l.clone()),
                (None, _) => Err(Error::invalid(what, format!("no layer of media type {media}"))),
                (Some(_), Some(_)) => Err(Error::invalid(what, format!("several layers of media type {media}"))),
            }
        };
        Ok(ChannelLayers {
            index: pick(INDEX_MEDIA_TYPE)?,
            signature: pick(SIGNATURE_MEDIA_TYPE)?,
            bundles: m
                .layers
                .iter()
                .filter(|l| l.media_type == BUNDLE_MEDIA_TYPE)
                .cloned()
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_host_port_nested_repository_and_channel() {
        let r = Reference::parse("oci://127.0.0.1:5000/fleet/edge:stable").expect("valid");
        assert_eq!(
            (r.host.as_str(), r.repository.as_str(), r.tag.as_str()),
            ("127.0.0.1:5000", "fleet/edge", "stable")
        );
        assert_eq!(r.to_string(), "oci://127.0.0.1:5000/fleet/edge:stable");
        for bad in [
            "oci://host/Fleet:stable",
            "oci://host/fleet",
            "oci://host:stable",
            "oci:///fleet:x",
            "oci://h/f:-x",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn manifest_round_trips_and_lists_bundles_once_in_digest_order() {
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let m = ChannelManifest::new(
            "stable",
            3,
            b"{}",
            b"index",
            b"sig",
            &[(b.clone(), 1), (a.clone(), 1), (b.clone(), 1)],
        );
        let layers = ChannelManifest::parse(&m.to_bytes(), "test").expect("parses");
        assert_eq!(layers.index.digest, Digest::of(b"index"));
        assert_eq!(layers.signature.annotations[TITLE_ANNOTATION], SIGNATURE_FILE);
        let mut expected = vec![a, b];
        expected.sort();
        assert_eq!(
            layers.bundles.iter().map(|l| l.digest.clone()).collect::<Vec<_>>(),
            expected
        );
        assert_eq!(
            m.to_bytes(),
            ChannelManifest::parse_raw(&m.to_bytes()).to_bytes(),
            "stable bytes"
        );
    }

    #[test]
    fn foreign_manifests_are_refused() {
        let image = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2},"layers":[]}"#;
        let err = ChannelManifest::parse(image, "x").expect_err("an image").to_string();
        assert!(err.contains("not a drover channel"), "{err}");
    }

    impl ChannelManifest {
        fn parse_raw(bytes: &[u8]) -> ChannelManifest {
            serde_json::from_slice(bytes).expect("manifest")
        }
    }
}
