//! Synchronous gate checks: each caller's request ids, bound to the question
//! they asked.

use super::{Store, StoreResult, with_pool};
use crate::domain::Trigger;

/// What claiming a gate-check request id found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateCheckClaim {
    /// A new id: decide it.
    New,
    /// The id was used before for the same question: answer what was recorded.
    Repeat,
    /// The id was used before for another question: refuse.
    Conflict,
}

impl Store {
    /// Claims `request_id` in `caller`'s namespace for the question whose
    /// SHA-256 is `question`.
    pub async fn claim_gate_check(
        &self,
        caller: &str,
        request_id: &str,
        question: &str,
        now: i64,
    ) -> StoreResult<GateCheckClaim> {
        const INSERT: &str = "INSERT INTO gate_checks (caller, request_id, question_sha256, created_at) \
            VALUES ($1, $2, $3, $4) ON CONFLICT (caller, request_id) DO NOTHING";
        const GET: &str = "SELECT question_sha256 FROM gate_checks WHERE caller = $1 AND request_id = $2";
        with_pool!(&self.db, write, |pool| {
            // An id given back between the insert and the read is claimed again.
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
                    return Ok(GateCheckClaim::New);
                }
                let asked: Option<String> = sqlx::query_scalar(GET)
                    .bind(caller)
                    .bind(request_id)
                    .fetch_optional(pool)
                    .await?;
                match asked {
                    Some(asked) if asked == question => return Ok(GateCheckClaim::Repeat),
                    Some(_) => return Ok(GateCheckClaim::Conflict),
                    None => continue,
                }
            }
        })
    }

    /// Gives back `request_id` after its decision failed with nothing
    /// recorded under `trigger`, so that the caller's retry under the same id
    /// is decided afresh instead of being answered "still running" for ever.
    /// An id whose decision was recorded is kept.
    pub async fn release_gate_check(
        &self,
        caller: &str,
        request_id: &str,
        question: &str,
        trigger: &Trigger,
    ) -> StoreResult<()> {
        const DELETE: &str = "DELETE FROM gate_checks WHERE caller = $1 AND request_id = $2 AND question_sha256 = $3 \
            AND NOT EXISTS (SELECT 1 FROM evidence WHERE trigger_kind = $4 AND trigger_id = $5)";
        with_pool!(&self.db, write, |pool| {
            sqlx::query(DELETE)
                .bind(caller)
                .bind(request_id)
                .bind(question)
                .bind(trigger.kind.as_str())
                .bind(&trigger.id)
                .execute(pool)
                .await?;
            Ok(())
        })
    }
}
