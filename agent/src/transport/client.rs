//! The one place an HTTP client is built, for the agent (sources, registry, report) and the
//! publisher alike, and the one place PEM certificates are read for it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::ConfigError;

/// `User-Agent` of the agent's store and report requests.
pub const AGENT_USER_AGENT: &str = concat!("drover-agent/", env!("CARGO_PKG_VERSION"));
/// `User-Agent` of registry requests and of the publisher.
pub const PUBLISHER_USER_AGENT: &str = concat!("drover/", env!("CARGO_PKG_VERSION"));

/// The HTTP client could not be built (no TLS backend, an unusable certificate).
#[derive(Debug, thiserror::Error)]
#[error("HTTP client: {0}")]
pub struct ClientError(#[source] pub reqwest::Error);

/// A PEM file could not be read or is not what it should hold.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a bundle of PEM certificates.
    #[error("{}: not a PEM CA bundle: {source}", path.display())]
    NotCaBundle {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        #[source]
        source: reqwest::Error,
    },
    /// The file is not a PEM certificate with its private key.
    #[error("{}: not a PEM certificate and key: {source}", path.display())]
    NotIdentity {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        #[source]
        source: reqwest::Error,
    },
}

impl PemError {
    /// The file involved.
    pub fn path(&self) -> &Path {
        match self {
            PemError::Read { path, .. } | PemError::NotCaBundle { path, .. } | PemError::NotIdentity { path, .. } => {
                path
            }
        }
    }
}

impl From<ClientError> for crate::Error {
    fn from(ClientError(source): ClientError) -> Self {
        ConfigError::HttpClient { source }.into()
    }
}

impl PemError {
    /// As the agent's error, naming config key `key` (when given) for a bad CA bundle.
    pub fn into_error(self, key: Option<&'static str>) -> crate::Error {
        match self {
            PemError::Read { path, source } => crate::Error::Io { path, source },
            PemError::NotCaBundle { path, source } => ConfigError::NotCaBundle { key, path, source }.into(),
            PemError::NotIdentity { path, source } => ConfigError::NotIdentity { path, source }.into(),
        }
    }
}

impl From<PemError> for crate::Error {
    fn from(e: PemError) -> Self {
        e.into_error(None)
    }
}

/// Reads the CA certificates of PEM bundle `path` (possibly none: the caller decides whether
/// an empty bundle is an error).
pub fn load_ca_bundle(path: &Path) -> Result<Vec<reqwest::Certificate>, PemError> {
    let pem = read(path)?;
    reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| PemError::NotCaBundle {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a client certificate and its key (one PEM file) for mutual TLS.
pub fn load_identity(path: &Path) -> Result<reqwest::Identity, PemError> {
    let pem = read(path)?;
    reqwest::Identity::from_pem(&pem).map_err(|source| PemError::NotIdentity {
        path: path.to_path_buf(),
        source,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, PemError> {
    std::fs::read(path).map_err(|source| PemError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// How to build an HTTP client: rustls with the built-in Mozilla roots plus any extra ones,
/// a user agent, a connect timeout and optionally a read timeout, a whole-request timeout
/// and a client identity.
#[derive(Clone)]
pub struct ClientOptions {
    user_agent: &'static str,
    connect_timeout: Duration,
    read_timeout: Option<Duration>,
    timeout: Option<Duration>,
    roots: Vec<reqwest::Certificate>,
    identity: Option<reqwest::Identity>,
}

impl ClientOptions {
    /// A client sending `user_agent` that gives up connecting after `connect_timeout`.
    pub fn new(user_agent: &'static str, connect_timeout: Duration) -> Self {
        ClientOptions {
            user_agent,
            connect_timeout,
            read_timeout: None,
            timeout: None,
            roots: Vec::new(),
            identity: None,
        }
    }

    /// Abandons a response when two reads are further apart than `timeout`.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = Some(timeout);
        self
    }

    /// Abandons any request, body included, after `timeout` (requests may set their own).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Trusts `roots` besides the built-in ones.
    pub fn roots(mut self, roots: &[reqwest::Certificate]) -> Self {
        self.roots.extend_from_slice(roots);
        self
    }

    /// Presents `identity` to servers that ask for a client certificate.
    pub fn identity(mut self, identity: reqwest::Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<reqwest::Client, ClientError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(self.user_agent)
            .connect_timeout(self.connect_timeout);
        if let Some(t) = self.read_timeout {
            builder = builder.read_timeout(t);
        }
        if let Some(t) = self.timeout {
            builder = builder.timeout(t);
        }
        for cert in self.roots {
            builder = builder.add_root_certificate(cert);
        }
        if let Some(identity) = self.identity {
            builder = builder.identity(identity);
        }
        builder.build().map_err(ClientError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_pem_is_named_in_the_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ca.pem");
        std::fs::write(
            &path,
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let err = load_ca_bundle(&path).expect_err("not PEM");
        assert!(matches!(err, PemError::NotCaBundle { .. }), "{err}");
        assert!(err.to_string().contains("ca.pem: not a PEM CA bundle"), "{err}");
        let missing = load_identity(&dir.path().join("nope.pem")).expect_err("missing");
        assert!(matches!(missing, PemError::Read { .. }) && missing.path().ends_with("nope.pem"));
    }

    #[test]
    fn a_bundle_without_certificates_reads_as_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "just text\n").expect("write");
        assert!(load_ca_bundle(&path).expect("no PEM blocks is no error").is_empty());
    }
}
