//! Stored deliveries waiting for a decision: claimed under a lease, finished
//! in one transaction with the evidence and outbox messages they cause.

use super::{Db, EvidenceRecord, Store, StoreResult, with_pool};

/// A delivery claimed by this replica until its lease runs out.
#[derive(Debug, Clone)]
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
// Made once per decision and taken apart at once: boxing the record would
// only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Finish {
    /// Finished now, with the evidence record written (if any).
    Finished(Option<EvidenceRecord>),
    /// Someone else finished it first; nothing was written.
    AlreadyFinished,
}

/// A delivery not yet decided, in statements that name their deliveries by
/// id. A delivery is `pending` or `done`; written as "not done" rather than
/// `state = 'pending'`, the condition matches no partial index, which leaves
/// PostgreSQL the primary key as the cheap way to the named deliveries. With
/// `state = 'pending'` it may instead read every pending delivery through
/// `deliveries_pending_only` and hash them: its estimate of how many are
/// pending lags far behind a backlog on a store not yet analysed (or in a
/// plan cached while the backlog was small), and the statement then costs
/// time in proportion to the backlog (8–13 ms for a batch of 16 with
/// 20,000–30,000 waiting).
macro_rules! undecided {
    () => {
        "state <> 'done'"
    };
}
pub(super) use undecided;

/// The oldest are picked once, in a materialised CTE: as an `IN` subquery,
/// PostgreSQL may run a locking `LIMIT` again for every row it joins.
const CLAIM: &str = concat!(
    "WITH picked AS MATERIALIZED (SELECT id FROM deliveries WHERE state = 'pending' \
        AND (lease_until IS NULL OR lease_until < $2) ORDER BY received_at LIMIT $3 {lock}) \
    UPDATE deliveries SET lease_until = $1, attempts = attempts + 1 \
    WHERE id IN (SELECT id FROM picked) \
    AND ",
    undecided!(),
    " AND (lease_until IS NULL OR lease_until < $2) \
    RETURNING id, source, delivery_id, attempts, received_at, trace_id"
);

/// The claim on `db`, made once per backend. On PostgreSQL it reads its
/// deliveries' events too, in one statement, in one round trip and without a
/// transaction around it (SQLite cannot use an `UPDATE ... RETURNING` as a
/// CTE: there the events are read after it, in the claim's transaction).
fn claim_statement(db: &Db) -> &'static str {
    static SQLITE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static POSTGRES: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let claim = || db.with_claim_lock(CLAIM);
    match db {
        Db::Sqlite { .. } => SQLITE.get_or_init(claim),
        Db::Postgres(_) => POSTGRES.get_or_init(|| {
            format!(
                "WITH claimed AS ({}) SELECT claimed.*, delivery_payloads.event FROM claimed \
                 LEFT JOIN delivery_payloads ON delivery_payloads.id = claimed.id",
                claim()
            )
        }),
    }
}

/// A claimed delivery's state, and its event once read.
#[derive(sqlx::FromRow)]
struct Claimed {
    id: String,
    source: String,
    delivery_id: String,
    attempts: i64,
    received_at: i64,
    trace_id: Option<String>,
    #[sqlx(default)]
    event: Option<String>,
}

impl Store {
    /// Claims the oldest undecided delivery for `lease_ms`.
    pub async fn claim_delivery(&self, now: i64, lease_ms: i64) -> StoreResult<Option<ClaimedDelivery>> {
        Ok(self.claim_deliveries(now, lease_ms, 1).await?.pop())
    }

    /// Claims up to `limit` of the oldest undecided deliveries for `lease_ms`
    /// in one statement (one commit), oldest first.
    pub async fn claim_deliveries(&self, now: i64, lease_ms: i64, limit: usize) -> StoreResult<Vec<ClaimedDelivery>> {
        let (db, sql) = (self.db.clone(), claim_statement(&self.db));
        let claimed: Vec<Claimed> = self
            .on_writer(async move {
                Ok(match &db {
                    Db::Postgres(pool) => {
                        sqlx::query_as(sql)
                            .bind(now + lease_ms)
                            .bind(now)
                            .bind(limit.max(1) as i64)
                            .fetch_all(pool)
                            .await?
                    }
                    Db::Sqlite { write, .. } => {
                        let mut tx = write.begin().await?;
                        let mut claimed: Vec<Claimed> = sqlx::query_as(sql)
                            .bind(now + lease_ms)
                            .bind(now)
                            .bind(limit.max(1) as i64)
                            .fetch_all(&mut *tx)
                            .await?;
                        if !claimed.is_empty() {
                            let select = format!(
                                "SELECT id, event FROM delivery_payloads WHERE id IN ({})",
                                super::rows::numbered(1, claimed.len())
                            );
                            let mut query = sqlx::query_as(&select);
                            for c in &claimed {
                                query = query.bind(&c.id);
                            }
                            let events: Vec<(String, String)> = query.fetch_all(&mut *tx).await?;
                            let mut events: std::collections::HashMap<String, String> = events.into_iter().collect();
                            for c in &mut claimed {
                                c.event = events.remove(&c.id);
                            }
                        }
                        tx.commit().await?;
                        claimed
                    }
                })
            })
            .await?;
        let mut claimed: Vec<ClaimedDelivery> = claimed
            .into_iter()
            .map(|c| ClaimedDelivery {
                // A payload is written with its delivery; without one the event
                // does not parse and the delivery fails alone.
                event: c.event.unwrap_or_default(),
                id: c.id,
                source: c.source,
                delivery_id: c.delivery_id,
                attempts: c.attempts,
                received_at: c.received_at,
                trace_id: c.trace_id,
            })
            .collect();
        claimed.sort_by(|a, b| a.received_at.cmp(&b.received_at).then_with(|| a.id.cmp(&b.id)));
        Ok(claimed)
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

    /// Extends the lease on these deliveries to `until` where it is still the
    /// lease `held` (the claim's, or the last renewal's) and they are still
    /// pending: a batch whose decisions run long keeps what it claimed, and
    /// leaves alone a delivery given back for a retry or taken over since.
    pub async fn renew_deliveries(&self, ids: &[String], held: i64, until: i64) -> StoreResult<()> {
        let (db, ids) = (self.db.clone(), ids.to_vec());
        self.on_writer(async move {
            for chunk in ids.chunks(super::rows::CHUNK) {
                let sql = format!(
                    concat!(
                        "UPDATE deliveries SET lease_until = $1 WHERE ",
                        undecided!(),
                        " AND lease_until = $2 AND id IN ({})"
                    ),
                    super::rows::numbered(3, chunk.len())
                );
                with_pool!(&db, write, |pool| {
                    let mut query = sqlx::query(&sql).bind(until).bind(held);
                    for id in chunk {
                        query = query.bind(id);
                    }
                    query.execute(pool).await?;
                });
            }
            Ok(())
        })
        .await
    }

    /// Gives a claimed delivery back after an unexpected error; it is retried
    /// after `retry_at`.
    pub async fn release_delivery(&self, delivery: &str, error: &str, retry_at: i64) -> StoreResult<()> {
        const SQL: &str = concat!(
            "UPDATE deliveries SET lease_until = $1, last_error = $2 WHERE id = $3 AND ",
            undecided!()
        );
        let (db, delivery, error) = (self.db.clone(), delivery.to_string(), error.to_string());
        self.on_writer(async move {
            with_pool!(&db, write, |pool| {
                sqlx::query(SQL)
                    .bind(retry_at)
                    .bind(error)
                    .bind(delivery)
                    .execute(pool)
                    .await?;
            });
            Ok(())
        })
        .await
    }
}
