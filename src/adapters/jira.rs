//! Jira Cloud and Data Center issues.
//! In: `jira:issue_updated` with a status changelog item, signed with
//! `X-Hub-Signature: sha256=<hex>` (or, without a secret, a path token);
//! deduplicated on `X-Atlassian-Webhook-Identifier`. Entering a configured
//! "ready" status verifies ahead of the close.
//! Out: comments (Cloud: Atlassian Document Format via REST v3; Data Center:
//! wiki markup via v2), a transition back to the reopen status, and the issue
//! property `closegate` that a workflow validator can read.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{Accepted, Adapter, Effect, EffectError, Inbound, InboundError, SourceAuth, http, json_object, json_str};
use crate::{
    config::{JiraFlavor, JiraSource, Secret},
    domain::{
        Actor, ActorKind, Approval, ApprovalMarks, EventKind, Person, TicketEvent, TicketRef, Verdict, field_key,
    },
    render::CommentFormat,
    signature::verify_hub_signature,
};

pub struct JiraAdapter {
    source: String,
    flavor: JiraFlavor,
    inbound_auth: SourceAuth,
    api_url: String,
    email: Option<String>,
    token: Option<Secret>,
    bot_account: Option<String>,
    closed_statuses: Vec<String>,
    reopen_status: String,
    ready_statuses: Vec<String>,
    fields: BTreeMap<String, String>,
    client: reqwest::Client,
}

/// A field value as text: strings, numbers, `{value}` options, `{name}` objects, lists of those.
fn field_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Object(_) => json_str(value, "/value")
            .or_else(|| json_str(value, "/name"))
            .map(String::from),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().filter_map(field_text).collect();
            (!parts.is_empty()).then(|| parts.join(", "))
        }
        _ => None,
    }
}

impl JiraAdapter {
    pub fn build(source: &str, config: &JiraSource) -> Result<Self, String> {
        let key = |k: &str| format!("sources.{source}.{k}");
        let lower = |v: &[String]| v.iter().map(|s| s.to_lowercase()).collect::<Vec<_>>();
        Ok(Self {
            source: source.to_string(),
            flavor: config.flavor,
            inbound_auth: SourceAuth::from_config(source, config.secret.as_ref(), config.path_token.as_ref())?,
            api_url: config.api_url.trim_end_matches('/').to_string(),
            email: config.email.clone(),
            token: config.token.as_ref().map(|t| t.resolve(&key("token"))).transpose()?,
            bot_account: config.bot_account.clone(),
            closed_statuses: lower(&config.closed_statuses),
            reopen_status: config.reopen_status.clone(),
            ready_statuses: lower(&config.ready_statuses),
            fields: config.fields.clone(),
            client: http::client()?,
        })
    }

    fn rest(&self) -> &'static str {
        match self.flavor {
            JiraFlavor::Cloud => "/rest/api/3",
            JiraFlavor::DataCenter => "/rest/api/2",
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.request_at(method, &format!("{}{path}", self.rest()))
    }

    /// A request to any API under the site (the platform or Service Management).
    fn request_at(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.client.request(method, format!("{}{path}", self.api_url));
        match (&self.email, &self.token) {
            (Some(email), Some(token)) => req.basic_auth(email, Some(token.expose())),
            (None, Some(token)) => req.bearer_auth(token.expose()),
            _ => req,
        }
    }

    /// Whether a status (by name, with its category) counts as closed.
    fn is_closed(&self, name: &str, category: Option<&str>) -> bool {
        if self.closed_statuses.is_empty() {
            category == Some("done")
        } else {
            self.closed_statuses.iter().any(|s| s.eq_ignore_ascii_case(name))
        }
    }

    fn actor(&self, user: Option<&Value>) -> Actor {
        let id = user
            .and_then(|u| json_str(u, "/accountId").or_else(|| json_str(u, "/name")))
            .unwrap_or_default()
            .to_string();
        let kind = match user.and_then(|u| json_str(u, "/accountType")) {
            Some("app") => ActorKind::Service,
            Some(_) => ActorKind::Human,
            None => ActorKind::Unknown,
        };
        Actor { id, kind }
    }

