//! Synchronous gate checks: each caller's request ids, bound to the question
//! they asked.

use super::{Store, StoreResult, with_pool};
use crate::domain::Trigger;

/// What claiming a gate-check request id found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateCheckClaim {
    /// A new id, or one whose decider stopped: decide it. `claimed_at` is the
    /// claim's token, which giving the id back must still match.
    New { claimed_at: i64 },
    /// The id was used before for the same question: answer what was
    /// recorded, or "still running".
    Repeat,
    /// The id was used before for another question: refuse.
    Conflict,
}

impl Store {
    /// Claims `request_id` in `caller`'s namespace for the question whose
    /// SHA-256 is `question`. An id claimed for the same question before
    /// `stale_before` with nothing recorded under `trigger` is taken over:
    /// its decider is presumed stopped. Should it still be running, the store
    /// keeps only the first of the two records.
    pub async fn claim_gate_check(
        &self,
        caller: &str,
        request_id: &str,
        question: &str,
        trigger: &Trigger,
        now: i64,
        stale_before: i64,
    ) -> StoreResult<GateCheckClaim> {
        const INSERT: &str = "INSERT INTO gate_checks (caller, request_id, question_sha256, created_at) \
            VALUES ($1, $2, $3, $4) ON CONFLICT (caller, request_id) DO NOTHING";
        const GET: &str = "SELECT question_sha256, created_at, \
            EXISTS (SELECT 1 FROM evidence WHERE trigger_kind = $3 AND trigger_id = $4) \
            FROM gate_checks WHERE caller = $1 AND request_id = $2";
        const TAKE_OVER: &str = "UPDATE gate_checks SET created_at = $4 \
            WHERE caller = $1 AND request_id = $2 AND created_at = $3 \
            AND NOT EXISTS (SELECT 1 FROM evidence WHERE trigger_kind = $5 AND trigger_id = $6)";
        with_pool!(&self.db, write, |pool| {
            // An id given back, taken over or answered between two of these
            // statements is looked at again.
            loop {
                let inserted = sqlx::query(INSERT)
                    .bind(caller)
                    .bind(request_id)
                    .bind(question)
                    .bind(now)
                    .execute(pool)
                    .await?
                    .rows_affected();
                if inserted == 1 {
                    return Ok(GateCheckClaim::New { claimed_at: now });
                }
                let asked: Option<(String, i64, bool)> = sqlx::query_as(GET)
                    .bind(caller)
                    .bind(request_id)
                    .bind(trigger.kind.as_str())
                    .bind(&trigger.id)
                    .fetch_optional(pool)
                    .await?;
                let claimed_at = match asked {
                    None => continue,
                    Some((asked, _, _)) if asked != question => return Ok(GateCheckClaim::Conflict),
                    Some((_, claimed_at, recorded)) if recorded || claimed_at >= stale_before => {
                        return Ok(GateCheckClaim::Repeat);
                    }
                    Some((_, claimed_at, _)) => claimed_at,
                };
                let taken = sqlx::query(TAKE_OVER)
                    .bind(caller)
                    .bind(request_id)
                    .bind(claimed_at)
                    .bind(now)
                    .bind(trigger.kind.as_str())
                    .bind(&trigger.id)
                    .execute(pool)
                    .await?
                    .rows_affected();
                if taken == 1 {
                    return Ok(GateCheckClaim::New { claimed_at: now });
                }
            }
        })
    }

    /// Gives back `request_id` after its decision failed with nothing
    /// recorded under `trigger`, so that the caller's retry under the same id
    /// is decided afresh instead of being answered "still running" for ever.
    /// An id whose decision was recorded, or that another decider has taken
    /// over since `claimed_at`, is kept.
    pub async fn release_gate_check(
        &self,
        caller: &str,
        request_id: &str,
        claimed_at: i64,
        trigger: &Trigger,
    ) -> StoreResult<()> {
        const DELETE: &str = "DELETE FROM gate_checks WHERE caller = $1 AND request_id = $2 AND created_at = $3 \
            AND NOT EXISTS (SELECT 1 FROM evidence WHERE trigger_kind = $4 AND trigger_id = $5)";
        with_pool!(&self.db, write, |pool| {
            sqlx::query(DELETE)
                .bind(caller)
                .bind(request_id)
                .bind(claimed_at)
                .bind(trigger.kind.as_str())
                .bind(&trigger.id)
                .execute(pool)
                .await?;
            Ok(())
        })
    }
}
