//! `GET /openapi.json`: the HTTP contract, generated from the route and body
//! types (OpenAPI 3.1).

use actix_web::HttpResponse;
use utoipa::{
    Modify, OpenApi,
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use super::{gate_check, health, hooks, metrics};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "closegate",
        description = "Ticketing webhook gatekeeper: a ticket closes only when the target system really matches it."
    ),
    paths(
        hooks::receive,
        hooks::receive_with_token,
        gate_check::check,
        health::healthz,
        health::readyz,
        metrics::metrics,
        openapi_json
    ),
    modifiers(&Security),
    tags(
        (name = "webhooks", description = "Helpdesk deliveries: authenticated, stored, acknowledged; decided from the store"),
        (name = "gate", description = "The synchronous gate for helpdesks that can stop a transition"),
        (name = "health", description = "Liveness and readiness"),
        (name = "operations", description = "Metrics and this contract")
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "standard_webhooks",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "webhook-signature",
                "Standard Webhooks signature of webhook-id, webhook-timestamp and the body, with the caller's whsec_ secret",
            ))),
        );
    }
}

/// The document, as served.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// This contract.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(document())
}
