//! `POST /hooks/{source}`: the ack path. Authenticate the raw bytes, parse,
//! store durably, answer. Decisions happen later, from the store.

use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;

use crate::{
    adapters::{Inbound, content_key},
    error::{ApiError, ErrorBody},
    metrics,
    routes::AppState,
    store::NewDelivery,
};

/// What a helpdesk is told when its delivery is on disk.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Accepted {
    #[schema(example = "accepted")]
    pub status: &'static str,
    /// The stored delivery's id (the first one's, for a redelivery).
    pub delivery: String,
}

/// The headers each kind of source authenticates and names its deliveries
/// with. Which ones a source needs depends on its `type`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct HookHeaders {
    /// GitHub: the event name (`issues`).
    #[param(rename = "X-GitHub-Event")]
    github_event: Option<String>,
    /// GitHub: the delivery id.
    #[param(rename = "X-GitHub-Delivery")]
    github_delivery: Option<String>,
    /// GitHub: `sha256=` HMAC of the body.
    #[param(rename = "X-Hub-Signature-256")]
    hub_signature_256: Option<String>,
    /// Jira: `sha256=` HMAC of the body (webhooks with a secret).
    #[param(rename = "X-Hub-Signature")]
    hub_signature: Option<String>,
    /// Jira: the delivery id.
    #[param(rename = "X-Atlassian-Webhook-Identifier")]
    atlassian_webhook_identifier: Option<String>,
    /// Gitea: HMAC-SHA256 of the body, hex.
    #[param(rename = "X-Gitea-Signature")]
    gitea_signature: Option<String>,
    #[param(rename = "X-Gitea-Event")]
    gitea_event: Option<String>,
    #[param(rename = "X-Gitea-Delivery")]
    gitea_delivery: Option<String>,
    /// Forgejo: HMAC-SHA256 of the body, hex.
    #[param(rename = "X-Forgejo-Signature")]
    forgejo_signature: Option<String>,
    #[param(rename = "X-Forgejo-Event")]
    forgejo_event: Option<String>,
    #[param(rename = "X-Forgejo-Delivery")]
    forgejo_delivery: Option<String>,
    /// GitLab: the hook's secret token.
    #[param(rename = "X-Gitlab-Token")]
    gitlab_token: Option<String>,
    /// GitLab: the delivery id.
    #[param(rename = "X-Gitlab-Event-UUID")]
    gitlab_event_uuid: Option<String>,
    /// Standard Webhooks (also GitLab signing tokens): the message id.
    #[param(rename = "webhook-id")]
    webhook_id: Option<String>,
    /// Standard Webhooks: seconds since the epoch.
    #[param(rename = "webhook-timestamp")]
    webhook_timestamp: Option<String>,
    /// Standard Webhooks: space-separated `v1,<base64>` signatures.
    #[param(rename = "webhook-signature")]
    webhook_signature: Option<String>,
    /// Zendesk: base64 HMAC-SHA256 of timestamp and body.
    #[param(rename = "X-Zendesk-Webhook-Signature")]
    zendesk_signature: Option<String>,
    #[param(rename = "X-Zendesk-Webhook-Signature-Timestamp")]
    zendesk_signature_timestamp: Option<String>,
    /// Linear: hex HMAC-SHA256 of the body.
    #[param(rename = "Linear-Signature")]
    linear_signature: Option<String>,
    #[param(rename = "Linear-Delivery")]
    linear_delivery: Option<String>,
    /// ServiceNow business rules: HMAC of the body.
    #[param(rename = "X-Closegate-Signature")]
    closegate_signature: Option<String>,
}

/// Every answer of the webhook receiver.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum HookResponses {
    /// The delivery is on disk; it will be decided from the store.
    #[response(status = 202, headers(
        ("closegate-duplicate" = String, description = "`true` when this delivery id or exact body was stored before")))]
    Accepted(#[to_schema] Accepted),
    /// `malformed_payload`: not JSON, not UTF-8, or not the source's event shape.
    #[response(status = 400)]
    Malformed(ErrorBody),
    /// `invalid_signature`: missing, stale or wrong signature or token.
    #[response(status = 401)]
    Unauthenticated(ErrorBody),
    /// `unknown_source`: no source of that name is configured.
    #[response(status = 404)]
    UnknownSource(ErrorBody),
    /// `payload_too_large`: over `max_body_bytes`.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// `store_unavailable`: the delivery could not be stored; retry later.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// `POST /hooks/{source}`.
#[utoipa::path(post, path = "/hooks/{source}", tag = "webhooks",
    params(("source" = String, Path, description = "A configured source's name"), HookHeaders),
    request_body(content = serde_json::Value, description = "The helpdesk's event, exactly as it signed it",
        content_type = "application/json"),
    responses(HookResponses))]
