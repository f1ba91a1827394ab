//! The ack path's only write: one task owns it and commits whatever deliveries
//! are waiting in a single transaction (group commit).

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot};

use super::{
    Db, StoreError, StoreResult,
    rows::{CHUNK, MultiRow, tuples},
};

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
    /// The normalised event, as JSON: what decisions read. The raw body is
    /// not kept; `body_sha256` identifies it.
    pub event: String,
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

/// How long the writer keeps the write connection while acks keep arriving.
/// Taking it back from the pool costs a round trip (sqlx checks a released
/// connection), which under a flood of webhooks is worth saving; other writers
/// wait at most this long.
const HOLD: std::time::Duration = std::time::Duration::from_millis(20);

/// The writer's queue, and the task that commits it on `Db` (run by the
/// store's writer thread) until every sender is gone.
pub(super) fn writer(stored: Arc<Notify>) -> (mpsc::Sender<IngestJob>, impl FnOnce(Db) -> WriterTask) {
    let (tx, mut rx) = mpsc::channel::<IngestJob>(4 * MAX_BATCH);
    let task = move |db: Db| -> WriterTask {
        Box::pin(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            loop {
                // A batch left over from the last hold is written before waiting.
                if batch.is_empty() && rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
                    break;
                }
                let mut conn = match Held::acquire(&db).await {
                    Ok(conn) => conn,
                    Err(e) => {
                        refuse(&mut batch, &e);
                        continue;
                    }
                };
                let held = std::time::Instant::now();
                loop {
                    let deliveries: Vec<&NewDelivery> = batch.iter().map(|j| &j.delivery).collect();
                    match write_batch(&mut conn, &deliveries).await {
                        Ok(outcomes) => {
                            for (job, outcome) in batch.drain(..).zip(outcomes) {
                                let _ = job.reply.send(Ok(outcome));
                            }
                            stored.notify_waiters();
                            stored.notify_one();
                        }
                        Err(e) => {
                            refuse(&mut batch, &e);
                            break;
                        }
                    }
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    if batch.is_empty() || held.elapsed() >= HOLD {
                        break;
                    }
                }
            }
        })
    };
    (tx, task)
}

/// A writer's task, to run on the store's writer thread.
pub(super) type WriterTask = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Answers every delivery of a batch that could not be committed.
fn refuse(batch: &mut Vec<IngestJob>, error: &StoreError) {
    tracing::error!(error.message = %error, batch = batch.len(), "failed to commit deliveries");
    let message = error.to_string();
    for job in batch.drain(..) {
        let _ = job.reply.send(Err(StoreError::Unavailable(message.clone())));
    }
}

/// The write connection, held by the writer across consecutive batches.
enum Held {
    Sqlite(sqlx::pool::PoolConnection<sqlx::Sqlite>),
    Postgres(sqlx::pool::PoolConnection<sqlx::Postgres>),
}

impl Held {
    async fn acquire(db: &Db) -> StoreResult<Held> {
        Ok(match db {
            Db::Sqlite { write, .. } => Held::Sqlite(write.acquire().await?),
            Db::Postgres(pool) => Held::Postgres(pool.acquire().await?),
        })
    }
}

/// Binds a delivery's row, in the column order of `INSERT_DELIVERIES`.
macro_rules! bind_delivery {
    ($query:expr, $id:expr, $d:expr) => {
        $query
            .bind(*$id)
            .bind(&$d.source)
            .bind(&$d.delivery_id)
            .bind(&$d.body_sha256)
            .bind($d.received_at)
            .bind($d.lease_until)
            .bind(&$d.trace_id)
    };
}

