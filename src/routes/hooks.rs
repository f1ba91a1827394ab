//! `POST /hooks/{source}`: the ack path. Authenticate the raw bytes, parse,
//! store durably, answer. Decisions happen later, from the store.

use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde_json::json;

use crate::{
    adapters::{Inbound, content_key},
    error::ApiError,
    metrics,
    routes::AppState,
    store::NewDelivery,
};

/// `POST /hooks/{source}`.
pub async fn receive(
    path: web::Path<String>,
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    measured(path.into_inner(), None, request, payload, state).await
}

/// `POST /hooks/{source}/{token}`: for helpdesks that sign nothing.
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
    let label = match state.sources.get(&source) {
        Some(_) => source.clone(),
        None => "(unknown)".to_string(),
    };
    let result = accept(source, token, request, payload, state).await;
    let outcome = match &result {
        Ok(response) if response.headers().contains_key("closegate-duplicate") => metrics::DeliveryOutcome::Duplicate,
        Ok(_) => metrics::DeliveryOutcome::Accepted,
        Err(e) => metrics::DeliveryOutcome::Refused(e.code()),
    };
    metrics::delivery(&label, outcome, started.elapsed());
    result
}

#[tracing::instrument(name = "webhook", skip_all, fields(source = %source, delivery_id, ticket))]
async fn accept(
    source: String,
    token: Option<String>,
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let adapter = state
        .sources
        .get(&source)
        .ok_or_else(|| ApiError::UnknownSource(source.clone()))?;
    let body = read_body(payload, &request, state.max_body_bytes).await?;
    let now = chrono::Utc::now();
    let inbound = Inbound {
        source: &source,
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
    span.record("delivery_id", accepted.delivery_id.as_str());
    span.record("ticket", tracing::field::display(&accepted.event.ticket));
    let body_text =
        String::from_utf8(body.to_vec()).map_err(|_| ApiError::Malformed("the body is not UTF-8".into()))?;
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
            source,
            delivery_id,
            body_sha256: key,
            received_at: now.timestamp_millis(),
            event,
            body: body_text,
            lease_until: None,
        })
        .await
        .map_err(ApiError::Unavailable)?;
    let mut response = HttpResponse::Accepted();
    if outcome.duplicate {
        tracing::info!("duplicate delivery");
        response.insert_header(("closegate-duplicate", "true"));
    }
    Ok(response.json(json!({ "status": "accepted", "delivery": outcome.id })))
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
