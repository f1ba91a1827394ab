//! The route table.

mod gate_check;
mod health;
mod hooks;
mod metrics;
pub mod openapi;

use std::sync::Arc;

use actix_web::web;
pub use gate_check::GateAccess;

use crate::{adapters::SourceRegistry, context::Context, store::Store, verifiers::VerifierRegistry};

/// What request handlers share.
pub struct AppState {
    pub context: Arc<Context>,
    pub gate: GateAccess,
    pub store: Store,
    pub verifiers: VerifierRegistry,
    pub sources: SourceRegistry,
    pub max_body_bytes: usize,
    /// The last probe of the target systems, for `/readyz`.
    pub probe: health::SystemProbe,
    /// The Prometheus recorder's handle; `None` when metrics are disabled.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// The bearer token a scrape must send, when one is configured.
    pub metrics_token: Option<crate::config::Secret>,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(metrics::metrics))
        .route("/openapi.json", web::get().to(openapi::openapi_json))
        .route("/v1/gate/check", web::post().to(gate_check::check))
        .route("/hooks/{source}", web::post().to(hooks::receive))
        .route("/hooks/{source}/{token}", web::post().to(hooks::receive_with_token));
}
