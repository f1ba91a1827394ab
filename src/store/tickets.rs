//! The last state seen per ticket.

use super::{Store, StoreResult, with_pool};

impl Store {
    /// Records `state` as the ticket's current state, as seen by `delivery`, and
    /// returns whether the state before it was closed. Asking again for the same
    /// delivery (a retry) returns the same answer and changes nothing.
    pub async fn swap_ticket_state(
        &self,
        source: &str,
        ticket: &str,
        delivery: &str,
        state: &str,
        closed: bool,
        now: i64,
    ) -> StoreResult<Option<bool>> {
        const GET: &str =
            "SELECT closed, delivery, previous_closed FROM ticket_states WHERE source = $1 AND ticket = $2";
        const PUT: &str = "INSERT INTO ticket_states (source, ticket, state, closed, delivery, previous_closed, updated_at) \
            VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (source, ticket) \
            DO UPDATE SET state = excluded.state, closed = excluded.closed, delivery = excluded.delivery, \
            previous_closed = excluded.previous_closed, updated_at = excluded.updated_at";
        let (db, source, ticket, delivery, state) = (
            self.db.clone(),
            source.to_string(),
            ticket.to_string(),
            delivery.to_string(),
            state.to_string(),
        );
        self.on_writer(async move {
            with_pool!(&db, write, |pool| {
                let mut tx = pool.begin().await?;
                let row: Option<(i64, String, Option<i64>)> = sqlx::query_as(GET)
                    .bind(&source)
                    .bind(&ticket)
                    .fetch_optional(&mut *tx)
                    .await?;
                if let Some((_, seen_by, previous)) = &row
                    && *seen_by == delivery
                {
                    return Ok(previous.map(|c| c != 0));
                }
                let previous = row.map(|(c, _, _)| c);
                sqlx::query(PUT)
                    .bind(&source)
                    .bind(&ticket)
                    .bind(&state)
                    .bind(i64::from(closed))
                    .bind(&delivery)
                    .bind(previous)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(previous.map(|c| c != 0))
            })
        })
        .await
    }
}
