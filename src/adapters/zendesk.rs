//! Zendesk tickets. In: event webhooks (`zen:event-type:ticket.status_changed`)
//! signed with base64 HMAC-SHA256 over the timestamp header then the body,
//! within a tolerance window; deduplicated on the event `id`. The event carries
//! no custom fields, so the ticket is re-read through the API before deciding.
//! Out: one `PUT /api/v2/tickets/{id}.json` with an internal note (and
//! `status: open` when blocked). Closed tickets cannot be reopened in Zendesk,
//! so the default gates `solved`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{Accepted, Adapter, Effect, EffectError, Inbound, InboundError, http, json_object, json_str};
use crate::{
    config::{Secret, ZendeskSource},
    domain::{Actor, ActorKind, Approval, ApprovalMarks, EventKind, Person, TicketEvent, TicketRef},
    render::CommentFormat,
    signature::{SignatureError, TagEncoding, verify_body_hmac},
};

const SIGNATURE: &str = "x-zendesk-webhook-signature";
const TIMESTAMP: &str = "x-zendesk-webhook-signature-timestamp";

pub struct ZendeskAdapter {
    source: String,
    secret: crate::config::Secrets,
    api_url: String,
    auth: Option<(String, Secret)>,
    bot_user_id: Option<String>,
    closed_states: Vec<String>,
    fields: BTreeMap<String, String>,
    tolerance: i64,
    client: reqwest::Client,
}

/// Zendesk ids arrive as strings in events and as numbers in the API.
fn id_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl ZendeskAdapter {
    pub fn build(source: &str, config: &ZendeskSource) -> Result<Self, String> {
        let key = |k: &str| format!("sources.{source}.{k}");
        let auth = match (&config.email, &config.token) {
            (Some(email), Some(token)) => Some((email.clone(), token.resolve(&key("token"))?)),
            (None, None) => None,
            _ => return Err(format!("sources.{source}: email and token go together")),
        };
        Ok(Self {
            source: source.to_string(),
            secret: config.secret.resolve(&key("secret"))?,
            api_url: config.api_url.trim_end_matches('/').to_string(),
            auth,
            bot_user_id: config.bot_user_id.clone(),
            closed_states: config.closed_states.iter().map(|s| s.to_lowercase()).collect(),
            fields: config.fields.clone(),
            tolerance: config.tolerance_seconds,
            client: http::client()?,
        })
    }

    fn is_closed(&self, state: &str) -> bool {
        self.closed_states.iter().any(|s| s.eq_ignore_ascii_case(state))
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.client.request(method, format!("{}{path}", self.api_url));
        match &self.auth {
            Some((email, token)) => req.basic_auth(format!("{email}/token"), Some(token.expose())),
            None => req,
        }
    }

    async fn ticket(&self, id: &str) -> Result<Value, EffectError> {
        let id = http::numeric("ticket", id)?;
        let response = http::send(
            "read ticket",
            self.request(reqwest::Method::GET, &format!("/api/v2/tickets/{id}.json")),
        )
        .await?;
        Ok(http::json("read ticket", response)
            .await?
            .get("ticket")
            .cloned()
            .unwrap_or(Value::Null))
    }

    /// Every item under `key` of a paged list, following `next_page` links
    /// only on the configured origin: the token must never be sent anywhere a
    /// response points to.
    async fn list_all(&self, what: &str, mut path: String, key: &str) -> Result<Vec<Value>, EffectError> {
        let mut items = Vec::new();
        for _ in 0..50 {
            let response = http::send(what, self.request(reqwest::Method::GET, &path)).await?;
            let page = http::json(what, response).await?;
            items.extend(page[key].as_array().cloned().unwrap_or_default());
            match json_str(&page, "/next_page") {
                Some(next) => match next.strip_prefix(&self.api_url).filter(|rest| rest.starts_with('/')) {
                    Some(rest) => path = rest.to_string(),
                    None => {
                        return Err(EffectError::permanent(format!(
                            "{what}: next_page leaves the configured api_url"
                        )));
                    }
                },
                None => break,
            }
        }
        Ok(items)
    }

    async fn already_noted(&self, id: &str, marker: &str) -> Result<bool, EffectError> {
        let id = http::numeric("ticket", id)?;
        let comments = self
            .list_all(
                "list comments",
                format!("/api/v2/tickets/{id}/comments.json"),
                "comments",
            )
            .await?;
        Ok(comments.iter().any(|c| {
            json_str(c, "/body")
                .or_else(|| json_str(c, "/plain_body"))
                .is_some_and(|b| b.contains(marker))
        }))
    }

    /// An approver's email, from their user record.
    async fn email_of(&self, user: &str) -> Result<Option<String>, EffectError> {
        let user = http::numeric("user", user)?;
        let response = http::send(
            "read user",
            self.request(reqwest::Method::GET, &format!("/api/v2/users/{user}.json")),
        )
        .await?;
        Ok(json_str(&http::json("read user", response).await?, "/user/email").map(String::from))
    }
}

