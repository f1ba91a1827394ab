//! The reconciler's watermarks, and what tells a close that was received from
//! one whose webhook never arrived.

use super::{Store, StoreResult, with_pool};

impl Store {
    /// Takes the source's watermark for `lease_ms` (creating it at `initial`),
    /// or `None` while another replica holds it.
    pub async fn claim_watermark(
        &self,
        source: &str,
        initial: i64,
        now: i64,
        lease_ms: i64,
    ) -> StoreResult<Option<i64>> {
        const CREATE: &str = "INSERT INTO reconcile_watermarks (source, watermark, updated_at) VALUES ($1, $2, $3) \
            ON CONFLICT (source) DO NOTHING";
        const CLAIM: &str = "UPDATE reconcile_watermarks SET lease_until = $2 \
            WHERE source = $1 AND (lease_until IS NULL OR lease_until < $3) RETURNING watermark";
        Ok(with_pool!(&self.db, write, |pool| {
            sqlx::query(CREATE)
                .bind(source)
                .bind(initial)
                .bind(now)
                .execute(pool)
                .await?;
            sqlx::query_scalar(CLAIM)
                .bind(source)
                .bind(now + lease_ms)
                .bind(now)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Moves the watermark (never backwards) and lets the lease go.
    pub async fn release_watermark(&self, source: &str, watermark: Option<i64>, now: i64) -> StoreResult<()> {
        const SQL: &str = "UPDATE reconcile_watermarks SET lease_until = NULL, updated_at = $3, \
            watermark = CASE WHEN $2 IS NOT NULL AND $2 > watermark THEN $2 ELSE watermark END WHERE source = $1";
        with_pool!(&self.db, write, |pool| {
            sqlx::query(SQL)
                .bind(source)
                .bind(watermark)
                .bind(now)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The source's watermark, if it has one.
    pub async fn watermark(&self, source: &str) -> StoreResult<Option<i64>> {
        const SQL: &str = "SELECT watermark FROM reconcile_watermarks WHERE source = $1";
        Ok(with_pool!(&self.db, read, |pool| {
            sqlx::query_scalar(SQL).bind(source).fetch_optional(pool).await?
        }))
    }

    /// Whether a delivery of `source` with this id was received.
    pub async fn delivery_received(&self, source: &str, delivery_id: &str) -> StoreResult<bool> {
        const SQL: &str = "SELECT EXISTS (SELECT 1 FROM deliveries WHERE source = $1 AND delivery_id = $2)";
        let found: bool = with_pool!(&self.db, read, |pool| {
            sqlx::query_scalar(SQL)
                .bind(source)
                .bind(delivery_id)
                .fetch_one(pool)
                .await?
        });
        Ok(found)
    }

    /// Deliveries of `source` stored and not yet decided.
    pub async fn pending_deliveries(&self, source: &str) -> StoreResult<i64> {
        const SQL: &str = "SELECT COUNT(*) FROM deliveries WHERE source = $1 AND state = 'pending'";
        Ok(with_pool!(&self.db, read, |pool| {
            sqlx::query_scalar(SQL).bind(source).fetch_one(pool).await?
        }))
    }

    /// The scopes (`owner/repo`, GitLab project paths) of tickets of `source`
    /// closegate has seen: where a forge's closes are listed.
    pub async fn ticket_scopes(&self, source: &str) -> StoreResult<Vec<String>> {
        const SQL: &str = "SELECT ticket FROM ticket_states WHERE source = $1 \
            UNION SELECT ticket FROM governed_tickets WHERE source = $1";
        let tickets: Vec<String> = with_pool!(&self.db, read, |pool| {
            sqlx::query_scalar(SQL).bind(source).fetch_all(pool).await?
        });
        let mut scopes: Vec<String> = tickets
            .iter()
            .filter_map(|t| t.rsplit_once('#').map(|(scope, _)| scope.to_string()))
            .collect();
        scopes.sort();
        scopes.dedup();
        Ok(scopes)
    }
}
