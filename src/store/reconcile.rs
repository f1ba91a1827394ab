//! The reconciler's watermarks, and what tells a close that was received from
//! one whose webhook never arrived.

use super::{Store, StoreResult, with_pool};

/// A source's watermark, held by one pass until `until` (unix ms): the value
/// that proves the lease is still this pass's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatermarkLease {
    pub watermark: i64,
    pub until: i64,
}

impl Store {
    /// Takes the source's watermark for `lease_ms` (creating it at `initial`),
    /// or `None` while another replica holds it.
    pub async fn claim_watermark(
        &self,
        source: &str,
        initial: i64,
        now: i64,
        lease_ms: i64,
    ) -> StoreResult<Option<WatermarkLease>> {
        const CREATE: &str = "INSERT INTO reconcile_watermarks (source, watermark, updated_at) VALUES ($1, $2, $3) \
            ON CONFLICT (source) DO NOTHING";
        const CLAIM: &str = "UPDATE reconcile_watermarks SET lease_until = $2 \
            WHERE source = $1 AND (lease_until IS NULL OR lease_until < $3) RETURNING watermark";
        let until = now + lease_ms;
        let (db, source) = (self.db.clone(), source.to_string());
        let watermark: Option<i64> = self
            .on_writer(async move {
                Ok(with_pool!(&db, write, |pool| {
                    sqlx::query(CREATE)
                        .bind(&source)
                        .bind(initial)
                        .bind(now)
                        .execute(pool)
                        .await?;
                    sqlx::query_scalar(CLAIM)
                        .bind(&source)
                        .bind(until)
                        .bind(now)
                        .fetch_optional(pool)
                        .await?
                }))
            })
            .await?;
        Ok(watermark.map(|watermark| WatermarkLease { watermark, until }))
    }

    /// Extends a lease this pass still holds to `until`; `None` once another
    /// pass has taken it.
    pub async fn renew_watermark(
        &self,
        source: &str,
        held: WatermarkLease,
        until: i64,
    ) -> StoreResult<Option<WatermarkLease>> {
        const SQL: &str = "UPDATE reconcile_watermarks SET lease_until = $3 \
            WHERE source = $1 AND lease_until = $2 RETURNING watermark";
        let (db, source) = (self.db.clone(), source.to_string());
        let watermark: Option<i64> = self
            .on_writer(async move {
                Ok(with_pool!(&db, write, |pool| {
                    sqlx::query_scalar(SQL)
                        .bind(&source)
                        .bind(held.until)
                        .bind(until)
                        .fetch_optional(pool)
                        .await?
                }))
            })
            .await?;
        Ok(watermark.map(|watermark| WatermarkLease { watermark, until }))
    }

    /// Moves the watermark (never backwards) and lets the lease go, if this
    /// pass still holds it; `false` (nothing changed) once another pass took it.
    pub async fn release_watermark(
        &self,
        source: &str,
        held: WatermarkLease,
        watermark: Option<i64>,
        now: i64,
    ) -> StoreResult<bool> {
        const SQL: &str = "UPDATE reconcile_watermarks SET lease_until = NULL, updated_at = $3, \
            watermark = CASE WHEN $2 IS NOT NULL AND $2 > watermark THEN $2 ELSE watermark END \
            WHERE source = $1 AND lease_until = $4";
        let (db, source) = (self.db.clone(), source.to_string());
        let released = self
            .on_writer(async move {
                Ok(with_pool!(&db, write, |pool| {
                    sqlx::query(SQL)
                        .bind(&source)
                        .bind(watermark)
                        .bind(now)
                        .bind(held.until)
                        .execute(pool)
                        .await?
                        .rows_affected()
                }))
            })
            .await?;
        Ok(released == 1)
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
