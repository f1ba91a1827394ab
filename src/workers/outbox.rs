//! Delivering outbox messages through the helpdesk adapters: at least once,
//! made exactly-once in effect by the adapters' idempotency checks.

use std::{borrow::Cow, sync::Arc, time::Duration};

use anyhow::Context as _;
use rand::Rng;
use tokio::{sync::oneshot, time::Instant};
use tracing::Instrument as _;

use super::ExecutionOutcome;
use crate::{
    adapters::{Effect, EffectError},
    config::WorkerSettings,
    context::Context,
    decide::StoredMessage,
    render::CommentFormat,
    store::{ClaimedEffect, EvidenceRecord},
};

/// Backoff before retry number `attempts`: doubling from `retry_base_ms`, capped
/// at `retry_max_ms`, with "equal jitter" (half fixed, half random).
pub fn retry_delay_ms(attempts: i64, settings: &WorkerSettings) -> i64 {
    let exp = attempts.clamp(1, 40) - 1;
    let delay = settings
        .retry_base_ms
        .saturating_mul(1i64 << exp.min(30))
        .min(settings.retry_max_ms)
        .max(1);
    delay / 2 + rand::thread_rng().gen_range(0..=delay / 2)
}

/// Claims the message due soonest, of any source, and carries it out.
pub async fn try_deliver_next(ctx: &Context) -> anyhow::Result<ExecutionOutcome> {
    Ok(match deliver_next(ctx, None, 1).await? {
        Some(_) => ExecutionOutcome::TaskCompleted,
        None => ExecutionOutcome::EmptyQueue,
    })
}

/// Claims up to `limit` of the messages of `lane` (a source; any when `None`)
/// due soonest, in one statement, and carries them out side by side (one
/// ticket's messages in order), each under its own lease renewal. `None` when
/// nothing was due; otherwise the longest the helpdesk asked the lane to wait,
/// if it did (`Retry-After`).
pub async fn deliver_next(ctx: &Context, lane: Option<&str>, limit: usize) -> anyhow::Result<Option<Option<Duration>>> {
    let claimed = claim(ctx, lane, limit).await?;
    if claimed.is_empty() {
        return Ok(None);
    }
    let records = records_of(ctx, &claimed).await;
    let tickets = super::grouped(claimed, |msg| msg.ticket.clone());
    let delivered = futures_util::future::join_all(
        tickets
            .iter()
            .map(|messages| deliver_in_order(ctx, messages, &records, false)),
    )
    .await;
    let mut pause = None;
    for result in delivered {
        pause = pause.max(result?);
    }
    Ok(Some(pause))
}

