//! A small OCI distribution client: exactly what the agent needs to read channels
//! (manifests by tag, blobs by digest); the publisher's uploads are built on [`Registry::send`]
//! in its own crate, so the agent carries no push code. It speaks
//! anonymous, basic and bearer-token authentication (the token obtained through the
//! registry's `WWW-Authenticate` challenge), plain HTTP for `--insecure` registries, a
//! custom CA bundle and a client certificate (mTLS).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Client, RequestBuilder, Response, StatusCode};

use super::{Descriptor, MANIFEST_MEDIA_TYPE, MAX_MANIFEST_BYTES};
use crate::error::{ConfigError, Error, Result};
use crate::format::Digest;
use crate::secret::SecretString;
use crate::transport::{
    fetch_error as fetch_err, load_ca_bundle, load_identity, read_body_limited, BlobWriter, ClientOptions, Limits,
    PUBLISHER_USER_AGENT,
};

/// How to reach and authenticate to registries.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Use plain HTTP instead of HTTPS.
    pub insecure: bool,
    /// User name for basic auth or the token service.
    pub username: Option<String>,
    /// Password (or access token) for that user; never shown by `Debug`.
    pub password: Option<SecretString>,
    /// A docker `config.json` (also the content of a `kubernetes.io/dockerconfigjson`
    /// Secret) to take credentials from, per registry host. Without it,
    /// `$DOCKER_CONFIG/config.json` or `~/.docker/config.json` is used when present.
    pub docker_config: Option<PathBuf>,
    /// Extra CA certificates (PEM) to trust.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (one PEM file) for mutual TLS.
    pub client_identity: Option<PathBuf>,
}

/// One registry host.
#[derive(Debug, Clone)]
pub struct Registry {
    host: String,
    base: url::Url,
    client: Client,
    credentials: Option<(String, SecretString)>,
    authorization: Arc<Mutex<Option<HeaderValue>>>,
    limits: Limits,
    received: Arc<AtomicU64>,
}

impl Registry {
    /// A client for `host` (`HOST[:PORT]`).
    pub fn new(host: &str, opts: &RegistryOptions, limits: &Limits) -> Result<Self> {
        let scheme = if opts.insecure { "http" } else { "https" };
        let base = url::Url::parse(&format!("{scheme}://{host}/")).map_err(|source| ConfigError::RegistryHost {
            host: host.to_string(),
            source,
        })?;
        let mut client =
            ClientOptions::new(PUBLISHER_USER_AGENT, limits.connect_timeout).read_timeout(limits.read_timeout);
        if let Some(ca) = &opts.ca_file {
            client = client.roots(&load_ca_bundle(ca)?);
        }
        if let Some(id) = &opts.client_identity {
            client = client.identity(load_identity(id)?);
        }
        let client = client.build()?;
        Ok(Registry {
            host: host.to_string(),
            base,
            client,
            credentials: credentials_for(host, opts)?,
            authorization: Arc::default(),
            limits: limits.clone(),
            received: Arc::default(),
        })
    }

    /// The registry host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Body bytes received so far.
    pub fn bytes_received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// The limits and timeouts requests to this registry use.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The URL of `path` (such as `v2/REPO/blobs/uploads/`) on this registry.
    pub fn url(&self, path: &str) -> url::Url {
        self.base.join(path).expect("registry paths are relative URL paths")
    }

