//! SQLite: copying the WAL into the database file on demand.

impl super::Store {
    /// SQLite: copies the whole WAL into the database file and empties it,
    /// waiting for the writer if it must, so that the file alone holds the
    /// whole store (a copy, a backup). Nothing to do on PostgreSQL.
    pub async fn checkpoint(&self) -> super::StoreResult<()> {
        if let super::Db::Sqlite { write, .. } = &self.db {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(write).await?;
        }
        Ok(())
    }
}