pub async fn receive(
    path: web::Path<String>,
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    measured(path.into_inner(), None, request, payload, state).await
}

/// `POST /hooks/{source}/{token}`: for helpdesks that sign nothing.
#[utoipa::path(post, path = "/hooks/{source}/{token}", tag = "webhooks",
    params(("source" = String, Path, description = "A configured source's name"),
        ("token" = String, Path, description = "The source's path token (sources that sign nothing)"), HookHeaders),
    request_body(content = serde_json::Value, description = "The helpdesk's event", content_type = "application/json"),
    responses(HookResponses))]
pub async fn receive_with_token(
    path: web::Path<(String, String)>,
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (source, token) = path.into_inner();
    measured(source, Some(token), request, payload, state).await
}

/// [`accept`], counted by outcome and timed. A source that is not configured
/// is counted as `(unknown)`: a caller cannot mint label values.
async fn measured(
    source: String,
    token: Option<String>,
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let started = std::time::Instant::now();
    let result = accept(&source, token, request, payload, state).await;
    let label = match &result {
        Err(ApiError::UnknownSource(_)) => "(unknown)",
        _ => source.as_str(),
    };
    let outcome = match &result {
        Ok(response) if response.headers().contains_key("closegate-duplicate") => metrics::DeliveryOutcome::Duplicate,
        Ok(_) => metrics::DeliveryOutcome::Accepted,
        Err(e) => metrics::DeliveryOutcome::Refused(e.code()),
    };
    metrics::delivery(label, outcome, started.elapsed());
    result
}

#[tracing::instrument(name = "webhook", skip_all, fields(source = %source, delivery_id, ticket, trace_id))]
async fn accept(
    source: &str,
    token: Option<String>,
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let adapter = state
        .sources
        .get(source)
        .ok_or_else(|| ApiError::UnknownSource(source.to_string()))?;
    let body = read_body(payload, &request, state.max_body_bytes).await?;
    let now = chrono::Utc::now();
    let inbound = Inbound {
        source,
        headers: request.headers(),
        body: &body,
        now: now.timestamp(),
        path_token: token.as_deref(),
    };
    let accepted = adapter.accept(&inbound).map_err(|e| {
        tracing::warn!(reason = %e, "webhook refused");
        ApiError::from(e)
    })?;
    let span = tracing::Span::current();
    let trace_id = {
        use actix_web::HttpMessage as _;
        request
            .extensions()
            .get::<crate::telemetry::RequestTrace>()
            .map(|t| t.0.clone())
    }
    .unwrap_or_else(|| {
        crate::telemetry::trace_id_from(request.headers().get("traceparent").and_then(|v| v.to_str().ok()))
    });
    span.record("trace_id", trace_id.as_str());
    span.record("delivery_id", accepted.delivery_id.as_str());
    span.record("ticket", tracing::field::display(&accepted.event.ticket));
    std::str::from_utf8(&body).map_err(|_| ApiError::Malformed("the body is not UTF-8".into()))?;
    let event = serde_json::to_string(&accepted.event).map_err(|e| ApiError::Unexpected(e.into()))?;
    let key = content_key(&accepted.delivery_id, &body, adapter.signs_delivery_id());
    // An unsigned body under a known id is not a redelivery unless it is the
    // same body: a forged body sent in advance cannot pre-claim a real id.
    let delivery_id = if adapter.trusts_body() {
        accepted.delivery_id
    } else {
        format!("{}#{}", accepted.delivery_id, &key[..16])
    };
    let outcome = state
        .store
        .ingest(NewDelivery {
            source: source.to_string(),
            delivery_id,
            body_sha256: key,
            received_at: now.timestamp_millis(),
            event,
            lease_until: None,
            trace_id: Some(trace_id),
        })
        .await
        .map_err(ApiError::Unavailable)?;
    let mut response = HttpResponse::Accepted();
    if outcome.duplicate {
        tracing::info!("duplicate delivery");
        response.insert_header(("closegate-duplicate", "true"));
    }
    Ok(response.json(Accepted {
        status: "accepted",
        delivery: outcome.id,
    }))
}

/// Reads a request body, refusing (413) anything over `limit` before reading it all.
pub(super) async fn read_body(
    mut payload: web::Payload,
    request: &HttpRequest,
    limit: usize,
) -> Result<web::Bytes, ApiError> {
    let declared = request
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::TooLarge(limit));
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(4096).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::Malformed(format!("cannot read the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
