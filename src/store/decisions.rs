//! Recording a decision: the evidence record, the outbox messages it causes and
//! the end of the delivery that triggered it (if any), in one transaction.

use tokio::sync::{mpsc, oneshot};

use super::{
    ClaimUpdate, Db, Delivered, DeliveryOutcome, EvidenceRecord, Finish, NewClaim, NewEffect, NewEvidence, Store,
    StoreError, StoreResult, claims,
    evidence::append_evidence_sql,
    governed,
    outbox::{self, ENQUEUE},
    with_pool,
};

/// What one transaction writes.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    /// The claimed delivery this finishes, and how it ended.
    pub delivery: Option<(String, DeliveryOutcome)>,
    pub evidence: Option<NewEvidence>,
    /// Outbox messages, enqueued only with an evidence record.
    pub effects: Vec<NewEffect>,
    /// What an allowed decision verified; written only with an evidence record,
    /// superseding the ticket's earlier claims.
    pub claims: Vec<NewClaim>,
    /// Claims re-verified by this recording.
    pub claim_updates: Vec<ClaimUpdate>,
    /// Policies that govern the evidence record's ticket from now on.
    pub governed: Vec<String>,
    /// The trace its outbox messages continue.
    pub trace_id: Option<String>,
    /// An outbox message delivered: marked done only while its claim holds
    /// the lease (`AlreadyFinished` otherwise, and nothing else is written).
    pub delivered: Option<Delivered>,
}

impl Recording {
    /// A recording of only an evidence record and its messages.
    pub fn evidence(evidence: NewEvidence, effects: Vec<NewEffect>) -> Self {
        Recording {
            evidence: Some(evidence),
            effects,
            ..Recording::default()
        }
    }
}

/// Most recordings committed together.
const MAX_BATCH: usize = 64;

pub(super) struct RecordJob {
    recording: Recording,
    now: i64,
    reply: oneshot::Sender<StoreResult<Finish>>,
}

/// One task writes every recording: whatever is waiting is committed in one
/// transaction (group commit), each recording still all or nothing. When a
/// batch fails, its recordings are written one by one, so one bad recording
/// fails alone.
pub(super) fn spawn_recorder(db: Db) -> mpsc::Sender<RecordJob> {
    let (tx, mut rx) = mpsc::channel::<RecordJob>(4 * MAX_BATCH);
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
            let recordings: Vec<(&Recording, i64)> = batch.iter().map(|j| (&j.recording, j.now)).collect();
            match write_batch(&db, &recordings).await {
                Ok(finishes) => {
                    for (job, finish) in batch.drain(..).zip(finishes) {
                        let _ = job.reply.send(Ok(finish));
                    }
                }
                Err(_) if batch.len() > 1 => {
                    for job in batch.drain(..) {
                        let one = write_batch(&db, &[(&job.recording, job.now)]).await;
                        let _ = job.reply.send(one.map(|mut f| f.remove(0)));
                    }
                }
                Err(e) => {
                    for job in batch.drain(..) {
                        let _ = job.reply.send(Err(StoreError::Unavailable(e.to_string())));
                    }
                }
            }
        }
    });
    tx
}

impl Store {
    /// Writes a recording. When it finishes a delivery that another replica
    /// finished first, nothing is written and `AlreadyFinished` is returned.
    /// Concurrent callers share one commit.
    pub async fn record(&self, recording: Recording, now: i64) -> StoreResult<Finish> {
        if recording.evidence.is_none() && !recording.claims.is_empty() {
            return Err(StoreError::Other(
                "claims need the evidence record that verified them".into(),
            ));
        }
        let (reply, answer) = oneshot::channel();
        self.recorder
            .send(RecordJob { recording, now, reply })
            .await
            .map_err(|_| StoreError::Unavailable("the recorder has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the recorder has stopped".into()))?
    }
}

