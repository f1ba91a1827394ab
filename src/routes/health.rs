use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use serde::Serialize;

use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::{error::ErrorBody, routes::AppState, verifiers::VerifierRegistry};

/// `/healthz`'s answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// `/readyz`'s answer when the store answers.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Ready {
    #[schema(example = "ready")]
    pub status: &'static str,
    /// `sqlite` or `postgres`.
    pub store: &'static str,
    /// Per target system, `ok` or `unreachable`.
    pub systems: BTreeMap<String, String>,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process is up", body = Health)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// How long a probe of the target systems answers `/readyz` before it is
/// repeated: an unauthenticated caller cannot make closegate dial every target
/// at will.
const PROBE_TTL: Duration = Duration::from_secs(10);

/// The last probe of the target systems: per system, `ok` or `unreachable`.
#[derive(Default)]
pub struct SystemProbe(Mutex<Option<(Instant, BTreeMap<String, String>)>>);

impl SystemProbe {
    async fn statuses(&self, verifiers: &VerifierRegistry) -> BTreeMap<String, String> {
        let mut cached = self.0.lock().await;
        if let Some((_, statuses)) = cached.as_ref().filter(|(at, _)| at.elapsed() < PROBE_TTL) {
            return statuses.clone();
        }
        let statuses: BTreeMap<String, String> = verifiers
            .healthchecks()
            .await
            .into_iter()
            .map(|(name, result)| {
                if let Err(e) = &result {
                    tracing::warn!(system = %name, error.message = %e, "target system unreachable");
                }
                (name, if result.is_ok() { "ok" } else { "unreachable" }.to_string())
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
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "The store answers", body = Ready),
    (status = 503, description = "The store does not answer (`not_ready`)", body = ErrorBody)))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let systems = state.probe.statuses(&state.verifiers).await;
    match state.store.ready().await {
        Ok(()) => HttpResponse::Ok().json(Ready {
            status: "ready",
            store: state.store.backend(),
            systems,
        }),
        Err(e) => {
            tracing::warn!(error.message = %e, "not ready");
            HttpResponse::ServiceUnavailable().json(ErrorBody {
                code: "not_ready",
                message: e.to_string(),
            })
        }
    }
}
