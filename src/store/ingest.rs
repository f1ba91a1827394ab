//! The ack path's only write: one task owns it and commits whatever deliveries
//! are waiting in a single transaction (group commit).

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot};

use super::{Db, StoreError, StoreResult, with_pool};

/// Most deliveries committed together.
const MAX_BATCH: usize = 512;

/// An authenticated, parsed delivery ready to be stored.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub source: String,
    pub delivery_id: String,
    pub body_sha256: String,
    /// The trace it arrived in.
    pub trace_id: Option<String>,
    pub received_at: i64,
    /// The normalised event, as JSON.
    pub event: String,
    /// The raw body, as received.
    pub body: String,
    /// Set when the caller decides it itself (synchronous checks): workers leave
    /// it alone until then.
    pub lease_until: Option<i64>,
}

/// What the store did with a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestOutcome {
    /// The stored delivery's id (the first one's, for a duplicate).
    pub id: String,
    /// True when the delivery id or the exact body had been stored before.
    pub duplicate: bool,
}

pub(super) struct IngestJob {
    delivery: NewDelivery,
    reply: oneshot::Sender<StoreResult<IngestOutcome>>,
}

pub(super) fn spawn_writer(db: Db, stored: Arc<Notify>) -> mpsc::Sender<IngestJob> {
    let (tx, mut rx) = mpsc::channel::<IngestJob>(4 * MAX_BATCH);
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
            let deliveries: Vec<&NewDelivery> = batch.iter().map(|j| &j.delivery).collect();
            match write_batch(&db, &deliveries).await {
                Ok(outcomes) => {
                    for (job, outcome) in batch.drain(..).zip(outcomes) {
                        let _ = job.reply.send(Ok(outcome));
                    }
                    stored.notify_waiters();
                    stored.notify_one();
                }
                Err(e) => {
                    tracing::error!(error.message = %e, batch = batch.len(), "failed to commit deliveries");
                    let message = e.to_string();
                    for job in batch.drain(..) {
                        let _ = job.reply.send(Err(StoreError::Unavailable(message.clone())));
                    }
                }
            }
        }
    });
    tx
}

/// Stores a batch with multi-row statements of a few fixed sizes (so that each
/// is prepared once and reused); rows they did not insert (a known delivery id
/// or body) are looked up one by one.
async fn write_batch(db: &Db, deliveries: &[&NewDelivery]) -> StoreResult<Vec<IngestOutcome>> {
    const EXISTING: &str = "SELECT id FROM deliveries WHERE source = $1 \
        AND (delivery_id = $2 OR body_sha256 = $3) ORDER BY received_at LIMIT 1";
    let ids: Vec<String> = deliveries.iter().map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let rows: Vec<(&String, &&NewDelivery)> = ids.iter().zip(deliveries).collect();
    with_pool!(db, write, |pool| {
        let mut tx = pool.begin().await?;
        let mut inserted = std::collections::HashSet::with_capacity(rows.len());
        for chunk in fixed_chunks(&rows) {
            let sql = format!(
                "INSERT INTO deliveries (id, source, delivery_id, body_sha256, received_at, lease_until, trace_id) \
                 VALUES {} ON CONFLICT DO NOTHING RETURNING id",
                placeholders(chunk.len(), 7)
            );
            let mut query = sqlx::query_scalar::<_, String>(&sql);
            for (id, d) in chunk {
                query = query
                    .bind(*id)
                    .bind(&d.source)
                    .bind(&d.delivery_id)
                    .bind(&d.body_sha256)
                    .bind(d.received_at)
                    .bind(d.lease_until)
                    .bind(&d.trace_id);
            }
            inserted.extend(query.fetch_all(&mut *tx).await?);
        }
        let new: Vec<(&String, &&NewDelivery)> =
            rows.iter().copied().filter(|(id, _)| inserted.contains(*id)).collect();
        for chunk in fixed_chunks(&new) {
            let sql = format!(
                "INSERT INTO delivery_payloads (id, event, body) VALUES {}",
                placeholders(chunk.len(), 3)
            );
            let mut query = sqlx::query(&sql);
            for (id, d) in chunk {
                query = query.bind(*id).bind(&d.event).bind(&d.body);
            }
            query.execute(&mut *tx).await?;
        }
        let mut outcomes = Vec::with_capacity(deliveries.len());
        for (id, d) in ids.into_iter().zip(deliveries) {
            let outcome = if inserted.contains(&id) {
                IngestOutcome { id, duplicate: false }
            } else {
                let id: String = sqlx::query_scalar(EXISTING)
                    .bind(&d.source)
                    .bind(&d.delivery_id)
                    .bind(&d.body_sha256)
                    .fetch_one(&mut *tx)
                    .await?;
                IngestOutcome { id, duplicate: true }
            };
            outcomes.push(outcome);
        }
        tx.commit().await?;
        Ok(outcomes)
    })
}

/// The rows in chunks of 64, 16, 4 and 1: every batch is written with at most
/// four distinct statements, each prepared once per connection.
fn fixed_chunks<T>(rows: &[T]) -> Vec<&[T]> {
    let mut chunks = Vec::new();
    let mut rest = rows;
    for size in [64, 16, 4, 1] {
        while rest.len() >= size {
            let (chunk, tail) = rest.split_at(size);
            chunks.push(chunk);
            rest = tail;
        }
    }
    chunks
}

/// `($1, $2, ...), ($n+1, ...)`: `rows` tuples of `width` numbered parameters.
fn placeholders(rows: usize, width: usize) -> String {
    (0..rows)
        .map(|row| {
            let params: Vec<String> = (1..=width).map(|col| format!("${}", row * width + col)).collect();
            format!("({})", params.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl super::Store {
    /// Stores a delivery durably (committed to disk) and says whether it was new.
    /// Concurrent callers share one commit.
    pub async fn ingest(&self, delivery: NewDelivery) -> StoreResult<IngestOutcome> {
        /// Counts this ack as waiting until it is answered (or dropped).
        struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        self.acks_waiting.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _waiting = Waiting(&self.acks_waiting);
        let (reply, answer) = oneshot::channel();
        self.ingest
            .send(IngestJob { delivery, reply })
            .await
            .map_err(|_| StoreError::Unavailable("the delivery writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the delivery writer has stopped".into()))?
    }
}

#[cfg(test)]
mod tests {
    use super::fixed_chunks;

    #[test]
    fn chunks_cover_every_row_in_order_with_four_sizes_at_most() {
        for n in 0..300 {
            let rows: Vec<usize> = (0..n).collect();
            let chunks = fixed_chunks(&rows);
            assert_eq!(chunks.concat(), rows);
            assert!(chunks.iter().all(|c| [64, 16, 4, 1].contains(&c.len())));
        }
    }
}
