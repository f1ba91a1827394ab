//! Durable state behind one API: SQLite (embedded default) or PostgreSQL, chosen
//! by the database URL. Both run the same SQL (`$N` placeholders, `ON CONFLICT`,
//! `RETURNING`), so both have the same semantics; the store tests run on each.
//!
//! Writes to SQLite go through one connection: ingest batches many deliveries
//! into one transaction (group commit), everything else queues behind it. The
//! ack path's writer and the recorder of decisions run on a thread of their
//! own ([`writers`]).

mod checkpoint;
mod claims;
mod decisions;
mod deliveries;
mod evidence;
mod gate_checks;
mod gauges;
mod governed;
mod housekeeping;
mod ingest;
mod outbox;
mod prior;
mod reconcile;
mod rows;
mod tickets;
mod writers;

use std::{str::FromStr, sync::Arc, time::Duration};

use sqlx::{
    PgPool, SqlitePool,
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};
use tokio::sync::{Notify, mpsc};

pub use claims::{Claim, ClaimFilter, ClaimState, ClaimUpdate, NewClaim};
pub use decisions::Recording;
pub use deliveries::{ClaimedDelivery, DeliveryOutcome, Finish};
pub use evidence::{ChainReport, EvidenceRecord, NewEvidence};
pub use gate_checks::GateCheckClaim;
pub use gauges::{OutboxLane, StoreGauges};
pub use housekeeping::Swept;
pub use ingest::{IngestOutcome, NewDelivery};
pub use outbox::{ClaimedEffect, Delivered, NewEffect};
pub use prior::TicketPast;
pub use reconcile::WatermarkLease;

/// Errors from the store. `Unavailable` is worth retrying; `Other` is a bug or
/// corrupt data.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Other(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => {
                StoreError::Unavailable(e.to_string())
            }
            other => StoreError::Other(other.to_string()),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Clone)]
pub(crate) enum Db {
    Sqlite { write: SqlitePool, read: SqlitePool },
    Postgres(PgPool),
}

impl Db {
    /// Fills a claim query's `{lock}`: PostgreSQL skips rows another replica is
    /// claiming; SQLite has a single writer and needs nothing.
    pub(crate) fn with_claim_lock(&self, sql: &str) -> String {
        let lock = match self {
            Db::Sqlite { .. } => "",
            Db::Postgres(_) => "FOR UPDATE SKIP LOCKED",
        };
        sql.replace("{lock}", lock)
    }
}

/// Runs `$body` with `$pool` bound to the backend's writer (`write`) or reader
/// (`read`) pool. The body is written once and compiled for each backend.
macro_rules! with_pool {
    ($db:expr, write, |$pool:ident| $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite { write: $pool, .. } => $body,
            $crate::store::Db::Postgres($pool) => $body,
        }
    };
    ($db:expr, read, |$pool:ident| $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite { read: $pool, .. } => $body,
            $crate::store::Db::Postgres($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Db,
    ingest: mpsc::Sender<ingest::IngestJob>,
    recorder: mpsc::Sender<decisions::RecordJob>,
    /// The writer thread's runtime ([`writers`]).
    writer: tokio::runtime::Handle,
    new_deliveries: Arc<Notify>,
    /// Deliveries waiting for their ack's commit right now.
    acks_waiting: Arc<std::sync::atomic::AtomicUsize>,
    /// Decisions' reads of their tickets' pasts, merged.
    pasts: Arc<prior::Pasts>,
}

/// Counts by state, for tests, `/readyz` and operators.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreStats {
    pub deliveries: i64,
    pub deliveries_pending: i64,
    pub evidence: i64,
    pub outbox_pending: i64,
    pub outbox_done: i64,
    pub outbox_dead: i64,
}

/// Prepared statements kept per connection: the ingest writer alone has one
/// per chunk size and table.
const STATEMENT_CACHE: usize = 400;

