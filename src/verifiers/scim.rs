//! SCIM 2.0 as a target system (the protocol behind Okta, Entra ID and OneLogin
//! provisioning): users by `userName`, `active`, group membership,
//! `entitlements` and `roles`. Filter values are escaped as SCIM strings;
//! results are paged.

use std::{collections::BTreeSet, time::Duration};

use async_trait::async_trait;
use serde_json::Value;

use super::{Verifier, VerifyError, canary_unseen, observed, param, secret};
use crate::{
    config::{ScimSystem, Secret},
    domain::{CheckSpec, Observation},
};

pub const KINDS: &[&str] = &["user", "groups", "entitlements", "roles"];
/// Most pages read for one group listing.
const MAX_PAGES: u32 = 100;

pub struct ScimVerifier {
    system: String,
    base_url: String,
    token: Option<Secret>,
    page_size: u32,
    timeout: Duration,
    canary: Option<String>,
    client: reqwest::Client,
}

/// A SCIM filter string literal: `"` and `\` escaped as in JSON.
fn scim_string(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "\"\"".into())
}

fn values(list: Option<&Value>, key: &str) -> BTreeSet<String> {
    list.and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.get(key).and_then(Value::as_str))
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

impl ScimVerifier {
    pub fn build(system: &str, config: &ScimSystem) -> Result<Self, String> {
        reqwest::Url::parse(&config.base_url).map_err(|e| format!("systems.{system}.base_url: {e}"))?;
        let timeout = Duration::from_millis(config.timeout_ms);
        Ok(Self {
            system: system.to_string(),
            base_url: config.base_url.trim_end_matches('/').to_string(),
            token: config.token.as_ref().map(|t| secret(system, "token", t)).transpose()?,
            page_size: config.page_size.max(1),
            timeout,
            canary: config.canary.clone(),
            client: crate::outbound::client(timeout)?,
        })
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, VerifyError> {
        let mut request = self.client.get(format!("{}{path}", self.base_url)).query(query);
        request = request.header("accept", "application/scim+json, application/json");
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        let unreachable = |message: String| VerifyError::Unreachable {
            system: self.system.clone(),
            message,
        };
        let response = request
            .send()
            .await
            .map_err(|e| unreachable(e.without_url().to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(VerifyError::Query {
                system: self.system.clone(),
                message: format!("GET {path}: HTTP {status}"),
            });
        }
        response.json().await.map_err(|e| VerifyError::Query {
            system: self.system.clone(),
            message: format!("GET {path}: not JSON: {}", e.without_url()),
        })
    }

    async fn find_user(&self, user_name: &str) -> Result<Option<Value>, VerifyError> {
        let filter = format!("userName eq {}", scim_string(user_name));
        let page = self.get("/Users", &[("filter", filter)]).await?;
        let mut found = page
            .get("Resources")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        // Some servers match case-insensitively; userName is compared exactly here.
        found.retain(|u| {
            u.get("userName")
                .and_then(Value::as_str)
                .is_some_and(|n| n.eq_ignore_ascii_case(user_name))
        });
        match found.len() {
            0 | 1 => Ok(found.pop()),
            n => Err(VerifyError::Query {
                system: self.system.clone(),
                message: format!("{n} users named {user_name}; expected one"),
            }),
        }
    }

    /// Display names of the groups listing `user_id` as a member, page by page.
    async fn groups(&self, user: &Value) -> Result<BTreeSet<String>, VerifyError> {
        let mut names = values(user.get("groups"), "display");
        let Some(id) = user.get("id").and_then(Value::as_str) else {
            return Ok(names);
        };
        let filter = format!("members.value eq {}", scim_string(id));
        let mut start = 1u32;
        for _ in 0..MAX_PAGES {
            let query = [
                ("filter", filter.clone()),
                ("startIndex", start.to_string()),
                ("count", self.page_size.to_string()),
            ];
            let page = self.get("/Groups", &query).await?;
            let resources = page
                .get("Resources")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            names.extend(
                resources
                    .iter()
                    .filter_map(|g| g.get("displayName").and_then(Value::as_str))
                    .map(String::from),
            );
            let total = page.get("totalResults").and_then(Value::as_u64).unwrap_or(0);
            start += resources.len() as u32;
            if resources.is_empty() || u64::from(start) > total {
                break;
            }
        }
        Ok(names)
    }
}

#[async_trait]
impl Verifier for ScimVerifier {
    fn kinds(&self) -> &'static [&'static str] {
        KINDS
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn normalize(&self, kind: &str, item: &str) -> String {
        match kind {
            "user" => item.trim().to_lowercase(),
            _ => item.trim().to_string(),
        }
    }

    async fn observe(&self, check: &CheckSpec) -> Result<Observation, VerifyError> {
        let user_name = param(check, "user")?;
        let Some(user) = self.find_user(user_name).await? else {
            return Ok(observed(&self.base_url, user_name, "", false, []));
        };
        let (object, held) = match check.kind.as_str() {
            "user" => {
                let active = user.get("active").and_then(Value::as_bool).unwrap_or(true);
                (
                    "account",
                    BTreeSet::from([if active { "active" } else { "inactive" }.to_string()]),
                )
            }
            "groups" => ("group membership", self.groups(&user).await?),
            "entitlements" => ("entitlements", values(user.get("entitlements"), "value")),
            "roles" => ("roles", values(user.get("roles"), "value")),
            other => return Err(VerifyError::BadParams(format!("unknown check kind {other}"))),
        };
        Ok(observed(&self.base_url, user_name, object, true, held))
    }

    async fn observe_many(&self, checks: &[CheckSpec]) -> Vec<Result<Observation, VerifyError>> {
        if let Some(canary) = &self.canary {
            match self.find_user(canary).await {
                Ok(Some(_)) => {}
                Ok(None) => return canary_unseen(&self.system, canary, checks.len()),
                Err(e) => return vec![Err(e); checks.len()],
            }
        }
        futures_util::future::join_all(checks.iter().map(|c| self.observe(c))).await
    }

    async fn group_exists(&self, group: &str) -> Result<bool, VerifyError> {
        let filter = format!("displayName eq {}", scim_string(group));
        let page = self
            .get("/Groups", &[("filter", filter), ("count", "1".into())])
            .await?;
        Ok(page.get("totalResults").and_then(Value::as_u64).unwrap_or(0) > 0
            || page["Resources"].as_array().is_some_and(|r| !r.is_empty()))
    }

    async fn healthcheck(&self) -> Result<String, VerifyError> {
        self.get("/ServiceProviderConfig", &[]).await?;
        let auth = if self.token.is_some() {
            "with a bearer token"
        } else {
            "without credentials"
        };
        Ok(format!("{} (SCIM) {auth}", self.base_url))
    }
}
