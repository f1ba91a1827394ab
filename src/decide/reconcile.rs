//! The missed-delivery reconciler: lists what the helpdesk closed since the
//! source's watermark and decides every close closegate never received, as
//! trigger `reconcile`. A close that was received is not decided again, and a
//! close found here is decided once, whichever replica finds it.

use chrono::{DateTime, SecondsFormat, Utc};

use super::{DecideError, Decided, Freshness, decide_as};
use crate::{
    adapters::{EffectError, ListedClose},
    context::Context,
    domain::{EventKind, Trigger, TriggerKind},
    evidence::Finding,
    store::{StoreError, WatermarkLease},
};

/// What one pass over a source found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Reconciled {
    pub source: String,
    /// Closes the helpdesk listed since the watermark.
    pub listed: usize,
    /// Closes whose webhook never arrived, decided now.
    pub missed: Vec<String>,
    /// Closes left for a later pass: too recent, or deliveries of the source
    /// still wait to be decided, or the ticket could not be read.
    pub deferred: usize,
    /// Failed deliveries the helpdesk was asked to send again.
    pub redelivered: Vec<String>,
    /// The watermark after the pass (unix ms).
    pub watermark: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("no source named {0:?} is configured")]
    UnknownSource(String),
    #[error("another replica is reconciling {0} now")]
    Busy(String),
    #[error("the pass over {0} outlived its lease and another replica took the source over")]
    LeaseLost(String),
    #[error("Failed to list the closed tickets of {source}")]
    List {
        source: String,
        #[source]
        cause: EffectError,
    },
    #[error("Failed to read or move the watermark")]
    Store(#[source] StoreError),
    #[error("Failed to decide a missed close")]
    Decide(#[source] DecideError),
}

/// One pass over `source`: from its watermark, or from `since` when given
/// (the watermark never moves backwards).
pub async fn reconcile_source(
    ctx: &Context,
    source: &str,
    since: Option<DateTime<Utc>>,
) -> Result<Reconciled, ReconcileError> {
    let adapter = ctx
        .sources
        .get(source)
        .ok_or_else(|| ReconcileError::UnknownSource(source.to_string()))?;
    let now = ctx.now_ms();
    let initial = now - ctx.reconcile.initial_lookback_seconds * 1000;
    let lease_ms = ctx.settings.lease_seconds * 1000;
    let mut lease = ctx
        .store
        .claim_watermark(source, initial, now, lease_ms)
        .await
        .map_err(ReconcileError::Store)?
        .ok_or_else(|| ReconcileError::Busy(source.to_string()))?;
    let from = since.map_or(lease.watermark, |s| s.timestamp_millis());
    let result = pass(ctx, source, adapter.as_ref(), from, now, &mut lease, lease_ms).await;
    let moved = result.as_ref().ok().map(|r| r.watermark);
    if !matches!(result, Err(ReconcileError::LeaseLost(_)))
        && !ctx
            .store
            .release_watermark(source, lease, moved, ctx.now_ms())
            .await
            .map_err(ReconcileError::Store)?
    {
        tracing::warn!(
            source,
            "the reconcile pass outlived its lease; the watermark is left to the pass that took it"
        );
    }
    crate::metrics::reconciled(
        source,
        result.as_ref().map(|r| r.missed.len() as u64).map_err(|_| ()),
        now / 1000,
    );
    result
}

async fn pass(
    ctx: &Context,
    source: &str,
    adapter: &dyn crate::adapters::Adapter,
    from: i64,
    now: i64,
    lease: &mut WatermarkLease,
    lease_ms: i64,
) -> Result<Reconciled, ReconcileError> {
    let mut scopes = ctx.store.ticket_scopes(source).await.map_err(ReconcileError::Store)?;
    scopes.extend(ctx.reconcile.repositories.get(source).into_iter().flatten().cloned());
    scopes.sort();
    scopes.dedup();
    let since = DateTime::from_timestamp_millis(from).unwrap_or_default();
    let store = ctx.store.clone();
    let owner = source.to_string();
    let known = move |id: String| -> futures_util::future::BoxFuture<'static, bool> {
        let (store, owner) = (store.clone(), owner.clone());
        // A lookup that fails counts as received: nothing is asked twice for it.
        Box::pin(async move { store.delivery_received(&owner, &id).await.unwrap_or(true) })
    };
    let redelivered = match adapter.redeliver_failed(since, &known).await {
        Ok(asked) => asked,
        Err(e) => {
            tracing::warn!(source, error.message = %e, "could not ask for failed deliveries again; the listing still covers them");
            Vec::new()
        }
    };
    let mut listed = adapter
        .closed_since(since, &scopes)
        .await
        .map_err(|cause| ReconcileError::List {
            source: source.to_string(),
            cause,
        })?;
    listed.sort_by_key(|c| c.closed_at);
    listed.dedup();
    let upto = now - ctx.reconcile.grace_seconds * 1000;
    let waiting = ctx
        .store
        .pending_deliveries(source)
        .await
        .map_err(ReconcileError::Store)?
        > 0;
    let mut report = Reconciled {
        source: source.to_string(),
        listed: listed.len(),
        redelivered,
        watermark: upto.max(from),
        ..Reconciled::default()
    };
    for close in listed {
        let at = close.closed_at.timestamp_millis();
        if close_judged(ctx, source, &close.key, at)
            .await
            .map_err(ReconcileError::Store)?
        {
            continue;
        }
        // Too recent (its webhook may be on the way), or deliveries of this
        // source still wait to be decided: left for a later pass.
        if at > upto || waiting {
            report.deferred += 1;
            report.watermark = report.watermark.min(at - 1);
            continue;
        }
        // The lease is renewed before each decision, so that a long pass keeps
        // the source; a pass that lost it stops. Two passes deciding the same
        // close at once still record it once (the store refuses a second
        // record of a reconcile trigger).
        *lease = ctx
            .store
            .renew_watermark(source, *lease, ctx.now_ms() + lease_ms)
            .await
            .map_err(ReconcileError::Store)?
            .ok_or_else(|| ReconcileError::LeaseLost(source.to_string()))?;
        match decide_missed(ctx, source, adapter, &close).await {
            Ok(true) => report.missed.push(close.key),
            Ok(false) => {}
            Err(MissedError::Read(e)) => {
                tracing::warn!(ticket = %close.key, error.message = %e, "could not read a closed ticket; left for a later pass");
                report.deferred += 1;
                report.watermark = report.watermark.min(at - 1);
            }
            Err(MissedError::Decide(e)) => return Err(ReconcileError::Decide(e)),
        }
    }
    Ok(report)
}

