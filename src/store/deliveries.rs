//! Stored deliveries waiting for a decision: claimed under a lease, finished
//! in one transaction with the evidence and outbox messages they cause.

use super::{
    EvidenceRecord, NewEffect, NewEvidence, Store, StoreResult, evidence::append_evidence_sql, outbox::ENQUEUE,
    with_pool,
};

/// A delivery claimed by this replica until its lease runs out.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedDelivery {
    pub id: String,
    pub source: String,
    pub delivery_id: String,
    pub event: String,
    pub attempts: i64,
    pub received_at: i64,
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
    fn as_str(self) -> &'static str {
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
    RETURNING id, source, delivery_id, event, attempts, received_at";

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

    /// Marks a claimed delivery done and, in the same transaction, appends its
    /// evidence record and enqueues the effects `effects` builds from it.
    /// Nothing is written when another replica finished it first.
    pub async fn finish_delivery<F>(
        &self,
        delivery: &str,
        outcome: DeliveryOutcome,
        evidence: Option<NewEvidence>,
        now: i64,
        effects: F,
    ) -> StoreResult<Finish>
    where
        F: FnOnce(&EvidenceRecord) -> Vec<NewEffect>,
    {
        const DONE: &str = "UPDATE deliveries SET state = 'done', outcome = $1, evidence_id = $2, \
            decided_at = $3, lease_until = NULL WHERE id = $4 AND state = 'pending'";
        let evidence_id = evidence.as_ref().map(|e| e.id.clone());
        with_pool!(&self.db, write, |pool| {
            let mut tx = pool.begin().await?;
            let updated = sqlx::query(DONE)
                .bind(outcome.as_str())
                .bind(&evidence_id)
                .bind(now)
                .bind(delivery)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if updated == 0 {
                return Ok(Finish::AlreadyFinished);
            }
            let mut record = None;
            if let Some(new) = evidence {
                let sql = append_evidence_sql();
                let head: (i64, String) = sqlx::query_as(sql.bump_head).fetch_one(&mut *tx).await?;
                let rec = EvidenceRecord::seal(new, head.0, head.1, now)?;
                sqlx::query(sql.insert)
                    .bind(&rec.id)
                    .bind(rec.seq)
                    .bind(&rec.delivery)
                    .bind(&rec.source)
                    .bind(&rec.ticket)
                    .bind(&rec.verdict)
                    .bind(&rec.policy)
                    .bind(&rec.mode)
                    .bind(&rec.record)
                    .bind(rec.created_at)
                    .bind(&rec.prev_hash)
                    .bind(&rec.hash)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(sql.set_head_hash).bind(&rec.hash).execute(&mut *tx).await?;
                for effect in effects(&rec) {
                    sqlx::query(ENQUEUE)
                        .bind(uuid::Uuid::now_v7().to_string())
                        .bind(&effect.idempotency_key)
                        .bind(&rec.source)
                        .bind(&rec.ticket)
                        .bind(&rec.id)
                        .bind(&effect.payload)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                record = Some(rec);
            }
            tx.commit().await?;
            Ok(Finish::Finished(record))
        })
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
