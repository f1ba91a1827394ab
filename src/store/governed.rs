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

impl Store {
    /// Stores `snapshot` as the ticket's labels and fields and returns the
    /// one it replaces, if any.
    pub async fn swap_snapshot(&self, ticket: &TicketRef, snapshot: &str, now: i64) -> StoreResult<Option<String>> {
        const GET: &str = "SELECT snapshot FROM ticket_snapshots WHERE source = $1 AND ticket = $2";
        const PUT: &str = "INSERT INTO ticket_snapshots (source, ticket, snapshot, updated_at) VALUES ($1, $2, $3, $4) \
            ON CONFLICT (source, ticket) DO UPDATE SET snapshot = excluded.snapshot, updated_at = excluded.updated_at";
        with_pool!(&self.db, write, |pool| {
            let mut tx = pool.begin().await?;
            let previous: Option<String> = sqlx::query_scalar(GET)
                .bind(&ticket.source)
                .bind(&ticket.key)
                .fetch_optional(&mut *tx)
                .await?;
            sqlx::query(PUT)
                .bind(&ticket.source)
                .bind(&ticket.key)
                .bind(snapshot)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(previous)
        })
    }
}
