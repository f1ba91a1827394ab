//! Background work, all driven from the store so any replica can pick it up:
//! deciding stored deliveries, and delivering the outbox.
//! Each worker has a single-step function tests can call instead of sleeping.

mod decisions;
mod outbox;
mod sync_check;

use std::{sync::Arc, time::Duration};

use tokio::sync::Notify;

pub use decisions::try_decide_next;
pub use outbox::{retry_delay_ms, try_deliver_next};
pub use sync_check::{SyncAnswer, check_synchronously};

use crate::{adapters::SourceRegistry, config::WorkerSettings, gate::Gate, render::Renderer, store::Store};

/// What one step of a worker did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionOutcome {
    TaskCompleted,
    EmptyQueue,
}

/// Everything the workers need.
pub struct Context {
    pub store: Store,
    pub gate: Gate,
    pub sources: SourceRegistry,
    pub renderer: Renderer,
    pub settings: WorkerSettings,
    /// Signalled when a decision enqueues outbox messages.
    pub effects_enqueued: Notify,
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Runs the decision and outbox workers until the future is dropped.
pub async fn run_until_stopped(ctx: Arc<Context>) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..ctx.settings.decision_concurrency {
        let ctx = ctx.clone();
        tasks.spawn(async move {
            let poll = Duration::from_millis(ctx.settings.poll_interval_ms);
            loop {
                match try_decide_next(&ctx, now_ms()).await {
                    Ok(ExecutionOutcome::TaskCompleted) => {}
                    Ok(ExecutionOutcome::EmptyQueue) => {
                        tokio::select! {
                            _ = ctx.store.delivery_stored() => {}
                            _ = tokio::time::sleep(poll) => {}
                        }
                    }
                    Err(e) => {
                        tracing::error!(error.cause_chain = ?e, error.message = %e, "decision worker step failed");
                        tokio::time::sleep(poll).await;
                    }
                }
            }
        });
    }
    let outbox_ctx = ctx.clone();
    tasks.spawn(async move {
        let ctx = outbox_ctx;
        let poll = Duration::from_millis(ctx.settings.poll_interval_ms);
        loop {
            match try_deliver_next(&ctx, now_ms()).await {
                Ok(ExecutionOutcome::TaskCompleted) => {}
                Ok(ExecutionOutcome::EmptyQueue) => {
                    tokio::select! {
                        _ = ctx.effects_enqueued.notified() => {}
                        _ = tokio::time::sleep(poll) => {}
                    }
                }
                Err(e) => {
                    tracing::error!(error.cause_chain = ?e, error.message = %e, "outbox worker step failed");
                    tokio::time::sleep(poll).await;
                }
            }
        }
    });
    while tasks.join_next().await.is_some() {}
}
