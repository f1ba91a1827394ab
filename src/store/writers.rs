//! The store's writer thread. The ack path's group commit ([`super::ingest`])
//! and the recorder of decisions ([`super::decisions`]) run on a runtime of
//! their own: each of their wake-ups (a delivery to commit, a statement
//! answered) is then the kernel's to schedule at once, instead of waiting in
//! the main runtime's queue behind the decisions and outbox deliveries that a
//! busy replica runs by the dozen. The workers' writes on SQLite's one write
//! connection run here too ([`super::Store::on_writer`]: the claims, lease
//! renewals and give-backs of deliveries, outbox messages, expiries and
//! sweeps; a decision's ticket state, governing policies, suspended claims
//! and a governed request's snapshot; the reconcile watermark's lease and the
//! housekeeping's deletions), so that the connection is never held by a
//! thread the kernel runs last (`worker.nice`). Only the request handlers'
//! own writes (a synchronous gate check's claim and its give-back) run where
//! they are asked.
//!
//! On PostgreSQL the thread has its own two connections, opened from the
//! thread and kept (sqlx renews them every 30 minutes), so that they are
//! driven by the thread's runtime and not by a busy one: two per replica
//! beside the main pool's 16.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::{Db, StoreError, StoreResult, ingest::WriterTask};

/// Connections of the writer thread's pool on PostgreSQL: the ack writer's
/// and the recorder's.
const PG_CONNECTIONS: u32 = 2;

/// Starts the writer thread and runs `tasks` there, on `db` (on PostgreSQL,
/// on a pool of the thread's own with `pg`'s options), until they all end:
/// when every handle on the store has gone. Each task runs alone: one that
/// panics is logged, and the others go on. Returns the thread's runtime, for
/// writes sent to it.
pub(super) async fn start(
    db: &Db,
    pg: Option<PgConnectOptions>,
    tasks: Vec<Box<dyn FnOnce(Db) -> WriterTask + Send>>,
) -> StoreResult<tokio::runtime::Handle> {
    let (started, handle) = tokio::sync::oneshot::channel();
    let shared = db.clone();
    std::thread::Builder::new()
        .name("closegate-store-writer".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = started.send(Err(e));
                    return;
                }
            };
            let _ = started.send(Ok(runtime.handle().clone()));
            runtime.block_on(async move {
                let db = match (shared, pg) {
                    (Db::Postgres(_), Some(options)) => Db::Postgres(
                        PgPoolOptions::new()
                            .max_connections(PG_CONNECTIONS)
                            .min_connections(PG_CONNECTIONS)
                            .idle_timeout(None)
                            .acquire_timeout(std::time::Duration::from_secs(10))
                            .connect_lazy_with(options),
                    ),
                    (db, _) => db,
                };
                let running: Vec<_> = tasks.into_iter().map(|task| tokio::spawn(task(db.clone()))).collect();
                for task in running {
                    if let Err(e) = task.await {
                        tracing::error!(error.message = %e, "a store writer task stopped");
                    }
                }
            })
        })
        .map_err(|e| StoreError::Other(format!("cannot start the store's writer thread: {e}")))?;
    handle
        .await
        .map_err(|_| StoreError::Other("the store's writer thread stopped at start".into()))?
        .map_err(|e| StoreError::Other(format!("cannot start the store's writer runtime: {e}")))
}
