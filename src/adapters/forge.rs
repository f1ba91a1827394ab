//! What GitHub, Gitea/Forgejo and GitLab have in common: issues in a
//! repository, Markdown comments, a reopen that is a state change. One REST
//! client carries decisions back to any of them; only paths and headers differ.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Effect, EffectError, InboundError, http, json_str};
use crate::{
    config::Secret,
    domain::{Actor, ActorKind, EventKind, TicketEvent, TicketRef},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Github,
    Gitea,
    Gitlab,
}

pub struct ForgeApi {
    pub(super) dialect: Dialect,
    /// The API root (`https://api.github.com`, `https://HOST/api/v1`, `https://HOST/api/v4`).
    pub(super) base: String,
    token: Option<Secret>,
    client: reqwest::Client,
}

/// The `cursor` of the `rel="next"` link of a `link` header.
fn next_cursor(link: &str) -> Option<String> {
    link.split(',')
        .find(|part| part.contains("rel=\"next\""))
        .and_then(|part| part.split_once('<')?.1.split_once('>').map(|(url, _)| url.to_string()))
        .and_then(|url| {
            url.split_once('?')?
                .1
                .split('&')
                .find_map(|kv| kv.strip_prefix("cursor=").map(String::from))
        })
        .map(|c| {
            percent_encoding::percent_decode_str(&c)
                .decode_utf8_lossy()
                .into_owned()
        })
}

/// The most pages one listing reads.
const MAX_PAGES: usize = 100;

/// A helpdesk timestamp as an instant (ISO 8601, or GitLab's webhook form).
pub(crate) fn parse_instant(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S UTC").map(|t| t.and_utc()))
        .ok()
}

