//! Linear issues. In: `Issue` update webhooks signed with a bare hex HMAC in
//! `Linear-Signature`, with the signed `webhookTimestamp` inside a 60 s window;
//! deduplicated on `Linear-Delivery`. Out: GraphQL `commentCreate` and
//! `issueUpdate` to the team's configured reopen state.

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{
    Accepted, Adapter, Effect, EffectError, Inbound, InboundError, forge::label_names, http, issue_form, json_object,
    json_str,
};
use crate::{
    config::{LinearSource, Secret},
    domain::{Actor, ActorKind, Approval, ApprovalMarks, EventKind, Person, TicketEvent, TicketRef},
    signature::{SignatureError, TagEncoding, verify_body_hmac},
};

pub struct LinearAdapter {
    source: String,
    secret: crate::config::Secrets,
    api_url: String,
    token: Option<Secret>,
    bot_actor_id: Option<String>,
    closed_types: Vec<String>,
    reopen_state: String,
    tolerance_ms: i64,
    client: reqwest::Client,
}

const ISSUE: &str = "query($id: String!) { issue(id: $id) { id completedAt canceledAt state { id name type } \
    team { states { nodes { id name type } } } comments(first: 250) { nodes { body } } } }";
const COMMENTS: &str = "query($id: String!) { issue(id: $id) { comments(first: 250) { nodes { id body createdAt \
    editedAt user { id name email } } } } }";
const CLOSED_SINCE: &str = "query($since: DateTimeOrDuration!, $after: String) { issues(first: 100, after: $after, \
    includeArchived: true, orderBy: updatedAt, filter: { or: [{ completedAt: { gt: $since } }, \
    { canceledAt: { gt: $since } }] }) { nodes { identifier completedAt canceledAt } pageInfo { hasNextPage endCursor } } }";
const READ_CLOSE: &str = "query($id: String!) { issue(id: $id) { identifier title description url completedAt \
    canceledAt creator { id } state { name type } labels { nodes { name } } \
    history(first: 50) { nodes { createdAt actor { id } toState { type } } } } }";
const COMMENT: &str = "mutation($issueId: String!, $body: String!) { commentCreate(input: { issueId: $issueId, body: $body }) { success } }";
const MOVE: &str =
    "mutation($id: String!, $stateId: String!) { issueUpdate(id: $id, input: { stateId: $stateId }) { success } }";

impl LinearAdapter {
    /// The event an issue's `data` describes (a webhook's, or the API's in
    /// the same shape).
    fn event_from(&self, data: &Value, kind: EventKind, actor: Actor, url: Option<&str>) -> TicketEvent {
        let state_type = json_str(data, "/state/type").unwrap_or_default().to_lowercase();
        TicketEvent {
            ticket: TicketRef {
                source: self.source.clone(),
                key: json_str(data, "/identifier").unwrap_or_default().to_string(),
            },
            kind,
            event: String::new(),
            old_state: None,
            new_state: json_str(data, "/state/name").map(String::from),
            caused_by_gate: self.bot_actor_id.as_deref() == Some(actor.id.as_str()),
            actor,
            requester: json_str(data, "/creatorId").map(|id| Actor {
                id: id.to_string(),
                kind: ActorKind::Unknown,
            }),
            title: json_str(data, "/title").unwrap_or_default().to_string(),
            labels: label_names(data.get("labels"), "name"),
            fields: issue_form::parse_fields(json_str(data, "/description").unwrap_or_default()),
            url: url.map(String::from),
            occurred_at: json_str(data, "/completedAt")
                .or_else(|| json_str(data, "/canceledAt"))
                .map(String::from),
            state_closed: Some(self.closed_types.contains(&state_type)),
            synchronous: false,
            approvals: Vec::new(),
        }
    }

    pub fn build(source: &str, config: &LinearSource) -> Result<Self, String> {
        let key = |k: &str| format!("sources.{source}.{k}");
        Ok(Self {
            source: source.to_string(),
            secret: config.secret.resolve(&key("secret"))?,
            api_url: config.api_url.clone(),
            token: config.token.as_ref().map(|t| t.resolve(&key("token"))).transpose()?,
            bot_actor_id: config.bot_actor_id.clone(),
            closed_types: config.closed_state_types.iter().map(|s| s.to_lowercase()).collect(),
            reopen_state: config.reopen_state.clone(),
            tolerance_ms: config.tolerance_seconds * 1000,
            client: http::client()?,
        })
    }

