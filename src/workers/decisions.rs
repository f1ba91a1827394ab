//! Deciding stored deliveries after the ack: claim one under a lease, sort out
//! what is not a close, hand the rest to the decision service.

use anyhow::Context as _;
use tracing::Instrument as _;

use super::{ExecutionOutcome, outbox::retry_delay_ms};
use crate::{
    context::Context,
    decide::{DecideError, Freshness, decide_as, record_edit, unverifiable},
    domain::{EventKind, TicketEvent, Trigger, TriggerKind},
    store::{ClaimedDelivery, DeliveryOutcome},
};

/// Claims the oldest undecided delivery and decides it.
pub async fn try_decide_next(ctx: &Context) -> anyhow::Result<ExecutionOutcome> {
    try_decide_batch(ctx, 1).await
}

/// Claims up to `limit` of the oldest undecided deliveries in one statement and
/// decides them side by side: the deliveries of one ticket one after another,
/// in the order they arrived; different tickets at once, so that their checks
/// on one system travel together (see `verifiers::coalesce`) and their
/// records share a commit.
pub async fn try_decide_batch(ctx: &Context, limit: usize) -> anyhow::Result<ExecutionOutcome> {
    super::give_way_to_acks(ctx).await;
    let lease_ms = ctx.settings.lease_seconds * 1000;
    let claimed_at = ctx.now_ms();
    let claimed = ctx
        .store
        .claim_deliveries(claimed_at, lease_ms, limit)
        .await
        .context("Failed to claim deliveries")?;
    if claimed.is_empty() {
        return Ok(ExecutionOutcome::EmptyQueue);
    }
    let deciding: std::sync::Mutex<std::collections::HashSet<String>> =
        std::sync::Mutex::new(claimed.iter().map(|c| c.id.clone()).collect());
    let tickets = by_ticket(claimed);
    let decisions = futures_util::future::join_all(tickets.into_iter().map(|deliveries| {
        let deciding = &deciding;
        async move {
            for claimed in deliveries {
                let id = claimed.id.clone();
                let decided = decide_claimed(ctx, claimed).await;
                deciding.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                decided?;
            }
            anyhow::Ok(())
        }
    }));
    // Decisions that run long (a slow system, a settle window, one ticket's
    // deliveries one after another) renew the lease on what is still being
    // decided every third of it, so that no other worker takes it over. The
    // renewal runs beside the decisions, never instead of polling them: a
    // decision may be holding the store's one write connection meanwhile.
    let renewing = async {
        let every = std::time::Duration::from_millis((lease_ms / 3).max(1) as u64);
        let mut held = claimed_at + lease_ms;
        loop {
            tokio::time::sleep(every).await;
            let ids: Vec<String> = deciding
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned()
                .collect();
            let until = ctx.now_ms() + lease_ms;
            match ctx.store.renew_deliveries(&ids, held, until).await {
                Ok(()) => held = until,
                Err(e) => {
                    tracing::warn!(error.message = %e, "could not renew the lease on deliveries being decided; trying again")
                }
            }
        }
    };
    let decided = tokio::select! {
        decided = decisions => decided,
        _ = renewing => unreachable!("the renewal loops until the decisions end"),
    };
    decided.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    Ok(ExecutionOutcome::TaskCompleted)
}

/// The deliveries grouped by ticket, each group in arrival order. A delivery
/// whose stored event does not parse is a group of its own (it fails alone).
fn by_ticket(claimed: Vec<ClaimedDelivery>) -> Vec<Vec<ClaimedDelivery>> {
    #[derive(serde::Deserialize)]
    struct Ticket {
        ticket: crate::domain::TicketRef,
    }
    super::grouped(claimed, |delivery| {
        serde_json::from_str::<Ticket>(&delivery.event)
            .map(|t| (t.ticket.source, t.ticket.key))
            .unwrap_or_else(|_| (String::new(), delivery.id.clone()))
    })
}

/// Decides one claimed delivery in its sender's trace; on an unexpected error
/// gives it back to be retried later.
async fn decide_claimed(ctx: &Context, claimed: ClaimedDelivery) -> anyhow::Result<()> {
    let trace_id = claimed
        .trace_id
        .clone()
        .unwrap_or_else(|| crate::telemetry::trace_id_from(None));
    let span = tracing::info_span!("decision", delivery = %claimed.id, source = %claimed.source,
        delivery_id = %claimed.delivery_id, trace_id = %trace_id);
    crate::telemetry::adopt_trace(&span, &trace_id);
    let decided = crate::telemetry::in_trace(trace_id, run(ctx, &claimed).instrument(span.clone())).await;
    if let Err(e) = decided {
        span.in_scope(|| tracing::error!(error.cause_chain = ?e, error.message = %e, "decision failed; will retry"));
        let retry_at = ctx.now_ms() + retry_delay_ms(claimed.attempts, &ctx.settings);
        ctx.store
            .release_delivery(&claimed.id, &format!("{e:#}"), retry_at)
            .await
            .context("Failed to release a delivery")?;
    }
    Ok(())
}

