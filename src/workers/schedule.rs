//! Scheduled re-verification, driven by rows in the store (never in-memory
//! timers), so it fires on time after a restart and exactly once across
//! replicas: claims due at their expiry, and claims due for the drift sweep.

use anyhow::Context as _;

use super::{ExecutionOutcome, retry_delay_ms};
use crate::{
    context::Context,
    decide::recheck,
    domain::{Trigger, TriggerKind},
    store::ClaimFilter,
};

/// Claims one decision's claims whose expiry is due and verifies the access is gone.
pub async fn try_expire_next(ctx: &Context) -> anyhow::Result<ExecutionOutcome> {
    let lease_ms = ctx.settings.lease_seconds * 1000;
    let claims = ctx
        .store
        .claim_expiry(ctx.now_ms(), lease_ms)
        .await
        .context("Failed to claim due expiries")?;
    let Some(first) = claims.first() else {
        return Ok(ExecutionOutcome::EmptyQueue);
    };
    let attempts = first.expiry_attempts;
    let ids: Vec<String> = claims.iter().map(|c| c.id.clone()).collect();
    let trigger = Trigger::new(TriggerKind::Expiry, format!("attempt-{attempts}"));
    if let Err(e) = recheck(ctx, trigger, claims, /* dry_run */ false).await {
        tracing::error!(error.cause_chain = ?e, error.message = %e, "expiry check failed; will retry");
        let retry_at = ctx.now_ms() + retry_delay_ms(attempts, &ctx.settings);
        ctx.store
            .release_claims(&ids, retry_at)
            .await
            .context("Failed to release claims")?;
    }
    Ok(ExecutionOutcome::TaskCompleted)
}

/// Claims a batch of active claims due for re-verification and checks them.
pub async fn try_sweep_next(ctx: &Context) -> anyhow::Result<ExecutionOutcome> {
    let now = ctx.now_ms();
    let lease_ms = ctx.settings.lease_seconds * 1000;
    let claims = ctx
        .store
        .claim_sweep(&ClaimFilter::default(), now, now, lease_ms, ctx.settings.sweep_batch)
        .await
        .context("Failed to claim claims due for the sweep")?;
    if claims.is_empty() {
        return Ok(ExecutionOutcome::EmptyQueue);
    }
    let trigger = Trigger::new(TriggerKind::Sweep, uuid::Uuid::now_v7().to_string());
    recheck(ctx, trigger, claims, /* dry_run */ false)
        .await
        .context("Failed to re-verify claims")?;
    Ok(ExecutionOutcome::TaskCompleted)
}
