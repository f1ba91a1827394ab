//! Synchronous gate checks: each caller's request ids, bound to the question
//! they asked.

use super::{Store, StoreResult, with_pool};

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
            let asked: String = sqlx::query_scalar(GET)
                .bind(caller)
                .bind(request_id)
                .fetch_one(pool)
                .await?;
            Ok(if asked == question {
                GateCheckClaim::Repeat
            } else {
                GateCheckClaim::Conflict
            })
        })
    }
}
