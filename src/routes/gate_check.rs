//! `POST /v1/gate/check`: a synchronous yes/no for helpdesks that can stop a
//! transition before it happens. Authenticated per caller, by a Standard
//! Webhooks signature over the body or by a bearer token.

use std::{collections::BTreeMap, time::Duration};

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::{
    adapters::HeaderLookup,
    config::{GateSettings, Secret},
    decide::SyncAnswer,
    decide::{SyncCheckError, check_synchronously},
    domain::{Actor, TicketEvent, TicketRef, field_key},
    error::{ApiError, ErrorBody},
    routes::AppState,
    signature::{StandardWebhooksKey, secret_matches},
};

/// One configured caller, with its credentials resolved.
pub struct GateCaller {
    name: String,
    key: Option<StandardWebhooksKey>,
    token: Option<Secret>,
    sources: Vec<String>,
}

/// The callers and the deadline, built once at start.
pub struct GateAccess {
    callers: Vec<GateCaller>,
    pub deadline: Duration,
}

impl GateAccess {
    pub fn from_config(settings: &GateSettings) -> Result<Self, String> {
        let mut callers = Vec::new();
        for (name, c) in &settings.callers {
            let key = |k: &str| format!("gate.callers.{name}.{k}");
            let signing = match &c.secret {
                Some(s) => Some(
                    StandardWebhooksKey::parse(s.resolve(&key("secret"))?.expose())
                        .map_err(|e| format!("{}: {e}", key("secret")))?,
                ),
                None => None,
            };
            let token = c.token.as_ref().map(|t| t.resolve(&key("token"))).transpose()?;
            if signing.is_none() && token.is_none() {
                return Err(format!("gate.callers.{name}: needs a secret or a token"));
            }
            callers.push(GateCaller {
                name: name.clone(),
                key: signing,
                token,
                sources: c.sources.clone(),
            });
        }
        Ok(Self {
            callers,
            deadline: Duration::from_millis(settings.deadline_ms),
        })
    }

    /// The caller these headers authenticate, if any.
    fn authenticate(&self, headers: &dyn HeaderLookup, body: &[u8], now: i64) -> Option<&GateCaller> {
        self.callers
            .iter()
            .find(|c| match (headers.bearer(), &c.token, &c.key) {
                (Some(presented), Some(token), _) => secret_matches(token.expose(), presented),
                (None, _, Some(key)) => key
                    .verify(
                        headers.header("webhook-id"),
                        headers.header("webhook-timestamp"),
                        headers.header("webhook-signature"),
                        body,
                        now,
                    )
                    .is_ok(),
                _ => false,
            })
    }
}

/// The question: may this ticket enter this state now?
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "source": "generic", "ticket": "ACCESS-42", "title": "Grant read on public.orders",
    "labels": ["access-request"], "state": "closed",
    "fields": { "Request type": "grant", "Database role": "app_reader", "Table": "public.orders", "Privileges": "SELECT" },
    "actor": { "id": "fulfilment-bot", "kind": "service" }
}))]
pub struct CheckRequest {
    /// A configured source's name.
    source: String,
    /// The ticket's key in that source.
    ticket: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    labels: Vec<String>,
    /// The ticket's fields; when absent, closegate reads the ticket itself.
    #[serde(default)]
    fields: BTreeMap<String, String>,
    /// The state the ticket is about to enter.
    state: Option<String>,
    actor: Option<Actor>,
    requester: Option<Actor>,
}

/// Every answer of the synchronous gate.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum GateResponses {
    /// The answer; `allowed: false` unless every check holds (or the policy
    /// only warns). Past `gate.deadline_ms`, `verdict: pending`, not allowed.
    #[response(status = 200)]
    Answer(#[to_schema] SyncAnswer),
    /// `malformed_payload`.
    #[response(status = 400)]
    Malformed(ErrorBody),
    /// `invalid_signature`: no caller matches, or the caller may not ask about that source.
    #[response(status = 401)]
    Unauthenticated(ErrorBody),
    /// `unknown_source`.
    #[response(status = 404)]
    UnknownSource(ErrorBody),
    /// `request_id_conflict`: the `webhook-id` was used by this caller for another question.
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// `payload_too_large`.
    #[response(status = 413)]
    TooLarge(ErrorBody),
}

/// `POST /v1/gate/check`.
#[utoipa::path(post, path = "/v1/gate/check", tag = "gate",
    params(
        ("webhook-id" = Option<String>, Header, description = "Request id (signed callers); a repeat returns the first answer"),
        ("webhook-timestamp" = Option<String>, Header, description = "Seconds since the epoch (signed callers)"),
        ("webhook-signature" = Option<String>, Header, description = "Standard Webhooks signature (signed callers)")),
    request_body = CheckRequest,
    security(("bearer" = []), ("standard_webhooks" = [])),
    responses(GateResponses))]
#[tracing::instrument(name = "gate_check", skip_all, fields(caller, ticket))]
pub async fn check(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = super::hooks::read_body(payload, &request, state.max_body_bytes).await?;
    let now = chrono::Utc::now().timestamp();
    let caller = state.gate.authenticate(request.headers(), &body, now).ok_or_else(|| {
        tracing::warn!("gate check refused: no caller matches");
        ApiError::Unauthenticated("authentication failed: unknown caller, bad token or bad signature".into())
    })?;
    tracing::Span::current().record("caller", caller.name.as_str());
    let req: CheckRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::Malformed(format!("malformed payload: {e}")))?;
    if !caller.sources.is_empty() && !caller.sources.contains(&req.source) {
        return Err(ApiError::Unauthenticated(format!(
            "caller {} may not ask about source {}",
            caller.name, req.source
        )));
    }
    if state.sources.get(&req.source).is_none() {
        return Err(ApiError::UnknownSource(req.source));
    }
    tracing::Span::current().record("ticket", req.ticket.as_str());
    let ticket = TicketRef {
        source: req.source,
        key: req.ticket,
    };
    let event = TicketEvent {
        new_state: req.state,
        actor: req.actor.unwrap_or(Actor {
            id: caller.name.clone(),
            kind: Default::default(),
        }),
        requester: req.requester,
        title: req.title,
        labels: req.labels,
        fields: req.fields.into_iter().map(|(k, v)| (field_key(&k), v)).collect(),
        ..TicketEvent::probe(ticket, "gate.check")
    };
    let request_id = request
        .headers()
        .header("webhook-id")
        .map(String::from)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let answer = check_synchronously(
        state.context.clone(),
        &caller.name,
        &request_id,
        &body,
        event,
        state.gate.deadline,
    )
    .await
    .map_err(|e| match e {
        SyncCheckError::IdReused(_) => ApiError::Conflict(e.to_string()),
        other => ApiError::Unexpected(other.into()),
    })?;
    Ok(HttpResponse::Ok().json(answer))
}
