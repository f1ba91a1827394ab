//! What a decision reads about its ticket before it decides, in one round
//! trip: the policies that governed it, and the closes the reconciler judged.

use super::{Store, StoreResult, with_pool};
use crate::domain::TicketRef;

/// A ticket's past, as a decision needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TicketPast {
    /// The policies that have governed the ticket, in name order.
    pub governed_by: Vec<String>,
    /// The hashed documents of the records the reconciler wrote, as stored:
    /// read only by the decision that needs them.
    pub reconciled: Vec<String>,
}

impl Store {
    /// The ticket's past: see [`TicketPast`].
    pub async fn ticket_past(&self, ticket: &TicketRef) -> StoreResult<TicketPast> {
        const SQL: &str = "SELECT 'governed', policy FROM governed_tickets WHERE source = $1 AND ticket = $2 \
            UNION ALL SELECT 'reconciled', record FROM evidence \
            WHERE source = $1 AND ticket = $2 AND trigger_kind = 'reconcile'";
        let rows: Vec<(String, String)> = with_pool!(&self.db, read, |pool| {
            sqlx::query_as(SQL)
                .bind(&ticket.source)
                .bind(&ticket.key)
                .fetch_all(pool)
                .await?
        });
        let mut past = TicketPast::default();
        for (part, value) in rows {
            match part.as_str() {
                "governed" => past.governed_by.push(value),
                _ => past.reconciled.push(value),
            }
        }
        past.governed_by.sort();
        Ok(past)
    }
}