/// Compares two helpdesk timestamps as instants when both parse (GitLab writes
/// `2026-11-22 10:03:11 UTC` in webhooks and ISO 8601 in its API).
pub(crate) fn same_instant(a: &str, b: &str) -> bool {
    let parse = |s: &str| parse_instant(s).map(|t| t.timestamp());
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
    pub(super) fn issue_path(&self, key: &str) -> Result<String, EffectError> {
        let (repo, number) = key
            .rsplit_once('#')
            .ok_or_else(|| EffectError::permanent(format!("not an issue key: {key}")))?;
        let number = http::numeric("issue number", number)?;
        let (owner, name) = repo
            .split_once('/')
            .ok_or_else(|| EffectError::permanent(format!("not an issue key: {key}")))?;
        Ok(match self.dialect {
            Dialect::Github | Dialect::Gitea => {
                format!(
                    "/repos/{}/{}/issues/{number}",
                    http::segment(owner),
                    http::segment(name)
                )
            }
            // GitLab names a project by its whole path, encoded as one segment.
            Dialect::Gitlab => format!("/projects/{}/issues/{number}", http::segment(repo)),
        })
    }

    pub(super) fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
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

    /// The page-size parameter and the largest page it allows.
    pub(super) fn page_size(&self) -> (&'static str, usize) {
        match self.dialect {
            Dialect::Gitea => ("limit", 50),
            _ => ("per_page", 100),
        }
    }

    /// The first comment whose body contains `needle`.
    async fn find_comment(&self, issue_path: &str, needle: &str) -> Result<Option<Value>, EffectError> {
        let comments = match self.dialect {
            Dialect::Gitlab => "notes",
            _ => "comments",
        };
        let (size_param, size) = self.page_size();
        for page in 1..=50 {
            let path = format!("{issue_path}/{comments}?{size_param}={size}&page={page}");
            let response = http::send("list comments", self.request(reqwest::Method::GET, &path)).await?;
            let listed = http::json("list comments", response).await?;
            let listed = listed.as_array().cloned().unwrap_or_default();
            if let Some(found) = listed
                .iter()
                .find(|c| json_str(c, "/body").is_some_and(|b| b.contains(needle)))
            {
                return Ok(Some(found.clone()));
            }
            if listed.len() < size {
                break;
            }
        }
        Ok(None)
    }

    /// Replaces the body of an existing comment.
    async fn edit_comment(&self, issue_path: &str, comment: &Value, body: &str) -> Result<(), EffectError> {
        let id = comment
            .get("id")
            .and_then(Value::as_u64)
            .ok_or_else(|| EffectError::permanent("the comment to replace has no numeric id"))?;
        let request = match self.dialect {
            Dialect::Gitlab => self.request(reqwest::Method::PUT, &format!("{issue_path}/notes/{id}")),
            _ => {
                let issues = issue_path.rsplit_once('/').map(|(p, _)| p).unwrap_or(issue_path);
                self.request(reqwest::Method::PATCH, &format!("{issues}/comments/{id}"))
            }
        };
        http::send("edit comment", request.json(&json!({ "body": body }))).await?;
        Ok(())
    }

    /// Issues closed since `since` in each of `scopes` (`owner/repo`; GitLab
    /// project paths), page by page, oldest update first. Pull requests are not
    /// issues.
    pub async fn closed_since(
        &self,
        since: chrono::DateTime<chrono::Utc>,
        scopes: &[String],
    ) -> Result<Vec<super::ListedClose>, EffectError> {
        let stamp = since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let (size_param, size) = self.page_size();
        let mut closes = Vec::new();
        for scope in scopes {
            let (list, query, number) = match self.dialect {
                Dialect::Github => (
                    self.repo_path(scope)?,
                    format!("state=closed&since={stamp}&sort=updated&direction=asc"),
                    "/number",
                ),
                Dialect::Gitea => (
                    self.repo_path(scope)?,
                    format!("state=closed&type=issues&since={stamp}"),
                    "/number",
                ),
                Dialect::Gitlab => (
                    format!("/projects/{}/issues", http::segment(scope)),
                    format!("state=closed&updated_after={stamp}&order_by=updated_at&sort=asc"),
                    "/iid",
                ),
            };
            for page in 1..=MAX_PAGES {
                let path = format!("{list}?{query}&{size_param}={size}&page={page}");
                let listed =
                    http::get_json_patiently("list closed issues", || self.request(reqwest::Method::GET, &path))
                        .await?;
                let items = listed.as_array().cloned().unwrap_or_default();
                for item in &items {
                    if item.get("pull_request").is_some_and(|p| !p.is_null()) {
                        continue;
                    }
                    let closed_at = json_str(item, "/closed_at").and_then(parse_instant);
                    let n = item.pointer(number).and_then(Value::as_u64);
                    if let (Some(closed_at), Some(n)) = (closed_at, n)
                        && closed_at >= since
                    {
                        closes.push(super::ListedClose {
                            key: format!("{scope}#{n}"),
                            closed_at,
                        });
                    }
                }
                if items.len() < size {
                    break;
                }
            }
        }
        Ok(closes)
    }

    /// GitHub: the hook's `issues` deliveries since `since` that failed and
    /// were not received after all, each asked to be sent again once. The
    /// list is newest first and paged by a cursor taken from the `link`
    /// header (only the cursor: the request stays on the configured origin).
    pub async fn redeliver_failed(
        &self,
        repository: &str,
        hook: u64,
        since: chrono::DateTime<chrono::Utc>,
        known: &(dyn Fn(String) -> futures_util::future::BoxFuture<'static, bool> + Send + Sync),
    ) -> Result<Vec<String>, EffectError> {
        let issues = self.repo_path(repository)?;
        let repo = issues.trim_end_matches("/issues");
        let base = format!("{repo}/hooks/{hook}/deliveries");
        let mut cursor: Option<String> = None;
        let mut asked = Vec::new();
        'pages: for _ in 0..MAX_PAGES {
            let path = match &cursor {
                None => format!("{base}?per_page=100"),
                Some(c) => format!("{base}?per_page=100&cursor={}", http::segment(c)),
            };
            let response = http::send("list hook deliveries", self.request(reqwest::Method::GET, &path)).await?;
            let next = response
                .headers()
                .get("link")
                .and_then(|v| v.to_str().ok())
                .and_then(next_cursor);
            let page = http::json("list hook deliveries", response).await?;
            for delivery in page.as_array().into_iter().flatten() {
                let at = json_str(delivery, "/delivered_at").and_then(parse_instant);
                if at.is_some_and(|at| at < since) {
                    break 'pages;
                }
                let failed = delivery
                    .get("status_code")
                    .and_then(Value::as_u64)
                    .is_none_or(|c| !(200..300).contains(&c));
                let (Some(id), Some(guid)) = (delivery.get("id").and_then(Value::as_u64), json_str(delivery, "/guid"))
                else {
                    continue;
                };
                if !failed || json_str(delivery, "/event") != Some("issues") || known(guid.to_string()).await {
                    continue;
                }
                let attempt = self.request(reqwest::Method::POST, &format!("{base}/{id}/attempts"));
                http::send("redeliver", attempt).await?;
                asked.push(guid.to_string());
            }
            match next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        Ok(asked)
    }

    /// `owner/repo` → `/repos/owner/repo/issues`.
    fn repo_path(&self, scope: &str) -> Result<String, EffectError> {
        let (owner, name) = scope
            .split_once('/')
            .ok_or_else(|| EffectError::permanent(format!("not a repository: {scope}")))?;
        Ok(format!(
            "/repos/{}/{}/issues",
            http::segment(owner),
            http::segment(name)
        ))
    }

    /// A GitHub-shaped issue, read through the API, as the `issues.closed`
    /// event its webhook would have carried; the closer is the API's
    /// `closed_by` (GitHub), unknown where the API does not say.
    pub async fn read_close(
        &self,
        source: &str,
        key: &str,
        bot_login: Option<&str>,
    ) -> Result<TicketEvent, EffectError> {
        let path = self.issue_path(key)?;
        let issue = http::get_json_patiently("read issue", || self.request(reqwest::Method::GET, &path)).await?;
        let repo = key.rsplit_once('#').map(|(r, _)| r).unwrap_or_default();
        let closed = json_str(&issue, "/state") == Some("closed");
        let payload = json!({
            "action": if closed { "closed" } else { "edited" },
            "repository": { "full_name": repo },
            "sender": issue.get("closed_by").cloned().unwrap_or(Value::Null),
            "issue": issue,
        });
        let body = serde_json::to_vec(&payload).map_err(|e| EffectError::permanent(e.to_string()))?;
        parse_issues_event(source, "issues", &body, bot_login)
            .map_err(|e| EffectError::permanent(format!("read issue: {e}")))
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
        if self.find_comment(&issue_path, &marker).await?.is_none() {
            let comments = match self.dialect {
                Dialect::Gitlab => "notes",
                _ => "comments",
            };
            let mut body = format!("{}\n\n{marker}\n", effect.comment.trim_end());
            if let Some(replaces) = &effect.replaces {
                // An intake note replaces the ticket's previous one in place.
                let replaced = format!("<!-- {replaces} -->");
                body.push_str(&format!("{replaced}\n"));
                if let Some(previous) = self.find_comment(&issue_path, &replaced).await? {
                    return self.edit_comment(&issue_path, &previous, &body).await;
                }
            }
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

/// The parts of a GitHub-shaped `issues` payload closegate reads. Typed, so that
/// the ack path skips everything else without building a JSON tree.
#[derive(Deserialize, Default)]
#[serde(default)]
struct IssuesPayload {
    action: Option<String>,
    repository: Option<Repository>,
    sender: Option<User>,
    issue: Option<Issue>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Repository {
    full_name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct User {
    login: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Issue {
    number: Option<u64>,
    title: Option<String>,
    body: Option<String>,
    state: Option<String>,
    closed_at: Option<String>,
    html_url: Option<String>,
    labels: Vec<Label>,
    user: Option<User>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Label {
    name: Option<String>,
}

impl User {
    fn actor(&self) -> Actor {
        let login = self.login.clone().unwrap_or_default();
        let kind = match self.kind.as_deref() {
            Some("Bot") => ActorKind::Service,
            _ if login.ends_with("[bot]") => ActorKind::Service,
            Some("User") => ActorKind::Human,
            _ => ActorKind::Unknown,
        };
        Actor { id: login, kind }
    }
}

/// Parses a GitHub-shaped `issues` event (GitHub, Gitea and Forgejo send the same shape).
pub fn parse_issues_event(
    source: &str,
    event_name: &str,
    body: &[u8],
    bot_login: Option<&str>,
) -> Result<TicketEvent, InboundError> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(InboundError::Malformed("the payload is not a JSON object".into()));
    }
    let payload: IssuesPayload = serde_json::from_slice(body).map_err(|e| InboundError::Malformed(e.to_string()))?;
    let action = payload.action.unwrap_or_default();
    let repo = payload.repository.and_then(|r| r.full_name).unwrap_or_default();
    let issue = payload.issue.unwrap_or_default();
    if event_name == "issues" && (issue.number.is_none() || repo.is_empty()) {
        return Err(InboundError::Malformed(
            "an issues event needs issue.number and repository.full_name".into(),
        ));
    }
    let kind = match (event_name, action.as_str()) {
        ("issues", "closed") => EventKind::Closed,
        ("issues", "reopened") => EventKind::Reopened,
        _ => EventKind::Other,
    };
    let sender = payload.sender.unwrap_or_default().actor();
    Ok(TicketEvent {
        ticket: TicketRef {
            source: source.to_string(),
            key: issue.number.map(|n| format!("{repo}#{n}")).unwrap_or(repo),
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
            _ => issue.state.clone(),
        },
        new_state: issue.state,
        caused_by_gate: bot_login.is_some_and(|bot| bot.eq_ignore_ascii_case(&sender.id)),
        actor: sender,
        requester: issue.user.map(|u| u.actor()),
        title: issue.title.unwrap_or_default(),
        labels: issue.labels.into_iter().filter_map(|l| l.name).collect(),
        fields: super::issue_form::parse_fields(issue.body.as_deref().unwrap_or_default()),
        url: issue.html_url,
        occurred_at: issue.closed_at.filter(|_| kind == EventKind::Closed),
        state_closed: None,
        synchronous: false,
        approvals: Vec::new(),
    })
}