    /// Sends the request built by `make` (called again for the retry), authenticated; on
    /// `401` answers the challenge once and retries. `what` names the request in errors.
    pub async fn send(&self, what: &str, make: impl Fn(&Client) -> Result<RequestBuilder>) -> Result<Response> {
        for attempt in 0..2 {
            let mut request = make(&self.client)?;
            if let Some(auth) = self.authorization.lock().unwrap_or_else(|p| p.into_inner()).clone() {
                request = request.header(AUTHORIZATION, auth);
            }
            let response = request.send().await.map_err(|e| fetch_err(what, &e))?;
            if response.status() != StatusCode::UNAUTHORIZED || attempt == 1 {
                return Ok(response);
            }
            let challenge = response
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .ok_or_else(|| Error::Fetch {
                    url: what.to_string(),
                    message: "HTTP 401 without a WWW-Authenticate challenge".into(),
                })?;
            self.authenticate(what, &challenge).await?;
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// Answers a `Basic` or `Bearer` challenge.
    async fn authenticate(&self, what: &str, challenge: &str) -> Result<()> {
        let (scheme, params) = parse_challenge(challenge).ok_or_else(|| Error::Fetch {
            url: what.to_string(),
            message: format!("unreadable WWW-Authenticate challenge {challenge:?}"),
        })?;
        let value = match scheme.as_str() {
            "basic" => {
                let (user, password) = self.credentials.as_ref().ok_or_else(|| Error::Fetch {
                    url: what.to_string(),
                    message: "the registry requires a user name and password (--username/--password, or a docker config.json)".into(),
                })?;
                format!("Basic {}", base64(&format!("{user}:{}", password.expose())))
            }
            "bearer" => format!("Bearer {}", self.token(what, &params).await?),
            other => {
                return Err(Error::Fetch {
                    url: what.to_string(),
                    message: format!("unsupported authentication scheme {other:?}"),
                })
            }
        };
        let mut value = HeaderValue::from_str(&value).map_err(|_| Error::Fetch {
            url: what.to_string(),
            message: "credentials are not a valid header value".into(),
        })?;
        value.set_sensitive(true);
        *self.authorization.lock().unwrap_or_else(|p| p.into_inner()) = Some(value);
        Ok(())
    }

    /// Gets a bearer token from the challenge's `realm` for its `service` and `scope`.
    async fn token(&self, what: &str, params: &BTreeMap<String, String>) -> Result<String> {
        let fail = |message: String| Error::Fetch {
            url: what.to_string(),
            message,
        };
        let realm = params
            .get("realm")
            .ok_or_else(|| fail("bearer challenge without a realm".into()))?;
        let mut url = url::Url::parse(realm).map_err(|e| fail(format!("token realm {realm:?}: {e}")))?;
        {
            let mut query = url.query_pairs_mut();
            for key in ["service", "scope"] {
                if let Some(v) = params.get(key) {
                    query.append_pair(key, v);
                }
            }
        }
        let mut request = self.client.get(url.clone()).timeout(self.limits.request_timeout);
        if let Some((user, password)) = &self.credentials {
            request = request.basic_auth(user, Some(password.expose()));
        }
        let response = request.send().await.map_err(|e| fetch_err(url.as_str(), &e))?;
        if !response.status().is_success() {
            return Err(fail(format!("token service {url} answered {}", response.status())));
        }
        let body = response.bytes().await.map_err(|e| fetch_err(url.as_str(), &e))?;
        let json: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| fail(format!("token service {url}: not JSON: {e}")))?;
        json.get("token")
            .or_else(|| json.get("access_token"))
            .and_then(|t| t.as_str())
            .map(str::to_string)
            .ok_or_else(|| fail(format!("token service {url}: no token in the answer")))
    }

    /// The digest the tag points at, with a `HEAD` request; `None` when there is no such tag.
    pub async fn head_manifest(&self, repository: &str, reference: &str) -> Result<Option<Digest>> {
        let url = self.url(&format!("v2/{repository}/manifests/{reference}"));
        let what = url.to_string();
        let response = self
            .send(&what, |c| {
                Ok(c.head(url.clone())
                    .header(ACCEPT, MANIFEST_MEDIA_TYPE)
                    .timeout(self.limits.request_timeout))
            })
            .await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => match response.headers().get("docker-content-digest") {
                Some(d) => d
                    .to_str()
                    .ok()
                    .and_then(|d| Digest::parse(d).ok())
                    .map(Some)
                    .ok_or_else(|| Error::invalid(&what, "Docker-Content-Digest is not a sha256 digest")),
                // Registries that do not say: read the manifest to know.
                None => Ok(Some(self.get_manifest(repository, reference).await?.1)),
            },
            s => Err(status_err(&what, s)),
        }
    }