    fn parse(&self, payload: &Value) -> Result<TicketEvent, InboundError> {
        let issue = payload.get("issue").cloned().unwrap_or(Value::Null);
        let key = json_str(&issue, "/key").unwrap_or_default();
        if key.is_empty() && json_str(payload, "/webhookEvent").is_some_and(|e| e.starts_with("jira:issue")) {
            return Err(InboundError::Malformed("an issue event needs issue.key".into()));
        }
        let status_item = payload
            .pointer("/changelog/items")
            .and_then(Value::as_array)
            .and_then(|items| items.iter().find(|i| json_str(i, "/field") == Some("status")));
        let to = status_item.and_then(|i| json_str(i, "/toString")).unwrap_or_default();
        let category = json_str(&issue, "/fields/status/statusCategory/key");
        let kind = match status_item {
            None => EventKind::Other,
            Some(_) if self.ready_statuses.iter().any(|s| s.eq_ignore_ascii_case(to)) => EventKind::ReadyToClose,
            Some(_) if self.is_closed(to, category) => EventKind::Closed,
            Some(_) => EventKind::Other,
        };
        let mut fields = BTreeMap::new();
        for (id, name) in &self.fields {
            if let Some(value) = issue.pointer(&format!("/fields/{id}")).and_then(field_text) {
                fields.insert(field_key(name), value);
            }
        }
        let actor = self.actor(payload.get("user"));
        let at = payload
            .get("timestamp")
            .and_then(Value::as_i64)
            .and_then(chrono::DateTime::from_timestamp_millis);
        Ok(TicketEvent {
            ticket: TicketRef {
                source: self.source.clone(),
                key: key.to_string(),
            },
            kind,
            event: json_str(payload, "/webhookEvent").unwrap_or("unknown").to_string(),
            old_state: status_item.and_then(|i| json_str(i, "/fromString")).map(String::from),
            new_state: status_item.map(|_| to.to_string()),
            caused_by_gate: self.bot_account.as_deref().is_some_and(|bot| bot == actor.id),
            actor,
            requester: issue.pointer("/fields/reporter").map(|r| self.actor(Some(r))),
            title: json_str(&issue, "/fields/summary").unwrap_or_default().to_string(),
            labels: issue
                .pointer("/fields/labels")
                .and_then(Value::as_array)
                .map(|l| l.iter().filter_map(|x| x.as_str().map(String::from)).collect())
                .unwrap_or_default(),
            fields,
            url: Some(format!("{}/browse/{key}", self.api_url)),
            occurred_at: at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            state_closed: None,
            synchronous: false,
            approvals: Vec::new(),
        })
    }

    async fn already_commented(&self, key: &str, marker: &str) -> Result<bool, EffectError> {
        let mut start = 0;
        loop {
            let path = format!("/issue/{}/comment?startAt={start}&maxResults=100", http::segment(key));
            let page = http::json(
                "list comments",
                http::send("list comments", self.request(reqwest::Method::GET, &path)).await?,
            )
            .await?;
            let comments = page["comments"].as_array().cloned().unwrap_or_default();
            // ADF bodies are JSON; searching their text form finds the marker either way.
            if comments.iter().any(|c| c["body"].to_string().contains(marker)) {
                return Ok(true);
            }
            start += comments.len();
            let total = page["total"].as_u64().unwrap_or(0) as usize;
            if comments.is_empty() || start >= total || start > 5000 {
                return Ok(false);
            }
        }
    }

    /// The `closegate` issue property: the result, the field values it was
    /// verified for (by Jira field id, so a validator can compare them with
    /// the issue's current values) and a MAC that only closegate can write.
    fn property(&self, effect: &Effect) -> Value {
        let fields: BTreeMap<String, String> = self
            .fields
            .iter()
            .filter_map(|(id, name)| effect.fields.get(&field_key(name)).map(|v| (id.clone(), v.clone())))
            .collect();
        let at = effect.decided_at.clone().unwrap_or_default();
        let verdict = effect.verdict.as_str();
        let key = match &self.inbound_auth {
            SourceAuth::Signed(secrets) => secrets.primary().expose().as_bytes().to_vec(),
            SourceAuth::PathToken(secret) => secret.expose().as_bytes().to_vec(),
        };
        json!({
            "allowed": effect.verdict == Verdict::Allowed || effect.verdict == Verdict::Ungated,
            "verdict": verdict,
            "reasons": effect.reasons,
            "evidenceId": effect.evidence_id,
            "evidenceHash": effect.evidence_hash,
            "policy": effect.policy,
            "fields": fields,
            "verifiedAt": at,
            "mac": property_mac(&key, &effect.ticket.key, &fields, verdict, &at),
        })
    }

