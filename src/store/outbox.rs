//! Outbox messages: helpdesk calls owed because of a decision. Claimed under a
//! lease, retried with backoff, parked as `dead` after too many failures and
//! never deleted.

use super::{Store, StoreResult, with_pool};

/// A message to enqueue with a decision.
#[derive(Debug, Clone)]
pub struct NewEffect {
    /// Stable across retries and replicas; also written into the helpdesk comment.
    pub idempotency_key: String,
    /// The effect, as JSON.
    pub payload: String,
    /// The lane it is delivered in, when not the ticket's source (a sink's).
    pub lane: Option<String>,
}

/// A message claimed by this replica.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedEffect {
    pub id: String,
    pub idempotency_key: String,
    pub source: String,
    pub ticket: String,
    pub payload: String,
    pub attempts: i64,
    /// This claim's fencing token: renewals and results must carry it.
    pub lease_token: String,
    /// The trace of the decision that owes it.
    pub trace_id: Option<String>,
    /// The evidence record that enqueued it.
    pub evidence_id: String,
}

/// A message delivered under a claim, to be marked done if the claim still
/// holds its lease.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub id: String,
    pub lease_token: String,
}

/// A message not yet delivered nor parked, in statements that name their
/// messages by id. A message is `pending`, `done` or `dead`; "neither done
/// nor dead" rather than `state = 'pending'` matches no partial index, for
/// the reason given at `deliveries::undecided`.
macro_rules! undelivered {
    () => {
        "state NOT IN ('done', 'dead')"
    };
}

/// Marks delivered the messages `(id, lease_token, done_at)` of the tuples
/// `{}` whose claim still holds: the fencing check. Answers their ids and
/// tokens.
pub(super) const COMPLETE: &str = concat!(
    "UPDATE outbox SET state = 'done', done_at = v.column3, lease_until = NULL, \
    last_error = NULL FROM (VALUES {}) AS v WHERE outbox.id = v.column1 AND outbox.lease_token = v.column2 \
    AND outbox.",
    undelivered!(),
    " RETURNING id, lease_token"
);

/// Enqueues messages (followed by `VALUES`); a key already enqueued is kept.
pub(super) const ENQUEUE: (&str, &str) = (
    "INSERT INTO outbox (id, idempotency_key, source, ticket, evidence_id, payload, next_attempt_at, created_at, \
     trace_id)",
    "ON CONFLICT (idempotency_key) DO NOTHING",
);

/// Picked once, in a materialised CTE (see the deliveries' claim). `{lane}`
/// is `source = $3` for one lane's claim, which then walks that lane's part of
/// `outbox_lane_due` in order and stops at the batch; a claim of any lane
/// (`$3` bound to NULL) is for tests and tools only.
const CLAIM: &str = concat!(
    "WITH picked AS MATERIALIZED (SELECT id FROM outbox WHERE state = 'pending' AND {lane} \
        AND next_attempt_at <= $2 AND (lease_until IS NULL OR lease_until < $2) \
        ORDER BY next_attempt_at, created_at LIMIT $5 {lock}) \
    UPDATE outbox SET lease_until = $1, attempts = attempts + 1, lease_token = $4 \
    WHERE id IN (SELECT id FROM picked) AND ",
    undelivered!(),
    " AND (lease_until IS NULL OR lease_until < $2) \
    RETURNING id, idempotency_key, source, ticket, payload, attempts, lease_token, trace_id, evidence_id"
);

impl Store {
    /// Claims the message due soonest (of `source`, when given), if any is due
    /// at `now`, with a fresh fencing token.
    pub async fn claim_effect(
        &self,
        now: i64,
        lease_ms: i64,
        source: Option<&str>,
    ) -> StoreResult<Option<ClaimedEffect>> {
        Ok(self.claim_effects(now, lease_ms, source, 1).await?.pop())
    }

    /// Claims up to `limit` messages due at `now` (of `source`, when given) in
    /// one statement, soonest due first, under one fresh fencing token.
    pub async fn claim_effects(
        &self,
        now: i64,
        lease_ms: i64,
        source: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<ClaimedEffect>> {
        // Two statements rather than `($3 IS NULL OR source = $3)`, which no
        // index can serve in order.
        let lane = if source.is_some() { "source = $3" } else { "$3 IS NULL" };
        let sql = self.db.with_claim_lock(&CLAIM.replace("{lane}", lane));
        let token = uuid::Uuid::new_v4().to_string();
        let (db, source) = (self.db.clone(), source.map(str::to_string));
        self.on_writer(async move {
            Ok(with_pool!(&db, write, |pool| {
                sqlx::query_as(&sql)
                    .bind(now + lease_ms)
                    .bind(now)
                    .bind(&source)
                    .bind(&token)
                    .bind(limit.max(1) as i64)
                    .fetch_all(pool)
                    .await?
            }))
        })
        .await
    }

    /// Extends a claim's lease; false when the claim no longer holds it.
    pub async fn renew_effect(&self, msg: &ClaimedEffect, until: i64) -> StoreResult<bool> {
        self.fenced(msg, "lease_until = $3", Some(until), None).await
    }

    /// Marks a message delivered; false (and nothing written) when the claim
    /// lost its lease to another replica. Concurrent completions share one
    /// commit with whatever else is being recorded.
    pub async fn complete_effect(&self, msg: &ClaimedEffect, now: i64) -> StoreResult<bool> {
        let delivered = super::Delivered {
            id: msg.id.clone(),
            lease_token: msg.lease_token.clone(),
        };
        let recording = super::Recording {
            delivered: Some(delivered),
            ..Default::default()
        };
        Ok(matches!(self.record(recording, now).await?, super::Finish::Finished(_)))
    }

    /// Records a failed attempt: retried at `retry_at`, or parked as dead.
    /// False (and nothing written) when the claim lost its lease.
    pub async fn fail_effect(&self, msg: &ClaimedEffect, error: &str, retry_at: Option<i64>) -> StoreResult<bool> {
        let error = Some(error.to_string());
        match retry_at {
            Some(at) => {
                self.fenced(
                    msg,
                    "next_attempt_at = $3, lease_until = NULL, last_error = $4",
                    Some(at),
                    error,
                )
                .await
            }
            None => {
                self.fenced(msg, "state = 'dead', lease_until = NULL, last_error = $3", None, error)
                    .await
            }
        }
    }

    /// Updates a message with `set` only while `msg`'s claim holds its lease
    /// (`id = $1 AND lease_token = $2`, neither done nor dead), binding `at` and then
    /// `error` after them, on the writer thread; false when the claim lost it.
    async fn fenced(
        &self,
        msg: &ClaimedEffect,
        set: &'static str,
        at: Option<i64>,
        error: Option<String>,
    ) -> StoreResult<bool> {
        let sql = format!(
            concat!(
                "UPDATE outbox SET {} WHERE id = $1 AND lease_token = $2 AND ",
                undelivered!()
            ),
            set
        );
        let (db, id, token) = (self.db.clone(), msg.id.clone(), msg.lease_token.clone());
        self.on_writer(async move {
            Ok(with_pool!(&db, write, |pool| {
                let mut query = sqlx::query(&sql).bind(&id).bind(&token);
                if let Some(at) = at {
                    query = query.bind(at);
                }
                if let Some(error) = &error {
                    query = query.bind(error);
                }
                query.execute(pool).await?.rows_affected() == 1
            }))
        })
        .await
    }
}