    async fn graphql(&self, what: &str, query: &str, variables: Value) -> Result<Value, EffectError> {
        let mut request = self
            .client
            .post(&self.api_url)
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = &self.token {
            // Personal API keys go raw; OAuth tokens already carry "Bearer ".
            request = request.header("authorization", token.expose());
        }
        let body = http::json(what, http::send(what, request).await?).await?;
        if let Some(errors) = body.get("errors").filter(|e| !e.is_null()) {
            return Err(EffectError::retryable(format!("{what}: {errors}")));
        }
        Ok(body["data"].clone())
    }
}

#[async_trait]
impl Adapter for LinearAdapter {
    fn kind(&self) -> &'static str {
        "linear"
    }

    fn accept(&self, inbound: &Inbound<'_>) -> Result<Accepted, InboundError> {
        let h = inbound.headers;
        crate::signature::verify_any(&self.secret, |key| {
            verify_body_hmac(
                key,
                "linear-signature",
                h.header("linear-signature"),
                "",
                TagEncoding::Hex,
                &[inbound.body],
            )
        })?;
        let payload = json_object(inbound.body)?;
        let sent = payload
            .get("webhookTimestamp")
            .and_then(Value::as_i64)
            .ok_or_else(|| InboundError::Malformed("webhookTimestamp is missing".into()))?;
        let now_ms = inbound.now * 1000;
        if sent < now_ms - self.tolerance_ms - 1000 {
            return Err(SignatureError::TooOld.into());
        }
        if sent > now_ms + self.tolerance_ms + 1000 {
            return Err(SignatureError::InTheFuture.into());
        }
        let data = payload.get("data").cloned().unwrap_or(Value::Null);
        let identifier = json_str(&data, "/identifier").unwrap_or_default();
        let is_issue = json_str(&payload, "/type") == Some("Issue");
        if is_issue && identifier.is_empty() {
            return Err(InboundError::Malformed("an Issue event needs data.identifier".into()));
        }
        let delivery_id = h
            .header("linear-delivery")
            .map(String::from)
            .unwrap_or_else(|| format!("{}:{sent}", json_str(&data, "/id").unwrap_or_default()));
        let state_changed = payload
            .pointer("/updatedFrom/stateId")
            .and_then(Value::as_str)
            .is_some_and(|old| Some(old) != json_str(&data, "/stateId"));
        let state_type = json_str(&data, "/state/type").unwrap_or_default().to_lowercase();
        let closed = self.closed_types.contains(&state_type);
        let kind = match (
            is_issue && json_str(&payload, "/action") == Some("update") && state_changed,
            closed,
        ) {
            (true, true) => EventKind::Closed,
            _ => EventKind::Other,
        };
        let actor_kind = match json_str(&payload, "/actor/type") {
            Some("user") => ActorKind::Human,
            Some(_) => ActorKind::Service,
            None => ActorKind::Unknown,
        };
        let actor = Actor {
            id: json_str(&payload, "/actor/id").unwrap_or_default().to_string(),
            kind: actor_kind,
        };
        let mut event = self.event_from(&data, kind, actor, json_str(&payload, "/url"));
        event.event = format!(
            "{}.{}",
            json_str(&payload, "/type").unwrap_or("unknown"),
            json_str(&payload, "/action").unwrap_or("")
        );
        event.old_state = payload
            .pointer("/updatedFrom/stateId")
            .and_then(Value::as_str)
            .map(String::from);
        Ok(Accepted { delivery_id, event })
    }

    /// Issues completed or canceled since `since`, archived ones included,
    /// 100 a page by cursor.
    async fn closed_since(
        &self,
        since: chrono::DateTime<chrono::Utc>,
        _scopes: &[String],
    ) -> Result<Vec<super::ListedClose>, EffectError> {
        let stamp = since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut closes = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..100 {
            let page = self
                .graphql(
                    "list closed issues",
                    CLOSED_SINCE,
                    json!({ "since": stamp, "after": after }),
                )
                .await?;
            let issues = &page["issues"];
            for issue in issues["nodes"].as_array().into_iter().flatten() {
                let at = json_str(issue, "/completedAt")
                    .or_else(|| json_str(issue, "/canceledAt"))
                    .and_then(super::forge::parse_instant);
                if let (Some(key), Some(at)) = (json_str(issue, "/identifier"), at)
                    && at >= since
                {
                    closes.push(super::ListedClose {
                        key: key.to_string(),
                        closed_at: at,
                    });
                }
            }
            after = json_str(issues, "/pageInfo/endCursor").map(String::from);
            if issues["pageInfo"]["hasNextPage"].as_bool() != Some(true) || after.is_none() {
                break;
            }
        }
        Ok(closes)
    }

    /// The issue read through the API, as the close its webhook would have
    /// reported; the closer is the actor of the last history entry that moved
    /// it into a closed state.
    async fn read_close(&self, ticket: &TicketRef) -> Result<TicketEvent, EffectError> {
        let body = self
            .graphql("read issue", READ_CLOSE, json!({ "id": ticket.key }))
            .await?;
        let issue = &body["issue"];
        if json_str(issue, "/identifier") != Some(ticket.key.as_str()) {
            return Err(EffectError::permanent("the API answered for another issue"));
        }
        let data = json!({
            "identifier": issue["identifier"], "title": issue["title"], "description": issue["description"],
            "state": issue["state"], "creatorId": issue.pointer("/creator/id"),
            "labels": issue.pointer("/labels/nodes"),
            "completedAt": issue["completedAt"], "canceledAt": issue["canceledAt"],
        });
        let state_type = json_str(issue, "/state/type").unwrap_or_default().to_lowercase();
        let closed = self.closed_types.contains(&state_type);
        let closer = issue
            .pointer("/history/nodes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|h| json_str(h, "/toState/type").is_some_and(|t| self.closed_types.contains(&t.to_lowercase())))
            .max_by_key(|h| json_str(h, "/createdAt").map(String::from))
            .and_then(|h| json_str(h, "/actor/id"))
            .map(|id| Actor {
                id: id.to_string(),
                kind: ActorKind::Human,
            })
            .unwrap_or_default();
        let kind = if closed { EventKind::Closed } else { EventKind::Other };
        let mut event = self.event_from(&data, kind, closer, json_str(issue, "/url"));
        event.event = "Issue.reconcile".into();
        Ok(event)
    }

    fn delivers_effects(&self) -> bool {
        self.token.is_some()
    }

    /// Approval comments by people (not integrations), never edited.
    fn lists_closes(&self) -> bool {
        self.token.is_some()
    }

    async fn approvals(&self, event: &TicketEvent, marks: &ApprovalMarks) -> Result<Vec<Approval>, EffectError> {
        let data = self
            .graphql("read comments", COMMENTS, json!({ "id": event.ticket.key }))
            .await?;
        let comments = data["issue"]["comments"]["nodes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(comments
            .iter()
            .filter(|c| c["editedAt"].is_null() && json_str(c, "/body").is_some_and(|b| marks.approves(b)))
            .filter_map(|c| {
                Some(Approval {
                    approver: Person {
                        id: json_str(c, "/user/id")?.to_string(),
                        email: json_str(c, "/user/email").map(String::from),
                        name: json_str(c, "/user/name").map(String::from),
                    },
                    at: json_str(c, "/createdAt")?.to_string(),
                    via: format!("comment {}", json_str(c, "/id").unwrap_or_default()),
                })
            })
            .collect())
    }

    async fn apply(&self, effect: &Effect) -> Result<(), EffectError> {
        let data = self
            .graphql("read issue", ISSUE, json!({ "id": effect.ticket.key }))
            .await?;
        let issue = &data["issue"];
        let issue_id = json_str(issue, "/id").ok_or_else(|| EffectError::permanent("the issue was not found"))?;
        if effect.reopen {
            let state_type = json_str(issue, "/state/type").unwrap_or_default().to_lowercase();
            let closed_at = json_str(issue, "/completedAt").or_else(|| json_str(issue, "/canceledAt"));
            let same_close = effect.closed_at.is_none() || effect.closed_at.as_deref() == closed_at;
            if self.closed_types.contains(&state_type) && same_close {
                let target = issue["team"]["states"]["nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|s| json_str(s, "/name").is_some_and(|n| n.eq_ignore_ascii_case(&self.reopen_state)))
                    .and_then(|s| json_str(s, "/id"))
                    .ok_or_else(|| {
                        EffectError::permanent(format!("the team has no state named {:?}", self.reopen_state))
                    })?;
                self.graphql("reopen issue", MOVE, json!({ "id": issue_id, "stateId": target }))
                    .await?;
            } else {
                tracing::info!(ticket = %effect.ticket, "not reopening: the issue has changed since the close");
            }
        }
        let marker = format!("<!-- {} -->", effect.marker());
        let posted = issue["comments"]["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| json_str(c, "/body").is_some_and(|b| b.contains(&marker)));
        if !posted {
            let body = format!("{}\n\n{marker}\n", effect.comment.trim_end());
            self.graphql("post comment", COMMENT, json!({ "issueId": issue_id, "body": body }))
                .await?;
        }
        Ok(())
    }
}
