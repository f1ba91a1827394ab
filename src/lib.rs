#![forbid(unsafe_code)]
//! closegate: a ticket closes only when the target system really matches it.

pub mod adapters;
pub mod audit_pack;
pub mod clock;
pub mod coalesce;
pub mod config;
pub mod context;
pub mod decide;
pub mod domain;
pub mod error;
pub mod evidence;
pub mod export;
pub mod gate;
pub mod init;
pub mod metrics;
pub mod outbound;
pub mod policy;
pub mod render;
pub mod report;
pub mod routes;
pub mod signature;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod verifiers;
pub mod workers;
