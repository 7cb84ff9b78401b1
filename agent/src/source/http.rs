//! `http://` and `https://` sources (rustls, with the Mozilla root certificates built in so
//! the agent needs no CA bundle on the host).

use std::path::Path;

use super::{blob_path, BlobWriter, Limits, RawIndex, INDEX_PATHS};
use crate::error::{Error, Result};
use crate::format::Digest;

/// A store served over HTTP(S).
#[derive(Debug, Clone)]
pub struct HttpSource {
    base: url::Url,
    client: reqwest::Client,
    limits: Limits,
}

impl HttpSource {
    /// A store whose files live under `base`.
    pub fn new(mut base: url::Url, limits: &Limits) -> Result<Self> {
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("drover-agent/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(limits.connect_timeout)
            .read_timeout(limits.read_timeout)
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(HttpSource {
            base,
            client,
            limits: limits.clone(),
        })
    }

    /// The base URL (ends with `/`).
    pub fn base(&self) -> &url::Url {
        &self.base
    }

    fn url(&self, rel: &str) -> Result<url::Url> {
        self.base
            .join(rel)
            .map_err(|e| Error::Config(format!("{}{rel}: {e}", self.base)))
    }

    async fn get(&self, url: &url::Url) -> Result<reqwest::Response> {
        let fetch_err = |message: String| Error::Fetch {
            url: url.to_string(),
            message,
        };
        let response = self
            .client
            .get(url.clone())
            .send()
            .await
            .map_err(|e| fetch_err(describe(&e)))?;
        if !response.status().is_success() {
            return Err(fetch_err(format!("HTTP status {}", response.status())));
        }
        Ok(response)
    }

    /// Reads a small file fully, refusing more than `limit` bytes while streaming.
    async fn get_limited(&self, rel: &str, limit: u64) -> Result<(Vec<u8>, String)> {
        let url = self.url(rel)?;
        let mut response = self.get(&url).await?;
        if response.content_length().is_some_and(|len| len > limit) {
            return Err(Error::TooLarge {
                what: url.to_string(),
                limit,
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| Error::Fetch {
            url: url.to_string(),
            message: describe(&e),
        })? {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(Error::TooLarge {
                    what: url.to_string(),
                    limit,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, url.to_string()))
    }

    /// Reads index and signature.
    pub async fn fetch_index(&self) -> Result<RawIndex> {
        let (index, sig) = INDEX_PATHS;
        let (bytes, origin) = self.get_limited(index, self.limits.max_index_bytes).await?;
        let (signature, _) = self.get_limited(sig, self.limits.max_signature_bytes).await?;
        Ok(RawIndex {
            bytes,
            signature,
            origin,
        })
    }

    /// Downloads a blob into `dest`, verifying it as it streams.
    pub async fn fetch_blob(&self, digest: &Digest, size: u64, dest: &Path) -> Result<()> {
        let url = self.url(&blob_path(digest))?;
        let mut response = self.get(&url).await?;
        let mut writer = BlobWriter::new(dest, digest, size, url.to_string())?;
        while let Some(chunk) = response.chunk().await.map_err(|e| Error::Fetch {
            url: url.to_string(),
            message: describe(&e),
        })? {
            writer.write(&chunk)?;
        }
        writer.finish(dest)
    }
}

/// reqwest's top-level message hides the cause ("error sending request"); include the chain.
fn describe(e: &reqwest::Error) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