    async fn reopen(&self, key: &str, closed_at: Option<&str>) -> Result<(), EffectError> {
        let issue = http::json(
            "read issue",
            http::send(
                "read issue",
                self.request(
                    reqwest::Method::GET,
                    &format!("/issue/{}?fields=status,statuscategorychangedate", http::segment(key)),
                ),
            )
            .await?,
        )
        .await?;
        let status = json_str(&issue, "/fields/status/name").unwrap_or_default();
        if !self.is_closed(status, json_str(&issue, "/fields/status/statusCategory/key")) {
            tracing::info!(ticket = %key, status, "not reopening: the issue has moved on since the close");
            return Ok(());
        }
        // The close judged is the current one when the status category changed
        // when the close was reported (Jira stamps both; allow clock skew).
        let changed = json_str(&issue, "/fields/statuscategorychangedate").and_then(jira_time);
        let judged = closed_at.and_then(jira_time);
        if let (Some(changed), Some(judged)) = (changed, judged)
            && (changed - judged).num_seconds().abs() > 5
        {
            tracing::info!(ticket = %key, "not reopening: the issue was closed again since the close judged");
            return Ok(());
        }
        let path = format!("/issue/{}/transitions", http::segment(key));
        let listed = http::json(
            "list transitions",
            http::send("list transitions", self.request(reqwest::Method::GET, &path)).await?,
        )
        .await?;
        let transition = listed["transitions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| json_str(t, "/to/name").is_some_and(|n| n.eq_ignore_ascii_case(&self.reopen_status)))
            .and_then(|t| json_str(t, "/id"))
            .ok_or_else(|| {
                EffectError::permanent(format!(
                    "no transition from {status:?} to {:?} is available",
                    self.reopen_status
                ))
            })?;
        let post = self
            .request(reqwest::Method::POST, &path)
            .json(&json!({ "transition": { "id": transition } }));
        http::send("transition issue", post).await?;
        Ok(())
    }
}

/// The MAC of a pre-verification property: HMAC-SHA256 (hex) keyed with the
/// source's secret (or path token) over the compact JSON text of
/// `{"fields", "issue", "verdict", "verifiedAt"}`, keys sorted.
pub fn property_mac(key: &[u8], issue: &str, fields: &BTreeMap<String, String>, verdict: &str, at: &str) -> String {
    let text =
        serde_json::to_string(&json!({ "issue": issue, "fields": fields, "verdict": verdict, "verifiedAt": at }))
            .unwrap_or_default();
    hex::encode(crate::signature::hmac_tag(key, &[text.as_bytes()]))
}

/// A Jira timestamp (`2026-11-22T10:03:11.482+0000`) or RFC 3339.
fn jira_time(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(text)
        .or_else(|_| chrono::DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

#[async_trait]
impl Adapter for JiraAdapter {
    fn kind(&self) -> &'static str {
        "jira"
    }

    fn accept(&self, inbound: &Inbound<'_>) -> Result<Accepted, InboundError> {
        let h = inbound.headers;
        self.inbound_auth.check(inbound, |secret| {
            verify_hub_signature(secret, "x-hub-signature", h.header("x-hub-signature"), inbound.body)
        })?;
        let payload = json_object(inbound.body)?;
        let event = self.parse(&payload)?;
        // Data Center does not always send the identifier; the changelog id is unique per change.
        let delivery_id = h
            .header("x-atlassian-webhook-identifier")
            .map(String::from)
            .unwrap_or_else(|| {
                format!(
                    "{}:{}:{}",
                    event.ticket.key,
                    json_str(&payload, "/changelog/id").unwrap_or_default(),
                    payload.get("timestamp").and_then(Value::as_i64).unwrap_or_default()
                )
            });
        Ok(Accepted { delivery_id, event })
    }

    fn trusts_body(&self) -> bool {
        self.inbound_auth.is_signed()
    }

    fn delivers_effects(&self) -> bool {
        self.token.is_some()
    }

    fn comment_format(&self) -> CommentFormat {
        match self.flavor {
            JiraFlavor::Cloud => CommentFormat::Adf,
            JiraFlavor::DataCenter => CommentFormat::JiraWiki,
        }
    }

    /// Without a signature nothing in the body is trusted: the issue (status,
    /// summary, labels, reporter and the mapped fields) is read from the API,
    /// and the event is what the API says. Synchronous checks without fields
    /// are read the same way.
    async fn refresh(&self, event: TicketEvent) -> Result<TicketEvent, EffectError> {
        if self.inbound_auth.is_signed() && !(event.synchronous && event.fields.is_empty()) {
            return Ok(event);
        }
        if self.token.is_none() {
            return Err(EffectError::retryable(
                "an unsigned source needs an API token to re-read the issue",
            ));
        }
        let mut fields = vec!["status", "summary", "labels", "reporter", "statuscategorychangedate"];
        fields.extend(self.fields.keys().map(String::as_str));
        let path = format!(
            "/issue/{}?fields={}",
            http::segment(&event.ticket.key),
            fields.join(",")
        );
        let issue = http::json(
            "read issue",
            http::send("read issue", self.request(reqwest::Method::GET, &path)).await?,
        )
        .await?;
        if json_str(&issue, "/key") != Some(event.ticket.key.as_str()) {
            return Err(EffectError::permanent("the API answered for another issue"));
        }
        let status = json_str(&issue, "/fields/status/name").unwrap_or_default();
        let payload = json!({
            "webhookEvent": event.event,
            "issue": issue,
            "changelog": { "items": [{ "field": "status", "fromString": event.old_state, "toString": status }] },
        });
        let mut fresh = self
            .parse(&payload)
            .map_err(|e| EffectError::permanent(format!("read issue: {e}")))?;
        fresh.actor = event.actor;
        fresh.caused_by_gate = false;
        // Whether this delivery was a transition cannot be read from the API:
        // the state closegate saw last decides (a re-read that is still closed
        // is not a new close), as for other helpdesks that send no old state.
        fresh.old_state = None;
        fresh.state_closed = Some(fresh.kind == EventKind::Closed);
        fresh.occurred_at = json_str(&issue, "/fields/statuscategorychangedate")
            .and_then(jira_time)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        fresh.synchronous = event.synchronous;
        if event.synchronous {
            fresh.kind = EventKind::Closed;
        }
        Ok(fresh)
    }

    fn lists_closes(&self) -> bool {
        self.token.is_some()
    }

    /// Issues in a closed status (the configured ones, else the Done
    /// category) updated since `since`, with when they entered it. The JQL
    /// asks relative to now (`updated >= -90m`), so no time zone is guessed;
    /// what is older than `since` is dropped here.
    async fn closed_since(
        &self,
        since: chrono::DateTime<chrono::Utc>,
        _scopes: &[String],
    ) -> Result<Vec<super::ListedClose>, EffectError> {
        let minutes = (chrono::Utc::now() - since).num_minutes().max(0) + 5;
        let status = if self.closed_statuses.is_empty() {
            "statusCategory = Done".to_string()
        } else {
            let quoted: Vec<String> = self
                .closed_statuses
                .iter()
                .map(|s| format!("\"{}\"", s.replace(['"', '\\'], "")))
                .collect();
            format!("status in ({})", quoted.join(", "))
        };
        let jql = format!("{status} AND updated >= -{minutes}m ORDER BY updated ASC");
        let mut closes = Vec::new();
        let mut next: Option<String> = None;
        let mut start = 0;
        for _ in 0..100 {
            let mut query = vec![
                ("jql", jql.clone()),
                ("fields", "status,statuscategorychangedate".to_string()),
                ("maxResults", "100".to_string()),
            ];
            let path = match self.flavor {
                JiraFlavor::Cloud => {
                    query.extend(next.clone().map(|t| ("nextPageToken", t)));
                    "/search/jql"
                }
                JiraFlavor::DataCenter => {
                    query.push(("startAt", start.to_string()));
                    "/search"
                }
            };
            let page = http::get_json_patiently("search issues", || {
                self.request(reqwest::Method::GET, path).query(&query)
            })
            .await?;
            let issues = page["issues"].as_array().cloned().unwrap_or_default();
            for issue in &issues {
                let at = json_str(issue, "/fields/statuscategorychangedate").and_then(jira_time);
                if let (Some(key), Some(at)) = (json_str(issue, "/key"), at)
                    && at >= since
                {
                    closes.push(super::ListedClose {
                        key: key.to_string(),
                        closed_at: at,
                    });
                }
            }
            start += issues.len();
            next = json_str(&page, "/nextPageToken").map(String::from);
            let last = match self.flavor {
                JiraFlavor::Cloud => next.is_none() || page["isLast"].as_bool() == Some(true),
                JiraFlavor::DataCenter => {
                    issues.is_empty() || page["total"].as_u64().is_some_and(|t| start as u64 >= t)
                }
            };
            if last {
                break;
            }
        }
        Ok(closes)
    }

    async fn read_close(&self, ticket: &crate::domain::TicketRef) -> Result<TicketEvent, EffectError> {
        super::reread_close(self, ticket).await
    }

    /// Jira Service Management approvals: each approver who approved an
    /// approval whose final decision is "approved".
    async fn approvals(&self, event: &TicketEvent, _: &ApprovalMarks) -> Result<Vec<Approval>, EffectError> {
        let key = http::segment(&event.ticket.key);
        let when = |v: &Value| {
            v.get("epochMillis")
                .and_then(Value::as_i64)
                .and_then(chrono::DateTime::from_timestamp_millis)
                .or_else(|| json_str(v, "/iso8601").and_then(jira_time))
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        };
        let mut approvals = Vec::new();
        let mut start = 0;
        for _ in 0..20 {
            let path = format!("/rest/servicedeskapi/request/{key}/approval?start={start}&limit=50");
            let response = http::send("read approvals", self.request_at(reqwest::Method::GET, &path)).await?;
            let page = http::json("read approvals", response).await?;
            let values = page["values"].as_array().cloned().unwrap_or_default();
            for approval in &values {
                if json_str(approval, "/finalDecision") != Some("approved") {
                    continue;
                }
                let at = approval
                    .get("completedDate")
                    .and_then(when)
                    .or_else(|| approval.get("createdDate").and_then(when))
                    .unwrap_or_default();
                let name = json_str(approval, "/name").unwrap_or_default();
                let id = json_str(approval, "/id").unwrap_or_default();
                for approver in approval["approvers"].as_array().into_iter().flatten() {
                    if json_str(approver, "/approverDecision") != Some("approved") {
                        continue;
                    }
                    let user = &approver["approver"];
                    let Some(account) = json_str(user, "/accountId").or_else(|| json_str(user, "/name")) else {
                        continue;
                    };
                    approvals.push(Approval {
                        approver: Person {
                            id: account.to_string(),
                            email: json_str(user, "/emailAddress").map(String::from),
                            name: json_str(user, "/displayName").map(String::from),
                        },
                        at: at.clone(),
                        via: format!("Jira approval {id} {name:?}"),
                    });
                }
            }
            if values.is_empty() || page["isLastPage"].as_bool().unwrap_or(true) {
                break;
            }
            start += values.len();
        }
        Ok(approvals)
    }

    async fn apply(&self, effect: &Effect) -> Result<(), EffectError> {
        let key = &effect.ticket.key;
        if effect.pre_verification {
            let property = self.property(effect);
            let put = self
                .request(
                    reqwest::Method::PUT,
                    &format!("/issue/{}/properties/closegate", http::segment(key)),
                )
                .json(&property);
            http::send("set issue property", put).await?;
            return Ok(());
        }
        if effect.reopen {
            self.reopen(key, effect.closed_at.as_deref()).await?;
        }
        let marker = effect.marker();
        if self.already_commented(key, &marker).await? {
            return Ok(());
        }
        let body = match self.flavor {
            JiraFlavor::Cloud => {
                let mut doc: Value = serde_json::from_str(&effect.comment)
                    .unwrap_or_else(|_| json!({ "type": "doc", "version": 1, "content": [] }));
                if let Some(content) = doc["content"].as_array_mut() {
                    content.push(
                        json!({ "type": "paragraph", "content": [{ "type": "text", "text": marker,
                        "marks": [{ "type": "textColor", "attrs": { "color": "#97a0af" } }] }] }),
                    );
                }
                doc
            }
            JiraFlavor::DataCenter => json!(format!(
                "{}\n\n{{color:#97a0af}}{marker}{{color}}",
                effect.comment.trim_end()
            )),
        };
        let post = self
            .request(reqwest::Method::POST, &format!("/issue/{}/comment", http::segment(key)))
            .json(&json!({ "body": body }));
        http::send("post comment", post).await?;
        Ok(())
    }
}
