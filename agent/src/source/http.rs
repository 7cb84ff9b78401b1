//! `http://` and `https://` sources (rustls, with the Mozilla root certificates built in so
//! the agent needs no CA bundle on the host).
//!
//! The index is read conditionally: after the first successful read the source remembers
//! the index and signature bytes with the server's `ETag` and `Last-Modified`, and the next
//! read sends `If-None-Match` / `If-Modified-Since`. An unchanged store then costs one
//! request answered by `304 Not Modified` with no body, and no signature request at all.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use reqwest::StatusCode;

use super::{blob_path, RawIndex, INDEX_PATHS};
use crate::error::{ConfigError, Error, Result};
use crate::format::Digest;
use crate::transport::{fetch_error, read_body_limited, BlobWriter, ClientOptions, Limits, AGENT_USER_AGENT};

/// A store served over HTTP(S).
#[derive(Debug, Clone)]
pub struct HttpSource {
    base: url::Url,
    client: reqwest::Client,
    limits: Limits,
    remembered: Arc<Mutex<Option<Remembered>>>,
    received: Arc<AtomicU64>,
}

/// The last index read, with the validators the server gave for it.
#[derive(Debug, Clone)]
struct Remembered {
    etag: Option<HeaderValue>,
    last_modified: Option<HeaderValue>,
    index: RawIndex,
}

impl HttpSource {
    /// A store whose files live under `base`.
    pub fn new(base: url::Url, limits: &Limits) -> Result<Self> {
        let client = ClientOptions::new(AGENT_USER_AGENT, limits.connect_timeout)
            .read_timeout(limits.read_timeout)
            .roots(&limits.extra_roots)
            .build()?;
        Ok(HttpSource::with_client(base, client, limits))
    }

    /// A store under `base` read through an existing `client` (whose connect and read
    /// timeouts then apply): for programs that simulate many agents in one process.
    pub fn with_client(mut base: url::Url, client: reqwest::Client, limits: &Limits) -> Self {
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        HttpSource {
            base,
            client,
            limits: limits.clone(),
            remembered: Arc::default(),
            received: Arc::default(),
        }
    }

    /// The base URL (ends with `/`).
    pub fn base(&self) -> &url::Url {
        &self.base
    }

    /// Body bytes received so far.
    pub fn bytes_received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Makes the next index read unconditional.
    pub fn forget_index(&self) {
        *self.remembered.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn url(&self, rel: &str) -> Result<url::Url> {
        self.base.join(rel).map_err(|source| {
            Error::from(ConfigError::StoreUrl {
                url: format!("{}{rel}", self.base),
                source,
            })
        })
    }

    async fn send(&self, url: &url::Url, headers: HeaderMap, timeout: Duration) -> Result<reqwest::Response> {
        let response = self
            .client
            .get(url.clone())
            .headers(headers)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| fetch_err(url, &e))?;
        if !response.status().is_success() && response.status() != StatusCode::NOT_MODIFIED {
            return Err(Error::Fetch {
                url: url.to_string(),
                message: format!("HTTP status {}", response.status()),
            });
        }
        Ok(response)
    }

    async fn read_limited(&self, url: &url::Url, response: reqwest::Response, limit: u64) -> Result<Vec<u8>> {
        read_body_limited(url.as_str(), response, limit, &self.received).await
    }

    /// Reads index and signature; a 304 answer returns the remembered pair.
    pub async fn fetch_index(&self) -> Result<RawIndex> {
        let (index_rel, sig_rel) = INDEX_PATHS;
        let index_url = self.url(index_rel)?;
        let remembered = self.remembered.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut conditions = HeaderMap::new();
        if let Some(r) = &remembered {
            if let Some(etag) = &r.etag {
                conditions.insert(IF_NONE_MATCH, etag.clone());
            }
            if let Some(date) = &r.last_modified {
                conditions.insert(IF_MODIFIED_SINCE, date.clone());
            }
        }
        let response = self.send(&index_url, conditions, self.limits.request_timeout).await?;
        if response.status() == StatusCode::NOT_MODIFIED {
            return match remembered {
                Some(r) => Ok(RawIndex {
                    not_modified: true,
                    ..r.index
                }),
                None => Err(Error::Fetch {
                    url: index_url.to_string(),
                    message: "HTTP 304 Not Modified to an unconditional request".into(),
                }),
            };
        }
        let etag = response.headers().get(ETAG).cloned();
        let last_modified = response.headers().get(LAST_MODIFIED).cloned();
        let bytes = self
            .read_limited(&index_url, response, self.limits.max_index_bytes)
            .await?;
        let sig_url = self.url(sig_rel)?;
        let sig_response = self
            .send(&sig_url, HeaderMap::new(), self.limits.request_timeout)
            .await?;
        if sig_response.status() == StatusCode::NOT_MODIFIED {
            return Err(Error::Fetch {
                url: sig_url.to_string(),
                message: "HTTP 304 Not Modified to an unconditional request".into(),
            });
        }
        let signature = self
            .read_limited(&sig_url, sig_response, self.limits.max_signature_bytes)
            .await?;
        let index = RawIndex {
            bytes,
            signature,
            origin: index_url.to_string(),
            not_modified: false,
        };
        if etag.is_some() || last_modified.is_some() {
            *self.remembered.lock().unwrap_or_else(|p| p.into_inner()) = Some(Remembered {
                etag,
                last_modified,
                index: index.clone(),
            });
        }
        Ok(index)
    }

    /// Downloads a blob into `dest`, verifying it as it streams.
    pub async fn fetch_blob(&self, digest: &Digest, size: u64, dest: &Path) -> Result<()> {
        let url = self.url(&blob_path(digest))?;
        let mut response = self.send(&url, HeaderMap::new(), self.limits.blob_timeout).await?;
        if response.status() == StatusCode::NOT_MODIFIED {
            return Err(Error::Fetch {
                url: url.to_string(),
                message: "HTTP 304 Not Modified to an unconditional request".into(),
            });
        }
        let mut writer = BlobWriter::new(dest, digest, size, url.to_string())?;
        while let Some(chunk) = response.chunk().await.map_err(|e| fetch_err(&url, &e))? {
            self.received.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            writer.write(&chunk)?;
        }
        writer.finish_off_runtime(dest).await
    }
}

fn fetch_err(url: &url::Url, e: &reqwest::Error) -> Error {
    fetch_error(url.as_str(), e)
}
