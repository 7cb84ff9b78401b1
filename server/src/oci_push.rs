//! Writing a channel into an OCI registry (docs/format.md §6): the `oci://` destination of
//! `drover sync`. Blobs go first (skipped when the registry has them, mounted from another
//! repository of the same registry when possible, otherwise uploaded), then the config,
//! index and signature blobs, and the manifest is put under the tag last, so a reader sees
//! the old channel or the new one, never half of one.

use drover_agent::format::Digest;
use drover_agent::oci::{config_blob, ChannelManifest, Reference, Registry, RegistryOptions};
use drover_agent::source::{Limits, RawIndex, Source};

use crate::error::Result;

/// A channel tag in a registry, as a place to write to.
#[derive(Debug)]
pub struct OciDestination {
    reference: Reference,
    registry: Registry,
    reader: Source,
    scratch: tempfile::TempDir,
}

impl OciDestination {
    /// The channel `reference`, reached with `options`.
    pub fn new(reference: Reference, options: &RegistryOptions, limits: &Limits) -> Result<Self> {
        let registry = Registry::new(&reference.host, options, limits)?;
        let reader = Source::parse_with(&reference.to_string(), limits, options)?;
        let scratch = tempfile::Builder::new()
            .prefix("drover-sync-")
            .tempdir()
            .map_err(|e| drover_agent::Error::io(std::env::temp_dir(), e))?;
        Ok(OciDestination {
            reference,
            registry,
            reader,
            scratch,
        })
    }

    /// The channel reference.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// The index and signature the tag holds now, or `None` for a new channel.
    pub async fn current_index(&self) -> Result<Option<RawIndex>> {
        let Reference { repository, tag, .. } = &self.reference;
        if self.registry.head_manifest(repository, tag).await?.is_none() {
            return Ok(None);
        }
        Ok(Some(self.reader.fetch_index().await?))
    }

    /// Whether the repository already has blob `digest`.
    pub async fn has_blob(&self, digest: &Digest) -> Result<bool> {
        Ok(self.registry.has_blob(&self.reference.repository, digest).await?)
    }

    /// Copies blob `digest` from `source`: a cross-repository mount when `source` is another
    /// repository of the same registry and the registry offers it, else download (verified
    /// against `digest` and `size`) and upload.
    pub async fn put_blob(&self, source: &Source, digest: &Digest, size: u64) -> Result<()> {
        let repository = &self.reference.repository;
        if let Source::Oci(from) = source {
            let from = from.reference();
            if from.host == self.reference.host
                && &from.repository != repository
                && self.registry.mount_blob(repository, digest, &from.repository).await?
            {
                return Ok(());
            }
        }
        let local = self.scratch.path().join(digest.hex());
        source.fetch_blob(digest, size, &local).await?;
        let pushed = self.registry.push_blob_file(repository, digest, size, &local).await;
        let _ = std::fs::remove_file(&local);
        Ok(pushed?)
    }

    /// Pushes config, index and signature, then points the tag at the new manifest listing
    /// them and `blobs`. Returns the manifest digest.
    pub async fn commit(
        &self,
        channel: &str,
        version: u64,
        index_bytes: &[u8],
        signature: &[u8],
        blobs: &[(Digest, u64)],
    ) -> Result<Digest> {
        let repository = &self.reference.repository;
        let config = config_blob(channel, version);
        for bytes in [&config[..], index_bytes, signature] {
            let digest = Digest::of(bytes);
            if !self.registry.has_blob(repository, &digest).await? {
                self.registry
                    .push_blob_bytes(repository, &digest, bytes.to_vec())
                    .await?;
            }
        }
        let manifest = ChannelManifest::new(channel, version, &config, index_bytes, signature, blobs);
        Ok(self
            .registry
            .put_manifest(repository, &self.reference.tag, &manifest.to_bytes())
            .await?)
    }
}
