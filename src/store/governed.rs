//! Tickets a policy has governed: once gated, always gated.

use super::{Store, StoreResult, with_pool};
use crate::domain::TicketRef;

impl Store {
    /// Remembers that `policies` govern `ticket` (from now on, whatever its labels say).
    pub async fn remember_governed(&self, ticket: &TicketRef, policies: &[String], now: i64) -> StoreResult<()> {
        const SQL: &str = "INSERT INTO governed_tickets (source, ticket, policy, since) VALUES ($1, $2, $3, $4) \
            ON CONFLICT (source, ticket, policy) DO NOTHING";
        if policies.is_empty() {
            return Ok(());
        }
        with_pool!(&self.db, write, |pool| {
            let mut tx = pool.begin().await?;
            for policy in policies {
                sqlx::query(SQL)
                    .bind(&ticket.source)
                    .bind(&ticket.key)
                    .bind(policy)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// The policies that have governed `ticket`, in name order.
    pub async fn governed_by(&self, ticket: &TicketRef) -> StoreResult<Vec<String>> {
        const SQL: &str = "SELECT policy FROM governed_tickets WHERE source = $1 AND ticket = $2 ORDER BY policy";
        Ok(with_pool!(&self.db, read, |pool| {
            sqlx::query_scalar(SQL)
                .bind(&ticket.source)
                .bind(&ticket.key)
                .fetch_all(pool)
                .await?
        }))
    }
}
