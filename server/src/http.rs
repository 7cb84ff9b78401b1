//! The publisher's HTTP client, for what it reads over plain HTTP(S): chart repositories
//! (`drover publish`) and report listings (`drover status`). Stores are read through the
//! agent's own sources instead.

use std::time::Duration;

use reqwest::Url;

/// Time allowed to connect to a server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for one request, its body included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A client with drover's user agent and the timeouts above.
pub fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("drover/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .build()
}

/// GETs `url` and returns its body, refusing more than `limit` bytes.
pub async fn fetch(client: &reqwest::Client, url: &Url, limit: u64) -> Result<Vec<u8>, String> {
    let mut response = client.get(url.clone()).send().await.map_err(|e| describe(&e))?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    let too_large = || format!("larger than {limit} bytes");
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// reqwest's top-level message hides the cause ("error sending request"); add the chain.
fn describe(e: &reqwest::Error) -> String {
    let mut message = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        message.push_str(": ");
        message.push_str(&c.to_string());
        cause = c.source();
    }
    message
}
