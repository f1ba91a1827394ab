//! Stored deliveries waiting for a decision: claimed under a lease, finished
//! in one transaction with the evidence and outbox messages they cause.

use super::{EvidenceRecord, Store, StoreResult, with_pool};

/// A delivery claimed by this replica until its lease runs out.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedDelivery {
    pub id: String,
    pub source: String,
    pub delivery_id: String,
    pub event: String,
    pub attempts: i64,
    pub received_at: i64,
    pub trace_id: Option<String>,
}

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Not a close (opened, labelled, comment, ping...): recorded only.
    NotGated,
    /// Caused by closegate itself: ignored.
    OwnEcho,
    /// Decided: an evidence record was written.
    Decided,
}

impl DeliveryOutcome {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            DeliveryOutcome::NotGated => "not_gated",
            DeliveryOutcome::OwnEcho => "own_echo",
            DeliveryOutcome::Decided => "decided",
        }
    }
}

/// What `finish_delivery` did.
#[derive(Debug)]
pub enum Finish {
    /// Finished now, with the evidence record written (if any).
    Finished(Option<EvidenceRecord>),
    /// Someone else finished it first; nothing was written.
    AlreadyFinished,
}

const CLAIM: &str = "UPDATE deliveries SET lease_until = $1, attempts = attempts + 1 \
    WHERE id = (SELECT id FROM deliveries WHERE state = 'pending' \
        AND (lease_until IS NULL OR lease_until < $2) ORDER BY received_at LIMIT 1 {lock}) \
    AND state = 'pending' AND (lease_until IS NULL OR lease_until < $2) \
    RETURNING id, source, delivery_id, event, attempts, received_at, trace_id";

impl Store {
    /// Claims the oldest undecided delivery for `lease_ms`.
    pub async fn claim_delivery(&self, now: i64, lease_ms: i64) -> StoreResult<Option<ClaimedDelivery>> {
        let sql = self.with_claim_lock(CLAIM);
        Ok(with_pool!(&self.db, write, |pool| {
            sqlx::query_as(&sql)
                .bind(now + lease_ms)
                .bind(now)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Marks a claimed delivery done without a decision (not a close, or
    /// closegate's own echo). Nothing happens when another replica finished it.
    pub async fn finish_delivery(&self, delivery: &str, outcome: DeliveryOutcome, now: i64) -> StoreResult<Finish> {
        self.record(
            super::Recording {
                delivery: Some((delivery.to_string(), outcome)),
                ..Default::default()
            },
            now,
        )
        .await
    }

    /// Gives a claimed delivery back after an unexpected error; it is retried
    /// after `retry_at`.
    pub async fn release_delivery(&self, delivery: &str, error: &str, retry_at: i64) -> StoreResult<()> {
        const SQL: &str = "UPDATE deliveries SET lease_until = $1, last_error = $2 \
            WHERE id = $3 AND state = 'pending'";
        with_pool!(&self.db, write, |pool| {
            sqlx::query(SQL)
                .bind(retry_at)
                .bind(error)
                .bind(delivery)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}