/// Delivers one lane's messages until the future is dropped: one claimer that
/// keeps up to `outbox_concurrency × outbox_batch` messages in flight, claiming
/// again once half of them are done (so that a busy lane claims in batches,
/// not message by message), and that stops claiming while the helpdesk asked
/// the lane to wait. A slow or hung helpdesk holds only its own lane's slots.
/// One ticket's messages go out in order, also across claims: a claim's
/// messages for a ticket still being delivered wait for those before them.
pub(super) async fn run_lane(ctx: Arc<Context>, lane: String) {
    let capacity = ctx.settings.outbox_concurrency.max(1) * ctx.settings.outbox_batch.max(1);
    let poll = Duration::from_millis(ctx.settings.poll_interval_ms);
    let enqueued = ctx.outbox_lanes.signal(&lane);
    let mut running = tokio::task::JoinSet::new();
    // The messages each running task delivers, and their sum.
    let mut counts = std::collections::HashMap::new();
    let mut in_flight = 0;
    // Per ticket being delivered, the end of its last task: the next waits for it.
    let mut tickets: std::collections::HashMap<String, oneshot::Receiver<()>> = std::collections::HashMap::new();
    // When the lane looks again without a signal, once drained.
    let mut poll_at = Instant::now();
    // Until when the helpdesk asked the lane to wait.
    let mut resume_at: Option<Instant> = None;
    // The last claim took all that was due (or failed): wait for a decision's
    // signal or the poll interval before claiming again.
    let mut drained = false;
    loop {
        let paused = resume_at.is_some_and(|at| at > Instant::now());
        if !drained && !paused && in_flight <= capacity / 2 {
            super::give_way_to_acks(&ctx).await;
            let limit = capacity - in_flight;
            match claim(&ctx, Some(&lane), limit).await {
                Ok(claimed) => {
                    drained = claimed.len() < limit;
                    let records = Arc::new(records_of(&ctx, &claimed).await);
                    for messages in super::grouped(claimed, |msg| msg.ticket.clone()) {
                        in_flight += messages.len();
                        let count = messages.len();
                        let (ended, end) = oneshot::channel::<()>();
                        let before = tickets.insert(messages[0].ticket.clone(), end);
                        let (ctx, records) = (ctx.clone(), records.clone());
                        let task = running.spawn(async move {
                            // Resolves when the task before it ends.
                            let waited = before.is_some();
                            if let Some(before) = before {
                                let _ = before.await;
                            }
                            let delivered = deliver_in_order(&ctx, &messages, &records, waited).await;
                            drop(ended);
                            delivered
                        });
                        counts.insert(task.id(), count);
                    }
                }
                Err(e) => {
                    tracing::error!(worker = "outbox", source = %lane, error.cause_chain = ?e, error.message = %e,
                        "worker step failed");
                    drained = true;
                }
            }
            if drained {
                poll_at = Instant::now() + poll;
            }
            continue;
        }
        tokio::select! {
            Some(done) = running.join_next_with_id() => {
                let (id, delivered) = match done {
                    Ok((id, delivered)) => (id, delivered),
                    Err(e) => (e.id(), Err(anyhow::anyhow!("a delivery task ended early: {e}"))),
                };
                in_flight -= counts.remove(&id).unwrap_or(0);
                // Tickets whose last task has ended need no waiting.
                tickets.retain(|_, end| matches!(end.try_recv(), Err(oneshot::error::TryRecvError::Empty)));
                match delivered {
                    Ok(None) => {}
                    Ok(Some(pause)) => {
                        tracing::info!(source = %lane, pause_ms = pause.as_millis() as u64, "helpdesk asked to wait");
                        resume_at = resume_at.max(Some(Instant::now() + pause));
                    }
                    // What it had not delivered stays claimed until its lease
                    // runs out, and is delivered then.
                    Err(e) => tracing::error!(worker = "outbox", source = %lane, error.cause_chain = ?e,
                        error.message = %e, "worker step failed"),
                }
            }
            _ = enqueued.notified(), if drained => drained = false,
            _ = tokio::time::sleep_until(poll_at), if drained => drained = false,
            _ = tokio::time::sleep_until(resume_at.unwrap_or_else(Instant::now)), if paused => resume_at = None,
        }
    }
}

/// Claims up to `limit` of the due messages of `lane` (any when `None`).
async fn claim(ctx: &Context, lane: Option<&str>, limit: usize) -> anyhow::Result<Vec<ClaimedEffect>> {
    let lease_ms = ctx.settings.lease_seconds * 1000;
    ctx.store
        .claim_effects(ctx.now_ms(), lease_ms, lane, limit)
        .await
        .context("Failed to claim outbox messages")
}