/// Stores a batch. Up to [`CHUNK`] deliveries go in one trip (SQLite) or one
/// statement (PostgreSQL); otherwise, per chunk, one multi-row insert of the
/// deliveries and, when all of them were new, one of their payloads. Each chunk
/// size has its own statement, built once and prepared once per connection.
/// Rows that were not inserted (a known delivery id or body) are rare: only
/// then is the store asked which ones were, and the first delivery of each
/// duplicate looked up.
async fn write_batch(conn: &mut Held, deliveries: &[&NewDelivery]) -> StoreResult<Vec<IngestOutcome>> {
    const EXISTING: &str = "SELECT id FROM deliveries WHERE source = $1 \
        AND (delivery_id = $2 OR body_sha256 = $3) ORDER BY received_at LIMIT 1";
    let ids: Vec<String> = deliveries.iter().map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let rows: Vec<(&String, &&NewDelivery)> = ids.iter().zip(deliveries).collect();
    macro_rules! on_held {
        (|$c:ident| $body:expr) => {
            match conn {
                Held::Sqlite($c) => $body,
                Held::Postgres($c) => $body,
            }
        };
    }
    if let Held::Sqlite(conn) = conn
        && !rows.is_empty()
        && rows.len() <= CHUNK
        && write_in_one_trip(conn, &rows).await?
    {
        return Ok(ids
            .into_iter()
            .map(|id| IngestOutcome { id, duplicate: false })
            .collect());
    }
    if let Held::Postgres(conn) = conn
        && !rows.is_empty()
        && rows.len() <= CHUNK
    {
        let inserted = write_in_one_statement(conn, &rows).await?;
        let mut outcomes = Vec::with_capacity(rows.len());
        for (id, d) in &rows {
            outcomes.push(if inserted.contains(id.as_str()) {
                IngestOutcome {
                    id: id.to_string(),
                    duplicate: false,
                }
            } else {
                // Stored before, or earlier in this batch: committed either way.
                let id: String = sqlx::query_scalar(EXISTING)
                    .bind(&d.source)
                    .bind(&d.delivery_id)
                    .bind(&d.body_sha256)
                    .fetch_one(&mut **conn)
                    .await?;
                IngestOutcome { id, duplicate: true }
            });
        }
        return Ok(outcomes);
    }
    on_held!(|conn| {
        let mut tx = sqlx::Connection::begin(&mut **conn).await?;
        let mut duplicates = std::collections::HashSet::new();
        for chunk in statements().deliveries.pieces(&rows) {
            let mut insert = sqlx::query(statements().deliveries.sql(chunk.len()));
            for (id, d) in chunk {
                insert = bind_delivery!(insert, id, d);
            }
            let inserted = insert.execute(&mut *tx).await?.rows_affected() as usize;
            let new: Vec<(&String, &&NewDelivery)> = if inserted == chunk.len() {
                chunk.to_vec()
            } else {
                let mut known = sqlx::query_scalar::<_, String>(statements().inserted.sql(chunk.len()));
                for (id, _) in chunk {
                    known = known.bind(*id);
                }
                let stored: std::collections::HashSet<String> = known.fetch_all(&mut *tx).await?.into_iter().collect();
                let (new, old): (Vec<_>, Vec<_>) = chunk.iter().partition(|(id, _)| stored.contains(*id));
                duplicates.extend(old.into_iter().map(|(id, _)| id.as_str()));
                new
            };
            if new.is_empty() {
                continue;
            }
            let mut payloads = sqlx::query(statements().payloads.sql(new.len()));
            for (id, d) in &new {
                payloads = payloads.bind(*id).bind(&d.event);
            }
            payloads.execute(&mut *tx).await?;
        }
        let mut outcomes = Vec::with_capacity(deliveries.len());
        for (id, d) in &rows {
            let outcome = if duplicates.contains(id.as_str()) {
                let id: String = sqlx::query_scalar(EXISTING)
                    .bind(&d.source)
                    .bind(&d.delivery_id)
                    .bind(&d.body_sha256)
                    .fetch_one(&mut *tx)
                    .await?;
                IngestOutcome { id, duplicate: true }
            } else {
                IngestOutcome {
                    id: id.to_string(),
                    duplicate: false,
                }
            };
            outcomes.push(outcome);
        }
        tx.commit().await?;
        Ok(outcomes)
    })
}

/// The ingest statements, for every chunk size.
struct Statements {
    deliveries: MultiRow,
    payloads: MultiRow,
    inserted: MultiRow,
    /// SQLite: a whole batch of new deliveries in one trip to the connection's
    /// thread, transaction included (the deliveries' 7 columns per row, then
    /// the payloads' 2).
    one_trip: MultiRow,
    /// PostgreSQL: a whole batch in one statement, its own transaction: the
    /// deliveries not known before, and their payloads; answers the ids of
    /// those stored (the same parameters as `one_trip`).
    one_statement: MultiRow,
}

const INSERT_DELIVERIES: &str =
    "INSERT INTO deliveries (id, source, delivery_id, body_sha256, received_at, lease_until, trace_id)";
const INSERT_PAYLOADS: &str = "INSERT INTO delivery_payloads (id, event)";

