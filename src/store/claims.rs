//! Entitlement claims: what allowed decisions verified, re-verified at expiry
//! and by the drift sweep. Claimed under leases like every other unit of work.

use serde::Serialize;

use super::{Store, StoreError, StoreResult, with_pool};
use crate::domain::{CheckSpec, Observation, TicketRef, UnknownName, by_name};

/// Where a claim stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimState {
    /// Re-verified by the sweep and, when it has one, at its expiry.
    Active,
    /// A later allowed decision on the ticket verified the access afresh.
    Superseded,
    /// A person reopened the ticket: not checked until it closes again.
    Suspended,
    /// Its expiry was verified: the access is gone.
    Ended,
}

impl ClaimState {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimState::Active => "active",
            ClaimState::Superseded => "superseded",
            ClaimState::Suspended => "suspended",
            ClaimState::Ended => "ended",
        }
    }
}

impl std::str::FromStr for ClaimState {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        by_name(
            &[
                ClaimState::Active,
                ClaimState::Superseded,
                ClaimState::Suspended,
                ClaimState::Ended,
            ],
            ClaimState::as_str,
            s,
        )
    }
}

/// A claim to store with the decision that verified it.
#[derive(Debug, Clone)]
pub struct NewClaim {
    pub id: String,
    pub ticket: TicketRef,
    pub policy: String,
    pub policy_hash: String,
    pub spec: CheckSpec,
    pub observation: Observation,
    pub verified_at: i64,
    pub valid_until: Option<i64>,
    pub next_sweep_at: i64,
    /// A break-glass close: not verified yet, due for verification by then.
    pub unverified_until: Option<i64>,
}

/// A stored claim.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Claim {
    pub id: String,
    pub evidence_id: String,
    pub ticket: TicketRef,
    pub policy: String,
    pub policy_hash: String,
    pub spec: CheckSpec,
    /// What was observed when the claim was verified.
    pub observation: Observation,
    pub verified_at: i64,
    pub valid_until: Option<i64>,
    pub state: ClaimState,
    /// The drift last reported, if it has not been resolved.
    pub drift: Option<String>,
    pub last_checked_at: Option<i64>,
    pub next_sweep_at: i64,
    pub next_expiry_at: Option<i64>,
    pub expiry_attempts: i64,
    /// A break-glass close not verified yet: due for verification by then.
    pub unverified_until: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct ClaimRow {
    id: String,
    evidence_id: String,
    source: String,
    ticket: String,
    policy: String,
    policy_hash: String,
    spec: String,
    observation: String,
    verified_at: i64,
    valid_until: Option<i64>,
    state: String,
    drift: Option<String>,
    last_checked_at: Option<i64>,
    next_sweep_at: i64,
    next_expiry_at: Option<i64>,
    expiry_attempts: i64,
    unverified_until: Option<i64>,
}

impl TryFrom<ClaimRow> for Claim {
    type Error = StoreError;

    fn try_from(row: ClaimRow) -> Result<Self, Self::Error> {
        let corrupt =
            |what: &str, e: &dyn std::fmt::Display| StoreError::Other(format!("claim {}: {what}: {e}", row.id));
        Ok(Claim {
            spec: serde_json::from_str(&row.spec).map_err(|e| corrupt("spec", &e))?,
            observation: serde_json::from_str(&row.observation).map_err(|e| corrupt("observation", &e))?,
            state: row.state.parse().map_err(|e| corrupt("state", &e))?,
            ticket: TicketRef {
                source: row.source,
                key: row.ticket,
            },
            id: row.id,
            evidence_id: row.evidence_id,
            policy: row.policy,
            policy_hash: row.policy_hash,
            verified_at: row.verified_at,
            valid_until: row.valid_until,
            drift: row.drift,
            last_checked_at: row.last_checked_at,
            next_sweep_at: row.next_sweep_at,
            next_expiry_at: row.next_expiry_at,
            expiry_attempts: row.expiry_attempts,
            unverified_until: row.unverified_until,
        })
    }
}

/// What a re-verification changes on a claim (its lease is released too).
#[derive(Debug, Clone)]
pub struct ClaimUpdate {
    pub id: String,
    pub state: ClaimState,
    pub drift: Option<String>,
    pub checked_at: i64,
    pub next_sweep_at: i64,
    pub next_expiry_at: Option<i64>,
    pub unverified_until: Option<i64>,
}

