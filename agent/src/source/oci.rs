//! `oci://HOST[:PORT]/REPOSITORY:CHANNEL` sources: a channel kept as a tag in an OCI
//! registry (see [`crate::oci`]). An unchanged channel costs one `HEAD` of the tag's
//! manifest: the digest it answers is compared with the manifest read last time.

use std::path::Path;
use std::sync::{Arc, Mutex};

use super::{Limits, RawIndex};
use crate::error::{Error, Result};
use crate::format::Digest;
use crate::oci::{ChannelManifest, Reference, Registry, RegistryOptions};

/// A channel in an OCI registry.
#[derive(Debug, Clone)]
pub struct OciSource {
    reference: Reference,
    registry: Registry,
    limits: Limits,
    remembered: Arc<Mutex<Option<(Digest, RawIndex)>>>,
}

impl OciSource {
    /// The channel `reference`, reached with `options`.
    pub fn new(reference: Reference, options: &RegistryOptions, limits: &Limits) -> Result<Self> {
        let registry = Registry::new(&reference.host, options, limits)?;
        Ok(OciSource {
            reference,
            registry,
            limits: limits.clone(),
            remembered: Arc::default(),
        })
    }

    /// The channel reference.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// The registry client.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Body bytes received so far.
    pub fn bytes_received(&self) -> u64 {
        self.registry.bytes_received()
    }

    /// Makes the next read fetch the manifest again even if the tag did not move.
    pub fn forget_index(&self) {
        *self.remembered.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Reads index and signature: `HEAD` of the tag, and when it moved, the manifest and
    /// the two small layers.
    pub async fn fetch_index(&self) -> Result<RawIndex> {
        let Reference { repository, tag, .. } = &self.reference;
        let digest = self
            .registry
            .head_manifest(repository, tag)
            .await?
            .ok_or_else(|| Error::Fetch {
                url: self.reference.to_string(),
                message: "no such channel tag in the registry".into(),
            })?;
        let remembered = self.remembered.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some((known, raw)) = remembered {
            if known == digest {
                return Ok(RawIndex {
                    not_modified: true,
                    ..raw
                });
            }
        }
        let (manifest, _) = self.registry.get_manifest(repository, digest.as_str()).await?;
        let origin = format!("{}@{}", self.reference, digest);
        let layers = ChannelManifest::parse(&manifest, &origin)?;
        let bytes = self
            .registry
            .get_blob_bytes(repository, &layers.index, self.limits.max_index_bytes)
            .await?;
        let signature = self
            .registry
            .get_blob_bytes(repository, &layers.signature, self.limits.max_signature_bytes)
            .await?;
        let raw = RawIndex {
            bytes,
            signature,
            origin,
            not_modified: false,
        };
        *self.remembered.lock().unwrap_or_else(|p| p.into_inner()) = Some((digest, raw.clone()));
        Ok(raw)
    }

    /// Streams a bundle blob into `dest`, verifying it as it goes.
    pub async fn fetch_blob(&self, digest: &Digest, size: u64, dest: &Path) -> Result<()> {
        self.registry
            .fetch_blob(&self.reference.repository, digest, size, dest)
            .await
    }
}
