//! What GitHub, Gitea/Forgejo and GitLab have in common: issues in a
//! repository, Markdown comments, a reopen that is a state change. One REST
//! client carries decisions back to any of them; only paths and headers differ.

use serde_json::{Value, json};

use super::{Effect, EffectError, http, json_str};
use crate::config::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Github,
    Gitea,
    Gitlab,
}

pub struct ForgeApi {
    dialect: Dialect,
    /// The API root (`https://api.github.com`, `https://HOST/api/v1`, `https://HOST/api/v4`).
    base: String,
    token: Option<Secret>,
    client: reqwest::Client,
}

/// Compares two helpdesk timestamps as instants when both parse (GitLab writes
/// `2026-11-22 10:03:11 UTC` in webhooks and ISO 8601 in its API).
fn same_instant(a: &str, b: &str) -> bool {
    let parse = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp())
            .or_else(|_| {
                chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S UTC").map(|t| t.and_utc().timestamp())
            })
            .ok()
    };
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

impl ForgeApi {
    pub fn new(dialect: Dialect, base: &str, token: Option<Secret>) -> Result<Self, String> {
        Ok(Self {
            dialect,
            base: base.trim_end_matches('/').to_string(),
            token,
            client: http::client()?,
        })
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// `owner/repo#12` → the issue's API path.
    fn issue_path(&self, key: &str) -> Result<String, EffectError> {
        let (repo, number) = key
            .rsplit_once('#')
            .ok_or_else(|| EffectError::permanent(format!("not an issue key: {key}")))?;
        Ok(match self.dialect {
            Dialect::Github | Dialect::Gitea => format!("/repos/{repo}/issues/{number}"),
            Dialect::Gitlab => format!("/projects/{}/issues/{number}", repo.replace('/', "%2F")),
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        let token = self.token.as_ref().map(Secret::expose);
        req = match (self.dialect, token) {
            (Dialect::Github, Some(t)) => req.bearer_auth(t),
            (Dialect::Gitea, Some(t)) => req.header("authorization", format!("token {t}")),
            (Dialect::Gitlab, Some(t)) => req.header("private-token", t),
            (_, None) => req,
        };
        if self.dialect == Dialect::Github {
            req = req
                .header("accept", "application/vnd.github+json")
                .header("x-github-api-version", "2022-11-28");
        }
        req
    }

    async fn already_commented(&self, issue_path: &str, marker: &str) -> Result<bool, EffectError> {
        let comments = match self.dialect {
            Dialect::Gitlab => "notes",
            _ => "comments",
        };
        let (size_param, size) = match self.dialect {
            Dialect::Gitea => ("limit", 50),
            _ => ("per_page", 100),
        };
        for page in 1..=50 {
            let path = format!("{issue_path}/{comments}?{size_param}={size}&page={page}");
            let response = http::send("list comments", self.request(reqwest::Method::GET, &path)).await?;
            let listed = http::json("list comments", response).await?;
            let listed = listed.as_array().cloned().unwrap_or_default();
            if listed
                .iter()
                .any(|c| json_str(c, "/body").is_some_and(|b| b.contains(marker)))
            {
                return Ok(true);
            }
            if listed.len() < size {
                break;
            }
        }
        Ok(false)
    }

    /// Reopens (while the issue is still in the judged close) and comments once.
    pub async fn apply(&self, effect: &Effect) -> Result<(), EffectError> {
        let issue_path = self.issue_path(&effect.ticket.key)?;
        if effect.reopen {
            let response = http::send("read issue", self.request(reqwest::Method::GET, &issue_path)).await?;
            let issue = http::json("read issue", response).await?;
            let closed_at = json_str(&issue, "/closed_at");
            let same_close = match (&effect.closed_at, closed_at) {
                (None, _) => true,
                (Some(judged), Some(now)) => same_instant(judged, now),
                (Some(_), None) => false,
            };
            if json_str(&issue, "/state") == Some("closed") && same_close {
                let reopen = match self.dialect {
                    Dialect::Gitlab => self
                        .request(reqwest::Method::PUT, &issue_path)
                        .json(&json!({ "state_event": "reopen" })),
                    _ => self
                        .request(reqwest::Method::PATCH, &issue_path)
                        .json(&json!({ "state": "open" })),
                };
                http::send("reopen issue", reopen).await?;
            } else {
                tracing::info!(ticket = %effect.ticket, "not reopening: the issue has changed since the close");
            }
        }
        let marker = format!("<!-- {} -->", effect.marker());
        if !self.already_commented(&issue_path, &marker).await? {
            let comments = match self.dialect {
                Dialect::Gitlab => "notes",
                _ => "comments",
            };
            let body = format!("{}\n\n{marker}\n", effect.comment.trim_end());
            let post = self
                .request(reqwest::Method::POST, &format!("{issue_path}/{comments}"))
                .json(&json!({ "body": body }));
            http::send("post comment", post).await?;
        }
        Ok(())
    }
}

/// Labels as names from `[{name}]` or `[{title}]` lists.
pub fn label_names(list: Option<&Value>, key: &str) -> Vec<String> {
    list.and_then(Value::as_array)
        .map(|ls| {
            ls.iter()
                .filter_map(|l| json_str(l, &format!("/{key}")).map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Parses a GitHub-shaped `issues` event (GitHub, Gitea and Forgejo send the same shape).
pub fn parse_issues_event(
    source: &str,
    event_name: &str,
    payload: &Value,
    bot_login: Option<&str>,
) -> Result<crate::domain::TicketEvent, super::InboundError> {
    use crate::domain::{Actor, ActorKind, EventKind, TicketEvent, TicketRef};
    let actor = |value: Option<&Value>| {
        let login = value.and_then(|v| json_str(v, "/login")).unwrap_or_default();
        let kind = match value.and_then(|v| json_str(v, "/type")) {
            Some("Bot") => ActorKind::Service,
            _ if login.ends_with("[bot]") => ActorKind::Service,
            Some("User") => ActorKind::Human,
            _ => ActorKind::Unknown,
        };
        Actor {
            id: login.to_string(),
            kind,
        }
    };
    let action = json_str(payload, "/action").unwrap_or_default();
    let repo = json_str(payload, "/repository/full_name").unwrap_or_default();
    let issue = payload.get("issue").cloned().unwrap_or(Value::Null);
    let number = issue.get("number").and_then(Value::as_u64);
    if event_name == "issues" && (number.is_none() || repo.is_empty()) {
        return Err(super::InboundError::Malformed(
            "an issues event needs issue.number and repository.full_name".into(),
        ));
    }
    let kind = match (event_name, action) {
        ("issues", "closed") => EventKind::Closed,
        ("issues", "reopened") => EventKind::Reopened,
        _ => EventKind::Other,
    };
    let sender = actor(payload.get("sender"));
    let state = json_str(&issue, "/state").map(String::from);
    Ok(TicketEvent {
        ticket: TicketRef {
            source: source.to_string(),
            key: number
                .map(|n| format!("{repo}#{n}"))
                .unwrap_or_else(|| repo.to_string()),
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
        caused_by_gate: bot_login.is_some_and(|bot| bot.eq_ignore_ascii_case(&sender.id)),
        actor: sender,
        requester: issue.get("user").map(|u| actor(Some(u))),
        title: json_str(&issue, "/title").unwrap_or_default().to_string(),
        labels: label_names(issue.get("labels"), "name"),
        fields: super::issue_form::parse_fields(json_str(&issue, "/body").unwrap_or_default()),
        url: json_str(&issue, "/html_url").map(String::from),
        occurred_at: json_str(&issue, "/closed_at")
            .filter(|_| kind == EventKind::Closed)
            .map(String::from),
        state_closed: None,
        synchronous: false,
    })
}