/// Which claims `claims list` and `drift scan` look at.
#[derive(Debug, Clone, Default)]
pub struct ClaimFilter {
    pub ticket: Option<String>,
    pub system: Option<String>,
    pub policy: Option<String>,
    pub drifted: bool,
    /// Only active claims.
    pub active: bool,
}

const COLUMNS: &str = "id, evidence_id, source, ticket, policy, policy_hash, spec, observation, verified_at, \
    valid_until, state, drift, last_checked_at, next_sweep_at, next_expiry_at, expiry_attempts, unverified_until";

pub(super) const INSERT: &str = "INSERT INTO claims (id, evidence_id, source, ticket, policy, policy_hash, system, \
    kind, subject, object, expect, requested, spec, observation, verified_at, valid_until, next_sweep_at, \
    next_expiry_at, unverified_until) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $16, $18)";

pub(super) const SUPERSEDE: &str = "UPDATE claims SET state = 'superseded', next_expiry_at = NULL, lease_until = NULL \
    WHERE source = $1 AND ticket = $2 AND state IN ('active', 'suspended')";

/// Sets the same values on `n` claims, named by ids bound from `$7` on.
pub(super) fn update_many(n: usize) -> String {
    let ids: Vec<String> = (7..7 + n).map(|i| format!("${i}")).collect();
    format!(
        "UPDATE claims SET state = $1, drift = $2, last_checked_at = $3, next_sweep_at = $4, next_expiry_at = $5, \
         unverified_until = $6, lease_until = NULL WHERE id IN ({})",
        ids.join(", ")
    )
}

fn typed(rows: Vec<ClaimRow>) -> StoreResult<Vec<Claim>> {
    rows.into_iter().map(Claim::try_from).collect()
}

impl NewClaim {
    /// The values bound to [`INSERT`] after the evidence id, as text.
    pub(super) fn encoded(&self) -> StoreResult<(String, String, String)> {
        let enc = |e: serde_json::Error| StoreError::Other(format!("cannot encode a claim: {e}"));
        Ok((
            serde_json::to_string(&self.spec.requested).map_err(enc)?,
            serde_json::to_string(&self.spec).map_err(enc)?,
            serde_json::to_string(&self.observation).map_err(enc)?,
        ))
    }
}

impl Store {
    /// Claims the claims of one decision whose expiry check is due, for `lease_ms`.
    pub async fn claim_expiry(&self, now: i64, lease_ms: i64) -> StoreResult<Vec<Claim>> {
        let sql = self.db.with_claim_lock(&format!(
            "UPDATE claims SET lease_until = $1, expiry_attempts = expiry_attempts + 1 \
             WHERE evidence_id = (SELECT evidence_id FROM claims WHERE next_expiry_at <= $2 AND state = 'active' \
                 AND (lease_until IS NULL OR lease_until < $2) ORDER BY next_expiry_at LIMIT 1 {{lock}}) \
             AND state = 'active' AND next_expiry_at IS NOT NULL AND (lease_until IS NULL OR lease_until < $2) \
             RETURNING {COLUMNS}"
        ));
        let db = self.db.clone();
        let rows: Vec<ClaimRow> = self
            .on_writer(async move {
                Ok(with_pool!(&db, write, |pool| {
                    sqlx::query_as(&sql)
                        .bind(now + lease_ms)
                        .bind(now)
                        .fetch_all(pool)
                        .await?
                }))
            })
            .await?;
        typed(rows)
    }

