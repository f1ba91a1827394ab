use actix_web::{HttpResponse, web};
use serde_json::json;

use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::{routes::AppState, verifiers::VerifierRegistry};

/// The process is up.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// How long a probe of the target systems answers `/readyz` before it is
/// repeated: an unauthenticated caller cannot make closegate dial every target
/// at will.
const PROBE_TTL: Duration = Duration::from_secs(10);

/// The last probe of the target systems: per system, `ok` or `unreachable`.
#[derive(Default)]
pub struct SystemProbe(Mutex<Option<(Instant, serde_json::Map<String, serde_json::Value>)>>);

impl SystemProbe {
    async fn statuses(&self, verifiers: &VerifierRegistry) -> serde_json::Map<String, serde_json::Value> {
        let mut cached = self.0.lock().await;
        if let Some((_, statuses)) = cached.as_ref().filter(|(at, _)| at.elapsed() < PROBE_TTL) {
            return statuses.clone();
        }
        let statuses: serde_json::Map<String, serde_json::Value> = verifiers
            .healthchecks()
            .await
            .into_iter()
            .map(|(name, result)| {
                if let Err(e) = &result {
                    tracing::warn!(system = %name, error.message = %e, "target system unreachable");
                }
                (name, json!(if result.is_ok() { "ok" } else { "unreachable" }))
            })
            .collect();
        *cached = Some((Instant::now(), statuses.clone()));
        statuses
    }
}

/// The store answers and its migrations are applied. Target systems are
/// reported too (status only: identities and errors are for
/// `closegate verifiers check` and the log), but an unreachable one does not
/// make this replica unready: its checks fail closed.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let systems = state.probe.statuses(&state.verifiers).await;
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
