//! The agent library's error type. Every variant names the thing it is about (a file, a URL,
//! a field, a bundle) and says what was expected and what was found.

use std::path::PathBuf;

/// Errors of the drover agent library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a local file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A network request failed.
    #[error("{url}: {message}")]
    Fetch {
        /// The URL requested.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// Data was larger than its limit.
    #[error("{what}: larger than the limit of {limit} bytes")]
    TooLarge {
        /// What was being read (a URL or path).
        what: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// A blob's bytes did not hash to the digest the index gave for it.
    #[error("{what}: content does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch {
        /// Where the blob came from.
        what: String,
        /// The digest from the signed index.
        expected: String,
        /// The digest of the bytes received.
        actual: String,
    },
    /// A blob had a different size than the index said.
    #[error("{what}: size mismatch: index says {expected} bytes, got {actual}")]
    SizeMismatch {
        /// Where the blob came from.
        what: String,
        /// The size from the signed index.
        expected: u64,
        /// The number of bytes received.
        actual: u64,
    },
    /// A trusted key could not be read.
    #[error("trusted key {path}: {message}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What was wrong with it.
        message: String,
    },
    /// The index signature did not verify with any trusted key.
    #[error("{what}: signature rejected: {message}")]
    Signature {
        /// The index that was being verified.
        what: String,
        /// Why each trusted key refused it.
        message: String,
    },
    /// The index is past its `expires` time.
    #[error("{what}: index expired at {expires} (now {now}); the publisher must re-publish")]
    Expired {
        /// The index.
        what: String,
        /// Its expiry.
        expires: String,
        /// The agent's clock.
        now: String,
    },
    /// The index is older than (or conflicts with) one already applied.
    #[error("{what}: {message}")]
    Rollback {
        /// The index.
        what: String,
        /// Details (versions involved).
        message: String,
    },
    /// The index belongs to another channel than the one this agent follows.
    #[error("{what}: index of channel {found:?}, but this agent follows channel {expected:?} ({why}); refused")]
    WrongChannel {
        /// The index.
        what: String,
        /// The channel in the index.
        found: String,
        /// The channel the agent follows.
        expected: String,
        /// Where `expected` comes from.
        why: &'static str,
    },
    /// The index or a bundle file is malformed.
    #[error("{what}: invalid: {message}")]
    Invalid {
        /// What was being read: a file, URL, field path or bundle entry.
        what: String,
        /// What was expected and what was found.
        message: String,
    },
    /// Objects of a bundle fall outside the agent's namespace allow-list.
    #[error("{what}: refused by the namespace allow-list ({allowed}); nothing of this bundle was applied: {objects}")]
    NotAllowed {
        /// The bundle.
        what: String,
        /// What the allow-list allows.
        allowed: String,
        /// The refused objects (kind, name, namespace).
        objects: String,
    },
    /// The end of a cycle could not be recorded in the state directory (disk full, read-only
    /// file system). Manifests of this cycle may already be in place; the state still says
    /// `Applying` for them, so the next cycle completes the record.
    #[error("{path}: the cycle's result could not be saved in the state directory ({source}); manifests may already be written, the next cycle completes the record")]
    StateNotSaved {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A request to the Kubernetes API failed (kube sink).
    #[error("{what}: {}", context.explain(source))]
    Kube {
        /// The object or kind the request was about (`Deployment.apps/web/api`).
        what: String,
        /// What the sink was doing, which shapes the explanation.
        context: KubeContext,
        /// The client's error, with the API server's Status when it answered.
        #[source]
        source: kube::Error,
    },
    /// A Kubernetes object did not reach the state the kube sink waited for in time.
    #[error("{what}: {wait}")]
    KubeTimeout {
        /// The object waited for.
        what: String,
        /// What was waited for, and how long.
        wait: KubeWait,
    },
    /// The configuration is not usable.
    #[error("configuration: {0}")]
    Config(String),
}

impl Error {
    /// True for a refusal by verification: a signature, expiry, rollback, size or digest
    /// check failed (as opposed to a transport error or bad local configuration).
    pub fn is_verification_failure(&self) -> bool {
        matches!(
            self,
            Error::Signature { .. }
                | Error::Expired { .. }
                | Error::Rollback { .. }
                | Error::WrongChannel { .. }
                | Error::DigestMismatch { .. }
                | Error::SizeMismatch { .. }
                | Error::TooLarge { .. }
        )
    }

    /// Shorthand for [`Error::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            what: what.into(),
            message: message.into(),
        }
    }
}

/// What the kube sink was doing when a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KubeContext {
    /// Any request; the client's error says it all.
    Request,
    /// Discovery found no resource for the object's apiVersion and kind.
    UnknownKind,
    /// Server-side apply met fields another field manager owns (409).
    Conflict,
    /// The API server refused the object as invalid (422).
    Refused,
}

impl KubeContext {
    /// The explanation of `source` in this context, as users read it.
    fn explain(self, source: &kube::Error) -> String {
        let server_says = || match source {
            kube::Error::Api(status) => status.message.clone(),
            other => other.to_string(),
        };
        match self {
            KubeContext::Request => source.to_string(),
            KubeContext::UnknownKind => format!("unknown kind: {source}"),
            KubeContext::Conflict => format!(
                "conflict with another field manager: {} (set `force: true` in the bundle's bundle.yaml to take them)",
                server_says()
            ),
            KubeContext::Refused => format!(
                "refused: {} (an immutable field changed? force recreates)",
                server_says()
            ),
        }
    }
}

/// What the kube sink waited for in vain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KubeWait {
    /// A CustomResourceDefinition never reported `Established`.
    Established(std::time::Duration),
    /// A deleted object (to be created again) was still there.
    Deleted(std::time::Duration),
}

impl std::fmt::Display for KubeWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KubeWait::Established(waited) => write!(f, "not Established after {}s", waited.as_secs()),
            KubeWait::Deleted(waited) => write!(f, "still present {}s after its deletion", waited.as_secs()),
        }
    }
}

/// Result type of the agent library.
pub type Result<T, E = Error> = std::result::Result<T, E>;
