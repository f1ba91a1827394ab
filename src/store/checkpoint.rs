//! SQLite: copying the WAL into the database file on demand.

use super::{StoreError, StoreResult};

impl super::Store {
    /// SQLite: copies the whole WAL into the database file and empties it,
    /// waiting for the writer if it must, so that the file alone holds the
    /// whole store (a copy, a backup). Nothing to do on PostgreSQL.
    pub async fn checkpoint(&self) -> StoreResult<()> {
        let super::Db::Sqlite { write, .. } = &self.db else {
            return Ok(());
        };
        // (busy, frames in the WAL, frames copied): busy when a reader or the
        // writer kept SQLite from finishing.
        let (busy, logged, copied): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(write)
            .await?;
        if busy != 0 {
            return Err(StoreError::Unavailable(format!(
                "the WAL was not fully copied into the database file ({copied} of {logged} frames): \
                 the store is still in use"
            )));
        }
        Ok(())
    }
}
