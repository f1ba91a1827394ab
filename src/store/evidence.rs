//! The evidence log: append-only, each record hashed with the one before it.
//! Rows are typed on the way in and out; the hashed text is kept byte for byte.

use serde::Serialize;

use super::{Store, StoreError, StoreResult, with_pool};
use crate::{
    domain::{Mode, TicketRef, Trigger, Verdict},
    evidence::{EvidenceContent, SealedDocument, chain_hash},
};

/// A decision to record.
#[derive(Debug, Clone)]
pub struct NewEvidence {
    pub id: String,
    pub trigger: Trigger,
    pub ticket: TicketRef,
    pub verdict: Verdict,
    pub policy: Option<String>,
    pub mode: Mode,
    pub content: EvidenceContent,
}

/// One stored evidence record. `record` is the exact JSON text that was hashed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvidenceRecord {
    pub id: String,
    pub seq: i64,
    pub trigger: Trigger,
    pub source: String,
    pub ticket: String,
    pub verdict: Verdict,
    pub policy: Option<String>,
    pub mode: Mode,
    pub record: String,
    pub created_at: i64,
    pub prev_hash: String,
    pub hash: String,
}

/// A row as stored, before its columns are trusted.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct EvidenceRow {
    id: String,
    seq: i64,
    trigger_kind: String,
    trigger_id: String,
    source: String,
    ticket: String,
    verdict: String,
    policy: Option<String>,
    mode: String,
    record: String,
    created_at: i64,
    prev_hash: String,
    hash: String,
}

impl TryFrom<EvidenceRow> for EvidenceRecord {
    type Error = StoreError;

    fn try_from(row: EvidenceRow) -> Result<Self, Self::Error> {
        let corrupt = |what: &str, e: &dyn std::fmt::Display| {
            StoreError::Other(format!("evidence record #{}: {what}: {e}", row.seq))
        };
        Ok(EvidenceRecord {
            trigger: Trigger::new(
                row.trigger_kind.parse().map_err(|e| corrupt("trigger kind", &e))?,
                row.trigger_id.clone(),
            ),
            verdict: row.verdict.parse().map_err(|e| corrupt("verdict", &e))?,
            mode: row.mode.parse().map_err(|e| corrupt("mode", &e))?,
            id: row.id,
            seq: row.seq,
            source: row.source,
            ticket: row.ticket,
            policy: row.policy,
            record: row.record,
            created_at: row.created_at,
            prev_hash: row.prev_hash,
            hash: row.hash,
        })
    }
}

impl EvidenceRecord {
    /// Builds the record that follows the chain head `(seq - 1, prev_hash)`.
    pub(super) fn seal(new: NewEvidence, seq: i64, prev_hash: String, now: i64) -> StoreResult<Self> {
        let doc = SealedDocument {
            id: new.id,
            seq,
            created_at: now,
            prev_hash,
            trigger: Some(new.trigger.clone()),
            delivery: None,
            source: new.ticket.source,
            ticket: new.ticket.key,
            verdict: new.verdict,
            policy: new.policy,
            mode: new.mode,
            content: new.content,
        };
        let record = serde_json::to_string(&doc).map_err(|e| StoreError::Other(e.to_string()))?;
        let hash = chain_hash(&doc.prev_hash, &record);
        Ok(EvidenceRecord {
            id: doc.id,
            seq,
            trigger: new.trigger,
            source: doc.source,
            ticket: doc.ticket,
            verdict: doc.verdict,
            policy: doc.policy,
            mode: doc.mode,
            record,
            created_at: now,
            prev_hash: doc.prev_hash,
            hash,
        })
    }

    /// The hashed document, typed.
    pub fn document(&self) -> Result<SealedDocument, serde_json::Error> {
        serde_json::from_str(&self.record)
    }

    /// The decision details (event, checks, reasons...) as stored.
    pub fn content(&self) -> Result<EvidenceContent, serde_json::Error> {
        self.document().map(|d| d.content)
    }
}

impl EvidenceRow {
    /// What is wrong with this row on its own: a column that differs from the
    /// hashed document it sits beside, or a hash that does not match.
    fn problem(&self) -> Option<String> {
        if chain_hash(&self.prev_hash, &self.record) != self.hash {
            return Some("content does not match its hash".into());
        }
        let doc: SealedDocument = match serde_json::from_str(&self.record) {
            Ok(doc) => doc,
            Err(e) => return Some(format!("the hashed record does not parse: {e}")),
        };
        let trigger = doc.trigger();
        let columns: [(&str, bool); 11] = [
            ("id", doc.id == self.id),
            ("seq", doc.seq == self.seq),
            ("created_at", doc.created_at == self.created_at),
            ("prev_hash", doc.prev_hash == self.prev_hash),
            (
                "trigger_kind",
                trigger.as_ref().map(|t| t.kind.as_str()) == Some(self.trigger_kind.as_str()),
            ),
            (
                "trigger_id",
                trigger.as_ref().map(|t| t.id.as_str()) == Some(self.trigger_id.as_str()),
            ),
            ("source", doc.source == self.source),
            ("ticket", doc.ticket == self.ticket),
            ("verdict", doc.verdict.as_str() == self.verdict),
            ("policy", doc.policy == self.policy),
            ("mode", doc.mode.as_str() == self.mode),
        ];
        columns
            .iter()
            .find(|(_, same)| !same)
            .map(|(column, _)| format!("column {column} differs from the hashed record"))
    }
}

/// Appending moves the chain head by the number of records a commit appends
/// (`UPDATE ... RETURNING`, the new last sequence number and the hash before),
/// taking its row lock once per commit; appends of PostgreSQL replicas are
/// serialised commit by commit, not record by record.
pub(super) const BUMP_HEAD: &str = "UPDATE chain_head SET seq = seq + $1 WHERE id = 1 RETURNING seq, hash";

