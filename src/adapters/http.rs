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
    let request = match crate::telemetry::current_trace_id() {
        Some(trace) => request.header("traceparent", crate::telemetry::traceparent(&trace)),
        None => request,
    };
    let response = request
        .send()
        .await
        .map_err(|e| EffectError::retryable(format!("{what}: {}", e.without_url())))?;
    check(what, response)
}

/// Maps an answer's status as [`send`] does.
pub fn check(what: &str, response: reqwest::Response) -> Result<reqwest::Response, EffectError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let message = format!("{what}: HTTP {status}");
    let retry = status.is_server_error() || matches!(status.as_u16(), 401 | 403 | 408 | 409 | 429);
    Err(if retry {
        EffectError {
            retry_after: retry_after(response.headers()),
            ..EffectError::retryable(message)
        }
    } else {
        EffectError::permanent(message)
    })
}

/// The longest a listing waits for a rate limit within one run; a longer
/// wait ends the run (the watermark stays) and the next run tries again.
const PATIENCE: Duration = Duration::from_secs(60);

/// GETs a JSON document, waiting out rate limits (`429`, or GitHub's `403`
/// secondary limits, with `Retry-After` or an exhausted `X-RateLimit-Reset`)
/// up to three times when the wait is short.
pub async fn get_json_patiently(
    what: &str,
    request: impl Fn() -> reqwest::RequestBuilder,
) -> Result<serde_json::Value, EffectError> {
    let mut tries = 0;
    loop {
        match send(what, request()).await {
            Ok(response) => return json(what, response).await,
            Err(e) if tries < 3 && e.retry_after.is_some_and(|wait| wait <= PATIENCE) => {
                let wait = e.retry_after.unwrap_or_default();
                tracing::info!(
                    what,
                    wait_ms = wait.as_millis() as u64,
                    "rate limited; waiting as asked"
                );
                tokio::time::sleep(wait).await;
                tries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// `Retry-After` as seconds or an HTTP date, or, where a rate limit is used
/// up (`X-RateLimit-Remaining: 0`), the time until `X-RateLimit-Reset`;
/// capped at a day.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if headers.get(reqwest::header::RETRY_AFTER).is_none() && header("x-ratelimit-remaining") == Some("0") {
        let reset = header("x-ratelimit-reset")?.parse::<i64>().ok()?;
        let wait = (reset - chrono::Utc::now().timestamp()).clamp(0, 86_400);
        return Some(Duration::from_secs(wait as u64));
    }
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
            (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
                .to_std()
                .unwrap_or_default()
        }
    };
    Some(wait.min(Duration::from_secs(86_400)))
}

/// Parses a JSON response body.
pub async fn json(what: &str, response: reqwest::Response) -> Result<serde_json::Value, EffectError> {
    response
        .json()
        .await
        .map_err(|e| EffectError::retryable(format!("{what}: unreadable response: {}", e.without_url())))
}

/// A ticket key as one URL path segment: every byte outside the unreserved set
/// is percent-encoded, so a key can never add a segment or a query.
pub fn segment(key: &str) -> String {
    const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(key, UNRESERVED).to_string()
}

/// A key that must be a number (Zendesk, django-helpdesk ids; issue numbers).
pub fn numeric<'a>(what: &str, key: &'a str) -> Result<&'a str, EffectError> {
    if !key.is_empty() && key.len() <= 20 && key.bytes().all(|b| b.is_ascii_digit()) {
        Ok(key)
    } else {
        Err(EffectError::permanent(format!("{what} {key:?} is not a number")))
    }
}

/// A ServiceNow record number as a value in an encoded query: letters, digits
/// and `_-.` only, so it cannot add a condition (`^OR...`).
pub fn query_value<'a>(what: &str, value: &'a str) -> Result<&'a str, EffectError> {
    let plain = !value.is_empty() && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if plain {
        Ok(value)
    } else {
        Err(EffectError::permanent(format!(
            "{what} {value:?} has characters a query cannot carry"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_leave_their_path_segment_or_query_value() {
        assert_eq!(segment("ACC-42"), "ACC-42");
        assert_eq!(segment("../admin?x=1#"), "..%2Fadmin%3Fx%3D1%23");
        assert!(numeric("ticket", "4812").is_ok());
        assert!(numeric("ticket", "4812/../1").is_err());
        assert!(query_value("number", "INC0010042").is_ok());
        assert!(query_value("number", "INC1^ORnumber=INC2").is_err());
    }
}
