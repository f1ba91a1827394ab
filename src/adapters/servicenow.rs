//! ServiceNow records (incidents by default). ServiceNow has no ticket
//! webhook: the shipped business rule (`deploy/servicenow/`) posts the record
//! when it moves to Resolved or Closed, signed with a base64 HMAC-SHA256 of
//! the body in `X-Closegate-Signature`. Without a secret, a path token
//! authenticates the call and the record is re-read through the Table API.
//! Out: `work_notes`, and `state` back to In Progress, in one PATCH.

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{Accepted, Adapter, Effect, EffectError, Inbound, InboundError, SourceAuth, http, json_object, json_str};
use crate::{
    config::{Secret, ServicenowSource},
    domain::{Actor, ActorKind, Approval, ApprovalMarks, EventKind, Person, TicketEvent, TicketRef, field_key},
    render::CommentFormat,
    signature::{TagEncoding, verify_body_hmac},
};

pub struct ServicenowAdapter {
    source: String,
    inbound_auth: SourceAuth,
    api_url: String,
    table: String,
    auth: Option<(String, Secret)>,
    bot_user: Option<String>,
    closed_states: Vec<String>,
    reopen_state: String,
    client: reqwest::Client,
}

/// Values as text; the Table API gives references as `{link, value}`.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Object(_) => json_str(value, "/value").map(String::from),
        _ => None,
    }
}

impl ServicenowAdapter {
    pub fn build(source: &str, config: &ServicenowSource) -> Result<Self, String> {
        let key = |k: &str| format!("sources.{source}.{k}");
        let auth = match (&config.user, &config.password) {
            (Some(user), Some(pw)) => Some((user.clone(), pw.resolve(&key("password"))?)),
            (None, None) => None,
            _ => return Err(format!("sources.{source}: user and password go together")),
        };
        if !config.table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("sources.{source}.table: not a table name"));
        }
        Ok(Self {
            source: source.to_string(),
            inbound_auth: SourceAuth::from_config(source, config.secret.as_ref(), config.path_token.as_ref())?,
            api_url: config.api_url.trim_end_matches('/').to_string(),
            table: config.table.clone(),
            auth,
            bot_user: config.bot_user.clone(),
            closed_states: config.closed_states.clone(),
            reopen_state: config.reopen_state.clone(),
            client: http::client()?,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self
            .client
            .request(method, format!("{}{path}", self.api_url))
            .header("accept", "application/json");
        match &self.auth {
            Some((user, pw)) => req.basic_auth(user, Some(pw.expose())),
            None => req,
        }
    }

    /// The record by number, with raw values.
    async fn record(&self, number: &str) -> Result<Value, EffectError> {
        let number = http::query_value("record number", number)?;
        let request = self
            .request(reqwest::Method::GET, &format!("/api/now/table/{}", self.table))
            .query(&[
                ("sysparm_query", format!("number={number}")),
                ("sysparm_limit", "1".into()),
                ("sysparm_display_value", "false".into()),
            ]);
        let body = http::json("read record", http::send("read record", request).await?).await?;
        body["result"]
            .as_array()
            .and_then(|r| r.first().cloned())
            .ok_or_else(|| EffectError::permanent(format!("no {} record numbered {number}", self.table)))
    }

    /// Builds the event from a record (the webhook body or the API's copy).
    fn event_from(&self, record: &Value, previous_state: Option<String>) -> TicketEvent {
        let state = record.get("state").and_then(text).unwrap_or_default();
        let closed = self.closed_states.contains(&state);
        let was_closed = previous_state.as_ref().is_some_and(|p| self.closed_states.contains(p));
        let kind = match (closed, was_closed) {
            (true, false) => EventKind::Closed,
            (false, true) => EventKind::Reopened,
            _ => EventKind::Other,
        };
        let updated_by = record.get("sys_updated_by").and_then(text).unwrap_or_default();
        let fields = record
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| {
                k.strip_prefix("u_")
                    .and_then(|name| text(v).map(|v| (field_key(name), v)))
            })
            .collect();
        TicketEvent {
            ticket: TicketRef {
                source: self.source.clone(),
                key: record.get("number").and_then(text).unwrap_or_default(),
            },
            kind,
            event: format!("{}.state", self.table),
            old_state: previous_state,
            new_state: Some(state),
            caused_by_gate: self.bot_user.as_deref() == Some(updated_by.as_str()),
            actor: Actor {
                id: updated_by,
                kind: ActorKind::Unknown,
            },
            requester: record.get("caller_id").and_then(text).map(|id| Actor {
                id,
                kind: ActorKind::Unknown,
            }),
            title: record.get("short_description").and_then(text).unwrap_or_default(),
            // The table and the category are what policies select ServiceNow records by.
            labels: std::iter::once(self.table.clone())
                .chain(record.get("category").and_then(text))
                .collect(),
            fields,
            url: None,
            occurred_at: record.get("sys_updated_on").and_then(text),
            state_closed: Some(closed),
            synchronous: false,
            approvals: Vec::new(),
        }
    }

    async fn already_noted(&self, sys_id: &str, marker: &str) -> Result<bool, EffectError> {
        let request = self
            .request(reqwest::Method::GET, "/api/now/table/sys_journal_field")
            .query(&[
                (
                    "sysparm_query",
                    format!("element_id={sys_id}^element=work_notes^valueLIKE{marker}"),
                ),
                ("sysparm_limit", "1".into()),
            ]);
        let body = http::json("read work notes", http::send("read work notes", request).await?).await?;
        Ok(body["result"].as_array().is_some_and(|r| !r.is_empty()))
    }
}

