//! Outbound HTTP shared by the adapters: one client setup, one status policy.

use std::time::Duration;

use super::EffectError;

pub fn client() -> Result<reqwest::Client, String> {
    crate::outbound::client(Duration::from_secs(15))
}

/// Sends a request and maps failures: network errors, 5xx, 408, 409 and 429 are
/// retried, and so are 401 and 403 (a fixed token lets them through); other 4xx
/// are permanent (the request itself is wrong).
pub async fn send(what: &str, request: reqwest::RequestBuilder) -> Result<reqwest::Response, EffectError> {
    let response = request
        .send()
        .await
        .map_err(|e| EffectError::retryable(format!("{what}: {}", e.without_url())))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let message = format!("{what}: HTTP {status}");
    let retry = status.is_server_error() || matches!(status.as_u16(), 401 | 403 | 408 | 409 | 429);
    Err(if retry {
        EffectError::retryable(message)
    } else {
        EffectError::permanent(message)
    })
}

/// Parses a JSON response body.
pub async fn json(what: &str, response: reqwest::Response) -> Result<serde_json::Value, EffectError> {
    response
        .json()
        .await
        .map_err(|e| EffectError::retryable(format!("{what}: unreadable response: {}", e.without_url())))
}
