use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::routes::AppState;

/// The process is up.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// The store answers and its migrations are applied. Target systems are
/// reported too, but an unreachable one does not make this replica unready:
/// its checks fail closed.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let systems: serde_json::Map<String, serde_json::Value> = state
        .verifiers
        .healthchecks()
        .await
        .into_iter()
        .map(|(name, result)| {
            let status = match result {
                Ok(identity) => json!({ "status": "ok", "identity": identity }),
                Err(e) => json!({ "status": "unreachable", "error": e.to_string() }),
            };
            (name, status)
        })
        .collect();
    match state.store.ready().await {
        Ok(()) => {
            HttpResponse::Ok().json(json!({ "status": "ready", "store": state.store.backend(), "systems": systems }))
        }
        Err(e) => {
            tracing::warn!(error.message = %e, "not ready");
            HttpResponse::ServiceUnavailable().json(json!({ "code": "not_ready", "message": e.to_string() }))
        }
    }
}
