//! What the store holds right now, for `/metrics`: read at scrape time, so a
//! replica that restarts reports the same figures as the others.

use super::{Store, StoreResult, with_pool};

/// One source's outbox lane.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OutboxLane {
    pub source: String,
    /// Messages waiting to be delivered.
    pub backlog: i64,
    /// When the oldest waiting message was enqueued (ms), if any waits.
    pub oldest_created_at: Option<i64>,
    /// Messages parked after too many failures.
    pub dead: i64,
}

/// The store's gauges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreGauges {
    pub lanes: Vec<OutboxLane>,
    /// Claims whose access is still verified and watched for drift.
    pub claims_active: i64,
    /// Active claims whose expiry check is due and not yet done.
    pub expiries_due: i64,
}

const LANES: &str = "SELECT source, COUNT(CASE WHEN state = 'pending' THEN 1 END) AS backlog, \
    MIN(CASE WHEN state = 'pending' THEN created_at END) AS oldest_created_at, \
    COUNT(CASE WHEN state = 'dead' THEN 1 END) AS dead \
    FROM outbox WHERE state IN ('pending', 'dead') GROUP BY source ORDER BY source";

const CLAIMS: &str = "SELECT COUNT(*), COUNT(CASE WHEN next_expiry_at <= $1 THEN 1 END) \
    FROM claims WHERE state = 'active'";

impl Store {
    /// Outbox lanes, active claims and due expiries at `now` (ms).
    pub async fn gauges(&self, now: i64) -> StoreResult<StoreGauges> {
        let (lanes, (claims_active, expiries_due)) = with_pool!(&self.db, read, |pool| {
            let lanes: Vec<OutboxLane> = sqlx::query_as(LANES).fetch_all(pool).await?;
            let claims: (i64, i64) = sqlx::query_as(CLAIMS).bind(now).fetch_one(pool).await?;
            (lanes, claims)
        });
        Ok(StoreGauges {
            lanes,
            claims_active,
            expiries_due,
        })
    }
}
