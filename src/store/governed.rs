//! Tickets a policy has governed: once gated, always gated.

use super::{
    Store, StoreResult,
    rows::{MultiRow, execute_in_chunks},
    with_pool,
};
use crate::domain::TicketRef;

/// Remembers that a policy governs a ticket: `(source, ticket, policy, since)`
/// rows follow `VALUES`.
pub(super) const REMEMBER: (&str, &str) = (
    "INSERT INTO governed_tickets (source, ticket, policy, since)",
    "ON CONFLICT (source, ticket, policy) DO NOTHING",
);

impl Store {
    /// Remembers that `policies` govern `ticket` (from now on, whatever its labels say).
    pub async fn remember_governed(&self, ticket: &TicketRef, policies: &[String], now: i64) -> StoreResult<()> {
        static SQL: std::sync::OnceLock<MultiRow> = std::sync::OnceLock::new();
        let sql = SQL.get_or_init(|| MultiRow::values(REMEMBER.0, 4, REMEMBER.1).in_powers_of_two());
        if policies.is_empty() {
            return Ok(());
        }
        let (db, ticket, policies) = (self.db.clone(), ticket.clone(), policies.to_vec());
        self.on_writer(async move {
            with_pool!(&db, write, |pool| {
                let mut tx = pool.begin().await?;
                execute_in_chunks!(tx, sql, policies, |query, policy| query
                    .bind(&ticket.source)
                    .bind(&ticket.key)
                    .bind(policy)
                    .bind(now));
                tx.commit().await?;
            });
            Ok(())
        })
        .await
    }

    /// When each governed ticket was first seen governed (`source:key` → ms).
    pub async fn governed_first_seen(&self) -> StoreResult<std::collections::HashMap<String, i64>> {
        const SQL: &str = "SELECT source, ticket, MIN(since) FROM governed_tickets GROUP BY source, ticket";
        let rows: Vec<(String, String, i64)> =
            with_pool!(&self.db, read, |pool| sqlx::query_as(SQL).fetch_all(pool).await?);
        Ok(rows
            .into_iter()
            .map(|(s, t, since)| (format!("{s}:{t}"), since))
            .collect())
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
    /// one it replaces, if any. `fields_changed` says, from the one replaced,
    /// whether the request's fields changed now.
    pub async fn swap_snapshot(
        &self,
        ticket: &TicketRef,
        snapshot: &str,
        now: i64,
        fields_changed: impl FnOnce(&str) -> bool + Send + 'static,
    ) -> StoreResult<Option<String>> {
        const GET: &str = "SELECT snapshot FROM ticket_snapshots WHERE source = $1 AND ticket = $2";
        const PUT: &str = "INSERT INTO ticket_snapshots (source, ticket, snapshot, updated_at, fields_changed_at) \
            VALUES ($1, $2, $3, $4, $5) ON CONFLICT (source, ticket) DO UPDATE SET snapshot = excluded.snapshot, \
            updated_at = excluded.updated_at, \
            fields_changed_at = COALESCE(excluded.fields_changed_at, ticket_snapshots.fields_changed_at)";
        let (db, ticket, snapshot) = (self.db.clone(), ticket.clone(), snapshot.to_string());
        self.on_writer(async move {
            with_pool!(&db, write, |pool| {
                let mut tx = pool.begin().await?;
                let previous: Option<String> = sqlx::query_scalar(GET)
                    .bind(&ticket.source)
                    .bind(&ticket.key)
                    .fetch_optional(&mut *tx)
                    .await?;
                let changed_at = previous.as_deref().is_some_and(fields_changed).then_some(now);
                sqlx::query(PUT)
                    .bind(&ticket.source)
                    .bind(&ticket.key)
                    .bind(&snapshot)
                    .bind(now)
                    .bind(changed_at)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(previous)
            })
        })
        .await
    }

    /// The ticket's last snapshot and when its request fields last changed.
    pub async fn snapshot_of(&self, ticket: &TicketRef) -> StoreResult<Option<(String, Option<i64>)>> {
        const SQL: &str = "SELECT snapshot, fields_changed_at FROM ticket_snapshots WHERE source = $1 AND ticket = $2";
        Ok(with_pool!(&self.db, read, |pool| {
            sqlx::query_as(SQL)
                .bind(&ticket.source)
                .bind(&ticket.key)
                .fetch_optional(pool)
                .await?
        }))
    }
}