    /// Claims up to `limit` active claims matching `filter` whose sweep is due
    /// by `due`, oldest first, for `lease_ms`.
    pub async fn claim_sweep(
        &self,
        filter: &ClaimFilter,
        due: i64,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> StoreResult<Vec<Claim>> {
        let pick = "SELECT id FROM claims WHERE state = 'active' \
                 AND next_sweep_at <= $2 AND (lease_until IS NULL OR lease_until < $3) \
                 AND ($4 IS NULL OR system = $4) AND ($5 IS NULL OR policy = $5) \
                 ORDER BY next_sweep_at, id LIMIT $6 {lock}";
        // PostgreSQL may evaluate an `IN (… LIMIT …)` subquery once per row and
        // lease more than the batch: there the rows are picked once, in a
        // materialised CTE. SQLite evaluates the subquery once already.
        let sql = self.db.with_claim_lock(&match self.backend() {
            "postgres" => format!(
                "WITH picked AS MATERIALIZED ({pick}) UPDATE claims SET lease_until = $1 \
                 WHERE id IN (SELECT id FROM picked) RETURNING {COLUMNS}"
            ),
            _ => format!("UPDATE claims SET lease_until = $1 WHERE id IN ({pick}) RETURNING {COLUMNS}"),
        });
        let (db, system, policy) = (self.db.clone(), filter.system.clone(), filter.policy.clone());
        let rows: Vec<ClaimRow> = self
            .on_writer(async move {
                Ok(with_pool!(&db, write, |pool| {
                    sqlx::query_as(&sql)
                        .bind(now + lease_ms)
                        .bind(due)
                        .bind(now)
                        .bind(system.as_deref())
                        .bind(policy.as_deref())
                        .bind(limit)
                        .fetch_all(pool)
                        .await?
                }))
            })
            .await?;
        typed(rows)
    }

    /// Suspends a ticket's active claims (a person reopened it).
    pub async fn suspend_claims(&self, ticket: &TicketRef) -> StoreResult<u64> {
        const SQL: &str = "UPDATE claims SET state = 'suspended', lease_until = NULL \
            WHERE source = $1 AND ticket = $2 AND state = 'active'";
        let (db, ticket) = (self.db.clone(), ticket.clone());
        self.on_writer(async move {
            Ok(with_pool!(&db, write, |pool| {
                sqlx::query(SQL)
                    .bind(&ticket.source)
                    .bind(&ticket.key)
                    .execute(pool)
                    .await?
                    .rows_affected()
            }))
        })
        .await
    }

    /// Gives claims back after a failed re-verification; due again at `retry_at`.
    pub async fn release_claims(&self, ids: &[String], retry_at: i64) -> StoreResult<()> {
        const SQL: &str = "UPDATE claims SET lease_until = NULL, \
            next_expiry_at = CASE WHEN next_expiry_at IS NULL THEN NULL ELSE $1 END WHERE id = $2";
        let (db, ids) = (self.db.clone(), ids.to_vec());
        self.on_writer(async move {
            with_pool!(&db, write, |pool| {
                let mut tx = pool.begin().await?;
                for id in &ids {
                    sqlx::query(SQL).bind(retry_at).bind(id).execute(&mut *tx).await?;
                }
                tx.commit().await?;
            });
            Ok(())
        })
        .await
    }

    /// Claims matching `filter`, after id `after`, in id order.
    pub async fn list_claims(&self, filter: &ClaimFilter, after: &str, limit: i64) -> StoreResult<Vec<Claim>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM claims WHERE id > $1 AND ($2 IS NULL OR ticket = $2) \
             AND ($3 IS NULL OR system = $3) AND ($4 IS NULL OR policy = $4) AND ($5 = 0 OR drift IS NOT NULL) \
             AND ($7 = 0 OR state = 'active') ORDER BY id LIMIT $6"
        );
        let rows: Vec<ClaimRow> = with_pool!(&self.db, read, |pool| {
            sqlx::query_as(&sql)
                .bind(after)
                .bind(filter.ticket.as_deref())
                .bind(filter.system.as_deref())
                .bind(filter.policy.as_deref())
                .bind(i64::from(filter.drifted))
                .bind(limit)
                .bind(i64::from(filter.active))
                .fetch_all(pool)
                .await?
        });
        typed(rows)
    }

    /// How many claims match `filter`.
    pub async fn count_claims(&self, filter: &ClaimFilter) -> StoreResult<i64> {
        const SQL: &str = "SELECT COUNT(*) FROM claims WHERE ($1 IS NULL OR ticket = $1) \
            AND ($2 IS NULL OR system = $2) AND ($3 IS NULL OR policy = $3) AND ($4 = 0 OR drift IS NOT NULL) \
            AND ($5 = 0 OR state = 'active')";
        Ok(with_pool!(&self.db, read, |pool| {
            sqlx::query_scalar(SQL)
                .bind(filter.ticket.as_deref())
                .bind(filter.system.as_deref())
                .bind(filter.policy.as_deref())
                .bind(i64::from(filter.drifted))
                .bind(i64::from(filter.active))
                .fetch_one(pool)
                .await?
        }))
    }
}