/// Writes recordings in one transaction, in order.
async fn write_batch(db: &Db, recordings: &[(&Recording, i64)]) -> StoreResult<Vec<Finish>> {
    const DONE: &str = "UPDATE deliveries SET state = 'done', outcome = $1, evidence_id = $2, \
        decided_at = $3, lease_until = NULL WHERE id = $4 AND state = 'pending'";
    let encoded: Vec<Vec<_>> = recordings
        .iter()
        .map(|(r, _)| r.claims.iter().map(NewClaim::encoded).collect::<StoreResult<Vec<_>>>())
        .collect::<StoreResult<_>>()?;
    with_pool!(db, write, |pool| {
        let mut tx = pool.begin().await?;
        // First the ends each recording depends on (a delivery or an outbox
        // message still held): `None` for a recording that goes ahead.
        let mut finishes: Vec<Option<Finish>> = Vec::with_capacity(recordings.len());
        for (recording, now) in recordings {
            let evidence_id = recording.evidence.as_ref().map(|e| e.id.clone());
            let mut held = true;
            if let Some(delivered) = &recording.delivered {
                held = sqlx::query(outbox::COMPLETE)
                    .bind(*now)
                    .bind(&delivered.id)
                    .bind(&delivered.lease_token)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    > 0;
            }
            if let (true, Some((delivery, outcome))) = (held, &recording.delivery) {
                held = sqlx::query(DONE)
                    .bind(outcome.as_str())
                    .bind(&evidence_id)
                    .bind(*now)
                    .bind(delivery)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    > 0;
            }
            finishes.push((!held).then_some(Finish::AlreadyFinished));
        }
        // Then one bump of the chain head for every record the batch appends:
        // its lock is taken once per commit, late in the transaction.
        let sql = append_evidence_sql();
        let appending = recordings
            .iter()
            .zip(&finishes)
            .filter(|((r, _), f)| f.is_none() && r.evidence.is_some())
            .count() as i64;
        let mut head: (i64, String) = (0, String::new());
        if appending > 0 {
            let (last, hash): (i64, String) = sqlx::query_as(sql.bump_head)
                .bind(appending)
                .fetch_one(&mut *tx)
                .await?;
            head = (last - appending, hash);
        }
        for (((recording, now), encoded_claims), finish) in recordings.iter().zip(&encoded).zip(finishes.iter_mut()) {
            if finish.is_some() {
                continue;
            }
            let now = *now;
            let mut record = None;
            if let Some(new) = recording.evidence.clone() {
                let rec = EvidenceRecord::seal(new, head.0 + 1, std::mem::take(&mut head.1), now)?;
                head = (rec.seq, rec.hash.clone());
                sqlx::query(sql.insert)
                    .bind(&rec.id)
                    .bind(rec.seq)
                    .bind(rec.trigger.kind.as_str())
                    .bind(&rec.trigger.id)
                    .bind(&rec.source)
                    .bind(&rec.ticket)
                    .bind(rec.verdict.as_str())
                    .bind(&rec.policy)
                    .bind(rec.mode.as_str())
                    .bind(&rec.record)
                    .bind(rec.created_at)
                    .bind(&rec.prev_hash)
                    .bind(&rec.hash)
                    .execute(&mut *tx)
                    .await?;
                for effect in &recording.effects {
                    sqlx::query(ENQUEUE)
                        .bind(uuid::Uuid::now_v7().to_string())
                        .bind(&effect.idempotency_key)
                        .bind(effect.lane.as_deref().unwrap_or(&rec.source))
                        .bind(&rec.ticket)
                        .bind(&rec.id)
                        .bind(&effect.payload)
                        .bind(now)
                        .bind(&recording.trace_id)
                        .execute(&mut *tx)
                        .await?;
                }
                for policy in &recording.governed {
                    sqlx::query(governed::REMEMBER)
                        .bind(&rec.source)
                        .bind(&rec.ticket)
                        .bind(policy)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                if let Some(first) = recording.claims.first() {
                    sqlx::query(claims::SUPERSEDE)
                        .bind(&first.ticket.source)
                        .bind(&first.ticket.key)
                        .execute(&mut *tx)
                        .await?;
                }
                for (claim, (requested, spec, observation)) in recording.claims.iter().zip(encoded_claims) {
                    sqlx::query(claims::INSERT)
                        .bind(&claim.id)
                        .bind(&rec.id)
                        .bind(&claim.ticket.source)
                        .bind(&claim.ticket.key)
                        .bind(&claim.policy)
                        .bind(&claim.policy_hash)
                        .bind(&claim.spec.system)
                        .bind(&claim.spec.kind)
                        .bind(&claim.observation.subject)
                        .bind(&claim.observation.object)
                        .bind(claim.spec.expect.to_string())
                        .bind(requested)
                        .bind(spec)
                        .bind(observation)
                        .bind(claim.verified_at)
                        .bind(claim.valid_until)
                        .bind(claim.next_sweep_at)
                        .bind(claim.unverified_until)
                        .execute(&mut *tx)
                        .await?;
                }
                record = Some(rec);
            }
            // Claims re-verified alike (most of a sweep: still as verified) are
            // updated together, one statement per group of ids.
            for (change, ids) in group_updates(&recording.claim_updates) {
                for chunk in ids.chunks(500) {
                    let sql = claims::update_many(chunk.len());
                    let mut query = sqlx::query(&sql)
                        .bind(change.state.as_str())
                        .bind(change.drift)
                        .bind(change.checked_at)
                        .bind(change.next_sweep_at)
                        .bind(change.next_expiry_at)
                        .bind(change.unverified_until);
                    for id in chunk {
                        query = query.bind(*id);
                    }
                    query.execute(&mut *tx).await?;
                }
            }
            *finish = Some(Finish::Finished(record));
        }
        if appending > 0 {
            sqlx::query(sql.set_head_hash).bind(&head.1).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(finishes
            .into_iter()
            .map(|f| f.unwrap_or(Finish::AlreadyFinished))
            .collect())
    })
}

/// What a claim update sets, without the claim's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Change<'a> {
    state: super::ClaimState,
    drift: Option<&'a str>,
    checked_at: i64,
    next_sweep_at: i64,
    next_expiry_at: Option<i64>,
    unverified_until: Option<i64>,
}

/// The updates grouped by what they set, in first-seen order.
fn group_updates(updates: &[ClaimUpdate]) -> Vec<(Change<'_>, Vec<&str>)> {
    let mut groups: Vec<(Change<'_>, Vec<&str>)> = Vec::new();
    let mut index: std::collections::HashMap<Change<'_>, usize> = std::collections::HashMap::new();
    for u in updates {
        let change = Change {
            state: u.state,
            drift: u.drift.as_deref(),
            checked_at: u.checked_at,
            next_sweep_at: u.next_sweep_at,
            next_expiry_at: u.next_expiry_at,
            unverified_until: u.unverified_until,
        };
        let i = *index.entry(change).or_insert_with(|| {
            groups.push((change, Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push(&u.id);
    }
    groups
}
