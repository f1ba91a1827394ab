//! GitLab issues. In: `Issue Hook` events authenticated by the hook's secret
//! token (`X-Gitlab-Token`, compared in constant time) and/or its Standard
//! Webhooks signing token; deduplicated on `Idempotency-Key`. Out: notes and
//! `state_event=reopen`.

use async_trait::async_trait;
use serde_json::Value;

use super::{
    Accepted, Adapter, Effect, EffectError, Inbound, InboundError,
    forge::{Dialect, ForgeApi, label_names},
    issue_form, json_object, json_str,
};
use crate::{
    config::GitlabSource,
    domain::{Actor, ActorKind, Approval, ApprovalMarks, EventKind, Observation, TicketEvent, TicketRef},
    signature::{SignatureError, StandardWebhooksKey, secret_matches},
};

pub struct GitlabAdapter {
    source: String,
    secret_token: Option<crate::config::Secrets>,
    signing: Option<StandardWebhooksKey>,
    bot_username: Option<String>,
    api: ForgeApi,
}

impl GitlabAdapter {
    pub fn build(source: &str, config: &GitlabSource) -> Result<Self, String> {
        let key = |k: &str| format!("sources.{source}.{k}");
        let signing = match &config.signing_token {
            Some(s) => Some(
                StandardWebhooksKey::parse(s.resolve(&key("signing_token"))?.expose())
                    .map_err(|e| format!("{}: {e}", key("signing_token")))?,
            ),
            None => None,
        };
        let secret_token = config
            .secret_token
            .as_ref()
            .map(|t| t.resolve(&key("secret_token")))
            .transpose()?;
        if secret_token.is_none() && signing.is_none() {
            return Err(format!("sources.{source}: set secret_token, signing_token or both"));
        }
        let token = config.token.as_ref().map(|t| t.resolve(&key("token"))).transpose()?;
        let base = format!("{}/api/v4", config.api_url.trim_end_matches('/'));
        Ok(Self {
            source: source.to_string(),
            secret_token,
            signing,
            bot_username: config.bot_username.clone(),
            api: ForgeApi::new(Dialect::Gitlab, &base, token)?,
        })
    }

    fn parse(&self, payload: &Value) -> Result<TicketEvent, InboundError> {
        let attrs = payload.get("object_attributes").cloned().unwrap_or(Value::Null);
        let project = json_str(payload, "/project/path_with_namespace").unwrap_or_default();
        let iid = attrs.get("iid").and_then(Value::as_u64);
        let is_issue = json_str(payload, "/object_kind") == Some("issue");
        if is_issue && (iid.is_none() || project.is_empty()) {
            return Err(InboundError::Malformed(
                "an issue event needs object_attributes.iid and project".into(),
            ));
        }
        let action = json_str(&attrs, "/action").unwrap_or_default();
        let kind = match (is_issue, action) {
            (true, "close") => EventKind::Closed,
            (true, "reopen") => EventKind::Reopened,
            _ => EventKind::Other,
        };
        let username = json_str(payload, "/user/username").unwrap_or_default().to_string();
        let actor = Actor {
            kind: if username.ends_with("_bot") || username.starts_with("project_") {
                ActorKind::Service
            } else {
                ActorKind::Human
            },
            id: username,
        };
        let mut labels = label_names(payload.get("labels"), "title");
        if labels.is_empty() {
            labels = label_names(attrs.get("labels"), "title");
        }
        Ok(TicketEvent {
            ticket: TicketRef {
                source: self.source.clone(),
                key: iid
                    .map(|n| format!("{project}#{n}"))
                    .unwrap_or_else(|| project.to_string()),
            },
            kind,
            event: format!("{}.{action}", json_str(payload, "/object_kind").unwrap_or("unknown")),
            old_state: match kind {
                EventKind::Closed => Some("opened".into()),
                EventKind::Reopened => Some("closed".into()),
                _ => None,
            },
            new_state: json_str(&attrs, "/state").map(String::from),
            caused_by_gate: self
                .bot_username
                .as_deref()
                .is_some_and(|bot| bot.eq_ignore_ascii_case(&actor.id)),
            actor,
            requester: None,
            title: json_str(&attrs, "/title").unwrap_or_default().to_string(),
            labels,
            fields: issue_form::parse_fields(json_str(&attrs, "/description").unwrap_or_default()),
            url: json_str(&attrs, "/url").map(String::from),
            occurred_at: json_str(&attrs, "/closed_at")
                .filter(|_| kind == EventKind::Closed)
                .map(String::from),
            state_closed: None,
            synchronous: false,
            approvals: Vec::new(),
        })
    }
}

