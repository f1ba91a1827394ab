#![forbid(unsafe_code)]
//! closegate: a ticket closes only when the target system really matches it.

pub mod adapters;
pub mod config;
pub mod domain;
pub mod error;
pub mod gate;
pub mod outbound;
pub mod policy;
pub mod render;
pub mod routes;
pub mod signature;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod verifiers;
pub mod workers;
