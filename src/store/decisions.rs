//! Recording a decision: the evidence record, the outbox messages it causes and
//! the end of the delivery that triggered it (if any), in one transaction.

use super::{
    DeliveryOutcome, EvidenceRecord, Finish, NewEffect, NewEvidence, Store, StoreResult, evidence::append_evidence_sql,
    outbox::ENQUEUE, with_pool,
};

/// What one transaction writes.
#[derive(Debug, Clone)]
pub struct Recording {
    /// The claimed delivery this finishes, and how it ended.
    pub delivery: Option<(String, DeliveryOutcome)>,
    pub evidence: Option<NewEvidence>,
    /// Outbox messages, enqueued only with an evidence record.
    pub effects: Vec<NewEffect>,
}

impl Store {
    /// Writes a recording. When it finishes a delivery that another replica
    /// finished first, nothing is written and `AlreadyFinished` is returned.
    pub async fn record(&self, recording: Recording, now: i64) -> StoreResult<Finish> {
        const DONE: &str = "UPDATE deliveries SET state = 'done', outcome = $1, evidence_id = $2, \
            decided_at = $3, lease_until = NULL WHERE id = $4 AND state = 'pending'";
        let evidence_id = recording.evidence.as_ref().map(|e| e.id.clone());
        with_pool!(&self.db, write, |pool| {
            let mut tx = pool.begin().await?;
            if let Some((delivery, outcome)) = &recording.delivery {
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
            }
            let mut record = None;
            if let Some(new) = recording.evidence {
                let sql = append_evidence_sql();
                let head: (i64, String) = sqlx::query_as(sql.bump_head).fetch_one(&mut *tx).await?;
                let rec = EvidenceRecord::seal(new, head.0, head.1, now)?;
                sqlx::query(sql.insert)
                    .bind(&rec.id)
                    .bind(rec.seq)
                    .bind(rec.trigger.kind.as_str())
                    .bind(&rec.trigger.id)
                    .bind(&rec.source)
                    .bind(&rec.ticket)
                    .bind(rec.verdict.as_str())
                    .bind(&rec.policy)
                    .bind(rec.mode.as_str())
                    .bind(&rec.record)
                    .bind(rec.created_at)
                    .bind(&rec.prev_hash)
                    .bind(&rec.hash)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(sql.set_head_hash).bind(&rec.hash).execute(&mut *tx).await?;
                for effect in &recording.effects {
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
}
