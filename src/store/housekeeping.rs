//! Housekeeping: finished deliveries and delivered outbox messages are deleted
//! after their retention period, a bounded number per statement. Evidence,
//! claims and dead messages are never deleted.

use super::{Store, StoreResult, with_pool};

/// Rows deleted per statement, so that no deletion holds the writer for long.
const CHUNK: i64 = 5_000;

/// What one housekeeping pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub deliveries: u64,
    pub outbox: u64,
}

impl Store {
    /// Deletes deliveries decided before `deliveries_before` and messages
    /// delivered before `outbox_before` (unix ms).
    pub async fn housekeep(&self, deliveries_before: i64, outbox_before: i64) -> StoreResult<Swept> {
        const DELIVERIES: &str = "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries \
            WHERE state = 'done' AND decided_at < $1 LIMIT $2)";
        const OUTBOX: &str = "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox \
            WHERE state = 'done' AND done_at < $1 LIMIT $2)";
        let mut swept = Swept::default();
        for (sql, before, count) in [
            (DELIVERIES, deliveries_before, &mut swept.deliveries),
            (OUTBOX, outbox_before, &mut swept.outbox),
        ] {
            loop {
                // Each piece is a write of its own on the writer thread, so
                // that acks get the write connection between two pieces.
                let db = self.db.clone();
                let n = self
                    .on_writer(async move {
                        Ok(with_pool!(&db, write, |pool| {
                            sqlx::query(sql)
                                .bind(before)
                                .bind(CHUNK)
                                .execute(pool)
                                .await?
                                .rows_affected()
                        }))
                    })
                    .await?;
                *count += n;
                if n < CHUNK as u64 {
                    break;
                }
            }
        }
        Ok(swept)
    }
}
