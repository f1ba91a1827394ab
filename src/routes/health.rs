use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::startup::AppState;

/// The process is up.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// The store answers and its migrations are applied.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.store.ready().await {
        Ok(()) => HttpResponse::Ok().json(json!({ "status": "ready", "store": state.store.backend() })),
        Err(e) => {
            tracing::warn!(error.message = %e, "not ready");
            HttpResponse::ServiceUnavailable().json(json!({ "code": "not_ready", "message": e.to_string() }))
        }
    }
}