#[async_trait]
impl Adapter for ServicenowAdapter {
    fn kind(&self) -> &'static str {
        "servicenow"
    }

    fn accept(&self, inbound: &Inbound<'_>) -> Result<Accepted, InboundError> {
        let h = inbound.headers;
        self.inbound_auth.check(inbound, |secret| {
            let header = h.header("x-closegate-signature");
            verify_body_hmac(
                secret,
                "x-closegate-signature",
                header,
                "",
                TagEncoding::Base64,
                &[inbound.body],
            )
        })?;
        let payload = json_object(inbound.body)?;
        let delivery_id = json_str(&payload, "/delivery_id")
            .filter(|d| !d.is_empty() && d.len() <= 128)
            .ok_or_else(|| InboundError::Malformed("delivery_id is missing".into()))?;
        if json_str(&payload, "/number").is_none_or(str::is_empty) {
            return Err(InboundError::Malformed("number is missing".into()));
        }
        let event = self.event_from(&payload, json_str(&payload, "/previous_state").map(String::from));
        Ok(Accepted {
            delivery_id: delivery_id.to_string(),
            event,
        })
    }

    fn trusts_body(&self) -> bool {
        self.inbound_auth.is_signed()
    }

    fn delivers_effects(&self) -> bool {
        self.auth.is_some()
    }

    fn comment_format(&self) -> CommentFormat {
        CommentFormat::Text
    }

    /// Without a signature, nothing in the body is trusted: the record is re-read.
    async fn refresh(&self, event: TicketEvent) -> Result<TicketEvent, EffectError> {
        if self.inbound_auth.is_signed() && !event.fields.is_empty() {
            return Ok(event);
        }
        if self.auth.is_none() {
            return Err(EffectError::retryable(
                "an unsigned source needs API credentials to re-read the record",
            ));
        }
        let record = self.record(&event.ticket.key).await?;
        let mut fresh = self.event_from(&record, event.old_state.clone());
        fresh.synchronous = event.synchronous;
        if event.synchronous {
            fresh.kind = EventKind::Closed;
        }
        Ok(fresh)
    }

    fn lists_closes(&self) -> bool {
        self.auth.is_some()
    }

    /// Records in a closed state updated since `since` (dates are UTC with
    /// raw values), oldest update first, `sysparm_offset` page by page; the
    /// close time is `closed_at`, else the last update.
    async fn closed_since(
        &self,
        since: chrono::DateTime<chrono::Utc>,
        _scopes: &[String],
    ) -> Result<Vec<super::ListedClose>, EffectError> {
        let states = self
            .closed_states
            .iter()
            .map(|s| http::query_value("closed state", s))
            .collect::<Result<Vec<_>, _>>()?
            .join(",");
        let query = format!(
            "stateIN{states}^sys_updated_on>={}^ORDERBYsys_updated_on",
            since.format("%Y-%m-%d %H:%M:%S")
        );
        const PAGE: usize = 100;
        let parse = |t: &str| {
            chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S")
                .ok()
                .map(|t| t.and_utc())
        };
        let mut closes = Vec::new();
        for page in 0..100 {
            let params = [
                ("sysparm_query", query.clone()),
                ("sysparm_fields", "number,state,closed_at,sys_updated_on".to_string()),
                ("sysparm_display_value", "false".to_string()),
                ("sysparm_limit", PAGE.to_string()),
                ("sysparm_offset", (page * PAGE).to_string()),
            ];
            let body = http::get_json_patiently("list records", || {
                self.request(reqwest::Method::GET, &format!("/api/now/table/{}", self.table))
                    .query(&params)
            })
            .await?;
            let rows = body["result"].as_array().cloned().unwrap_or_default();
            for row in &rows {
                let at = row
                    .get("closed_at")
                    .and_then(text)
                    .filter(|t| !t.is_empty())
                    .or_else(|| row.get("sys_updated_on").and_then(text))
                    .and_then(|t| parse(&t));
                if let (Some(number), Some(at)) = (row.get("number").and_then(text), at)
                    && at >= since
                {
                    closes.push(super::ListedClose {
                        key: number,
                        closed_at: at,
                    });
                }
            }
            if rows.len() < PAGE {
                break;
            }
        }
        Ok(closes)
    }

    async fn read_close(&self, ticket: &crate::domain::TicketRef) -> Result<TicketEvent, EffectError> {
        super::reread_close(self, ticket).await
    }

    /// `sysapproval_approver` rows in state approved for the record, with
    /// the approver's user name and email dot-walked from `sys_user`.
    async fn approvals(&self, event: &TicketEvent, _: &ApprovalMarks) -> Result<Vec<Approval>, EffectError> {
        let record = self.record(&event.ticket.key).await?;
        let sys_id = record.get("sys_id").and_then(text).unwrap_or_default();
        let sys_id = http::query_value("record sys_id", &sys_id)?.to_string();
        let request = self
            .request(reqwest::Method::GET, "/api/now/table/sysapproval_approver")
            .query(&[
                (
                    "sysparm_query",
                    format!("sysapproval={sys_id}^state=approved^ORDERBYsys_updated_on"),
                ),
                (
                    "sysparm_fields",
                    "sys_id,state,sys_updated_on,approver,approver.user_name,approver.email,approver.name".into(),
                ),
                ("sysparm_display_value", "false".into()),
                ("sysparm_limit", "1000".into()),
            ]);
        let body = http::json("read approvals", http::send("read approvals", request).await?).await?;
        let rows = body["result"].as_array().cloned().unwrap_or_default();
        Ok(rows
            .iter()
            .filter(|row| row.get("state").and_then(text).as_deref() == Some("approved"))
            .filter_map(|row| {
                let field = |k: &str| row.get(k).and_then(text).filter(|v| !v.is_empty());
                let id = field("approver.user_name").or_else(|| row.get("approver").and_then(text))?;
                let at = field("sys_updated_on").and_then(|t| {
                    chrono::NaiveDateTime::parse_from_str(&t, "%Y-%m-%d %H:%M:%S")
                        .ok()
                        .map(|t| t.and_utc().to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                })?;
                Some(Approval {
                    approver: Person {
                        id,
                        email: field("approver.email"),
                        name: field("approver.name"),
                    },
                    at,
                    via: format!("sysapproval_approver {}", field("sys_id").unwrap_or_default()),
                })
            })
            .collect())
    }

    async fn apply(&self, effect: &Effect) -> Result<(), EffectError> {
        let record = self.record(&effect.ticket.key).await?;
        let sys_id = record
            .get("sys_id")
            .and_then(text)
            .ok_or_else(|| EffectError::permanent("the record has no sys_id"))?;
        let marker = effect.marker();
        if self.already_noted(&sys_id, &marker).await? {
            return Ok(());
        }
        let mut update = json!({ "work_notes": format!("{}\n\n[{marker}]", effect.comment.trim_end()) });
        if effect.reopen {
            let state = record.get("state").and_then(text).unwrap_or_default();
            let same_close =
                effect.closed_at.is_none() || record.get("sys_updated_on").and_then(text) == effect.closed_at;
            if self.closed_states.contains(&state) && same_close {
                update["state"] = json!(self.reopen_state);
            } else {
                tracing::info!(ticket = %effect.ticket, "not reopening: the record has changed since the close");
            }
        }
        let patch = self
            .request(
                reqwest::Method::PATCH,
                &format!("/api/now/table/{}/{sys_id}", self.table),
            )
            .json(&update);
        http::send("update record", patch).await?;
        Ok(())
    }
}
