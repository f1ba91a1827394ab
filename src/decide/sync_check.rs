//! The synchronous gate: the same decision service as every other trigger,
//! answered within a deadline for helpdesks that can stop a transition before
//! it happens (ServiceNow before-rules, Jira validators).

use std::{sync::Arc, time::Duration};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{DecideError, Decided, decide};
use crate::{
    context::Context,
    domain::{Mode, TicketEvent, Trigger, TriggerKind, Verdict},
    store::{EvidenceRecord, GateCheckClaim, StoreError},
};

/// What the caller is told.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct SyncAnswer {
    /// Whether the transition may go ahead. Only an enforcing policy's block says no.
    pub allowed: bool,
    /// `allowed`, `blocked`, `ungated`, or `pending` while verification still runs.
    pub verdict: String,
    /// Why, in the words of the rejection comment.
    pub reasons: Vec<String>,
    /// The evidence record of the decision, once there is one.
    pub evidence_id: Option<String>,
}

/// Why a check could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum SyncCheckError {
    #[error("request id {0:?} was already used by this caller for another question")]
    IdReused(String),
    #[error("Failed to claim the request id")]
    Store(#[source] StoreError),
    #[error(transparent)]
    Decide(#[from] DecideError),
    #[error("the check stopped unexpectedly")]
    Panicked(#[source] tokio::task::JoinError),
}

impl SyncAnswer {
    fn still_running() -> Self {
        SyncAnswer {
            allowed: false,
            verdict: "pending".into(),
            reasons: vec!["not allowed: verification still running; try again shortly".into()],
            evidence_id: None,
        }
    }

    fn from_record(record: &EvidenceRecord) -> Self {
        let reasons = match record.content() {
            Ok(content) => content.decision.reasons,
            Err(e) => vec![format!("the evidence record does not parse: {e}")],
        };
        SyncAnswer {
            // Only an enforcing policy stops a transition; warn and dry-run never do.
            allowed: record.verdict != Verdict::Blocked || record.mode != Mode::Enforce,
            verdict: record.verdict.as_str().to_string(),
            reasons,
            evidence_id: Some(record.id.clone()),
        }
    }
}

/// Decides `event` for `caller` and answers within `deadline`. Past the
/// deadline the decision goes on and is recorded, but the answer is "not
/// allowed". A request id lives in the caller's own namespace and is bound to
/// the body it came with: repeated with the same body it gets the recorded
/// answer; with another body it is refused.
pub async fn check_synchronously(
    ctx: Arc<Context>,
    caller: &str,
    request_id: &str,
    body: &[u8],
    event: TicketEvent,
    deadline: Duration,
) -> Result<SyncAnswer, SyncCheckError> {
    let question = hex::encode(Sha256::digest(body));
    let trigger = Trigger::new(TriggerKind::SyncCheck, format!("{caller}/{request_id}"));
    // A decision not recorded within a lease of its claim is presumed lost
    // with the replica that made it: a retry under the same id decides it.
    let now = ctx.now_ms();
    let stale_before = now - ctx.settings.lease_seconds * 1000;
    let claim = ctx
        .store
        .claim_gate_check(caller, request_id, &question, &trigger, now, stale_before)
        .await
        .map_err(SyncCheckError::Store)?;
    let claimed_at = match claim {
        GateCheckClaim::Conflict => return Err(SyncCheckError::IdReused(request_id.to_string())),
        GateCheckClaim::Repeat => return recorded_answer(&ctx, &trigger).await,
        GateCheckClaim::New { claimed_at } => claimed_at,
    };
    let (caller, request_id) = (caller.to_string(), request_id.to_string());
    let (task_ctx, task_trigger) = (ctx.clone(), trigger.clone());
    let work = tokio::spawn(async move {
        use futures_util::FutureExt as _;
        let (ctx, trigger) = (task_ctx, task_trigger);
        let decided = std::panic::AssertUnwindSafe(decide(&ctx, trigger.clone(), event))
            .catch_unwind()
            .await;
        if !matches!(decided, Ok(Ok(_))) {
            // Past the deadline too: the caller retries under the same id. The
            // cause is logged here, since past the deadline nobody else sees it.
            match &decided {
                Ok(Err(e)) => tracing::warn!(error.cause_chain = ?e, error.message = %e,
                    "the gate check could not be decided; its id is given back"),
                _ => tracing::error!("the gate check's decision panicked; its id is given back"),
            }
            if let Err(e) = ctx
                .store
                .release_gate_check(&caller, &request_id, claimed_at, &trigger)
                .await
            {
                tracing::error!(error.message = %e, "failed to give back a gate check's id");
            }
        }
        decided.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    });
    match tokio::time::timeout(deadline, work).await {
        Ok(Ok(Ok(Decided::Recorded(record)))) => Ok(SyncAnswer::from_record(&record)),
        // Another decider of the same id recorded first: its answer stands.
        Ok(Ok(Ok(_))) => recorded_answer(&ctx, &trigger).await,
        Ok(Ok(Err(e))) => Err(e.into()),
        Ok(Err(join)) => Err(SyncCheckError::Panicked(join)),
        Err(_) => Ok(SyncAnswer::still_running()),
    }
}

/// The answer recorded under `trigger`, or "still running" while there is none.
async fn recorded_answer(ctx: &Context, trigger: &Trigger) -> Result<SyncAnswer, SyncCheckError> {
    let record = ctx
        .store
        .evidence_for_trigger(trigger)
        .await
        .map_err(SyncCheckError::Store)?;
    Ok(record
        .as_ref()
        .map(SyncAnswer::from_record)
        .unwrap_or_else(SyncAnswer::still_running))
}
