//! `drover serve`: a static file server for one store, for quick starts and tests.
//! Production serves the same files with nginx, S3 or a CDN.
//!
//! Only the store's own paths are served (`/index.json`, `/index.json.minisig`,
//! `/blobs/sha256/<64 hex>`), so no request can reach another file. Every response carries
//! a strong ETag (the sha256 of the content: for blobs, their name), and a request whose
//! `If-None-Match` matches gets `304 Not Modified` with no body: an unchanged poll costs one
//! small round trip.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use drover_agent::format::{Digest, INDEX_FILE, SIGNATURE_FILE};

use crate::error::{Error, Result};
use crate::runtime;

/// ETags of the index files, keyed by what identifies one version of a file: a publish
/// replaces them by rename (new inode), so the hash is computed once per version instead of
/// on every poll.
type EtagCache = Mutex<HashMap<PathBuf, (FileId, String)>>;

/// Inode, size and modification time.
type FileId = (u64, u64, Option<std::time::SystemTime>);

/// `drover serve STORE --listen ADDR`: binds, checks that `store` holds an index, prints the
/// URL, and serves until the process ends.
pub fn run(store: PathBuf, listen: &str) -> Result<()> {
    let listen_err = |source| Error::Listen {
        address: listen.to_string(),
        source,
    };
    runtime::start()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen).await.map_err(listen_err)?;
        let addr = listener.local_addr().map_err(listen_err)?;
        if !store.join(INDEX_FILE).is_file() {
            return Err(Error::source(&store, "no index.json here; run drover publish first"));
        }
        println!("serving {} on http://{addr}/", store.display());
        serve(store, listener).await.map_err(listen_err)
    })
}

/// Serves `store` on `listener` until the process ends.
pub async fn serve(store: PathBuf, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let store = Arc::new(store);
    let etags: Arc<EtagCache> = Arc::default();
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap| {
        let (store, etags) = (store.clone(), etags.clone());
        async move { respond(&store, &etags, &method, uri.path(), &headers).await }
    });
    axum::serve(listener, app).await
}

/// The ETag of index file `path` with metadata `meta`: from the cache while the file is the
/// same version, else hashed (and remembered).
fn index_etag(etags: &EtagCache, path: &Path, meta: &std::fs::Metadata) -> std::io::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let id: FileId = (meta.ino(), meta.len(), meta.modified().ok());
    if let Some((known, etag)) = etags.lock().unwrap_or_else(|p| p.into_inner()).get(path) {
        if *known == id {
            return Ok(etag.clone());
        }
    }
    let etag = format!("\"{}\"", Digest::of(&std::fs::read(path)?).hex());
    etags
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(path.to_path_buf(), (id, etag.clone()));
    Ok(etag)
}

async fn respond(store: &Path, etags: &EtagCache, method: &Method, path: &str, headers: &HeaderMap) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, "read-only store\n").into_response();
    }
    let Some((rel, content_type, etag_from_name)) = route(path) else {
        return (StatusCode::NOT_FOUND, "not a store path\n").into_response();
    };
    let file_path = store.join(&rel);
    // A stat of a local file is quick: done inline rather than through the blocking pool,
    // so the common answer (304) costs one system call.
    let meta = match std::fs::metadata(&file_path) {
        Ok(m) if m.is_file() => m,
        Ok(_) => return (StatusCode::NOT_FOUND, "not found\n").into_response(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return (StatusCode::NOT_FOUND, "not found\n").into_response()
        }
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    };
    let len = meta.len();
    // Blobs are named by their digest; index files are hashed once per version, so the
    // ETag changes exactly when the bytes do.
    let etag = match etag_from_name {
        Some(hex) => format!("\"{hex}\""),
        None => match index_etag(etags, &file_path, &meta) {
            Ok(etag) => etag,
            Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        },
    };
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let builder = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::CACHE_CONTROL, "no-cache");
    if not_modified {
        return builder
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .unwrap_or_else(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response());
    }
    let file = match tokio::fs::File::open(&file_path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return (StatusCode::NOT_FOUND, "not found\n").into_response()
        }
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    };
    let response = if method == Method::HEAD {
        builder
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CONTENT_LENGTH, len)
            .body(Body::empty())
    } else {
        builder
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CONTENT_LENGTH, len)
            .body(Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
                file,
                64 << 10,
            )))
    };
    response.unwrap_or_else(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response())
}

/// Maps a request path to (relative file, content type, ETag known from the name).
fn route(path: &str) -> Option<(String, &'static str, Option<String>)> {
    let rel = path.strip_prefix('/')?;
    if rel == INDEX_FILE {
        return Some((rel.to_string(), "application/json", None));
    }
    if rel == SIGNATURE_FILE {
        return Some((rel.to_string(), "text/plain", None));
    }
    let hex = rel.strip_prefix("blobs/sha256/")?;
    let digest = Digest::parse(&format!("sha256:{hex}")).ok()?;
    Some((rel.to_string(), "application/gzip", Some(digest.hex().to_string())))
}

#[cfg(test)]
mod tests {
    use super::{index_etag, route, EtagCache};

    #[test]
    fn index_etag_follows_a_republish_by_rename() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("index.json");
        let cache = EtagCache::default();
        drover_agent::fsutil::write_atomic(&path, b"{\"version\":1}").expect("write");
        let first = index_etag(&cache, &path, &std::fs::metadata(&path).expect("stat")).expect("etag");
        let again = index_etag(&cache, &path, &std::fs::metadata(&path).expect("stat")).expect("etag");
        assert_eq!(first, again);
        drover_agent::fsutil::write_atomic(&path, b"{\"version\":2}").expect("write");
        let second = index_etag(&cache, &path, &std::fs::metadata(&path).expect("stat")).expect("etag");
        assert_ne!(first, second, "a new version (new inode) gets its own ETag");
        assert_eq!(
            second,
            format!("\"{}\"", drover_agent::format::Digest::of(b"{\"version\":2}").hex())
        );
    }

    #[test]
    fn only_store_paths_are_routed() {
        assert!(route("/index.json").is_some());
        assert!(route("/index.json.minisig").is_some());
        assert!(route(&format!("/blobs/sha256/{}", "a".repeat(64))).is_some());
        for bad in [
            "/",
            "/etc/passwd",
            "/blobs/sha256/../../x",
            "/blobs/sha256/abc",
            "/../index.json",
            "/drover.key",
        ] {
            assert!(route(bad).is_none(), "{bad} routed");
        }
    }
}
