//! The store's writer thread. The ack path's group commit ([`super::ingest`])
//! and the recorder of decisions ([`super::decisions`]) run on a runtime of
//! their own: each of their wake-ups (a delivery to commit, a statement
//! answered) is then the kernel's to schedule at once, instead of waiting in
//! the main runtime's queue behind the decisions and outbox deliveries that a
//! busy replica runs by the dozen. On SQLite the writer also holds the one
//! write connection between statements for less time.
//!
//! On PostgreSQL the thread has its own small pool, opened from the thread, so
//! that its connections are driven by the thread's runtime and not by the
//! busy main one.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::{Db, StoreError, StoreResult, ingest::WriterTask};

/// Connections of the writer thread's pool on PostgreSQL: the ack writer's
/// and the recorder's.
const PG_CONNECTIONS: u32 = 2;

/// Runs `tasks` on the writer thread, on `db` (on PostgreSQL, on a pool of the
/// thread's own with `pg`'s options), until they all end: when every handle
/// on the store has gone.
pub(super) fn start(
    db: &Db,
    pg: Option<PgConnectOptions>,
    tasks: Vec<Box<dyn FnOnce(Db) -> WriterTask + Send>>,
) -> StoreResult<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StoreError::Other(format!("cannot start the store's writer runtime: {e}")))?;
    let shared = db.clone();
    std::thread::Builder::new()
        .name("closegate-store-writer".into())
        .spawn(move || {
            runtime.block_on(async move {
                let db = match (shared, pg) {
                    (Db::Postgres(_), Some(options)) => Db::Postgres(
                        PgPoolOptions::new()
                            .max_connections(PG_CONNECTIONS)
                            .acquire_timeout(Duration::from_secs(10))
                            .connect_lazy_with(options),
                    ),
                    (db, _) => db,
                };
                futures_util::future::join_all(tasks.into_iter().map(|task| task(db.clone()))).await;
            })
        })
        .map_err(|e| StoreError::Other(format!("cannot start the store's writer thread: {e}")))?;
    Ok(())
}
