//! Deciding stored deliveries, one at a time per worker, after the ack.

use anyhow::Context as _;
use serde_json::json;
use tracing::Instrument as _;

use super::{Context, ExecutionOutcome, outbox::retry_delay_ms};
use crate::{
    adapters::Effect,
    domain::{Decision, EventKind, Mode, TicketEvent, Verdict},
    render::CommentFormat,
    store::{ClaimedDelivery, DeliveryOutcome, EvidenceRecord, Finish, NewEffect, NewEvidence},
};

/// Claims the oldest undecided delivery and decides it.
pub async fn try_decide_next(ctx: &Context, now: i64) -> anyhow::Result<ExecutionOutcome> {
    let lease_ms = ctx.settings.lease_seconds * 1000;
    let Some(claimed) = ctx
        .store
        .claim_delivery(now, lease_ms)
        .await
        .context("Failed to claim a delivery")?
    else {
        return Ok(ExecutionOutcome::EmptyQueue);
    };
    let span = tracing::info_span!("decision", delivery = %claimed.id, source = %claimed.source,
        delivery_id = %claimed.delivery_id);
    if let Err(e) = decide(ctx, &claimed).instrument(span.clone()).await {
        span.in_scope(|| tracing::error!(error.cause_chain = ?e, error.message = %e, "decision failed; will retry"));
        let retry_at = super::now_ms() + retry_delay_ms(claimed.attempts, &ctx.settings);
        ctx.store
            .release_delivery(&claimed.id, &format!("{e:#}"), retry_at)
            .await
            .context("Failed to release a delivery")?;
    }
    Ok(ExecutionOutcome::TaskCompleted)
}

async fn decide(ctx: &Context, claimed: &ClaimedDelivery) -> anyhow::Result<()> {
    let mut event: TicketEvent = serde_json::from_str(&claimed.event).context("Failed to read the stored event")?;
    track_state(ctx, &claimed.id, &mut event).await?;
    let not_gated = match (event.caused_by_gate, event.kind) {
        (true, _) => Some(DeliveryOutcome::OwnEcho),
        (false, EventKind::Closed | EventKind::ReadyToClose) => None,
        (false, _) => Some(DeliveryOutcome::NotGated),
    };
    let adapter = ctx.sources.get(&claimed.source);
    let event = match (not_gated, adapter) {
        (None, Some(adapter)) => adapter.refresh(event).await.context("Failed to re-read the ticket")?,
        (_, _) => event,
    };
    let not_gated = not_gated.or(match event.kind {
        EventKind::Closed | EventKind::ReadyToClose => None,
        // The helpdesk's own record says the ticket is no longer closing.
        _ => Some(DeliveryOutcome::NotGated),
    });
    if let Some(outcome) = not_gated {
        ctx.store
            .finish_delivery(&claimed.id, outcome, None, super::now_ms(), |_| Vec::new())
            .await
            .context("Failed to record a delivery")?;
        tracing::debug!(ticket = %event.ticket, ?outcome, "recorded, not gated");
        return Ok(());
    }
    let decision = ctx.gate.decide(&event).await;
    record_decision(ctx, &claimed.id, &event, &decision).await?;
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
            super::now_ms(),
        )
        .await
        .context("Failed to record the ticket state")?;
    if event.kind == EventKind::Closed && event.old_state.is_none() && was_closed == Some(true) {
        event.kind = EventKind::Other;
    }
    Ok(())
}

/// Writes the decision's evidence record and, unless the decision was asked
/// for synchronously or says nothing, the outbox message carrying it back; all
/// in one transaction that also finishes the delivery.
pub(crate) async fn record_decision(
    ctx: &Context,
    delivery: &str,
    event: &TicketEvent,
    decision: &Decision,
) -> anyhow::Result<Option<EvidenceRecord>> {
    let adapter = ctx.sources.get(&event.ticket.source);
    let speaks = !matches!(decision.verdict, Verdict::Ungated) && decision.mode != Mode::DryRun;
    let deliver = speaks && !event.synchronous && adapter.is_some_and(|a| a.delivers_effects());
    let evidence = NewEvidence {
        id: uuid::Uuid::now_v7().to_string(),
        delivery: delivery.to_string(),
        source: event.ticket.source.clone(),
        ticket: event.ticket.key.clone(),
        verdict: decision.verdict.as_str().to_string(),
        policy: decision.policy.clone(),
        mode: decision.mode.as_str().to_string(),
        content: json!({ "event": event, "decision": decision }),
    };
    let now = super::now_ms();
    let finished = ctx
        .store
        .finish_delivery(delivery, DeliveryOutcome::Decided, Some(evidence), now, |record| {
            if !deliver {
                return Vec::new();
            }
            let effect = effect_for(ctx, event, decision, &record.id, &record.hash, now);
            match serde_json::to_string(&effect) {
                Ok(payload) => vec![NewEffect {
                    idempotency_key: effect.key,
                    payload,
                }],
                Err(_) => Vec::new(),
            }
        })
        .await
        .context("Failed to record the decision")?;
    let Finish::Finished(record) = finished else {
        return Ok(None);
    };
    if let Some(record) = &record {
        tracing::info!(ticket = %event.ticket, verdict = decision.verdict.as_str(), mode = decision.mode.as_str(),
            policy = decision.policy.as_deref().unwrap_or("-"), evidence = %record.id, "decided");
    }
    if deliver {
        ctx.effects_enqueued.notify_one();
    }
    Ok(record)
}

fn effect_for(ctx: &Context, event: &TicketEvent, decision: &Decision, id: &str, hash: &str, now: i64) -> Effect {
    let decided_at = chrono::DateTime::from_timestamp_millis(now)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let format = ctx
        .sources
        .get(&event.ticket.source)
        .map(|a| a.comment_format())
        .unwrap_or(CommentFormat::Markdown);
    let comment = ctx
        .renderer
        .decision(format, event, decision, &decided_at, id, hash)
        .unwrap_or_else(|e| {
            tracing::error!(error.message = %e, "comment template failed; posting the plain form");
            format!(
                "closegate: {} under policy {} ({}). {}\nEvidence record {id}, hash {hash}.",
                decision.verdict.as_str(),
                decision.policy.as_deref().unwrap_or("none"),
                decision.mode.as_str(),
                decision.reasons.join("; ")
            )
        });
    let pre_verification = event.kind == EventKind::ReadyToClose;
    Effect {
        pre_verification,
        key: format!("cg-{id}"),
        ticket: event.ticket.clone(),
        verdict: decision.verdict,
        mode: decision.mode,
        reopen: !pre_verification && decision.verdict == Verdict::Blocked && decision.mode == Mode::Enforce,
        closed_at: event.occurred_at.clone(),
        comment,
        policy: decision.policy.clone(),
        reasons: decision.reasons.clone(),
        evidence_id: id.to_string(),
        evidence_hash: hash.to_string(),
    }
}