/// Delivers one ticket's claimed messages in order (`waited` when the first
/// of them waited for an earlier claim's); the longest the helpdesk asked to
/// wait, if it did.
async fn deliver_in_order(
    ctx: &Context,
    messages: &[ClaimedEffect],
    records: &Records,
    waited: bool,
) -> anyhow::Result<Option<Duration>> {
    let lease_ms = ctx.settings.lease_seconds * 1000;
    let mut pause = None;
    for (i, msg) in messages.iter().enumerate() {
        // A message that waited for the one before it renews its claim
        // first: if the lease passed to another replica meanwhile, that
        // replica delivers it, not this one.
        if (i > 0 || waited) && !ctx.store.renew_effect(msg, ctx.now_ms() + lease_ms).await? {
            tracing::warn!(message = %msg.id, "lost the lease while waiting; left to its new holder");
            continue;
        }
        let trace_id = msg
            .trace_id
            .clone()
            .unwrap_or_else(|| crate::telemetry::trace_id_from(None));
        let span = tracing::info_span!("effect", message = %msg.id, source = %msg.source, ticket = %msg.ticket,
            attempt = msg.attempts, trace_id = %trace_id);
        crate::telemetry::adopt_trace(&span, &trace_id);
        pause = pause.max(crate::telemetry::in_trace(trace_id, deliver(ctx, msg, records).instrument(span)).await?);
    }
    Ok(pause)
}

/// Carries one claimed message out, renewing its lease while the helpdesk
/// answers, and records the result under the claim's fencing token.
async fn deliver(ctx: &Context, msg: &ClaimedEffect, records: &Records) -> anyhow::Result<Option<Duration>> {
    let work = async {
        if crate::export::Sinks::is_lane(&msg.source) {
            return export(ctx, msg, records).await;
        }
        match ctx.sources.get(&msg.source) {
            None => Err(EffectError::retryable(format!(
                "source {} is not configured",
                msg.source
            ))),
            Some(adapter) => match effect(ctx, msg, adapter.comment_format(), records).await {
                Ok(effect) => adapter.apply(&effect).await,
                Err(e) => Err(e),
            },
        }
    };
    let result = tokio::select! {
        result = work => result,
        lost = keep_lease(ctx, msg) => {
            // Another replica may hold the message now: stop before posting twice.
            tracing::warn!(error.message = %lost, "lost the lease during delivery; left to its new holder");
            return Ok(None);
        }
    };
    let done_at = ctx.now_ms();
    let (recorded, pause) = match result {
        Ok(()) => {
            let recorded = ctx
                .store
                .complete_effect(msg, done_at)
                .await
                .context("Failed to complete an outbox message")?;
            if recorded {
                tracing::info!("delivered");
                crate::metrics::outbox_sent(&msg.source, "delivered");
            }
            (recorded, None)
        }
        Err(e) => {
            let give_up = !e.retryable || msg.attempts >= ctx.settings.max_attempts;
            let backoff = retry_delay_ms(msg.attempts, &ctx.settings);
            let asked = e.retry_after.map_or(0, |d| d.as_millis() as i64);
            let retry_at = (!give_up).then(|| done_at + backoff.max(asked));
            if give_up {
                tracing::error!(error.message = %e, "outbox message parked as dead");
            } else {
                tracing::warn!(error.message = %e, retry_in_ms = backoff.max(asked), "outbox delivery failed; will retry");
            }
            let recorded = ctx
                .store
                .fail_effect(msg, &e.message, retry_at)
                .await
                .context("Failed to record an outbox failure")?;
            if recorded {
                crate::metrics::outbox_sent(&msg.source, if give_up { "dead" } else { "retry" });
            }
            (recorded, e.retry_after)
        }
    };
    if !recorded {
        tracing::warn!("result refused: the lease was lost to another replica before it was recorded");
    }
    Ok(pause)
}

/// Sends one evidence record to the sink the message names.
async fn export(ctx: &Context, msg: &ClaimedEffect, records: &Records) -> Result<(), EffectError> {
    let intent: crate::export::ExportIntent =
        serde_json::from_str(&msg.payload).map_err(|e| EffectError::permanent(format!("unreadable message: {e}")))?;
    let record = record(ctx, &intent.evidence_id, records).await?;
    ctx.sinks.send(&intent.export_to, &record, ctx.now_ms()).await
}

