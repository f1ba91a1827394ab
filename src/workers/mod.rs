//! Background work, all driven from the store so any replica can pick it up:
//! deciding stored deliveries, re-verifying claims at expiry and in the drift
//! sweep, and delivering the outbox. Every worker has the
//! same shape: a step claims one unit under a lease, does it and finishes it;
//! tests call the steps directly instead of sleeping.

mod background;
mod decisions;
mod lanes;
mod outbox;
mod schedule;

use std::{future::Future, sync::Arc, time::Duration};

pub use decisions::{try_decide_batch, try_decide_next};
pub use lanes::LaneSignals;
pub use outbox::{deliver_next, retry_delay_ms, try_deliver_next};
pub use schedule::{try_expire_next, try_sweep_next};

use crate::context::Context;

/// What one step of a worker did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionOutcome {
    TaskCompleted,
    EmptyQueue,
}

/// Runs `step` until the future is dropped: again at once after work, after
/// `wake` or the poll interval when the queue was empty, after the poll
/// interval on error.
async fn run_loop<S, SF, W, WF>(ctx: Arc<Context>, name: &'static str, step: S, wake: W)
where
    S: Fn(Arc<Context>) -> SF,
    SF: Future<Output = anyhow::Result<ExecutionOutcome>>,
    W: Fn(Arc<Context>) -> WF,
    WF: Future<Output = ()>,
{
    let poll = Duration::from_millis(ctx.settings.poll_interval_ms);
    loop {
        match step(ctx.clone()).await {
            Ok(ExecutionOutcome::TaskCompleted) => {}
            Ok(ExecutionOutcome::EmptyQueue) => {
                tokio::select! {
                    _ = wake(ctx.clone()) => {}
                    _ = tokio::time::sleep(poll) => {}
                }
            }
            Err(e) => {
                tracing::error!(worker = name, error.cause_chain = ?e, error.message = %e, "worker step failed");
                tokio::time::sleep(poll).await;
            }
        }
    }
}

/// Runs the decision, expiry, sweep and outbox workers until the future is dropped.
pub async fn run_until_stopped(ctx: Arc<Context>) {
    let background = background::Background::start(ctx.settings.nice)
        .inspect_err(|e| {
            tracing::warn!(error.message = %e, "cannot start the workers' own runtime; they run beside the ack path")
        })
        .ok();
    let current = tokio::runtime::Handle::current();
    let on = background.as_ref().map_or(&current, |b| b.handle());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..ctx.settings.decision_concurrency {
        tasks.spawn_on(
            run_loop(
                ctx.clone(),
                "decisions",
                |ctx| async move { try_decide_batch(&ctx, ctx.settings.decision_batch).await },
                |ctx| async move { ctx.store.delivery_stored().await },
            ),
            on,
        );
    }
    tasks.spawn_on(
        run_loop(
            ctx.clone(),
            "expiry",
            |ctx| async move { try_expire_next(&ctx).await },
            |_| std::future::pending(),
        ),
        on,
    );
    tasks.spawn_on(
        run_loop(
            ctx.clone(),
            "sweep",
            |ctx| async move { try_sweep_next(&ctx).await },
            |_| std::future::pending(),
        ),
        on,
    );
    // One lane per source (and per export sink), each with its own messages in
    // flight: a slow or hung helpdesk, or one that asked to wait, delays only
    // its own messages.
    let sinks = ctx.sinks.names().map(|s| crate::export::lane(s));
    for lane in ctx.sources.names().into_iter().chain(sinks.collect::<Vec<_>>()) {
        tasks.spawn_on(outbox::run_lane(ctx.clone(), lane), on);
    }
    if ctx.reconcile.enabled {
        for source in ctx.sources.names() {
            if ctx.sources.get(&source).is_some_and(|a| a.lists_closes()) {
                tasks.spawn_on(reconcile_loop(ctx.clone(), source), on);
            }
        }
    }
    tasks.spawn_on(sign_heads(ctx.clone()), on);
    tasks.spawn_on(housekeeping(ctx.clone()), on);
    while tasks.join_next().await.is_some() {}
}

/// `items` grouped by `key`, groups in order of first appearance, each group in
/// the items' order: one ticket's work is done in order, tickets side by side.
pub(crate) fn grouped<T, K: std::hash::Hash + Eq>(items: Vec<T>, key: impl Fn(&T) -> K) -> Vec<Vec<T>> {
    let mut groups: Vec<Vec<T>> = Vec::new();
    let mut index: std::collections::HashMap<K, usize> = std::collections::HashMap::new();
    for item in items {
        match index.entry(key(&item)) {
            std::collections::hash_map::Entry::Occupied(at) => groups[*at.get()].push(item),
            std::collections::hash_map::Entry::Vacant(at) => {
                at.insert(groups.len());
                groups.push(vec![item]);
            }
        }
    }
    groups
}

/// Acks come first: while deliveries wait for their ack, a decision or outbox
/// worker waits a little (at most 100 ms in all) before taking more work, so
/// that background work does not slow the helpdesk's webhooks down, and is
/// never starved.
pub(crate) async fn give_way_to_acks(ctx: &Context) {
    const BUSY: usize = 4;
    const STEP: Duration = Duration::from_millis(5);
    const GIVE_WAY: u32 = 20;
    for _ in 0..GIVE_WAY {
        if ctx.store.acks_waiting() < BUSY {
            return;
        }
        tokio::time::sleep(STEP).await;
    }
}

/// Lists one source's closes every `reconcile.interval_seconds` and decides
/// those whose webhook never arrived.
async fn reconcile_loop(ctx: Arc<Context>, source: String) {
    let every = Duration::from_secs(ctx.reconcile.interval_seconds.max(1));
    loop {
        match crate::decide::reconcile_source(&ctx, &source, None).await {
            Ok(found) if !found.missed.is_empty() => {
                tracing::warn!(source = %source, missed = found.missed.len(), "closes whose webhook never arrived were decided");
            }
            Ok(_) | Err(crate::decide::ReconcileError::Busy(_)) => {}
            Err(crate::decide::ReconcileError::LeaseLost(_)) => {
                tracing::warn!(source = %source, lease_seconds = ctx.settings.lease_seconds,
                    "a reconcile pass outlived its lease and another replica took the source over; \
                     what it decided stands, the rest is the other pass's")
            }
            Err(e) => {
                tracing::warn!(source = %source, error.message = %format!("{:#}", anyhow::Error::from(e)), "reconcile pass failed")
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// Deletes finished deliveries and delivered messages past their retention,
/// once an hour.
async fn housekeeping(ctx: Arc<Context>) {
    const DAY_MS: i64 = 86_400_000;
    loop {
        let now = ctx.now_ms();
        let result = ctx
            .store
            .housekeep(
                now - ctx.settings.deliveries_retention_days * DAY_MS,
                now - ctx.settings.outbox_retention_days * DAY_MS,
            )
            .await;
        match result {
            Ok(swept) if swept.deliveries + swept.outbox > 0 => {
                tracing::info!(
                    deliveries = swept.deliveries,
                    outbox = swept.outbox,
                    "finished rows deleted"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error.message = %e, "housekeeping failed"),
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

/// Signs a tree head of the evidence log every `head_interval` when records
/// were added since the last one.
async fn sign_heads(ctx: Arc<Context>) {
    loop {
        if let Err(e) = ctx.log.sign_head(ctx.now_ms()).await {
            tracing::error!(error.cause_chain = ?e, error.message = %e, "signing a tree head failed");
        }
        tokio::time::sleep(ctx.head_interval).await;
    }
}
