//! `GET /metrics`: the Prometheus text format.

use actix_web::{HttpRequest, HttpResponse, web};

use crate::{
    adapters::HeaderLookup,
    error::{ApiError, ErrorBody},
    metrics,
    routes::AppState,
};

/// Renders every metric, after reading the store's gauges afresh. A store that
/// does not answer leaves the gauges at their last reading and is logged:
/// the counters are still worth scraping.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses(
    (status = 200, description = "Every metric, in the Prometheus text format 0.0.4", body = String,
        content_type = "text/plain; version=0.0.4; charset=utf-8"),
    (status = 401, description = "`metrics.token` is set and the request did not send it as a bearer token",
        body = ErrorBody),
    (status = 404, description = "Metrics are disabled (`metrics.enabled: false`)", body = ErrorBody)),
    security((), ("bearer" = [])))]
pub async fn metrics(request: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let handle = state
        .metrics
        .as_ref()
        .ok_or(ApiError::NotFound("metrics are disabled"))?;
    if let Some(token) = &state.metrics_token {
        let presented = request.headers().bearer();
        if !presented.is_some_and(|p| crate::signature::secret_matches(token.expose(), p)) {
            return Err(ApiError::Unauthenticated(
                "authentication failed: this endpoint needs the metrics token as a bearer token".into(),
            ));
        }
    }
    let now = chrono::Utc::now().timestamp_millis();
    match state.store.gauges(now).await {
        Ok(gauges) => metrics::store_gauges(&gauges, state.sources.names(), now),
        Err(e) => tracing::warn!(error.message = %e, "could not read the store's gauges"),
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(handle.render()))
}
