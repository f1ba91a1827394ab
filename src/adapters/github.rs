//! GitHub Issues as an access-request queue.
//! In: `issues` events signed with `X-Hub-Signature-256`, deduplicated on
//! `X-GitHub-Delivery`. Out: REST comments and `PATCH state=open`.

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{Accepted, Adapter, Effect, EffectError, Inbound, InboundError, http, issue_form, json_str};
use crate::{
    config::{GithubSource, Secret},
    domain::{Actor, ActorKind, EventKind, TicketEvent, TicketRef},
    signature::{SignatureError, verify_hub_signature},
};

pub struct GithubAdapter {
    source: String,
    secret: Secret,
    token: Option<Secret>,
    api_url: String,
    bot_login: Option<String>,
    client: reqwest::Client,
}

impl GithubAdapter {
    pub fn build(source: &str, config: &GithubSource) -> Result<Self, String> {
        let key = |k: &str| format!("sources.{source}.{k}");
        Ok(Self {
            source: source.to_string(),
            secret: config.secret.resolve(&key("secret"))?,
            token: config.token.as_ref().map(|t| t.resolve(&key("token"))).transpose()?,
            api_url: config.api_url.trim_end_matches('/').to_string(),
            bot_login: config.bot_login.clone(),
            client: http::client()?,
        })
    }

    fn actor(value: Option<&Value>) -> Actor {
        let login = value.and_then(|v| json_str(v, "/login")).unwrap_or_default();
        let kind = match value.and_then(|v| json_str(v, "/type")) {
            Some("Bot") => ActorKind::Service,
            Some("User") if login.ends_with("[bot]") => ActorKind::Service,
            Some("User") => ActorKind::Human,
            _ => ActorKind::Unknown,
        };
        Actor {
            id: login.to_string(),
            kind,
        }
    }

    fn parse(&self, event_name: &str, payload: &Value) -> Result<TicketEvent, InboundError> {
        let action = json_str(payload, "/action").unwrap_or_default();
        let repo = json_str(payload, "/repository/full_name").unwrap_or_default();
        let issue = payload.get("issue");
        let number = issue.and_then(|i| i.get("number")).and_then(Value::as_u64);
        if event_name == "issues" && (issue.is_none() || number.is_none() || repo.is_empty()) {
            return Err(InboundError::Malformed(
                "an issues event needs issue.number and repository.full_name".into(),
            ));
        }
        let kind = match (event_name, action) {
            ("issues", "closed") => EventKind::Closed,
            ("issues", "reopened") => EventKind::Reopened,
            _ => EventKind::Other,
        };
        let issue = issue.cloned().unwrap_or(Value::Null);
        let labels = issue
            .get("labels")
            .and_then(Value::as_array)
            .map(|ls| {
                ls.iter()
                    .filter_map(|l| json_str(l, "/name").map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let actor = Self::actor(payload.get("sender"));
        let caused_by_gate = self
            .bot_login
            .as_deref()
            .is_some_and(|bot| bot.eq_ignore_ascii_case(&actor.id));
        let state = json_str(&issue, "/state").map(String::from);
        Ok(TicketEvent {
            ticket: TicketRef {
                source: self.source.clone(),
                key: match number {
                    Some(n) => format!("{repo}#{n}"),
                    None => repo.to_string(),
                },
            },
            kind,
            event: if action.is_empty() {
                event_name.to_string()
            } else {
                format!("{event_name}.{action}")
            },
            old_state: match kind {
                EventKind::Closed => Some("open".into()),
                EventKind::Reopened => Some("closed".into()),
                _ => state.clone(),
            },
            new_state: state,
            actor,
            requester: issue.get("user").map(|u| Self::actor(Some(u))),
            title: json_str(&issue, "/title").unwrap_or_default().to_string(),
            labels,
            fields: issue_form::parse_fields(json_str(&issue, "/body").unwrap_or_default()),
            url: json_str(&issue, "/html_url").map(String::from),
            occurred_at: json_str(&issue, "/closed_at")
                .filter(|_| kind == EventKind::Closed)
                .map(String::from),
            caused_by_gate,
            state_closed: None,
            synchronous: false,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.api_url))
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28");
        if let Some(token) = &self.token {
            req = req.bearer_auth(token.expose());
        }
        req
    }

    async fn already_commented(&self, issue_path: &str, marker: &str) -> Result<bool, EffectError> {
        for page in 1..=50 {
            let path = format!("{issue_path}/comments?per_page=100&page={page}");
            let response = http::send("list comments", self.request(reqwest::Method::GET, &path)).await?;
            let comments = http::json("list comments", response).await?;
            let comments = comments.as_array().cloned().unwrap_or_default();
            if comments
                .iter()
                .any(|c| json_str(c, "/body").is_some_and(|b| b.contains(marker)))
            {
                return Ok(true);
            }
            if comments.len() < 100 {
                break;
            }
        }
        Ok(false)
    }
}

#[async_trait]
impl Adapter for GithubAdapter {
    fn kind(&self) -> &'static str {
        "github"
    }

    fn accept(&self, inbound: &Inbound<'_>) -> Result<Accepted, InboundError> {
        let h = inbound.headers;
        verify_hub_signature(
            self.secret.expose().as_bytes(),
            "x-hub-signature-256",
            h.header("x-hub-signature-256"),
            inbound.body,
        )?;
        let delivery_id = h
            .header("x-github-delivery")
            .filter(|d| !d.is_empty() && d.len() <= 128)
            .ok_or(SignatureError::MissingHeader("x-github-delivery"))?;
        let event_name = h
            .header("x-github-event")
            .ok_or(SignatureError::MissingHeader("x-github-event"))?;
        let payload: Value =
            serde_json::from_slice(inbound.body).map_err(|e| InboundError::Malformed(e.to_string()))?;
        if !payload.is_object() {
            return Err(InboundError::Malformed("the payload is not a JSON object".into()));
        }
        Ok(Accepted {
            delivery_id: delivery_id.to_string(),
            event: self.parse(event_name, &payload)?,
        })
    }

    fn delivers_effects(&self) -> bool {
        self.token.is_some()
    }

    async fn apply(&self, effect: &Effect) -> Result<(), EffectError> {
        let (repo, number) = effect
            .ticket
            .key
            .rsplit_once('#')
            .ok_or_else(|| EffectError::permanent(format!("not a GitHub issue key: {}", effect.ticket.key)))?;
        let issue_path = format!("/repos/{repo}/issues/{number}");
        if effect.reopen {
            let response = http::send("read issue", self.request(reqwest::Method::GET, &issue_path)).await?;
            let issue = http::json("read issue", response).await?;
            let still_closed = json_str(&issue, "/state") == Some("closed")
                && (effect.closed_at.is_none() || json_str(&issue, "/closed_at") == effect.closed_at.as_deref());
            if still_closed {
                let patch = self
                    .request(reqwest::Method::PATCH, &issue_path)
                    .json(&json!({ "state": "open" }));
                http::send("reopen issue", patch).await?;
            } else {
                tracing::info!(ticket = %effect.ticket, "not reopening: the issue has changed since the close");
            }
        }
        let marker = effect.marker();
        if !self.already_commented(&issue_path, &marker).await? {
            let body = format!("{}\n\n{marker}\n", effect.comment.trim_end());
            let post = self
                .request(reqwest::Method::POST, &format!("{issue_path}/comments"))
                .json(&json!({ "body": body }));
            http::send("post comment", post).await?;
        }
        Ok(())
    }
}
