//! Re-verifying what allowed decisions verified: at a claim's expiry (the
//! grant must now be gone) and in the drift sweep (it must still match).
//! Every batch is verified in one round trip per system; a ticket's claims
//! lead to at most one evidence record per batch, and only when something
//! changed: a new drift, a drift resolved, an expiry verified or not.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{
    DecideError, Intent,
    service::{drift_interval_ms, encode, new_evidence, record},
};
use crate::{
    context::Context,
    domain::{CheckOutcome, CheckResult, CheckSpec, EventKind, Expect, Mode, Trigger, TriggerKind},
    evidence::Finding,
    gate::eval,
    policy::OnDrift,
    store::{Claim, ClaimState, ClaimUpdate, Recording},
    workers::retry_delay_ms,
};

/// What a batch of re-verifications found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RecheckSummary {
    pub checked: u64,
    /// Still as the ticket says (or, after expiry, verified gone).
    pub held: u64,
    /// Newly drifted (a drift already reported is not counted again).
    pub drifted: u64,
    /// Still drifted as already reported.
    pub still_drifted: u64,
    pub resolved: u64,
    pub could_not_verify: u64,
}

impl std::ops::AddAssign for RecheckSummary {
    fn add_assign(&mut self, o: Self) {
        self.checked += o.checked;
        self.held += o.held;
        self.drifted += o.drifted;
        self.still_drifted += o.still_drifted;
        self.resolved += o.resolved;
        self.could_not_verify += o.could_not_verify;
    }
}

/// What the state of the target must be now for a claim: as verified, or,
/// once its expiry has passed (or at the expiry check), gone.
pub fn expected_now(claim: &Claim, now: i64, at_expiry: bool) -> CheckSpec {
    let mut spec = claim.spec.clone();
    if at_expiry || claim.valid_until.is_some_and(|until| until <= now) {
        spec.expect = Expect::Absent;
    }
    spec
}

/// Re-verifies `claims` for `trigger`; with `dry_run` nothing is recorded.
pub async fn recheck(
    ctx: &Context,
    trigger: Trigger,
    claims: Vec<Claim>,
    dry_run: bool,
) -> Result<RecheckSummary, DecideError> {
    let now = ctx.now_ms();
    let at_expiry = trigger.kind == TriggerKind::Expiry;
    let specs = claims.iter().map(|c| expected_now(c, now, at_expiry)).collect();
    let results = ctx.gate.run_checks(specs).await;
    let mut by_decision: BTreeMap<String, Vec<(Claim, CheckResult)>> = BTreeMap::new();
    for (claim, result) in claims.into_iter().zip(results) {
        by_decision
            .entry(claim.evidence_id.clone())
            .or_default()
            .push((claim, result));
    }
    let mut summary = RecheckSummary::default();
    let mut unchanged = Vec::new();
    for (evidence_id, group) in by_decision {
        let outcome = judge_group(ctx, &group, now, at_expiry);
        summary += outcome.summary;
        if dry_run {
            continue;
        }
        match outcome.finding {
            None => unchanged.extend(outcome.updates),
            Some(finding) => {
                // A break-glass close checked at its deadline is recorded as such.
                let kind = if outcome.break_glass {
                    TriggerKind::BreakGlassDeadline
                } else {
                    trigger.kind
                };
                let trigger = Trigger::new(kind, format!("{}/{evidence_id}", trigger.id));
                let policy = group.first().map(|(c, _)| c.policy.clone()).unwrap_or_default();
                record_finding(ctx, trigger, &evidence_id, group, finding, outcome.updates).await?;
                if matches!(finding, Finding::Drift | Finding::DriftResolved) {
                    crate::metrics::drift(&policy, finding == Finding::DriftResolved);
                }
            }
        }
    }
    if !unchanged.is_empty() {
        let recording = Recording {
            claim_updates: unchanged,
            ..Recording::default()
        };
        record(ctx, recording).await?;
    }
    Ok(summary)
}

struct GroupOutcome {
    /// What to record, when something changed.
    finding: Option<Finding>,
    /// The claims are a break-glass close's, not yet verified.
    break_glass: bool,
    updates: Vec<ClaimUpdate>,
    summary: RecheckSummary,
}

