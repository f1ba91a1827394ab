//! django-helpdesk. Its follow-up webhook is unsigned and carries only the new
//! status: a per-source path token authenticates the call, the ticket is
//! re-read through its API before anything is decided, and the last status
//! closegate saw tells a close from a comment on a closed ticket.
//! Out: one `POST /api/followups/` with the note and, when blocked, the
//! reopened status. That follow-up fires the webhook again; it is recognised
//! by closegate's user id and ignored.

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{
    Accepted, Adapter, Effect, EffectError, Inbound, InboundError, check_path_token, http, json_object, json_str,
};
use crate::{
    config::{DjangoHelpdeskSource, Secret},
    domain::{Actor, ActorKind, Approval, ApprovalMarks, EventKind, Person, TicketEvent, TicketRef, field_key},
    render::CommentFormat,
};

pub struct DjangoHelpdeskAdapter {
    source: String,
    path_token: Secret,
    api_url: String,
    user: String,
    password: Secret,
    bot_user_id: Option<i64>,
    closed: Vec<i64>,
    queues: std::collections::BTreeMap<String, String>,
    reopen_status: i64,
    client: reqwest::Client,
}

impl DjangoHelpdeskAdapter {
    pub fn build(source: &str, config: &DjangoHelpdeskSource) -> Result<Self, String> {
        let key = |k: &str| format!("sources.{source}.{k}");
        Ok(Self {
            source: source.to_string(),
            path_token: config.path_token.resolve(&key("path_token"))?,
            api_url: config.api_url.trim_end_matches('/').to_string(),
            user: config.user.clone(),
            password: config.password.resolve(&key("password"))?,
            bot_user_id: config.bot_user_id,
            closed: config.closed_statuses.clone(),
            queues: config.queues.clone(),
            reopen_status: config.reopen_status,
            client: http::client()?,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}/api{path}", self.api_url))
            .basic_auth(&self.user, Some(self.password.expose()))
    }

    async fn ticket(&self, id: &str) -> Result<Value, EffectError> {
        let id = http::numeric("ticket", id)?;
        http::json(
            "read ticket",
            http::send(
                "read ticket",
                self.request(reqwest::Method::GET, &format!("/tickets/{id}/")),
            )
            .await?,
        )
        .await
    }

    /// When the ticket entered its current close: the date of the last
    /// follow-up that set a closed status. A later reopen and re-close moves it.
    fn closed_at(&self, ticket: &Value) -> Option<String> {
        ticket["followup_set"]
            .as_array()?
            .iter()
            .filter(|f| {
                f.get("new_status")
                    .and_then(Value::as_i64)
                    .is_some_and(|s| self.closed.contains(&s))
            })
            .filter_map(|f| json_str(f, "/date"))
            .max()
            .map(String::from)
    }

    /// The label of the ticket's queue: from the configured queues by the
    /// queue id the API gives, or, without them, the slug the webhook sent.
    fn queue_label<'a>(&'a self, ticket: &Value, sent: Option<&'a str>) -> Option<&'a str> {
        if self.queues.is_empty() {
            return sent;
        }
        let id = ticket.get("queue").and_then(Value::as_i64)?;
        self.queues.get(&id.to_string()).map(String::as_str)
    }

    /// The event a ticket snapshot describes (from the webhook or the API).
    fn event_from(&self, ticket: &Value, queue: Option<&str>, followup_user: Option<i64>) -> TicketEvent {
        let queue = self.queue_label(ticket, queue);
        let status = ticket.get("status").and_then(Value::as_i64).unwrap_or_default();
        let closed = self.closed.contains(&status);
        let fields = ticket
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| k.strip_prefix("custom_").map(|name| (field_key(name), v)))
            .filter_map(|(k, v)| match v {
                Value::String(s) => Some((k, s.clone())),
                Value::Number(n) => Some((k, n.to_string())),
                _ => None,
            })
            .collect();
        TicketEvent {
            ticket: TicketRef {
                source: self.source.clone(),
                key: ticket.get("id").map(|i| i.to_string()).unwrap_or_default(),
            },
            kind: if closed { EventKind::Closed } else { EventKind::Other },
            event: "followup".into(),
            old_state: None,
            new_state: Some(status.to_string()),
            caused_by_gate: followup_user.is_some() && followup_user == self.bot_user_id,
            actor: Actor {
                id: followup_user.map(|u| format!("user:{u}")).unwrap_or_default(),
                kind: ActorKind::Unknown,
            },
            requester: json_str(ticket, "/submitter_email").map(|e| Actor {
                id: e.to_string(),
                kind: ActorKind::Unknown,
            }),
            title: json_str(ticket, "/title").unwrap_or_default().to_string(),
            labels: queue.map(|q| vec![q.to_string()]).unwrap_or_default(),
            fields,
            url: None,
            occurred_at: if closed { self.closed_at(ticket) } else { None },
            state_closed: Some(closed),
            synchronous: false,
            approvals: Vec::new(),
        }
    }
}

