//! `decide(trigger, event)`: the one path from a ticket event to a recorded
//! decision, whatever caused it.

use tracing::Instrument as _;

use super::Intent;
use crate::{
    adapters::EffectError,
    context::Context,
    domain::{Decision, EventKind, Mode, Observation, TicketEvent, TicketRef, Trigger, TriggerKind, Verdict},
    evidence::{EvidenceContent, Finding},
    gate::eval,
    store::{
        DeliveryOutcome, EvidenceRecord, Finish, NewClaim, NewEffect, NewEvidence, Recording, StoreError, TicketPast,
    },
};

/// What a call to [`decide`] came to.
// Made once per decision and taken apart at once: boxing the record would
// only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Decided {
    /// The decision, as recorded in the evidence log.
    Recorded(EvidenceRecord),
    /// The helpdesk's own record says the ticket is not closing after all; the
    /// delivery was finished without a decision.
    NotClosing,
    /// Another replica finished the delivery first; nothing was written.
    AlreadyFinished,
}

/// Why no decision could be recorded. Worth retrying: nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    #[error("Failed to re-read the ticket from the helpdesk")]
    Refresh(#[source] EffectError),
    #[error("Failed to record the decision")]
    Store(#[source] StoreError),
    #[error("Failed to encode or decode a stored document")]
    Encode(#[source] serde_json::Error),
    #[error("{0} is missing")]
    Missing(String),
}

/// Refreshes the ticket where the source requires it, runs the gate and writes
/// the evidence record, the outbox intents and (for a webhook) the end of the
/// delivery in one transaction.
pub async fn decide(ctx: &Context, trigger: Trigger, event: TicketEvent) -> Result<Decided, DecideError> {
    decide_as(ctx, trigger, event, Freshness::AsSent).await
}

/// Whether the event still has to be re-read from the helpdesk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// As the trigger delivered it: the source re-reads where it must.
    AsSent,
    /// Already re-read from the helpdesk by the caller: not read again.
    Reread,
}

/// [`decide`] for an event whose freshness the caller knows.
pub async fn decide_as(
    ctx: &Context,
    trigger: Trigger,
    event: TicketEvent,
    freshness: Freshness,
) -> Result<Decided, DecideError> {
    let span = tracing::info_span!("decide", trigger = %trigger, ticket = %event.ticket);
    let (kind, started) = (trigger.kind, std::time::Instant::now());
    let decided = decide_inner(ctx, trigger, event, freshness).instrument(span).await;
    if let Ok(Decided::Recorded(record)) = &decided {
        crate::metrics::decision(record.policy.as_deref(), record.verdict, kind, started.elapsed());
    }
    decided
}

async fn decide_inner(
    ctx: &Context,
    trigger: Trigger,
    event: TicketEvent,
    freshness: Freshness,
) -> Result<Decided, DecideError> {
    let adapter = ctx.sources.get(&event.ticket.source);
    // A synchronous caller that sent the fields is the helpdesk itself, asking
    // before the change; every other trigger reads the ticket as it is now.
    let refresh = freshness == Freshness::AsSent && (trigger.kind != TriggerKind::SyncCheck || event.fields.is_empty());
    let event = match adapter {
        Some(adapter) if refresh => adapter.refresh(event).await.map_err(DecideError::Refresh)?,
        _ => event,
    };
    let delivery = (trigger.kind == TriggerKind::Webhook).then(|| trigger.id.clone());
    if delivery.is_some() && !matches!(event.kind, EventKind::Closed | EventKind::ReadyToClose) {
        let delivery = delivery.unwrap_or_default();
        ctx.store
            .finish_delivery(&delivery, DeliveryOutcome::NotGated, ctx.now_ms())
            .await
            .map_err(DecideError::Store)?;
        tracing::debug!("the helpdesk says the ticket is not closing; not gated");
        return Ok(Decided::NotClosing);
    }
    let past = ctx.store.ticket_past(&event.ticket).await.map_err(DecideError::Store)?;
    if let Some(delivery) = &delivery
        && reconciled_already(&past, &event)?
    {
        // The reconciler judged this close when its webhook was late; a
        // second decision would post a second comment.
        ctx.store
            .finish_delivery(delivery, DeliveryOutcome::NotGated, ctx.now_ms())
            .await
            .map_err(DecideError::Store)?;
        tracing::info!("this close was already decided by the reconciler");
        return Ok(Decided::AlreadyFinished);
    }
    let decision = ctx
        .gate
        .decide(&event, &past.governed_by, &super::approvals::HelpdeskApprovals { ctx })
        .await;
    conclude(ctx, trigger, event, decision, delivery).await
}

/// Whether the reconciler already decided the close this event reports (the
/// same close instant).
fn reconciled_already(past: &TicketPast, event: &TicketEvent) -> Result<bool, DecideError> {
    let Some(closed_at) = event.occurred_at.as_deref() else {
        return Ok(false);
    };
    for record in &past.reconciled {
        let document: crate::evidence::SealedDocument = serde_json::from_str(record).map_err(DecideError::Encode)?;
        if document
            .content
            .event
            .occurred_at
            .as_deref()
            .is_some_and(|judged| crate::adapters::same_instant(judged, closed_at))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Records, as evidence, an edit of the labels or fields of a ticket that a
/// policy governs (or governed): what changed, and which delivery said so.
/// When the request is first seen or changed, answers it once with what it
/// still lacks (an intake note, updated rather than repeated). Finishes the
/// delivery as not gated either way.
pub async fn record_edit(
    ctx: &Context,
    trigger: Trigger,
    event: TicketEvent,
    governing: &[String],
) -> Result<Option<EvidenceRecord>, DecideError> {
    let mut delivery = (trigger.kind == TriggerKind::Webhook).then(|| (trigger.id.clone(), DeliveryOutcome::NotGated));
    // Tickets no policy governs are not followed: no snapshot, no write.
    let Some(policy) = governing.first() else {
        finish(ctx, delivery).await?;
        return Ok(None);
    };
    let (first_seen, changes) = snapshot_changes(ctx, &event).await?;
    let intake = match ctx.intake_notes && (first_seen || !changes.is_empty()) {
        true => intake_due(ctx, &trigger, &event, policy).await?,
        false => None,
    };
    let mut recorded = None;
    if !changes.is_empty() {
        let decision = Decision {
            notes: changes,
            ..Decision::note(policy, ctx.gate.policies().by_name(policy).map(|p| p.hash.clone()))
        };
        let id = uuid::Uuid::now_v7().to_string();
        let recording = Recording {
            delivery: delivery.take(),
            ..Recording::evidence(
                new_evidence(id, trigger.clone(), event.clone(), decision, Finding::Edit),
                Vec::new(),
            )
        };
        recorded = record(ctx, recording).await?;
    }
    if let Some((decision, speaks)) = intake {
        let id = uuid::Uuid::now_v7().to_string();
        let intents = match speaks {
            true => vec![Intent::for_intake(&event.ticket, &id)],
            false => Vec::new(),
        };
        let recording = Recording {
            delivery: delivery.take(),
            ..Recording::evidence(
                new_evidence(id, trigger, event, decision, Finding::Intake),
                encode(intents)?,
            )
        };
        recorded = record(ctx, recording).await?.or(recorded);
    }
    finish(ctx, delivery).await?;
    Ok(recorded)
}

/// Finishes a delivery that no record finished.
async fn finish(ctx: &Context, delivery: Option<(String, DeliveryOutcome)>) -> Result<(), DecideError> {
    if let Some((id, outcome)) = delivery {
        ctx.store
            .finish_delivery(&id, outcome, ctx.now_ms())
            .await
            .map_err(DecideError::Store)?;
    }
    Ok(())
}

/// The intake note a governed request is owed now, and whether it is said to
/// the helpdesk: `None` when it says what the last one said.
async fn intake_due(
    ctx: &Context,
    trigger: &Trigger,
    event: &TicketEvent,
    policy: &str,
) -> Result<Option<(Decision, bool)>, DecideError> {
    let Some(rule) = ctx.gate.policies().by_name(policy) else {
        return Ok(None);
    };
    let now = chrono::DateTime::from_timestamp_millis(ctx.now_ms()).unwrap_or_default();
    let answer = crate::gate::intake::intake(rule, event, now);
    let decision = Decision {
        reasons: answer.problems,
        notes: answer.needs,
        mode: rule.mode,
        ..Decision::note(policy, Some(rule.hash.clone()))
    };
    let last = ctx
        .store
        .evidence_for_ticket(&event.ticket.source, &event.ticket.key)
        .await
        .map_err(DecideError::Store)?
        .into_iter()
        .rev()
        .filter_map(|r| r.content().ok())
        .find(|c| c.finding == Finding::Intake);
    if last.is_some_and(|c| c.decision.reasons == decision.reasons && c.decision.notes == decision.notes) {
        return Ok(None);
    }
    let speaks = rule.mode != Mode::DryRun
        && trigger.kind.speaks_to_helpdesk()
        && ctx
            .sources
            .get(&event.ticket.source)
            .is_some_and(|a| a.delivers_effects() && a.takes_intake_notes());
    Ok(Some((decision, speaks)))
}

/// Stores the ticket's labels and fields: whether it is the first snapshot,
/// and what differs from the one before (nothing the first time).
async fn snapshot_changes(ctx: &Context, event: &TicketEvent) -> Result<(bool, Vec<String>), DecideError> {
    let mut labels: Vec<String> = event.labels.iter().map(|l| l.to_lowercase()).collect();
    labels.sort();
    labels.dedup();
    let snapshot = serde_json::json!({ "labels": labels, "fields": event.fields });
    let fields = snapshot["fields"].clone();
    let fields_changed =
        move |before: &str| serde_json::from_str::<serde_json::Value>(before).map_or(true, |b| b["fields"] != fields);
    let previous = ctx
        .store
        .swap_snapshot(&event.ticket, &snapshot.to_string(), ctx.now_ms(), fields_changed)
        .await
        .map_err(DecideError::Store)?;
    let changes = previous
        .as_deref()
        .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
        .map(|before| edits(&before, &snapshot))
        .unwrap_or_default();
    Ok((previous.is_none(), changes))
}

/// What differs between two snapshots of labels and fields, in words.
fn edits(before: &serde_json::Value, after: &serde_json::Value) -> Vec<String> {
    let set = |v: &serde_json::Value| -> std::collections::BTreeSet<String> {
        v["labels"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l.as_str().map(String::from))
            .collect()
    };
    let (was, now) = (set(before), set(after));
    let mut changes: Vec<String> = was.difference(&now).map(|l| format!("label {l:?} removed")).collect();
    changes.extend(now.difference(&was).map(|l| format!("label {l:?} added")));
    let empty = serde_json::Map::new();
    let fields = |v: &serde_json::Value| v["fields"].as_object().cloned().unwrap_or_else(|| empty.clone());
    let (old, new) = (fields(before), fields(after));
    let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for key in keys {
        match (old.get(key), new.get(key)) {
            (Some(a), Some(b)) if a != b => changes.push(format!("field {key} changed from {a} to {b}")),
            (Some(a), None) => changes.push(format!("field {key} removed (was {a})")),
            (None, Some(b)) => changes.push(format!("field {key} added: {b}")),
            _ => {}
        }
    }
    changes
}

/// Records a blocked "could not verify" decision for a ticket whose helpdesk
/// could not be asked after every retry: never a silent drop, never an allow.
pub async fn unverifiable(
    ctx: &Context,
    trigger: Trigger,
    event: TicketEvent,
    problem: &str,
) -> Result<Decided, DecideError> {
    let decision = eval::blocked_without_checks(
        None,
        Mode::Enforce,
        format!("could not verify: the ticket could not be re-read from the helpdesk ({problem})"),
    );
    let delivery = (trigger.kind == TriggerKind::Webhook).then(|| trigger.id.clone());
    conclude(ctx, trigger, event, decision, delivery).await
}

/// Records a decision with its outbox messages and claims.
async fn conclude(
    ctx: &Context,
    trigger: Trigger,
    event: TicketEvent,
    decision: Decision,
    delivery: Option<String>,
) -> Result<Decided, DecideError> {
    let id = uuid::Uuid::now_v7().to_string();
    let effects = encode(intents(ctx, &trigger, &event, &decision, &id))?;
    let now = ctx.now_ms();
    let claims = claims_verified(ctx, &event.ticket, &decision, now);
    let mut decision = decision;
    decision.next_check = claims
        .first()
        .and_then(|c| chrono::DateTime::from_timestamp_millis(c.next_sweep_at))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let recording = Recording {
        delivery: delivery.map(|d| (d, DeliveryOutcome::Decided)),
        claims,
        // The policy governs the ticket from now on, whatever its labels say.
        governed: decision.policy.iter().cloned().collect(),
        ..Recording::evidence(new_evidence(id, trigger, event, decision, Finding::Close), effects)
    };
    match record(ctx, recording).await? {
        Some(record) => Ok(Decided::Recorded(record)),
        None => Ok(Decided::AlreadyFinished),
    }
}

/// The evidence record of a decision about `event`.
pub(super) fn new_evidence(
    id: String,
    trigger: Trigger,
    event: TicketEvent,
    decision: Decision,
    finding: Finding,
) -> NewEvidence {
    NewEvidence {
        id,
        trigger,
        ticket: event.ticket.clone(),
        verdict: decision.verdict,
        policy: decision.policy.clone(),
        mode: decision.mode,
        content: EvidenceContent {
            event,
            decision,
            finding,
        },
    }
}

/// Writes a recording and wakes the outbox when it enqueued messages. `None`
/// when the delivery it finishes was finished by another replica.
pub(super) async fn record(ctx: &Context, recording: Recording) -> Result<Option<EvidenceRecord>, DecideError> {
    let mut recording = recording;
    recording.trace_id = recording.trace_id.or_else(crate::telemetry::current_trace_id);
    if let Some(evidence) = &recording.evidence {
        // Every record goes to every sink, in the record's own transaction.
        for sink in ctx.sinks.names() {
            let intent = crate::export::ExportIntent {
                export_to: sink.clone(),
                evidence_id: evidence.id.clone(),
            };
            recording.effects.push(NewEffect {
                idempotency_key: format!("export:{sink}:{}", evidence.id),
                payload: serde_json::to_string(&intent).map_err(DecideError::Encode)?,
                lane: Some(crate::export::lane(sink)),
            });
        }
    }
    // The lanes of the messages enqueued, each woken once the record is written.
    let mut lanes: Vec<String> = recording
        .effects
        .iter()
        .filter_map(|e| {
            e.lane
                .clone()
                .or_else(|| recording.evidence.as_ref().map(|r| r.ticket.source.clone()))
        })
        .collect();
    lanes.sort();
    lanes.dedup();
    let finished = ctx
        .store
        .record(recording, ctx.now_ms())
        .await
        .map_err(DecideError::Store)?;
    let Finish::Finished(record) = finished else {
        return Ok(None);
    };
    if let Some(record) = &record {
        tracing::info!(verdict = %record.verdict, mode = %record.mode,
            policy = record.policy.as_deref().unwrap_or("-"), evidence = %record.id, "decided");
    }
    for lane in &lanes {
        ctx.outbox_lanes.wake(lane);
    }
    Ok(record)
}

/// Outbox messages as stored.
pub(super) fn encode(intents: Vec<Intent>) -> Result<Vec<NewEffect>, DecideError> {
    intents
        .into_iter()
        .map(|intent| {
            Ok(NewEffect {
                idempotency_key: intent.key.clone(),
                payload: serde_json::to_string(&intent).map_err(DecideError::Encode)?,
                lane: None,
            })
        })
        .collect()
}

/// The claims an allowed decision verified (enforce, warn and dry-run alike).
fn claims_verified(ctx: &Context, ticket: &TicketRef, decision: &Decision, now: i64) -> Vec<NewClaim> {
    let (Verdict::Allowed, Some(policy), Some(policy_hash)) = (
        decision.verdict,
        decision.policy.as_ref(),
        decision.policy_hash.as_ref(),
    ) else {
        return Vec::new();
    };
    let valid_until = decision
        .valid_until
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_millis());
    // A break-glass close is verified by its deadline, by the sweep.
    let unverified_until = decision
        .exception
        .as_ref()
        .and_then(|e| chrono::DateTime::parse_from_rfc3339(&e.verify_by).ok())
        .map(|t| t.timestamp_millis());
    let next_sweep_at = unverified_until.unwrap_or(now + drift_interval_ms(ctx, policy));
    decision
        .checks
        .iter()
        .map(|check| NewClaim {
            id: uuid::Uuid::now_v7().to_string(),
            ticket: ticket.clone(),
            policy: policy.clone(),
            policy_hash: policy_hash.clone(),
            spec: check.spec.clone(),
            observation: check.observation.clone().unwrap_or_else(|| Observation {
                subject: String::new(),
                object: String::new(),
                exists: false,
                held: Default::default(),
                location: String::new(),
            }),
            verified_at: now,
            valid_until,
            next_sweep_at,
            unverified_until,
        })
        .collect()
}

/// How often a policy's claims are re-verified.
pub(super) fn drift_interval_ms(ctx: &Context, policy: &str) -> i64 {
    ctx.gate
        .policies()
        .by_name(policy)
        .and_then(|p| p.drift_interval)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(ctx.settings.drift_interval_seconds * 1000)
}

/// The outbox messages a decision owes the helpdesk: none for an ungated or
/// dry-run decision, for a trigger that answers elsewhere, or for a source
/// that cannot be written to.
fn intents(ctx: &Context, trigger: &Trigger, event: &TicketEvent, decision: &Decision, id: &str) -> Vec<Intent> {
    let speaks = decision.verdict != Verdict::Ungated
        && decision.mode != Mode::DryRun
        && trigger.kind.speaks_to_helpdesk()
        && !event.synchronous
        && ctx
            .sources
            .get(&event.ticket.source)
            .is_some_and(|a| a.delivers_effects());
    if !speaks {
        return Vec::new();
    }
    let reopen = decision.verdict == Verdict::Blocked && decision.mode == Mode::Enforce;
    vec![Intent::for_decision(
        &event.ticket,
        event.kind,
        event.occurred_at.as_deref(),
        reopen,
        id,
    )]
}