    /// The manifest `reference` (tag or digest) and its digest, computed over the bytes.
    pub async fn get_manifest(&self, repository: &str, reference: &str) -> Result<(Vec<u8>, Digest)> {
        let url = self.url(&format!("v2/{repository}/manifests/{reference}"));
        let what = url.to_string();
        let response = self
            .send(&what, |c| {
                Ok(c.get(url.clone())
                    .header(ACCEPT, MANIFEST_MEDIA_TYPE)
                    .timeout(self.limits.request_timeout))
            })
            .await?;
        if !response.status().is_success() {
            return Err(status_err(&what, response.status()));
        }
        let bytes = self.read_limited(&what, response, MAX_MANIFEST_BYTES).await?;
        let digest = Digest::of(&bytes);
        if reference.starts_with("sha256:") && digest.as_str() != reference {
            return Err(Error::DigestMismatch {
                what,
                expected: reference.to_string(),
                actual: digest.to_string(),
            });
        }
        Ok((bytes, digest))
    }

    /// A small blob (index, signature, config) read into memory and checked against `d`;
    /// refused above `limit`.
    pub async fn get_blob_bytes(&self, repository: &str, d: &Descriptor, limit: u64) -> Result<Vec<u8>> {
        let url = self.url(&format!("v2/{repository}/blobs/{}", d.digest));
        let what = url.to_string();
        if d.size > limit {
            return Err(Error::TooLarge { what, limit });
        }
        let response = self
            .send(&what, |c| Ok(c.get(url.clone()).timeout(self.limits.request_timeout)))
            .await?;
        if !response.status().is_success() {
            return Err(status_err(&what, response.status()));
        }
        let bytes = self.read_limited(&what, response, d.size).await?;
        if bytes.len() as u64 != d.size {
            return Err(Error::SizeMismatch {
                what,
                expected: d.size,
                actual: bytes.len() as u64,
            });
        }
        let actual = Digest::of(&bytes);
        if actual != d.digest {
            return Err(Error::DigestMismatch {
                what,
                expected: d.digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(bytes)
    }

    /// Streams blob `digest` into `dest`, verifying size and sha256 as it goes.
    pub async fn fetch_blob(&self, repository: &str, digest: &Digest, size: u64, dest: &Path) -> Result<()> {
        let url = self.url(&format!("v2/{repository}/blobs/{digest}"));
        let what = url.to_string();
        let mut response = self
            .send(&what, |c| Ok(c.get(url.clone()).timeout(self.limits.blob_timeout)))
            .await?;
        if !response.status().is_success() {
            return Err(status_err(&what, response.status()));
        }
        let mut writer = BlobWriter::new(dest, digest, size, what.clone())?;
        while let Some(chunk) = response.chunk().await.map_err(|e| fetch_err(&what, &e))? {
            self.received.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            writer.write(&chunk)?;
        }
        writer.finish_off_runtime(dest).await
    }

    /// Whether the repository has blob `digest` (`HEAD`).
    pub async fn has_blob(&self, repository: &str, digest: &Digest) -> Result<bool> {
        let url = self.url(&format!("v2/{repository}/blobs/{digest}"));
        let what = url.to_string();
        let response = self
            .send(&what, |c| Ok(c.head(url.clone()).timeout(self.limits.request_timeout)))
            .await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(false),
            s if s.is_success() => Ok(true),
            s => Err(status_err(&what, s)),
        }
    }

    async fn read_limited(&self, what: &str, response: Response, limit: u64) -> Result<Vec<u8>> {
        read_body_limited(what, response, limit, &self.received).await
    }
}

/// An unexpected HTTP status from the registry as [`Error::Fetch`], with a hint for the
/// usual causes.
pub fn status_err(what: &str, status: StatusCode) -> Error {
    let hint = match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => " (check the registry credentials)",
        StatusCode::NOT_FOUND => " (no such repository, tag or blob)",
        _ => "",
    };
    Error::Fetch {
        url: what.to_string(),
        message: format!("HTTP status {status}{hint}"),
    }
}

fn base64(s: &str) -> String {
    use ct_codecs::Encoder;
    ct_codecs::Base64::encode_to_string(s.as_bytes()).expect("base64 of a short string")
}

/// Parses `Bearer realm="…",service="…",scope="…"` into its scheme (lowercase) and
/// parameters. Values may be quoted and contain commas.
pub fn parse_challenge(header: &str) -> Option<(String, BTreeMap<String, String>)> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.trim().is_empty() {
            break;
        }
        let value = if chars.peek() == Some(&'"') {
            chars.next();
            let mut v = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => v.extend(chars.next()),
                    '"' => break,
                    c => v.push(c),
                }
            }
            v
        } else {
            chars
                .by_ref()
                .take_while(|c| *c != ',')
                .collect::<String>()
                .trim()
                .to_string()
        };
        params.insert(key.trim().to_ascii_lowercase(), value);
    }
    (!scheme.is_empty()).then(|| (scheme.to_ascii_lowercase(), params))
}