#[async_trait]
impl Adapter for DjangoHelpdeskAdapter {
    fn kind(&self) -> &'static str {
        "django-helpdesk"
    }

    fn accept(&self, inbound: &Inbound<'_>) -> Result<Accepted, InboundError> {
        check_path_token(&self.path_token, inbound.path_token)?;
        let payload = json_object(inbound.body)?;
        let ticket = payload.get("ticket").filter(|t| t.get("id").is_some_and(Value::is_i64));
        let ticket = ticket.ok_or_else(|| InboundError::Malformed("ticket.id is missing".into()))?;
        let followup = payload.get("followup_id").and_then(Value::as_i64);
        let followup_user = followup.and_then(|id| {
            ticket["followup_set"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|f| f.get("id").and_then(Value::as_i64) == Some(id))
                .and_then(|f| f.get("user").and_then(Value::as_i64))
        });
        let mut event = self.event_from(ticket, json_str(&payload, "/queue_slug"), followup_user);
        if followup.is_none() {
            event.kind = EventKind::Other;
            event.event = "new_ticket".into();
        }
        let delivery_id = match followup {
            Some(id) => format!("followup:{}:{id}", event.ticket.key),
            None => format!("ticket:{}:new", event.ticket.key),
        };
        Ok(Accepted { delivery_id, event })
    }

    fn trusts_body(&self) -> bool {
        false
    }

    fn delivers_effects(&self) -> bool {
        true
    }

    fn comment_format(&self) -> CommentFormat {
        CommentFormat::Text
    }

    /// The webhook is unsigned: status and fields come from the API.
    async fn refresh(&self, event: TicketEvent) -> Result<TicketEvent, EffectError> {
        let ticket = self.ticket(&event.ticket.key).await?;
        let mut fresh = self.event_from(&ticket, event.labels.first().map(String::as_str), None);
        fresh.actor = event.actor;
        fresh.synchronous = event.synchronous;
        if event.synchronous {
            fresh.kind = EventKind::Closed;
        }
        Ok(fresh)
    }

    fn lists_closes(&self) -> bool {
        !self.queues.is_empty()
    }

    /// Tickets in a closed status, page by page (the API filters on status
    /// only), closed when their last closing follow-up was written.
    async fn closed_since(
        &self,
        since: chrono::DateTime<chrono::Utc>,
        _scopes: &[String],
    ) -> Result<Vec<super::ListedClose>, EffectError> {
        let statuses: Vec<String> = self.closed.iter().map(i64::to_string).collect();
        let mut closes = Vec::new();
        for page in 1..=100 {
            let path = format!("/tickets/?status={}&page={page}&page_size=100", statuses.join(","));
            let body = http::get_json_patiently("list tickets", || self.request(reqwest::Method::GET, &path)).await?;
            for ticket in body["results"].as_array().into_iter().flatten() {
                let at = self.closed_at(ticket).and_then(|t| super::forge::parse_instant(&t));
                if let (Some(id), Some(at)) = (ticket.get("id").and_then(Value::as_i64), at)
                    && at >= since
                {
                    closes.push(super::ListedClose {
                        key: id.to_string(),
                        closed_at: at,
                    });
                }
            }
            if body["next"].is_null() {
                break;
            }
        }
        Ok(closes)
    }

    /// The ticket re-read, closed by the user of its closing follow-up.
    async fn read_close(&self, ticket: &crate::domain::TicketRef) -> Result<TicketEvent, EffectError> {
        let mut event = super::reread_close(self, ticket).await?;
        let snapshot = self.ticket(&ticket.key).await?;
        let closer = snapshot["followup_set"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| {
                f.get("new_status")
                    .and_then(Value::as_i64)
                    .is_some_and(|s| self.closed.contains(&s))
            })
            .max_by_key(|f| json_str(f, "/date").map(String::from))
            .and_then(|f| f.get("user").and_then(Value::as_i64));
        if let Some(user) = closer {
            event.actor.id = format!("user:{user}");
            event.caused_by_gate = Some(user) == self.bot_user_id;
        }
        Ok(event)
    }

    /// Follow-ups whose comment approves, by the user who wrote them (as
    /// `user:ID`, the way closers are named: the API exposes no user names).
    async fn approvals(&self, event: &TicketEvent, marks: &ApprovalMarks) -> Result<Vec<Approval>, EffectError> {
        let ticket = self.ticket(&event.ticket.key).await?;
        Ok(ticket["followup_set"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| json_str(f, "/comment").is_some_and(|c| marks.approves(c)))
            .filter_map(|f| {
                Some(Approval {
                    approver: Person::id(format!("user:{}", f.get("user")?.as_i64()?)),
                    at: json_str(f, "/date")?.to_string(),
                    via: format!("follow-up {}", f.get("id").map(Value::to_string).unwrap_or_default()),
                })
            })
            .collect())
    }

    async fn apply(&self, effect: &Effect) -> Result<(), EffectError> {
        let id = &effect.ticket.key;
        let ticket = self.ticket(id).await?;
        let marker = effect.marker();
        let noted = ticket["followup_set"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|f| json_str(f, "/comment").is_some_and(|c| c.contains(&marker)));
        if noted {
            return Ok(());
        }
        let mut followup = json!({
            "ticket": ticket.get("id").cloned().unwrap_or(Value::Null),
            "comment": format!("{}\n\n[{marker}]", effect.comment.trim_end()),
            "public": false,
        });
        let status = ticket.get("status").and_then(Value::as_i64).unwrap_or_default();
        if effect.reopen {
            // Only the close that was judged is reverted, not a later one.
            let same_close = effect.closed_at.is_none() || self.closed_at(&ticket) == effect.closed_at;
            if self.closed.contains(&status) && same_close {
                followup["new_status"] = json!(self.reopen_status);
            } else {
                tracing::info!(ticket = %effect.ticket, "not reopening: the ticket has moved on since the close");
            }
        }
        // django-helpdesk delivers its webhook inside this call and answers 500
        // if that fails, though the follow-up is saved: a retry finds the note.
        http::send(
            "post follow-up",
            self.request(reqwest::Method::POST, "/followups/").json(&followup),
        )
        .await?;
        Ok(())
    }
}