#[async_trait]
impl Adapter for ZendeskAdapter {
    fn kind(&self) -> &'static str {
        "zendesk"
    }

    fn accept(&self, inbound: &Inbound<'_>) -> Result<Accepted, InboundError> {
        let h = inbound.headers;
        let timestamp = h.header(TIMESTAMP).ok_or(SignatureError::MissingHeader(TIMESTAMP))?;
        crate::signature::verify_any(&self.secret, |key| {
            verify_body_hmac(
                key,
                SIGNATURE,
                h.header(SIGNATURE),
                "",
                TagEncoding::Base64,
                &[timestamp.as_bytes(), inbound.body],
            )
        })?;
        let sent = chrono::DateTime::parse_from_rfc3339(timestamp.trim())
            .map_err(|_| SignatureError::MalformedHeader(TIMESTAMP))?
            .timestamp();
        if sent < inbound.now - self.tolerance {
            return Err(SignatureError::TooOld.into());
        }
        if sent > inbound.now + self.tolerance {
            return Err(SignatureError::InTheFuture.into());
        }
        let payload = json_object(inbound.body)?;
        let delivery_id = json_str(&payload, "/id")
            .filter(|d| !d.is_empty() && d.len() <= 128)
            .ok_or_else(|| InboundError::Malformed("the event has no id".into()))?;
        let ticket = id_text(payload.pointer("/detail/id"))
            .ok_or_else(|| InboundError::Malformed("the event has no detail.id".into()))?;
        let event_type = json_str(&payload, "/type").unwrap_or_default();
        let current = json_str(&payload, "/event/current").map(str::to_lowercase);
        let previous = json_str(&payload, "/event/previous").map(str::to_lowercase);
        let kind = match (event_type, current.as_deref(), previous.as_deref()) {
            ("zen:event-type:ticket.status_changed", Some(now), before)
                if self.is_closed(now) && !before.is_some_and(|b| self.is_closed(b)) =>
            {
                EventKind::Closed
            }
            ("zen:event-type:ticket.status_changed", Some(now), Some(before))
                if !self.is_closed(now) && self.is_closed(before) =>
            {
                EventKind::Reopened
            }
            _ => EventKind::Other,
        };
        let actor_id = id_text(payload.pointer("/detail/actor_id")).unwrap_or_default();
        let event = TicketEvent {
            ticket: TicketRef {
                source: self.source.clone(),
                key: ticket,
            },
            kind,
            event: event_type.to_string(),
            old_state: previous,
            new_state: current,
            caused_by_gate: self.bot_user_id.as_deref() == Some(actor_id.as_str()),
            actor: Actor {
                id: actor_id,
                kind: ActorKind::Unknown,
            },
            requester: id_text(payload.pointer("/detail/requester_id")).map(|id| Actor {
                id,
                kind: ActorKind::Unknown,
            }),
            title: json_str(&payload, "/detail/subject").unwrap_or_default().to_string(),
            labels: payload
                .pointer("/detail/tags")
                .and_then(Value::as_array)
                .map(|t| t.iter().filter_map(|x| x.as_str().map(String::from)).collect())
                .unwrap_or_default(),
            fields: Default::default(),
            url: None,
            occurred_at: json_str(&payload, "/detail/updated_at").map(String::from),
            state_closed: None,
            synchronous: false,
            approvals: Vec::new(),
        };
        Ok(Accepted {
            delivery_id: delivery_id.to_string(),
            event,
        })
    }

    fn delivers_effects(&self) -> bool {
        self.auth.is_some()
    }

    fn comment_format(&self) -> CommentFormat {
        CommentFormat::Text
    }

    /// Custom fields and the current status come from the API, not the event.
    async fn refresh(&self, mut event: TicketEvent) -> Result<TicketEvent, EffectError> {
        if self.auth.is_none() {
            return Ok(event);
        }
        let ticket = self.ticket(&event.ticket.key).await?;
        for field in ticket["custom_fields"].as_array().into_iter().flatten() {
            let (Some(id), Some(value)) = (id_text(field.get("id")), field.get("value")) else {
                continue;
            };
            if let (Some(name), Some(value)) = (self.fields.get(&id), value.as_str()) {
                event.fields.insert(crate::domain::field_key(name), value.to_string());
            }
        }
        if let Some(tags) = ticket["tags"].as_array() {
            event.labels = tags.iter().filter_map(|t| t.as_str().map(String::from)).collect();
        }
        if let Some(status) = json_str(&ticket, "/status") {
            if event.kind == EventKind::Closed && !self.is_closed(status) {
                event.kind = EventKind::Other;
            }
            event.new_state = Some(status.to_string());
        }
        if let Some(subject) = json_str(&ticket, "/subject") {
            event.title = subject.to_string();
        }
        Ok(event)
    }

    fn lists_closes(&self) -> bool {
        self.auth.is_some()
    }

    /// The incremental ticket export from `since`, cursor by cursor (the
    /// cursor is sent to the configured origin only, never a URL the answer
    /// names): tickets now in a closed status, closed at their last update.
    async fn closed_since(
        &self,
        since: chrono::DateTime<chrono::Utc>,
        _scopes: &[String],
    ) -> Result<Vec<super::ListedClose>, EffectError> {
        let mut closes = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..100 {
            let query = match &cursor {
                None => vec![("start_time", since.timestamp().to_string())],
                Some(c) => vec![("cursor", c.clone())],
            };
            let page = http::get_json_patiently("export tickets", || {
                self.request(reqwest::Method::GET, "/api/v2/incremental/tickets/cursor.json")
                    .query(&query)
            })
            .await?;
            for ticket in page["tickets"].as_array().into_iter().flatten() {
                let closed = json_str(ticket, "/status").is_some_and(|s| self.is_closed(s));
                let at = json_str(ticket, "/updated_at")
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&chrono::Utc));
                if let (true, Some(id), Some(at)) = (closed, id_text(ticket.get("id")), at)
                    && at >= since
                {
                    closes.push(super::ListedClose { key: id, closed_at: at });
                }
            }
            cursor = json_str(&page, "/after_cursor").map(String::from);
            if page["end_of_stream"].as_bool() != Some(false) || cursor.is_none() {
                break;
            }
        }
        Ok(closes)
    }

    async fn read_close(&self, ticket: &crate::domain::TicketRef) -> Result<TicketEvent, EffectError> {
        super::reread_close(self, ticket).await
    }

    /// From the ticket's audits (who changed what, when): an approval comment,
    /// or the approval field set to a true value by its author; clearing the
    /// field withdraws what it carried.
    async fn approvals(&self, event: &TicketEvent, marks: &ApprovalMarks) -> Result<Vec<Approval>, EffectError> {
        let id = http::numeric("ticket", &event.ticket.key)?;
        let mut audits = self
            .list_all("read audits", format!("/api/v2/tickets/{id}/audits.json"), "audits")
            .await?;
        audits.sort_by(|a, b| json_str(a, "/created_at").cmp(&json_str(b, "/created_at")));
        let field = marks.field.as_deref();
        let truthy = |v: &Value| match v {
            Value::Bool(b) => *b,
            Value::String(s) => ["true", "yes", "approved", "1"].contains(&s.to_lowercase().as_str()),
            _ => false,
        };
        let mut found: Vec<(String, String, String)> = Vec::new();
        for audit in &audits {
            let (Some(author), Some(at)) = (id_text(audit.get("author_id")), json_str(audit, "/created_at")) else {
                continue;
            };
            for e in audit["events"].as_array().into_iter().flatten() {
                let is_field =
                    field.is_some_and(|f| id_text(e.get("field_name")).is_some_and(|n| n.eq_ignore_ascii_case(f)));
                match json_str(e, "/type") {
                    Some("Comment") if json_str(e, "/body").is_some_and(|b| marks.approves(b)) => {
                        let via = format!("comment in audit {}", id_text(audit.get("id")).unwrap_or_default());
                        found.push((author.clone(), at.to_string(), via));
                    }
                    Some("Change") if is_field && truthy(&e["value"]) => {
                        let via = format!("field {} set", field.unwrap_or_default());
                        found.push((author.clone(), at.to_string(), via));
                    }
                    Some("Change") if is_field => found.retain(|(_, _, via)| !via.starts_with("field ")),
                    _ => {}
                }
            }
        }
        let mut emails: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut approvals = Vec::with_capacity(found.len());
        for (author, at, via) in found {
            if !emails.contains_key(&author) {
                let email = self.email_of(&author).await?;
                emails.insert(author.clone(), email);
            }
            approvals.push(Approval {
                approver: Person {
                    email: emails[&author].clone(),
                    ..Person::id(author)
                },
                at,
                via,
            });
        }
        Ok(approvals)
    }

    async fn apply(&self, effect: &Effect) -> Result<(), EffectError> {
        let id = &effect.ticket.key;
        let marker = effect.marker();
        // The note and the reopen travel in one update: a note found means both were done.
        if self.already_noted(id, &marker).await? {
            return Ok(());
        }
        let reopen = if effect.reopen {
            let ticket = self.ticket(id).await?;
            let status = json_str(&ticket, "/status").unwrap_or_default();
            let same_close = effect
                .closed_at
                .as_deref()
                .is_none_or(|at| json_str(&ticket, "/updated_at") == Some(at));
            let still = self.is_closed(status) && status != "closed" && same_close;
            if !still {
                tracing::info!(ticket = %effect.ticket, "not reopening: the ticket has changed since the close");
            }
            still
        } else {
            false
        };
        let mut ticket =
            json!({ "comment": { "body": format!("{}\n\n[{marker}]", effect.comment.trim_end()), "public": false } });
        if reopen {
            ticket["status"] = json!("open");
        }
        let put = self
            .request(reqwest::Method::PUT, &format!("/api/v2/tickets/{id}.json"))
            .json(&json!({ "ticket": ticket }));
        http::send("update ticket", put).await?;
        Ok(())
    }
}