/// How far apart the helpdesk's clock and ours may be when a decision is
/// matched to the close it judged.
const SKEW_MS: i64 = 2_000;

/// Whether a close of the ticket was judged at or after `closed_at` (ms): a
/// close record, whatever its trigger. Other records about the ticket (an
/// edit, a drift check) do not count: a webhook that arrived for something
/// else says nothing about the close. A record that does not parse does not
/// count either, so the close is judged again rather than passed.
async fn close_judged(ctx: &Context, source: &str, key: &str, closed_at: i64) -> Result<bool, StoreError> {
    let records = ctx.store.evidence_for_ticket(source, key).await?;
    Ok(records
        .iter()
        .filter(|r| r.created_at >= closed_at - SKEW_MS)
        .any(|r| r.content().is_ok_and(|c| c.finding == Finding::Close)))
}

enum MissedError {
    Read(EffectError),
    Decide(DecideError),
}

/// Decides one close nobody told closegate about. `false` when there was
/// nothing to decide: already decided by this trigger, or no longer closed.
async fn decide_missed(
    ctx: &Context,
    source: &str,
    adapter: &dyn crate::adapters::Adapter,
    close: &ListedClose,
) -> Result<bool, MissedError> {
    let closed_at = close.closed_at.to_rfc3339_opts(SecondsFormat::Secs, true);
    let trigger = Trigger::new(TriggerKind::Reconcile, format!("{source}:{}@{closed_at}", close.key));
    let decided = ctx
        .store
        .evidence_for_trigger(&trigger)
        .await
        .map_err(|e| MissedError::Decide(DecideError::Store(e)))?;
    if decided.is_some() {
        return Ok(false);
    }
    let ticket = crate::domain::TicketRef {
        source: source.to_string(),
        key: close.key.clone(),
    };
    let mut event = adapter.read_close(&ticket).await.map_err(MissedError::Read)?;
    if event.kind != EventKind::Closed {
        tracing::info!(ticket = %close.key, "closed, then reopened before its close was found: nothing to judge");
        return Ok(false);
    }
    event.occurred_at.get_or_insert(closed_at);
    tracing::warn!(ticket = %close.key, "a close whose webhook never arrived; deciding it now");
    match decide_as(ctx, trigger, event, Freshness::Reread)
        .await
        .map_err(MissedError::Decide)?
    {
        Decided::Recorded(_) => Ok(true),
        Decided::NotClosing | Decided::AlreadyFinished => Ok(false),
    }
}
