//! The route table.

mod health;
mod hooks;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/hooks/{source}", web::post().to(hooks::receive));
}