fn statements() -> &'static Statements {
    static STATEMENTS: std::sync::OnceLock<Statements> = std::sync::OnceLock::new();
    STATEMENTS.get_or_init(|| Statements {
        deliveries: MultiRow::values(INSERT_DELIVERIES, 7, "ON CONFLICT DO NOTHING"),
        payloads: MultiRow::values(INSERT_PAYLOADS, 2, ""),
        inserted: MultiRow::around_list(|ids| format!("SELECT id FROM deliveries WHERE id IN ({ids})")),
        one_trip: MultiRow::per_rows(|n| {
            format!(
                "BEGIN; {INSERT_DELIVERIES} VALUES {}; {INSERT_PAYLOADS} VALUES {}; COMMIT",
                tuples(1, n, 7),
                tuples(7 * n + 1, n, 2)
            )
        }),
        one_statement: MultiRow::per_rows(|n| {
            format!(
                "WITH stored AS ({INSERT_DELIVERIES} VALUES {} ON CONFLICT DO NOTHING RETURNING id), \
                 payloads AS ({INSERT_PAYLOADS} SELECT given.id, given.event FROM (VALUES {}) AS given (id, event) \
                 JOIN stored ON stored.id = given.id) SELECT id FROM stored",
                tuples(1, n, 7),
                tuples(7 * n + 1, n, 2)
            )
        }),
    })
}

/// SQLite: writes a batch of at most [`CHUNK`] deliveries, all expected new,
/// in one trip to the connection's thread: each trip waits for that thread to
/// be scheduled, and under a flood that wait, not SQLite, is most of the cost.
/// A known delivery id or body breaks a unique index and fails the statement;
/// it is then rolled back, and the caller writes the batch the general way,
/// which sorts such rows out.
async fn write_in_one_trip(
    conn: &mut sqlx::pool::PoolConnection<sqlx::Sqlite>,
    rows: &[(&String, &&NewDelivery)],
) -> StoreResult<bool> {
    let mut query = sqlx::query(statements().one_trip.sql(rows.len()));
    for (id, d) in rows {
        query = bind_delivery!(query, id, d);
    }
    for (id, d) in rows {
        query = query.bind(*id).bind(&d.event);
    }
    let Err(e) = query.execute(&mut **conn).await else {
        return Ok(true);
    };
    tracing::debug!(error.message = %e, rows = rows.len(), "a delivery in the batch is known; writing the batch the general way");
    match sqlx::query("ROLLBACK").execute(&mut **conn).await {
        Ok(_) => Ok(false),
        // The transaction did not begin, or SQLite ended it itself.
        Err(e) if e.to_string().contains("no transaction is active") => Ok(false),
        Err(e) => {
            // A connection that may still be inside the transaction is never
            // handed back to the pool.
            conn.close_on_drop();
            Err(StoreError::Unavailable(format!(
                "a failed batch could not be rolled back: {e}"
            )))
        }
    }
}

/// PostgreSQL: writes a batch of at most [`CHUNK`] deliveries in one statement,
/// which is its own transaction: one round trip instead of four (`BEGIN`, the
/// deliveries, their payloads, `COMMIT`), each of which waits for the writer
/// thread and a server process to be scheduled on a busy host. A delivery
/// already known (its id or its body) is left out with its payload. Answers
/// the ids stored.
async fn write_in_one_statement(
    conn: &mut sqlx::pool::PoolConnection<sqlx::Postgres>,
    rows: &[(&String, &&NewDelivery)],
) -> StoreResult<std::collections::HashSet<String>> {
    let mut query = sqlx::query_scalar::<_, String>(statements().one_statement.sql(rows.len()));
    for (id, d) in rows {
        query = bind_delivery!(query, id, d);
    }
    for (id, d) in rows {
        query = query.bind(*id).bind(&d.event);
    }
    Ok(query.fetch_all(&mut **conn).await?.into_iter().collect())
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
    use super::{CHUNK, statements};

    #[test]
    fn every_chunk_size_has_statements_with_as_many_parameters_as_rows_need() {
        let s = statements();
        for n in 1..=CHUNK {
            assert!(s.deliveries.sql(n).contains(&format!("${},", 7 * n - 1)));
            assert!(
                s.deliveries
                    .sql(n)
                    .ends_with(&format!("${}) ON CONFLICT DO NOTHING", 7 * n))
            );
            assert!(s.payloads.sql(n).ends_with(&format!("${})", 2 * n)));
            assert!(s.inserted.sql(n).ends_with(&format!("${n})")));
            assert!(!s.inserted.sql(n).contains(&format!("${}", n + 1)));
            let one = s.one_trip.sql(n);
            assert!(one.starts_with("BEGIN; INSERT INTO deliveries") && one.ends_with(&format!("${}); COMMIT", 9 * n)));
            assert!(one.contains(&format!("${}); INSERT INTO delivery_payloads", 7 * n)));
            assert!(!one.contains(&format!("${}", 9 * n + 1)));
        }
    }
}
