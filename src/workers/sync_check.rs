//! The synchronous gate: the same policy and verifiers as the webhook path,
//! answered within a deadline for helpdesks that can stop a transition
//! before it happens (ServiceNow before-rules, Jira validators).

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use serde::Serialize;

use super::{Context, decisions::record_decision};
use crate::{
    adapters::content_key,
    domain::{Mode, TicketEvent, Verdict},
    store::NewDelivery,
};

/// What the caller is told.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SyncAnswer {
    pub allowed: bool,
    pub verdict: String,
    pub reasons: Vec<String>,
    pub evidence_id: Option<String>,
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

    fn from_record(record: &crate::store::EvidenceRecord) -> Self {
        let content = record.content();
        let mode = content["decision"]["mode"].as_str().unwrap_or("enforce");
        let reasons = content["decision"]["reasons"]
            .as_array()
            .map(|r| r.iter().filter_map(|x| x.as_str().map(String::from)).collect())
            .unwrap_or_default();
        SyncAnswer {
            // Only an enforcing policy stops a transition; warn and dry-run never do.
            allowed: record.verdict != Verdict::Blocked.as_str() || mode != Mode::Enforce.as_str(),
            verdict: record.verdict.clone(),
            reasons,
            evidence_id: Some(record.id.clone()),
        }
    }
}

/// Records the request as a delivery, decides it and answers within `deadline`.
/// Past the deadline the decision goes on and is recorded, but the answer is
/// "not allowed". A repeated request id gets the recorded answer.
pub async fn check_synchronously(
    ctx: Arc<Context>,
    event: TicketEvent,
    request_id: String,
    body: String,
    deadline: Duration,
) -> anyhow::Result<SyncAnswer> {
    let now = super::now_ms();
    // A check is identified by its request id alone: the same question asked
    // again (after the grant was fixed) must be answered afresh.
    let key = content_key(&request_id, body.as_bytes(), true);
    let stored = ctx
        .store
        .ingest(NewDelivery {
            source: event.ticket.source.clone(),
            delivery_id: request_id,
            body_sha256: key,
            received_at: now,
            event: serde_json::to_string(&event)?,
            body,
            lease_until: Some(now + ctx.settings.lease_seconds * 1000),
        })
        .await
        .context("Failed to store the check")?;
    if stored.duplicate {
        let record = ctx
            .store
            .evidence_for_delivery(&stored.id)
            .await
            .context("Failed to read the evidence")?;
        return Ok(record
            .as_ref()
            .map(SyncAnswer::from_record)
            .unwrap_or_else(SyncAnswer::still_running));
    }
    let work = tokio::spawn(async move {
        let event = match ctx.sources.get(&event.ticket.source) {
            Some(adapter) if event.fields.is_empty() => adapter.refresh(event).await.map_err(anyhow::Error::from)?,
            _ => event,
        };
        let decision = ctx.gate.decide(&event).await;
        record_decision(&ctx, &stored.id, &event, &decision).await
    });
    match tokio::time::timeout(deadline, work).await {
        Ok(Ok(Ok(Some(record)))) => Ok(SyncAnswer::from_record(&record)),
        Ok(Ok(Ok(None))) => Ok(SyncAnswer::still_running()),
        Ok(Ok(Err(e))) => Err(e),
        Ok(Err(join)) => Err(anyhow::anyhow!("the check failed: {join}")),
        Err(_) => Ok(SyncAnswer::still_running()),
    }
}