#[async_trait]
impl Adapter for GitlabAdapter {
    fn kind(&self) -> &'static str {
        "gitlab"
    }

    fn accept(&self, inbound: &Inbound<'_>) -> Result<Accepted, InboundError> {
        let h = inbound.headers;
        if let Some(expected) = &self.secret_token {
            let presented = h
                .header("x-gitlab-token")
                .ok_or(SignatureError::MissingHeader("x-gitlab-token"))?;
            if !expected.iter().any(|s| secret_matches(s.expose(), presented)) {
                return Err(SignatureError::Mismatch.into());
            }
        }
        if let Some(key) = &self.signing {
            key.verify(
                h.header("webhook-id"),
                h.header("webhook-timestamp"),
                h.header("webhook-signature"),
                inbound.body,
                inbound.now,
            )?;
        }
        let delivery_id = h
            .header("idempotency-key")
            .or_else(|| h.header("webhook-id"))
            .or_else(|| h.header("x-gitlab-event-uuid"))
            .filter(|d| !d.is_empty() && d.len() <= 128)
            .ok_or(SignatureError::MissingHeader("idempotency-key"))?;
        let payload = json_object(inbound.body)?;
        Ok(Accepted {
            delivery_id: delivery_id.to_string(),
            event: self.parse(&payload)?,
        })
    }

    fn delivers_effects(&self) -> bool {
        self.api.has_token()
    }

    async fn approvals(&self, event: &TicketEvent, marks: &ApprovalMarks) -> Result<Vec<Approval>, EffectError> {
        self.api.approvals(&event.ticket.key, marks).await
    }

    async fn team_membership(&self, team: &str, login: &str) -> Result<Observation, EffectError> {
        self.api.team_membership(team, login).await
    }

    fn lists_closes(&self) -> bool {
        self.api.has_token()
    }

    async fn closed_since(
        &self,
        since: chrono::DateTime<chrono::Utc>,
        scopes: &[String],
    ) -> Result<Vec<super::ListedClose>, EffectError> {
        self.api.closed_since(since, scopes).await
    }

    /// The API's issue, in the shape of the issue hook it would have sent:
    /// the closer is the API's `closed_by`.
    async fn read_close(&self, ticket: &crate::domain::TicketRef) -> Result<TicketEvent, EffectError> {
        let path = self.api.issue_path(&ticket.key)?;
        let issue =
            super::http::get_json_patiently("read issue", || self.api.request(reqwest::Method::GET, &path)).await?;
        let project = ticket.key.rsplit_once('#').map(|(p, _)| p).unwrap_or_default();
        let closed = json_str(&issue, "/state") == Some("closed");
        let labels: Vec<Value> = issue["labels"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l.as_str().map(|title| serde_json::json!({ "title": title })))
            .collect();
        let payload = serde_json::json!({
            "object_kind": "issue",
            "user": issue.get("closed_by").cloned().unwrap_or(Value::Null),
            "project": { "path_with_namespace": project },
            "labels": labels,
            "object_attributes": {
                "iid": issue.get("iid"), "title": issue.get("title"), "description": issue.get("description"),
                "state": issue.get("state"), "action": if closed { "close" } else { "update" },
                "closed_at": issue.get("closed_at"), "url": issue.get("web_url"),
            },
        });
        let mut event = self
            .parse(&payload)
            .map_err(|e| EffectError::permanent(format!("read issue: {e}")))?;
        event.requester = issue
            .get("author")
            .and_then(|a| json_str(a, "/username"))
            .map(|u| crate::domain::Actor {
                id: u.to_string(),
                kind: Default::default(),
            });
        Ok(event)
    }

    async fn apply(&self, effect: &Effect) -> Result<(), EffectError> {
        self.api.apply(effect).await
    }
}
