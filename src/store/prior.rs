//! What a decision reads about its ticket before it decides: the policies that
//! governed it, and the closes the reconciler judged. Decisions side by side
//! ask at once, and their reads are merged ([`crate::coalesce`]): one
//! statement for a batch of tickets instead of one per decision.

use futures_util::future::BoxFuture;

use super::{Db, Store, StoreError, StoreResult, rows::MultiRow};
use crate::{
    coalesce::{Coalescer, Merges, Merging},
    domain::TicketRef,
};

/// A ticket's past, as a decision needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TicketPast {
    /// The policies that have governed the ticket, in name order.
    pub governed_by: Vec<String>,
    /// The hashed documents of the records the reconciler wrote, as stored:
    /// read only by the decision that needs them.
    pub reconciled: Vec<String>,
}

/// The merged reads of ticket pasts.
pub(super) type Pasts = Coalescer<TicketRef, StoreResult<TicketPast>>;

/// The merged reads on `db`.
pub(super) fn pasts(db: Db) -> Pasts {
    Coalescer::new(Merging::ticket_pasts(), move |tickets: Vec<TicketRef>| {
        let db = db.clone();
        Box::pin(async move {
            match read(&db, &tickets).await {
                Ok(pasts) => pasts.into_iter().map(Ok).collect(),
                Err(e) => tickets.iter().map(|_| Err(copy(&e))).collect(),
            }
        }) as BoxFuture<'static, Vec<StoreResult<TicketPast>>>
    })
}

/// A merged read's error, for each of its callers.
fn copy(error: &StoreError) -> StoreError {
    match error {
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::Other(m) => StoreError::Other(m.clone()),
    }
}

/// PostgreSQL: each listed ticket's governing policies and reconciled records,
/// the tickets given as two arrays (sources, keys). One ticket at a time
/// through the primary key and the ticket index, whatever the tables' sizes
/// and statistics: written as `OR`s, the condition on a source common to every
/// ticket is factored out, and on tables not yet analysed (a new store filling
/// fast) the planner then reads every row of that source.
const POSTGRES: &str = "SELECT g.source, g.ticket, 'governed', g.policy \
    FROM unnest($1::text[], $2::text[]) AS t (source, ticket) \
    JOIN governed_tickets g ON g.source = t.source AND g.ticket = t.ticket \
    UNION ALL SELECT e.source, e.ticket, 'reconciled', e.record \
    FROM unnest($1::text[], $2::text[]) AS t (source, ticket) \
    JOIN evidence e ON e.source = t.source AND e.ticket = t.ticket AND e.trigger_kind = 'reconcile'";

/// SQLite, for 1 to [`super::rows::CHUNK`] tickets (powers of two): each one's
/// governing policies and reconciled records.
fn statements() -> &'static MultiRow {
    static STATEMENTS: std::sync::OnceLock<MultiRow> = std::sync::OnceLock::new();
    STATEMENTS.get_or_init(|| {
        MultiRow::per_rows(|n| {
            let tickets = |table: &str| {
                (0..n)
                    .map(|i| format!("({table}.source = ${} AND {table}.ticket = ${})", 2 * i + 1, 2 * i + 2))
                    .collect::<Vec<_>>()
                    .join(" OR ")
            };
            format!(
                "SELECT source, ticket, 'governed', policy FROM governed_tickets WHERE {} \
                 UNION ALL SELECT source, ticket, 'reconciled', record FROM evidence \
                 WHERE evidence.trigger_kind = 'reconcile' AND ({})",
                tickets("governed_tickets"),
                tickets("evidence")
            )
        })
        .in_powers_of_two()
    })
}

/// The pasts of `tickets`, one each, in order.
async fn read(db: &Db, tickets: &[TicketRef]) -> StoreResult<Vec<TicketPast>> {
    let mut unique: Vec<&TicketRef> = tickets.iter().collect();
    unique.sort_by(|a, b| (&a.source, &a.key).cmp(&(&b.source, &b.key)));
    unique.dedup();
    let mut found: std::collections::HashMap<(String, String), TicketPast> = Default::default();
    let pieces = match db {
        Db::Postgres(_) => unique.chunks(super::rows::CHUNK).collect(),
        Db::Sqlite { .. } => statements().pieces(&unique),
    };
    for piece in pieces {
        let rows: Vec<(String, String, String, String)> = match db {
            Db::Postgres(pool) => {
                let (sources, keys): (Vec<&str>, Vec<&str>) =
                    piece.iter().map(|t| (t.source.as_str(), t.key.as_str())).unzip();
                sqlx::query_as(POSTGRES)
                    .bind(sources)
                    .bind(keys)
                    .fetch_all(pool)
                    .await?
            }
            Db::Sqlite { read, .. } => {
                let mut query = sqlx::query_as(statements().sql(piece.len()));
                for ticket in piece {
                    query = query.bind(&ticket.source).bind(&ticket.key);
                }
                query.fetch_all(read).await?
            }
        };
        for (source, ticket, part, value) in rows {
            let past = found.entry((source, ticket)).or_default();
            match part.as_str() {
                "governed" => past.governed_by.push(value),
                _ => past.reconciled.push(value),
            }
        }
    }
    Ok(tickets
        .iter()
        .map(|t| {
            let mut past = found
                .get(&(t.source.clone(), t.key.clone()))
                .cloned()
                .unwrap_or_default();
            past.governed_by.sort();
            past
        })
        .collect())
}

impl Store {
    /// The ticket's past: see [`TicketPast`]. Read together with the pasts
    /// other decisions ask for at the same time.
    pub async fn ticket_past(&self, ticket: &TicketRef) -> StoreResult<TicketPast> {
        match self.pasts.ask(vec![ticket.clone()]).await {
            Ok(mut past) => past
                .pop()
                .unwrap_or_else(|| Err(StoreError::Other("no past was read".into()))),
            // The merged read went away: read this one alone.
            Err(_) => read(&self.db, std::slice::from_ref(ticket))
                .await?
                .pop()
                .ok_or_else(|| StoreError::Other("no past was read".into())),
        }
    }

    /// How many merged reads of tickets' pasts this store made, and for how
    /// many asks: this store's share of the process-wide
    /// `closegate_merged_call_asks{kind="ticket_pasts"}`.
    pub fn ticket_past_merges(&self) -> Merges {
        self.pasts.merges()
    }
}

#[cfg(test)]
mod tests {
    use super::{super::rows::CHUNK, statements};

    #[test]
    fn each_statement_binds_two_parameters_per_ticket() {
        for n in (0..=CHUNK.ilog2()).map(|p| 1usize << p) {
            let sql = statements().sql(n);
            assert!(sql.contains(&format!("${}", 2 * n)), "{sql}");
            assert!(!sql.contains(&format!("${}", 2 * n + 1)), "{sql}");
            assert_eq!(sql.matches(" OR ").count(), 2 * (n - 1));
        }
    }
}
