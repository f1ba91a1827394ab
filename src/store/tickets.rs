//! The last state seen per ticket.

use super::{Store, StoreResult, with_pool};

impl Store {
    /// Records `state` as the ticket's current state and returns whether the
    /// previous one (if any) was closed.
    pub async fn swap_ticket_state(
        &self,
        source: &str,
        ticket: &str,
        state: &str,
        closed: bool,
        now: i64,
    ) -> StoreResult<Option<bool>> {
        const GET: &str = "SELECT closed FROM ticket_states WHERE source = $1 AND ticket = $2";
        const PUT: &str = "INSERT INTO ticket_states (source, ticket, state, closed, updated_at) \
            VALUES ($1, $2, $3, $4, $5) ON CONFLICT (source, ticket) \
            DO UPDATE SET state = excluded.state, closed = excluded.closed, updated_at = excluded.updated_at";
        with_pool!(&self.db, write, |pool| {
            let mut tx = pool.begin().await?;
            let previous: Option<i64> = sqlx::query_scalar(GET)
                .bind(source)
                .bind(ticket)
                .fetch_optional(&mut *tx)
                .await?;
            sqlx::query(PUT)
                .bind(source)
                .bind(ticket)
                .bind(state)
                .bind(i64::from(closed))
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(previous.map(|c| c != 0))
        })
    }
}