/// Judges one decision's claims together.
fn judge_group(ctx: &Context, group: &[(Claim, CheckResult)], now: i64, at_expiry: bool) -> GroupOutcome {
    let mut summary = RecheckSummary::default();
    let break_glass = group.iter().any(|(c, _)| c.unverified_until.is_some());
    let mut new_drift = false;
    let mut resolved = false;
    let mut unverified = false;
    let mut updates = Vec::with_capacity(group.len());
    for (claim, result) in group {
        summary.checked += 1;
        let drift = match &result.outcome {
            CheckOutcome::Holds => {
                summary.held += 1;
                resolved |= claim.drift.is_some();
                None
            }
            CheckOutcome::Mismatch { reason } => {
                if claim.drift.as_deref() == Some(reason.as_str()) {
                    summary.still_drifted += 1;
                } else {
                    summary.drifted += 1;
                    new_drift = true;
                }
                Some(reason.clone())
            }
            CheckOutcome::CouldNotVerify { .. } => {
                summary.could_not_verify += 1;
                unverified = true;
                claim.drift.clone()
            }
        };
        let expired = at_expiry || claim.valid_until.is_some_and(|until| until <= now);
        let gone = expired && matches!(result.outcome, CheckOutcome::Holds);
        updates.push(ClaimUpdate {
            id: claim.id.clone(),
            state: if gone { ClaimState::Ended } else { ClaimState::Active },
            drift,
            checked_at: now,
            next_sweep_at: now + drift_interval_ms(ctx, &claim.policy),
            next_expiry_at: claim.next_expiry_at.filter(|_| !at_expiry),
            unverified_until: claim.unverified_until,
        });
    }
    let finding = if new_drift {
        Some(Finding::Drift)
    } else if at_expiry && unverified {
        Some(Finding::Unverified)
    } else if at_expiry {
        Some(Finding::Removed)
    } else if break_glass && summary.held == summary.checked {
        Some(Finding::BreakGlassVerified)
    } else if resolved && summary.held == summary.checked {
        Some(Finding::DriftResolved)
    } else {
        None
    };
    if matches!(finding, Some(Finding::Drift | Finding::BreakGlassVerified)) {
        // Decided by its deadline either way; from now on, an ordinary claim.
        for update in &mut updates {
            update.unverified_until = None;
        }
    }
    if finding == Some(Finding::Unverified) {
        // Never read as removed: the expiry check is tried again later.
        let attempts = group.iter().map(|(c, _)| c.expiry_attempts).max().unwrap_or(1);
        let retry_at = now + retry_delay_ms(attempts, &ctx.settings);
        for update in &mut updates {
            update.state = ClaimState::Active;
            update.next_expiry_at = Some(retry_at);
        }
    }
    GroupOutcome {
        finding,
        break_glass,
        updates,
        summary,
    }
}

/// Records what a re-verification found about one decision's claims, with the
/// comment (and reopen) it owes the ticket.
async fn record_finding(
    ctx: &Context,
    trigger: Trigger,
    evidence_id: &str,
    group: Vec<(Claim, CheckResult)>,
    finding: Finding,
    updates: Vec<ClaimUpdate>,
) -> Result<(), DecideError> {
    let original = ctx
        .store
        .evidence_by_id(evidence_id)
        .await
        .map_err(DecideError::Store)?
        .ok_or_else(|| DecideError::Missing(format!("evidence record {evidence_id}")))?;
    let original = original.content().map_err(DecideError::Encode)?;
    let (policy, policy_hash) = (group[0].0.policy.clone(), group[0].0.policy_hash.clone());
    let mode = original.decision.mode;
    let on_drift = ctx
        .gate
        .policies()
        .by_name(&policy)
        .map(|p| p.on_drift)
        .unwrap_or_default();
    let results = group.into_iter().map(|(_, r)| r).collect();
    let mut decision = eval::conclude(&policy, &policy_hash, mode, results);
    decision.valid_until = original.decision.valid_until.clone();
    let event = original.event;
    let id = uuid::Uuid::now_v7().to_string();
    let speaks = mode != Mode::DryRun
        && finding != Finding::Unverified
        && ctx
            .sources
            .get(&event.ticket.source)
            .is_some_and(|a| a.delivers_effects());
    let reopen = finding == Finding::Drift && on_drift == OnDrift::Reopen && mode == Mode::Enforce;
    let intents = if speaks {
        vec![Intent::for_decision(
            &event.ticket,
            EventKind::Closed,
            event.occurred_at.as_deref(),
            reopen,
            &id,
        )]
    } else {
        Vec::new()
    };
    let recording = Recording {
        claim_updates: updates,
        ..Recording::evidence(new_evidence(id, trigger, event, decision, finding), encode(intents)?)
    };
    record(ctx, recording).await?;
    Ok(())
}
