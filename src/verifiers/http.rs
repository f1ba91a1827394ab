//! Generic HTTP/JSON as a target system, for everything else (secret stores,
//! cloud APIs behind a gateway, internal services).
//!
//! The base URL, method, headers and credentials come only from config. A
//! check's `path` may hold `{name}` placeholders filled from its other
//! parameters, each percent-encoded as one path segment; `query.NAME`
//! parameters become query values. The host can never change. `select` is an
//! RFC 9535 JSONPath whose matches are the observed items.

use std::{collections::BTreeSet, time::Duration};

use async_trait::async_trait;
use reqwest::{Method, Url};
use serde_json::Value;
use serde_json_path::JsonPath;

use super::{Verifier, VerifyError, observed, param, secret};
use crate::{
    config::{HttpSystem, Secret},
    domain::{CheckSpec, Observation},
};

pub const KINDS: &[&str] = &["json"];

pub struct HttpVerifier {
    system: String,
    base: Url,
    method: Method,
    headers: Vec<(String, Secret)>,
    token: Option<Secret>,
    ok: Vec<u16>,
    absent: Vec<u16>,
    timeout: Duration,
    client: reqwest::Client,
}

/// Percent-encodes one path segment: everything but unreserved characters.
fn encode_segment(value: &str) -> Result<String, VerifyError> {
    if value.is_empty() || value == "." || value == ".." {
        return Err(VerifyError::BadParams(format!(
            "{value:?} is not a usable path segment"
        )));
    }
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

/// Fills `{name}` placeholders in `template` from the check's parameters.
fn fill_path(template: &str, check: &CheckSpec) -> Result<String, VerifyError> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| VerifyError::BadParams(format!("unclosed placeholder in path {template:?}")))?;
        let name = &rest[open + 1..open + close];
        out.push_str(&encode_segment(param(check, name)?)?);
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn as_item(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl HttpVerifier {
    pub fn build(system: &str, config: &HttpSystem) -> Result<Self, String> {
        let mut base = Url::parse(&config.base_url).map_err(|e| format!("systems.{system}.base_url: {e}"))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(format!("systems.{system}.base_url: only http and https"));
        }
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let method = Method::from_bytes(config.method.to_uppercase().as_bytes())
            .map_err(|_| format!("systems.{system}.method: not an HTTP method"))?;
        let headers = config
            .headers
            .iter()
            .map(|(name, value)| Ok((name.clone(), secret(system, &format!("headers.{name}"), value)?)))
            .collect::<Result<Vec<_>, String>>()?;
        let timeout = Duration::from_millis(config.timeout_ms);
        // 401 and 403 say "not permitted to see", never "does not exist".
        if let Some(status) = config
            .ok_statuses
            .iter()
            .chain(&config.absent_statuses)
            .find(|s| matches!(s, 401 | 403))
        {
            return Err(format!(
                "systems.{system}: status {status} means the verifier may not see the subject; \
                 it can be neither ok_statuses nor absent_statuses"
            ));
        }
        Ok(Self {
            system: system.to_string(),
            base,
            method,
            headers,
            token: config.token.as_ref().map(|t| secret(system, "token", t)).transpose()?,
            ok: config.ok_statuses.clone(),
            absent: config.absent_statuses.clone(),
            timeout,
            client: crate::outbound::client(timeout)?,
        })
    }

    /// The URL for a check; always under the configured base.
    fn url(&self, check: &CheckSpec) -> Result<Url, VerifyError> {
        let path = fill_path(param(check, "path")?, check)?;
        let url = self
            .base
            .join(path.trim_start_matches('/'))
            .map_err(|e| VerifyError::BadParams(format!("path: {e}")))?;
        if url.origin() != self.base.origin() || !url.path().starts_with(self.base.path()) {
            return Err(VerifyError::BadParams("path leaves the configured base URL".into()));
        }
        Ok(url)
    }

    /// Adds the configured headers and token.
    fn authorized(&self, mut request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        for (name, value) in &self.headers {
            request = request.header(name, value.expose());
        }
        match &self.token {
            Some(token) => request.bearer_auth(token.expose()),
            None => request,
        }
    }

    async fn fetch(&self, url: Url, query: &[(&str, &str)]) -> Result<(u16, Option<Value>), VerifyError> {
        let request = self.authorized(self.client.request(self.method.clone(), url).query(query));
        let response = request.send().await.map_err(|e| VerifyError::Unreachable {
            system: self.system.clone(),
            message: e.without_url().to_string(),
        })?;
        let status = response.status().as_u16();
        if !self.ok.contains(&status) {
            return Ok((status, None));
        }
        let body = response.json().await.map_err(|e| VerifyError::Query {
            system: self.system.clone(),
            message: format!("response is not JSON: {}", e.without_url()),
        })?;
        Ok((status, Some(body)))
    }
}

#[async_trait]
impl Verifier for HttpVerifier {
    fn kinds(&self) -> &'static [&'static str] {
        KINDS
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn observe(&self, check: &CheckSpec) -> Result<Observation, VerifyError> {
        let url = self.url(check)?;
        let select = match check.params.get("select").filter(|s| !s.is_empty()) {
            Some(path) => Some(JsonPath::parse(path).map_err(|e| VerifyError::BadParams(format!("select: {e}")))?),
            None => None,
        };
        let query: Vec<(&str, &str)> = check
            .params
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("query.").map(|name| (name, v.as_str())))
            .collect();
        let object = url.path().to_string();
        let (status, body) = self.fetch(url, &query).await?;
        let subject = check.params.get("subject").cloned().unwrap_or_else(|| object.clone());
        match body {
            Some(body) => {
                let held: BTreeSet<String> = match &select {
                    Some(path) => path.query(&body).all().into_iter().map(as_item).collect(),
                    None => BTreeSet::new(),
                };
                Ok(observed(self.base.as_str(), &subject, object, true, held))
            }
            None if self.absent.contains(&status) => Ok(observed(self.base.as_str(), &subject, object, false, [])),
            None => Err(VerifyError::Query {
                system: self.system.clone(),
                message: format!("HTTP {status}"),
            }),
        }
    }

    async fn healthcheck(&self) -> Result<String, VerifyError> {
        let response = self
            .authorized(self.client.head(self.base.clone()))
            .send()
            .await
            .map_err(|e| VerifyError::Unreachable {
                system: self.system.clone(),
                message: e.without_url().to_string(),
            })?;
        Ok(format!("{} answers HTTP {}", self.base, response.status().as_u16()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_encoded_and_dot_segments_refused() {
        assert_eq!(
            encode_segment("key 1/../x").unwrap(),
            "key%201%2F..%2Fx".replace("..", "%2E%2E")
        );
        assert!(encode_segment("..").is_err());
        assert!(encode_segment("").is_err());
    }
}
