//! Writing a channel into an OCI registry (docs/format.md §6): the `oci://` destination of
//! `drover sync`. Blobs go first (skipped when the registry has them, mounted from another
//! repository of the same registry when possible, otherwise uploaded), then the config,
//! index and signature blobs, and the manifest is put under the tag last, so a reader sees
//! the old channel or the new one, never half of one.
//!
//! The uploads themselves ([`RegistryPush`]) live here, with the publisher, on top of the
//! agent's authenticated [`Registry::send`]: the agent only ever reads a registry.

use std::path::Path;

use axum::body::Bytes;
use drover_agent::error::{Error as AgentError, Result as AgentResult};
use drover_agent::format::Digest;
use drover_agent::oci::client::status_err;
use drover_agent::oci::{config_blob, ChannelManifest, Reference, Registry, RegistryOptions, MANIFEST_MEDIA_TYPE};
use drover_agent::source::{Limits, RawIndex, Source};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::StatusCode;

use crate::error::Result;

/// Writing to a registry (OCI distribution spec, "Pushing"): what only the publisher does.
pub(crate) trait RegistryPush {
    /// Asks the registry to mount `digest` from repository `from`; `true` when it did
    /// (no bytes to send), `false` when it does not offer it.
    async fn mount_blob(&self, repository: &str, digest: &Digest, from: &str) -> AgentResult<bool>;
    /// Uploads a blob held in memory.
    async fn push_blob_bytes(&self, repository: &str, digest: &Digest, bytes: Vec<u8>) -> AgentResult<()>;
    /// Uploads the blob stored in file `path` (streamed, never held in memory).
    async fn push_blob_file(&self, repository: &str, digest: &Digest, size: u64, path: &Path) -> AgentResult<()>;
    /// Puts `manifest` under `tag`; returns its digest.
    async fn put_manifest(&self, repository: &str, tag: &str, manifest: &[u8]) -> AgentResult<Digest>;
}

impl RegistryPush for Registry {
    /// Asks the registry to mount `digest` from repository `from`; `true` when it did
    /// (no bytes to send), `false` when it does not offer it.
    async fn mount_blob(&self, repository: &str, digest: &Digest, from: &str) -> AgentResult<bool> {
        let mut url = self.url(&format!("v2/{repository}/blobs/uploads/"));
        url.query_pairs_mut()
            .append_pair("mount", digest.as_str())
            .append_pair("from", from);
        let what = url.to_string();
        let response = self
            .send(&what, |c| {
                Ok(c.post(url.clone())
                    .header(CONTENT_LENGTH, 0)
                    .timeout(self.limits().request_timeout))
            })
            .await?;
        Ok(response.status() == StatusCode::CREATED)
    }

    /// Uploads a blob held in memory.
    async fn push_blob_bytes(&self, repository: &str, digest: &Digest, bytes: Vec<u8>) -> AgentResult<()> {
        let size = bytes.len() as u64;
        let bytes = Bytes::from(bytes);
        push_blob(self, repository, digest, size, move || {
            Ok(reqwest::Body::from(bytes.clone()))
        })
        .await
    }

    /// Uploads the blob stored in file `path` (streamed, never held in memory).
    async fn push_blob_file(&self, repository: &str, digest: &Digest, size: u64, path: &Path) -> AgentResult<()> {
        let path = path.to_path_buf();
        push_blob(self, repository, digest, size, move || {
            let file = std::fs::File::open(&path).map_err(|e| AgentError::io(&path, e))?;
            let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
            Ok(reqwest::Body::wrap_stream(stream))
        })
        .await
    }

    /// Puts `manifest` under `tag`; returns its digest.
    async fn put_manifest(&self, repository: &str, tag: &str, manifest: &[u8]) -> AgentResult<Digest> {
        let url = self.url(&format!("v2/{repository}/manifests/{tag}"));
        let what = url.to_string();
        let body = Bytes::copy_from_slice(manifest);
        let response = self
            .send(&what, |c| {
                Ok(c.put(url.clone())
                    .header(CONTENT_TYPE, MANIFEST_MEDIA_TYPE)
                    .timeout(self.limits().request_timeout)
                    .body(body.clone()))
            })
            .await?;
        if response.status() != StatusCode::CREATED {
            let status = response.status();
            let detail = response.text().await.unwrap_or_default();
            return Err(AgentError::Fetch {
                url: what,
                message: format!("manifest refused: HTTP status {status} {}", detail.trim()),
            });
        }
        Ok(Digest::of(manifest))
    }
}

/// POST to open an upload session, then PUT the bytes with the digest.
async fn push_blob(
    registry: &Registry,
    repository: &str,
    digest: &Digest,
    size: u64,
    body: impl Fn() -> AgentResult<reqwest::Body>,
) -> AgentResult<()> {
    let start = registry.url(&format!("v2/{repository}/blobs/uploads/"));
    let what = start.to_string();
    let response = registry
        .send(&what, |c| {
            Ok(c.post(start.clone())
                .header(CONTENT_LENGTH, 0)
                .timeout(registry.limits().request_timeout))
        })
        .await?;
    if response.status() != StatusCode::ACCEPTED {
        return Err(status_err(&what, response.status()));
    }
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|l| l.to_str().ok())
        .ok_or_else(|| AgentError::invalid(&what, "upload session without a Location"))?;
    let mut upload = start
        .join(location)
        .map_err(|e| AgentError::invalid(&what, format!("bad upload Location {location:?}: {e}")))?;
    upload.query_pairs_mut().append_pair("digest", digest.as_str());
    let what = format!("{what} ({digest})");
    let response = registry
        .send(&what, |c| {
            Ok(c.put(upload.clone())
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, size)
                .timeout(registry.limits().blob_timeout)
                .body(body()?))
        })
        .await?;
    if response.status() != StatusCode::CREATED {
        let status = response.status();
        let detail = response.text().await.unwrap_or_default();
        return Err(AgentError::Fetch {
            url: what,
            message: format!("upload refused: HTTP status {status} {}", detail.trim()),
        });
    }
    Ok(())
}

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
