//! The one bounded reader of a small body (index, signature, manifest, report listing): an
//! HTTP response or a local file is read fully into memory, refusing more than a limit
//! while it streams, so a hostile server or a wrong file cannot exhaust memory.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Why a bounded body read stopped.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body declared or delivered more than the limit.
    #[error("larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The connection failed while the body was read.
    #[error(transparent)]
    Transport(#[from] reqwest::Error),
}

/// Reads a response body fully, refusing more than `limit` bytes (the declared
/// Content-Length is checked first, then every chunk as it arrives). Bytes received are
/// added to `received` when given, the refused ones included.
pub async fn read_body(
    mut response: reqwest::Response,
    limit: u64,
    received: Option<&AtomicU64>,
) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|len| len > limit) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if let Some(counter) = received {
            counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Why [`get_limited`] failed; the messages are those `drover status` and chart pulls show.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    /// The request failed before an answer arrived (the whole cause chain is shown).
    #[error("{}", chain(.0))]
    Transport(#[source] reqwest::Error),
    /// The server answered with a status other than 2xx.
    #[error("HTTP {0}")]
    Status(reqwest::StatusCode),
    /// The body was refused while it was read.
    #[error("{}", match .0 { BodyError::Transport(e) => chain(e), too_large => too_large.to_string() })]
    Body(#[source] BodyError),
}

/// GETs `url` with `client` and returns its body, refusing more than `limit` bytes: the one
/// small-download helper of the publisher (report listings, chart repositories).
pub async fn get_limited(client: &reqwest::Client, url: &url::Url, limit: u64) -> Result<Vec<u8>, GetError> {
    let response = client.get(url.clone()).send().await.map_err(GetError::Transport)?;
    if !response.status().is_success() {
        return Err(GetError::Status(response.status()));
    }
    read_body(response, limit, None).await.map_err(GetError::Body)
}

/// reqwest's top-level message hides the cause ("error sending request"); add the chain.
fn chain(e: &reqwest::Error) -> String {
    let mut message = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        message.push_str(": ");
        message.push_str(&c.to_string());
        cause = c.source();
    }
    message
}

/// [`read_body`] for the agent's sources: errors name `what` (the URL) and are
/// [`Error::TooLarge`] or [`Error::Fetch`].
pub async fn read_body_limited(
    what: &str,
    response: reqwest::Response,
    limit: u64,
    received: &AtomicU64,
) -> Result<Vec<u8>> {
    read_body(response, limit, Some(received)).await.map_err(|e| match e {
        BodyError::TooLarge { limit } => Error::TooLarge {
            what: what.to_string(),
            limit,
        },
        BodyError::Transport(e) => fetch_error(what, &e),
    })
}

/// Reads all of `reader` (a local file) into memory, refusing more than `limit` bytes.
pub fn read_limited(reader: impl std::io::Read, limit: u64, what: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    reader
        .take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io(what, e))?;
    if buf.len() as u64 > limit {
        return Err(Error::TooLarge {
            what: what.to_string(),
            limit,
        });
    }
    Ok(buf)
}

/// A transport error as [`Error::Fetch`]. reqwest's top-level message hides the cause
/// ("error sending request"), so the whole chain is included, and timeouts say so first.
pub fn fetch_error(what: &str, e: &reqwest::Error) -> Error {
    let mut message = if e.is_timeout() {
        "timed out: ".to_string()
    } else {
        String::new()
    };
    message.push_str(&e.to_string());
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    Error::Fetch {
        url: what.to_string(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_limited_refuses_one_byte_too_many() {
        assert!(read_limited(&b"12345"[..], 5, "x").is_ok());
        assert!(matches!(
            read_limited(&b"123456"[..], 5, "x"),
            Err(Error::TooLarge { .. })
        ));
    }

    /// A server that sends more than the limit without declaring a length is cut off.
    #[tokio::test(flavor = "current_thread")]
    async fn read_body_refuses_an_undeclared_body_past_the_limit() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut request = [0u8; 1024];
            let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut request).await;
            let body = "x".repeat(100);
            let answer = format!("HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n{body}");
            let _ = socket.write_all(answer.as_bytes()).await;
        });
        let response = reqwest::get(format!("http://{addr}/")).await.expect("answer");
        let received = AtomicU64::new(0);
        let err = read_body(response, 10, Some(&received)).await.expect_err("too large");
        assert!(matches!(err, BodyError::TooLarge { limit: 10 }), "{err}");
        assert!(received.load(Ordering::Relaxed) > 10, "refused bytes are counted");
        assert_eq!(GetError::Body(err).to_string(), "larger than 10 bytes");
    }
}