/// Credentials for `host`: explicit user and password first, then a docker config.json.
fn credentials_for(host: &str, opts: &RegistryOptions) -> Result<Option<(String, SecretString)>> {
    if let Some(user) = &opts.username {
        return Ok(Some((user.clone(), opts.password.clone().unwrap_or_default())));
    }
    let path = match &opts.docker_config {
        Some(p) => p.clone(),
        None => {
            let default = std::env::var_os("DOCKER_CONFIG")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
                .map(|d| d.join("config.json"));
            match default {
                Some(p) if p.exists() => p,
                _ => return Ok(None),
            }
        }
    };
    let text = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let config: serde_json::Value = serde_json::from_slice(&text).map_err(|source| ConfigError::DockerConfig {
        path: path.clone(),
        source,
    })?;
    let auths = config.get("auths").and_then(|a| a.as_object());
    let entry = auths.and_then(|a| {
        a.iter()
            .find(|(k, _)| {
                let k = k.trim_start_matches("https://").trim_start_matches("http://");
                k.trim_end_matches('/') == host || k.split('/').next() == Some(host)
            })
            .map(|(_, v)| v)
    });
    let Some(entry) = entry else { return Ok(None) };
    if let (Some(u), Some(p)) = (
        entry.get("username").and_then(|v| v.as_str()),
        entry.get("password").and_then(|v| v.as_str()),
    ) {
        return Ok(Some((u.to_string(), p.into())));
    }
    let Some(auth) = entry.get("auth").and_then(|v| v.as_str()) else {
        return Ok(None);
    };
    use ct_codecs::Decoder;
    let decoded = ct_codecs::Base64::decode_to_vec(auth, None)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| ConfigError::DockerAuth {
            path: path.clone(),
            host: host.to_string(),
            expected: "base64 of user:password",
        })?;
    let (u, p) = decoded.split_once(':').ok_or_else(|| ConfigError::DockerAuth {
        path: path.clone(),
        host: host.to_string(),
        expected: "user:password",
    })?;
    Ok(Some((u.to_string(), p.into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_quoted_values_with_commas() {
        let (scheme, p) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:fleet:pull,push""#,
        )
        .expect("parses");
        assert_eq!(scheme, "bearer");
        assert_eq!(p["realm"], "https://auth.example/token");
        assert_eq!(p["scope"], "repository:fleet:pull,push");
        let (scheme, p) = parse_challenge(r#"Basic realm="Registry Realm""#).expect("basic");
        assert_eq!((scheme.as_str(), p["realm"].as_str()), ("basic", "Registry Realm"));
    }

    /// A registry double that answers 401 with a Bearer challenge, and a token service that
    /// gives a token only for the right basic credentials and scope.
    #[tokio::test(flavor = "current_thread")]
    async fn bearer_challenge_is_answered_with_a_token_from_the_realm() {
        use axum::http::{HeaderMap, StatusCode as S};
        use axum::routing::{get, head};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let realm = format!("http://{addr}/token");
        let app = axum::Router::new()
            .route(
                "/token",
                get(|uri: axum::http::Uri, headers: HeaderMap| async move {
                    let q: BTreeMap<String, String> = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                        .into_owned()
                        .collect();
                    let basic = format!("Basic {}", base64("robot:pw"));
                    let ok = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(basic.as_str())
                        && q.get("service").map(String::as_str) == Some("reg")
                        && q.get("scope").map(String::as_str) == Some("repository:fleet:pull");
                    if ok {
                        (S::OK, r#"{"token":"t0k3n"}"#)
                    } else {
                        (S::UNAUTHORIZED, "{}")
                    }
                }),
            )
            .route(
                "/v2/fleet/manifests/stable",
                head(move |headers: HeaderMap| {
                    let realm = realm.clone();
                    async move {
                        if headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer t0k3n") {
                            let digest = Digest::of(b"manifest").to_string();
                            (S::OK, [("docker-content-digest", digest)]).into_response()
                        } else {
                            let challenge =
                                format!(r#"Bearer realm="{realm}",service="reg",scope="repository:fleet:pull""#);
                            (S::UNAUTHORIZED, [("www-authenticate", challenge)]).into_response()
                        }
                    }
                }),
            );
        use axum::response::IntoResponse;
        tokio::spawn(async move { axum::serve(listener, app).await });
        let opts = RegistryOptions {
            insecure: true,
            username: Some("robot".into()),
            password: Some("pw".into()),
            ..Default::default()
        };
        let registry = Registry::new(&addr.to_string(), &opts, &Limits::default()).expect("client");
        let digest = registry.head_manifest("fleet", "stable").await.expect("authorised");
        assert_eq!(digest, Some(Digest::of(b"manifest")));

        let wrong = RegistryOptions {
            password: Some("nope".into()),
            ..opts
        };
        let registry = Registry::new(&addr.to_string(), &wrong, &Limits::default()).expect("client");
        let err = registry
            .head_manifest("fleet", "stable")
            .await
            .expect_err("refused")
            .to_string();
        assert!(err.contains("token service") && err.contains("401"), "{err}");
    }

    #[test]
    fn debug_of_options_and_client_never_shows_the_password() {
        let opts = RegistryOptions {
            username: Some("robot".into()),
            password: Some("s3cret".into()),
            ..Default::default()
        };
        let registry = Registry::new("reg.site:5000", &opts, &Limits::default()).expect("client");
        let shown = format!("{opts:?} {registry:?}");
        assert!(!shown.contains("s3cret") && shown.contains("robot"), "{shown}");
    }

    #[test]
    fn credentials_come_from_flags_then_docker_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"auths":{{"reg.site:5000":{{"auth":"{}"}}}}}}"#,
                base64("robot:s3cret")
            ),
        )
        .expect("write");
        let opts = RegistryOptions {
            docker_config: Some(config),
            ..Default::default()
        };
        assert_eq!(
            credentials_for("reg.site:5000", &opts).expect("read"),
            Some(("robot".into(), "s3cret".into()))
        );
        assert_eq!(credentials_for("other:5000", &opts).expect("read"), None);
        let explicit = RegistryOptions {
            username: Some("me".into()),
            password: Some("pw".into()),
            ..opts
        };
        assert_eq!(
            credentials_for("reg.site:5000", &explicit).expect("read"),
            Some(("me".into(), "pw".into()))
        );
    }
}
