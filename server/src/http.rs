//! The publisher's HTTP client, for what it reads over plain HTTP(S): chart repositories
//! (`drover publish`) and report listings (`drover status`). Stores are read through the
//! agent's own sources instead.

use std::time::Duration;

use reqwest::Url;

/// Time allowed to connect to a server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for one request, its body included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A client with drover's user agent and the timeouts above (the agent's one client
/// factory, so TLS roots and settings are the same everywhere).
pub fn client() -> Result<reqwest::Client, drover_agent::transport::ClientError> {
    drover_agent::transport::ClientOptions::new(drover_agent::transport::PUBLISHER_USER_AGENT, CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .build()
}

/// GETs `url` and returns its body, refusing more than `limit` bytes (the agent's bounded
/// reader, [`drover_agent::transport::get_limited`]).
pub async fn fetch(client: &reqwest::Client, url: &Url, limit: u64) -> Result<Vec<u8>, String> {
    drover_agent::transport::get_limited(client, url, limit)
        .await
        .map_err(|e| e.to_string())
}