/// The evidence records of a claim's messages, by id, read at once. A read
/// that fails leaves each message to read its own (and fail or retry alone).
type Records = std::collections::HashMap<String, EvidenceRecord>;

async fn records_of(ctx: &Context, claimed: &[ClaimedEffect]) -> Records {
    let mut ids: Vec<&str> = claimed.iter().map(|m| m.evidence_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    match ctx.store.evidence_by_ids(&ids).await {
        Ok(found) => found.into_iter().map(|r| (r.id.clone(), r)).collect(),
        Err(e) => {
            tracing::warn!(error.message = %e, "could not read the claimed messages' evidence at once");
            Records::new()
        }
    }
}

/// The evidence record `id`: from those read with the claim, or else read now.
async fn record<'a>(ctx: &Context, id: &str, records: &'a Records) -> Result<Cow<'a, EvidenceRecord>, EffectError> {
    if let Some(record) = records.get(id) {
        return Ok(Cow::Borrowed(record));
    }
    ctx.store
        .evidence_by_id(id)
        .await
        .map_err(|e| EffectError::retryable(format!("cannot read evidence record {id}: {e}")))?
        .map(Cow::Owned)
        .ok_or_else(|| EffectError::permanent(format!("evidence record {id} is missing")))
}

/// Renews the lease every third of its length; returns only when it is lost.
async fn keep_lease(ctx: &Context, msg: &ClaimedEffect) -> String {
    let lease_ms = ctx.settings.lease_seconds * 1000;
    let every = Duration::from_millis((lease_ms / 3).max(1) as u64);
    loop {
        tokio::time::sleep(every).await;
        match ctx.store.renew_effect(msg, ctx.now_ms() + lease_ms).await {
            Ok(true) => {}
            Ok(false) => return "the lease was taken over".into(),
            Err(e) => tracing::warn!(error.message = %e, "could not renew a lease; trying again"),
        }
    }
}

/// The effect a stored message asks for, rendered from its evidence record.
async fn effect(
    ctx: &Context,
    msg: &ClaimedEffect,
    format: CommentFormat,
    records: &Records,
) -> Result<Effect, EffectError> {
    let stored: StoredMessage =
        serde_json::from_str(&msg.payload).map_err(|e| EffectError::permanent(format!("unreadable message: {e}")))?;
    let intent = match stored {
        StoredMessage::Rendered(effect) => return Ok(*effect),
        StoredMessage::Intent(intent) => intent,
    };
    let record = record(ctx, &intent.evidence_id, records).await?;
    let head = match ctx.log.head_covering(record.seq, ctx.now_ms()).await {
        Ok(head) => head.and_then(|h| h.verified(None).ok()),
        Err(e) => {
            tracing::warn!(error.message = %e, "no signed tree head for the comment");
            None
        }
    };
    let head = head.map(|h| format!("size {}, root {}", h.tree_size, h.root_hash));
    intent.render(&record, &ctx.renderer, format, head.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> WorkerSettings {
        WorkerSettings {
            enabled: true,
            decision_concurrency: 1,
            decision_batch: 1,
            poll_interval_ms: 10,
            lease_seconds: 60,
            retry_base_ms: 1000,
            retry_max_ms: 60_000,
            max_attempts: 5,
            drift_interval_seconds: 3600,
            sweep_batch: 100,
            outbox_concurrency: 1,
            outbox_batch: 1,
            deliveries_retention_days: 30,
            outbox_retention_days: 7,
            nice: 10,
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let s = settings();
        for _ in 0..50 {
            let first = retry_delay_ms(1, &s);
            assert!((500..=1000).contains(&first), "{first}");
            let third = retry_delay_ms(3, &s);
            assert!((2000..=4000).contains(&third), "{third}");
            let late = retry_delay_ms(40, &s);
            assert!((30_000..=60_000).contains(&late), "{late}");
        }
    }
}
