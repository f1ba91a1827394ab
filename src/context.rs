//! What every trigger needs to reach a decision and carry it out: the store,
//! the gate, the helpdesk sources, the comment renderer and the clock.

use std::sync::Arc;

use crate::{
    adapters::SourceRegistry, clock::SharedClock, config::WorkerSettings, evidence::log::EvidenceLog, gate::Gate,
    render::Renderer, store::Store,
};

/// Shared by the HTTP edge, the workers and the CLI.
pub struct Context {
    pub store: Store,
    pub gate: Gate,
    pub sources: SourceRegistry,
    pub renderer: Renderer,
    pub settings: WorkerSettings,
    pub clock: SharedClock,
    /// The evidence log's signed tree heads.
    pub log: Arc<EvidenceLog>,
    /// How often a tree head is signed.
    pub head_interval: std::time::Duration,
    /// Wakes an outbox lane's workers when messages are enqueued for it.
    pub outbox_lanes: crate::workers::LaneSignals,
    /// Whether governed requests get intake notes.
    pub intake_notes: bool,
    /// The missed-delivery reconciler.
    pub reconcile: crate::config::ReconcileSettings,
    /// Where every evidence record is sent as it is written.
    pub sinks: crate::export::Sinks,
}

impl Context {
    /// Now, in unix milliseconds, from the injected clock.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}
