//! The evidence log: append-only, each record hashed with the one before it.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Store, StoreError, StoreResult, with_pool};

/// A decision to record. `content` holds the decision details (checks,
/// observations, reasons, who asked and who closed).
#[derive(Debug, Clone)]
pub struct NewEvidence {
    pub id: String,
    pub delivery: String,
    pub source: String,
    pub ticket: String,
    pub verdict: String,
    pub policy: Option<String>,
    pub mode: String,
    pub content: serde_json::Value,
}

/// One stored evidence record. `record` is the exact JSON text that was hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct EvidenceRecord {
    pub id: String,
    pub seq: i64,
    pub delivery: String,
    pub source: String,
    pub ticket: String,
    pub verdict: String,
    pub policy: Option<String>,
    pub mode: String,
    pub record: String,
    pub created_at: i64,
    pub prev_hash: String,
    pub hash: String,
}

/// The document that is hashed: everything an auditor needs, in a fixed order.
#[derive(Serialize)]
struct Document<'a> {
    id: &'a str,
    seq: i64,
    created_at: i64,
    prev_hash: &'a str,
    delivery: &'a str,
    source: &'a str,
    ticket: &'a str,
    verdict: &'a str,
    policy: Option<&'a str>,
    mode: &'a str,
    content: serde_json::Value,
}

/// `hash = SHA-256(prev_hash || record)`, hex.
pub fn chain_hash(prev_hash: &str, record: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(record.as_bytes());
    hex::encode(h.finalize())
}

impl EvidenceRecord {
    /// Builds the record that follows the chain head `(head_seq, head_hash)`.
    pub(super) fn seal(new: NewEvidence, seq: i64, prev_hash: String, now: i64) -> StoreResult<Self> {
        let doc = Document {
            id: &new.id,
            seq,
            created_at: now,
            prev_hash: &prev_hash,
            delivery: &new.delivery,
            source: &new.source,
            ticket: &new.ticket,
            verdict: &new.verdict,
            policy: new.policy.as_deref(),
            mode: &new.mode,
            content: new.content.clone(),
        };
        let record = serde_json::to_string(&doc).map_err(|e| StoreError::Other(e.to_string()))?;
        let hash = chain_hash(&prev_hash, &record);
        Ok(EvidenceRecord {
            id: new.id,
            seq,
            delivery: new.delivery,
            source: new.source,
            ticket: new.ticket,
            verdict: new.verdict,
            policy: new.policy,
            mode: new.mode,
            record,
            created_at: now,
            prev_hash,
            hash,
        })
    }

    /// The decision details (checks, reasons...) as stored.
    pub fn content(&self) -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(&self.record)
            .ok()
            .and_then(|mut v| v.get_mut("content").map(serde_json::Value::take))
            .unwrap_or_default()
    }
}

fn record_seq(record: &str) -> Option<i64> {
    serde_json::from_str::<serde_json::Value>(record)
        .ok()?
        .get("seq")?
        .as_i64()
}

pub(super) struct AppendSql {
    pub bump_head: &'static str,
    pub insert: &'static str,
    pub set_head_hash: &'static str,
}

/// Appending takes the chain head's row lock first (`UPDATE ... RETURNING`),
/// which serialises appends across PostgreSQL replicas until commit.
pub(super) fn append_evidence_sql() -> AppendSql {
    AppendSql {
        bump_head: "UPDATE chain_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash",
        insert: "INSERT INTO evidence (id, seq, delivery, source, ticket, verdict, policy, mode, \
            record, created_at, prev_hash, hash) \
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        set_head_hash: "UPDATE chain_head SET hash = $1 WHERE id = 1",
    }
}

/// The result of walking the whole chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    pub records: i64,
    pub head_hash: String,
    /// The first broken link, if any: (seq, what is wrong).
    pub broken: Option<(i64, String)>,
}

const COLUMNS: &str = "id, seq, delivery, source, ticket, verdict, policy, mode, record, \
    created_at, prev_hash, hash";

impl Store {
    /// Every evidence record of one ticket, oldest first.
    pub async fn evidence_for_ticket(&self, source: &str, ticket: &str) -> StoreResult<Vec<EvidenceRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM evidence WHERE source = $1 AND ticket = $2 ORDER BY seq");
        Ok(with_pool!(&self.db, read, |pool| {
            sqlx::query_as(&sql).bind(source).bind(ticket).fetch_all(pool).await?
        }))
    }

    /// The evidence record a delivery led to, if it has been decided.
    pub async fn evidence_for_delivery(&self, delivery: &str) -> StoreResult<Option<EvidenceRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM evidence WHERE delivery = $1");
        Ok(with_pool!(&self.db, read, |pool| sqlx::query_as(&sql)
            .bind(delivery)
            .fetch_optional(pool)
            .await?))
    }

    /// Up to `limit` records after sequence number `after`, in chain order.
    pub async fn evidence_page(&self, after: i64, limit: i64) -> StoreResult<Vec<EvidenceRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM evidence WHERE seq > $1 ORDER BY seq LIMIT $2");
        Ok(with_pool!(&self.db, read, |pool| {
            sqlx::query_as(&sql).bind(after).bind(limit).fetch_all(pool).await?
        }))
    }

    /// Recomputes every hash and link, from the first record to the chain head.
    pub async fn verify_chain(&self) -> StoreResult<ChainReport> {
        let mut prev_hash = "0".repeat(64);
        let mut prev_seq = 0;
        let mut broken = None;
        'pages: loop {
            let page = self.evidence_page(prev_seq, 1000).await?;
            if page.is_empty() {
                break;
            }
            for rec in page {
                let problem = if rec.seq != prev_seq + 1 {
                    Some(format!("expected sequence {}, found {}", prev_seq + 1, rec.seq))
                } else if rec.prev_hash != prev_hash {
                    Some("does not link to the previous record".to_string())
                } else if chain_hash(&rec.prev_hash, &rec.record) != rec.hash {
                    Some("content does not match its hash".to_string())
                } else if record_seq(&rec.record) != Some(rec.seq) {
                    Some("record text does not carry its sequence number".to_string())
                } else {
                    None
                };
                if let Some(problem) = problem {
                    broken = Some((rec.seq, problem));
                    break 'pages;
                }
                prev_seq = rec.seq;
                prev_hash = rec.hash;
            }
        }
        let head: (i64, String) = with_pool!(&self.db, read, |pool| {
            sqlx::query_as("SELECT seq, hash FROM chain_head WHERE id = 1")
                .fetch_one(pool)
                .await?
        });
        if broken.is_none() && (head.0 != prev_seq || head.1 != prev_hash) {
            broken = Some((
                head.0,
                "the chain head does not match the last record (records removed?)".into(),
            ));
        }
        Ok(ChainReport {
            records: prev_seq,
            head_hash: head.1,
            broken,
        })
    }
}