async fn run(ctx: &Context, claimed: &ClaimedDelivery) -> anyhow::Result<()> {
    let mut event: TicketEvent = serde_json::from_str(&claimed.event).context("Failed to read the stored event")?;
    let trigger = Trigger::new(TriggerKind::Webhook, claimed.id.clone());
    let mut freshness = Freshness::AsSent;
    if let Some(adapter) = ctx.sources.get(&claimed.source).filter(|a| !a.trusts_body()) {
        // Nothing in an unsigned body (own-echo flag, state, fields) is used
        // before the helpdesk's own record confirms it.
        event = match adapter.refresh(event.clone()).await {
            Ok(fresh) => fresh,
            Err(e) if claimed.attempts >= ctx.settings.max_attempts => {
                tracing::error!(error.message = %e, "the ticket cannot be re-read; recording could not verify");
                unverifiable(ctx, trigger, event, &e.to_string()).await?;
                return Ok(());
            }
            Err(e) => return Err(anyhow::Error::new(e).context("Failed to re-read the ticket")),
        };
        freshness = Freshness::Reread;
    }
    track_state(ctx, &claimed.id, &mut event).await?;
    let not_gated = match (event.caused_by_gate, event.kind) {
        (true, _) => Some(DeliveryOutcome::OwnEcho),
        (false, EventKind::Closed | EventKind::ReadyToClose) => None,
        (false, _) => Some(DeliveryOutcome::NotGated),
    };
    if event.kind == EventKind::Reopened && !event.caused_by_gate {
        suspend_claims(ctx, event.clone(), freshness).await?;
    }
    if not_gated == Some(DeliveryOutcome::NotGated) {
        // Learn which tickets are access requests when they are opened or
        // edited, and record edits of governed tickets as evidence.
        let mut governing: Vec<String> = ctx
            .gate
            .policies()
            .governing(&event)
            .iter()
            .map(|p| p.name.clone())
            .collect();
        ctx.store
            .remember_governed(&event.ticket, &governing, ctx.now_ms())
            .await
            .context("Failed to remember a governed ticket")?;
        if governing.is_empty() {
            governing = ctx
                .store
                .governed_by(&event.ticket)
                .await
                .context("Failed to read the policies that governed a ticket")?;
        }
        record_edit(ctx, trigger, event, &governing)
            .await
            .context("Failed to record an edit")?;
        return Ok(());
    }
    if let Some(outcome) = not_gated {
        ctx.store
            .finish_delivery(&claimed.id, outcome, ctx.now_ms())
            .await
            .context("Failed to record a delivery")?;
        tracing::debug!(ticket = %event.ticket, ?outcome, "recorded, not gated");
        return Ok(());
    }
    match decide_as(ctx, trigger.clone(), event.clone(), freshness).await {
        Err(DecideError::Refresh(e)) if claimed.attempts >= ctx.settings.max_attempts => {
            tracing::error!(error.message = %e, "the ticket cannot be re-read; recording could not verify");
            unverifiable(ctx, trigger, event, &e.to_string()).await?;
        }
        other => {
            other?;
        }
    }
    Ok(())
}

/// A person reopened the ticket: its claims are not checked until it closes
/// again. The helpdesk's own record must agree, so an unsigned body cannot
/// switch the checks off.
async fn suspend_claims(ctx: &Context, event: TicketEvent, freshness: Freshness) -> anyhow::Result<()> {
    let event = match (ctx.sources.get(&event.ticket.source), freshness) {
        (_, Freshness::Reread) => event,
        (Some(adapter), Freshness::AsSent) => adapter.refresh(event).await.context("Failed to re-read the ticket")?,
        (None, _) => return Ok(()),
    };
    if event.kind == EventKind::Reopened {
        let n = ctx
            .store
            .suspend_claims(&event.ticket)
            .await
            .context("Failed to suspend claims")?;
        if n > 0 {
            tracing::info!(ticket = %event.ticket, claims = n, "ticket reopened; claims suspended");
        }
    }
    Ok(())
}

/// For helpdesks that send only the new state: remembers each ticket's state,
/// and a "close" of a ticket that was already closed is not a close.
async fn track_state(ctx: &Context, delivery: &str, event: &mut TicketEvent) -> anyhow::Result<()> {
    let (Some(closed), Some(state)) = (event.state_closed, event.new_state.as_deref()) else {
        return Ok(());
    };
    let was_closed = ctx
        .store
        .swap_ticket_state(
            &event.ticket.source,
            &event.ticket.key,
            delivery,
            state,
            closed,
            ctx.now_ms(),
        )
        .await
        .context("Failed to record the ticket state")?;
    if event.kind == EventKind::Closed && event.old_state.is_none() && was_closed == Some(true) {
        event.kind = EventKind::Other;
    }
    Ok(())
}
