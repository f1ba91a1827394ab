//! The route table.

mod gate_check;
mod health;
mod hooks;

pub use gate_check::GateAccess;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/v1/gate/check", web::post().to(gate_check::check))
        .route("/hooks/{source}", web::post().to(hooks::receive))
        .route("/hooks/{source}/{token}", web::post().to(hooks::receive_with_token));
}