/// The columns of an appended record, in [`EvidenceRecord`] field order
/// (followed by `VALUES`).
pub(super) const APPEND: &str = "INSERT INTO evidence (id, seq, trigger_kind, trigger_id, source, ticket, verdict, \
    policy, mode, record, created_at, prev_hash, hash)";

/// Takes the chain head's lock without changing it, ahead of [`BUMP_HEAD`].
pub(super) const LOCK_HEAD: &str = "UPDATE chain_head SET seq = seq WHERE id = 1";

/// Of the triggers (kind, id) in `{}` (`VALUES` tuples), those with a record.
pub(super) const TRIGGERS_RECORDED: &str = "SELECT v.column1, v.column2 FROM (VALUES {}) AS v \
    WHERE EXISTS (SELECT 1 FROM evidence WHERE trigger_kind = v.column1 AND trigger_id = v.column2)";

/// The last record's hash, set once the commit's records are sealed.
pub(super) const SET_HEAD_HASH: &str = "UPDATE chain_head SET hash = $1 WHERE id = 1";

/// The result of walking the whole chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    pub records: i64,
    pub head_hash: String,
    /// The first broken link, if any: (seq, what is wrong).
    pub broken: Option<(i64, String)>,
}

const COLUMNS: &str = "id, seq, trigger_kind, trigger_id, source, ticket, verdict, policy, mode, record, \
    created_at, prev_hash, hash";

impl Store {
    async fn evidence_rows(&self, filter: &str, binds: &[&str], tail: &str) -> StoreResult<Vec<EvidenceRow>> {
        let sql = format!("SELECT {COLUMNS} FROM evidence WHERE {filter} {tail}");
        Ok(with_pool!(&self.db, read, |pool| {
            let mut query = sqlx::query_as(&sql);
            for b in binds {
                query = query.bind(*b);
            }
            query.fetch_all(pool).await?
        }))
    }

    fn typed(rows: Vec<EvidenceRow>) -> StoreResult<Vec<EvidenceRecord>> {
        rows.into_iter().map(EvidenceRecord::try_from).collect()
    }

    /// Every evidence record of one ticket, oldest first.
    pub async fn evidence_for_ticket(&self, source: &str, ticket: &str) -> StoreResult<Vec<EvidenceRecord>> {
        Self::typed(
            self.evidence_rows("source = $1 AND ticket = $2", &[source, ticket], "ORDER BY seq")
                .await?,
        )
    }

    /// The evidence record a trigger led to, if it has been decided.
    pub async fn evidence_for_trigger(&self, trigger: &Trigger) -> StoreResult<Option<EvidenceRecord>> {
        let rows = self
            .evidence_rows(
                "trigger_kind = $1 AND trigger_id = $2",
                &[trigger.kind.as_str(), &trigger.id],
                "ORDER BY seq LIMIT 1",
            )
            .await?;
        Ok(Self::typed(rows)?.pop())
    }

    /// One evidence record by id.
    pub async fn evidence_by_id(&self, id: &str) -> StoreResult<Option<EvidenceRecord>> {
        Ok(self.evidence_by_ids(&[id]).await?.pop())
    }

    /// The evidence records of `ids` that exist, in any order: one read per
    /// [`super::rows::CHUNK`] ids.
    pub async fn evidence_by_ids(&self, ids: &[&str]) -> StoreResult<Vec<EvidenceRecord>> {
        let mut records = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(super::rows::CHUNK) {
            let filter = format!("id IN ({})", super::rows::numbered(1, chunk.len()));
            records.extend(Self::typed(self.evidence_rows(&filter, chunk, "").await?)?);
        }
        Ok(records)
    }

    async fn evidence_rows_after(&self, after: i64, limit: i64) -> StoreResult<Vec<EvidenceRow>> {
        let sql = format!("SELECT {COLUMNS} FROM evidence WHERE seq > $1 ORDER BY seq LIMIT $2");
        Ok(with_pool!(&self.db, read, |pool| {
            sqlx::query_as(&sql).bind(after).bind(limit).fetch_all(pool).await?
        }))
    }

    /// Every record, in chain order.
    pub async fn evidence_all(&self) -> StoreResult<Vec<EvidenceRecord>> {
        let mut records = Vec::new();
        loop {
            let page = self
                .evidence_page(records.last().map_or(0, |r: &EvidenceRecord| r.seq), 1000)
                .await?;
            if page.is_empty() {
                return Ok(records);
            }
            records.extend(page);
        }
    }

    /// Up to `limit` records after sequence number `after`, in chain order.
    pub async fn evidence_page(&self, after: i64, limit: i64) -> StoreResult<Vec<EvidenceRecord>> {
        Self::typed(self.evidence_rows_after(after, limit).await?)
    }

    /// Recomputes every hash and link, from the first record to the chain head,
    /// and checks every column against the hashed record it belongs to.
    pub async fn verify_chain(&self) -> StoreResult<ChainReport> {
        let mut prev_hash = "0".repeat(64);
        let mut prev_seq = 0;
        let mut broken = None;
        'pages: loop {
            let page = self.evidence_rows_after(prev_seq, 1000).await?;
            if page.is_empty() {
                break;
            }
            for row in page {
                let problem = if row.seq != prev_seq + 1 {
                    Some(format!("expected sequence {}, found {}", prev_seq + 1, row.seq))
                } else if row.prev_hash != prev_hash {
                    Some("does not link to the previous record".to_string())
                } else {
                    row.problem()
                };
                if let Some(problem) = problem {
                    broken = Some((row.seq, problem));
                    break 'pages;
                }
                prev_seq = row.seq;
                prev_hash = row.hash;
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