impl Store {
    /// Connects by URL scheme (`sqlite:` or `postgres:`/`postgresql:`) and runs
    /// the migrations for that backend.
    pub async fn connect(url: &str) -> StoreResult<Store> {
        let mut pg_options = None;
        let db = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| StoreError::Other(format!("invalid SQLite URL: {e}")))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                .statement_cache_capacity(STATEMENT_CACHE);
            // A local file does not go stale: no ping before every use, and
            // the one write connection is kept for good. (Reopened, its
            // thread would take the priority of whichever thread reopened it,
            // a background worker's perhaps: see `worker.nice`.)
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .test_before_acquire(false)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(options.clone())
                .await?;
            sqlx::migrate!("./migrations/sqlite")
                .run(&write)
                .await
                .map_err(|e| StoreError::Other(format!("SQLite migrations failed: {e}")))?;
            // Likewise the readers, all opened now from this thread.
            let read = SqlitePoolOptions::new()
                .max_connections(4)
                .min_connections(4)
                .idle_timeout(None)
                .max_lifetime(None)
                .test_before_acquire(false)
                .connect_with(options.read_only(true))
                .await?;
            Db::Sqlite { write, read }
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let options = PgConnectOptions::from_str(url)
                .map_err(|e| StoreError::Other(format!("invalid PostgreSQL URL: {e}")))?
                .statement_cache_capacity(STATEMENT_CACHE);
            pg_options = Some(options.clone());
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await?;
            sqlx::migrate!("./migrations/postgres")
                .run(&pool)
                .await
                .map_err(|e| StoreError::Other(format!("PostgreSQL migrations failed: {e}")))?;
            Db::Postgres(pool)
        } else {
            return Err(StoreError::Other(
                "database_url must start with sqlite: or postgres:".into(),
            ));
        };
        let new_deliveries = Arc::new(Notify::new());
        let (ingest, ingest_task) = ingest::writer(new_deliveries.clone());
        let (recorder, recorder_task) = decisions::recorder();
        let writer = writers::start(&db, pg_options, vec![Box::new(ingest_task), Box::new(recorder_task)]).await?;
        Ok(Store {
            pasts: Arc::new(prior::pasts(db.clone())),
            db,
            ingest,
            recorder,
            writer,
            new_deliveries,
            acks_waiting: Arc::default(),
        })
    }

    /// Which backend this is: `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self.db {
            Db::Sqlite { .. } => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    /// Runs one of the workers' writes on the store's writer thread. On SQLite
    /// the one write connection is then held, from statement to statement and
    /// back to the pool, by a thread at the ack path's priority, never by a
    /// worker thread the kernel runs last (`worker.nice`); PostgreSQL has no
    /// such connection, and the write runs where it is. Once started, the
    /// write runs to its end even when the caller stops waiting.
    pub(crate) async fn on_writer<T, W>(&self, write: W) -> StoreResult<T>
    where
        T: Send + 'static,
        W: std::future::Future<Output = StoreResult<T>> + Send + 'static,
    {
        match self.db {
            Db::Sqlite { .. } => self.writer.spawn(write).await.map_err(|e| match e.is_panic() {
                true => StoreError::Other(format!("a write on the writer thread panicked: {e}")),
                false => StoreError::Unavailable(format!("a write on the writer thread stopped: {e}")),
            })?,
            Db::Postgres(_) => write.await,
        }
    }

    /// How many deliveries are waiting for their ack's commit now: background
    /// work gives way while the helpdesk is waiting.
    pub fn acks_waiting(&self) -> usize {
        self.acks_waiting.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Resolves when a new delivery has been stored (a wake-up for workers).
    pub async fn delivery_stored(&self) {
        self.new_deliveries.notified().await
    }

    /// Checks the store answers and every embedded migration is applied.
    pub async fn ready(&self) -> StoreResult<()> {
        let expected = match self.db {
            Db::Sqlite { .. } => sqlx::migrate!("./migrations/sqlite").iter().count(),
            Db::Postgres(_) => sqlx::migrate!("./migrations/postgres").iter().count(),
        } as i64;
        let applied: i64 = with_pool!(&self.db, read, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_one(pool)
                .await?
        });
        if applied < expected {
            return Err(StoreError::Other(format!("{applied} of {expected} migrations applied")));
        }
        Ok(())
    }

    pub async fn stats(&self) -> StoreResult<StoreStats> {
        const SQL: &str = "SELECT \
            (SELECT COUNT(*) FROM deliveries), \
            (SELECT COUNT(*) FROM deliveries WHERE state = 'pending'), \
            (SELECT COUNT(*) FROM evidence), \
            (SELECT COUNT(*) FROM outbox WHERE state = 'pending'), \
            (SELECT COUNT(*) FROM outbox WHERE state = 'done'), \
            (SELECT COUNT(*) FROM outbox WHERE state = 'dead')";
        let row: (i64, i64, i64, i64, i64, i64) =
            with_pool!(&self.db, read, |pool| sqlx::query_as(SQL).fetch_one(pool).await?);
        Ok(StoreStats {
            deliveries: row.0,
            deliveries_pending: row.1,
            evidence: row.2,
            outbox_pending: row.3,
            outbox_done: row.4,
            outbox_dead: row.5,
        })
    }
}
