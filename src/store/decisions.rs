//! Recording a decision: the evidence record, the outbox messages it causes and
//! the end of the delivery that triggered it (if any), in one transaction.

use tokio::sync::{mpsc, oneshot};

use std::collections::HashSet;

use crate::domain::Trigger;

use super::{
    ClaimUpdate, Db, Delivered, DeliveryOutcome, EvidenceRecord, Finish, NewClaim, NewEffect, NewEvidence, Store,
    StoreError, StoreResult, claims, deliveries, evidence, governed, outbox,
    rows::{MultiRow, execute_in_chunks, fetch_in_chunks},
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
pub(super) fn recorder() -> (mpsc::Sender<RecordJob>, impl FnOnce(Db) -> super::ingest::WriterTask) {
    let (tx, mut rx) = mpsc::channel::<RecordJob>(4 * MAX_BATCH);
    let task = move |db: Db| -> super::ingest::WriterTask {
        Box::pin(async move {
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
        })
    };
    (tx, task)
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

/// The batch's statements, for a power of two rows each.
struct Statements {
    complete: MultiRow,
    done: MultiRow,
    append: MultiRow,
    enqueue: MultiRow,
    remember: MultiRow,
    recorded: MultiRow,
}

fn statements() -> &'static Statements {
    static STATEMENTS: std::sync::OnceLock<Statements> = std::sync::OnceLock::new();
    STATEMENTS.get_or_init(|| Statements {
        complete: MultiRow::around_tuples(3, |tuples| outbox::COMPLETE.replace("{}", tuples)).in_powers_of_two(),
        done: MultiRow::around_tuples(4, |tuples| {
            format!(
                "UPDATE deliveries SET state = 'done', outcome = v.column2, evidence_id = v.column3, \
                 decided_at = v.column4, lease_until = NULL FROM (VALUES {tuples}) AS v \
                 WHERE deliveries.id = v.column1 AND deliveries.{} RETURNING id",
                deliveries::undecided!()
            )
        })
        .in_powers_of_two(),
        append: MultiRow::values(evidence::APPEND, 13, "").in_powers_of_two(),
        enqueue: MultiRow::values(outbox::ENQUEUE.0, 9, outbox::ENQUEUE.1).in_powers_of_two(),
        remember: MultiRow::values(governed::REMEMBER.0, 4, governed::REMEMBER.1).in_powers_of_two(),
        recorded: MultiRow::around_tuples(2, |tuples| evidence::TRIGGERS_RECORDED.replace("{}", tuples))
            .in_powers_of_two(),
    })
}

/// Writes recordings in one transaction, with the effect of writing them one
/// after another in order: a handful of multi-row statements per batch, not a
/// round trip per row.
async fn write_batch(db: &Db, recordings: &[(&Recording, i64)]) -> StoreResult<Vec<Finish>> {
    let s = statements();
    let encoded: Vec<Vec<_>> = recordings
        .iter()
        .map(|(r, _)| r.claims.iter().map(NewClaim::encoded).collect::<StoreResult<Vec<_>>>())
        .collect::<StoreResult<_>>()?;
    // A second recording that completes the same message under the same claim
    // as an earlier one in the batch finds it completed.
    let mut finishes: Vec<Option<Finish>> = recordings.iter().map(|_| None).collect();
    finish_repeats(recordings, &mut finishes, |r| {
        r.delivered.as_ref().map(|d| (&d.id, &d.lease_token))
    });
    // PostgreSQL plans this transaction's statements afresh at each batch: a
    // plan cached while the tables were small (a sequential scan of a few
    // pages where each named row is now one primary-key lookup) would
    // otherwise be kept however far they grow.
    let plan_each_batch = matches!(db, Db::Postgres(_));
    with_pool!(db, write, |pool| {
        let mut tx = pool.begin().await?;
        if plan_each_batch {
            sqlx::query("SET LOCAL plan_cache_mode = force_custom_plan")
                .execute(&mut *tx)
                .await?;
        }
        // First the ends each recording depends on (an outbox message still
        // held, then a delivery still pending): a recording whose end another
        // writer got to first writes nothing.
        let completing: Vec<(&Delivered, i64)> = recordings
            .iter()
            .zip(&finishes)
            .filter(|(_, f)| f.is_none())
            .filter_map(|((r, now), _)| r.delivered.as_ref().map(|d| (d, *now)))
            .collect();
        let completed: HashSet<(String, String)> =
            fetch_in_chunks!(tx, s.complete, completing, (String, String), |query, (d, now)| query
                .bind(&d.id)
                .bind(&d.lease_token)
                .bind(*now))
            .into_iter()
            .collect();
        for ((recording, _), finish) in recordings.iter().zip(finishes.iter_mut()) {
            if let Some(d) = &recording.delivered
                && !completed.contains(&(d.id.clone(), d.lease_token.clone()))
            {
                *finish = Some(Finish::AlreadyFinished);
            }
        }
        // Likewise a second recording, still going ahead, that ends the same
        // delivery.
        finish_repeats(recordings, &mut finishes, |r| r.delivery.as_ref().map(|(id, _)| id));
        let ending: Vec<(&str, DeliveryOutcome, Option<&str>, i64)> = recordings
            .iter()
            .zip(&finishes)
            .filter(|(_, f)| f.is_none())
            .filter_map(|((r, now), _)| {
                let evidence_id = r.evidence.as_ref().map(|e| e.id.as_str());
                r.delivery
                    .as_ref()
                    .map(|(id, outcome)| (id.as_str(), *outcome, evidence_id, *now))
            })
            .collect();
        let ended: HashSet<String> =
            fetch_in_chunks!(tx, s.done, ending, (String,), |query, (id, outcome, evidence, now)| {
                query.bind(*id).bind(outcome.as_str()).bind(*evidence).bind(*now)
            })
            .into_iter()
            .map(|(id,)| id)
            .collect();
        for ((recording, _), finish) in recordings.iter().zip(finishes.iter_mut()) {
            if let Some((id, _)) = &recording.delivery
                && finish.is_none()
                && !ended.contains(id)
            {
                *finish = Some(Finish::AlreadyFinished);
            }
        }
        // A close the reconciler found, or a gate check, is recorded once,
        // whichever replica got there: with the chain head locked (every
        // appender waits on it), a record of a trigger already recorded, or
        // recorded earlier in this batch, ends as `AlreadyFinished`. Only
        // batches holding such a record pay for the check.
        finish_repeats(recordings, &mut finishes, once_trigger);
        let once: Vec<(usize, &Trigger)> = recordings
            .iter()
            .zip(&finishes)
            .enumerate()
            .filter(|(_, (_, f))| f.is_none())
            .filter_map(|(i, ((r, _), _))| once_trigger(r).map(|t| (i, t)))
            .collect();
        if !once.is_empty() {
            sqlx::query(evidence::LOCK_HEAD).execute(&mut *tx).await?;
            let recorded: HashSet<(String, String)> =
                fetch_in_chunks!(tx, s.recorded, once, (String, String), |query, (_, t)| query
                    .bind(t.kind.as_str())
                    .bind(&t.id))
                .into_iter()
                .collect();
            for (i, t) in &once {
                if recorded.contains(&(t.kind.as_str().to_string(), t.id.clone())) {
                    finishes[*i] = Some(Finish::AlreadyFinished);
                }
            }
        }
        // Then one bump of the chain head for every record the batch appends:
        // its lock is taken once per commit, late in the transaction.
        let appending = recordings
            .iter()
            .zip(&finishes)
            .filter(|((r, _), f)| f.is_none() && r.evidence.is_some())
            .count() as i64;
        let mut head: (i64, String) = (0, String::new());
        if appending > 0 {
            let (last, hash): (i64, String) = sqlx::query_as(evidence::BUMP_HEAD)
                .bind(appending)
                .fetch_one(&mut *tx)
                .await?;
            head = (last - appending, hash);
        }
        for ((recording, now), finish) in recordings.iter().zip(finishes.iter_mut()) {
            if finish.is_some() {
                continue;
            }
            let record = match recording.evidence.clone() {
                Some(new) => {
                    let rec = EvidenceRecord::seal(new, head.0 + 1, std::mem::take(&mut head.1), *now)?;
                    head = (rec.seq, rec.hash.clone());
                    Some(rec)
                }
                None => None,
            };
            *finish = Some(Finish::Finished(record));
        }
        // The records, their messages and the tickets they govern, in bulk.
        let written: Vec<(&Recording, i64, &EvidenceRecord)> = recordings
            .iter()
            .zip(&finishes)
            .filter_map(|((r, now), f)| match f {
                Some(Finish::Finished(Some(rec))) => Some((*r, *now, rec)),
                _ => None,
            })
            .collect();
        execute_in_chunks!(tx, s.append, written, |query, (_, _, rec)| query
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
            .bind(&rec.hash));
        let messages: Vec<(String, &NewEffect, &Recording, i64, &EvidenceRecord)> = written
            .iter()
            .flat_map(|(r, now, rec)| {
                r.effects
                    .iter()
                    .map(move |e| (uuid::Uuid::now_v7().to_string(), e, *r, *now, *rec))
            })
            .collect();
        execute_in_chunks!(tx, s.enqueue, messages, |query, (id, effect, r, now, rec)| query
            .bind(id)
            .bind(&effect.idempotency_key)
            .bind(effect.lane.as_deref().unwrap_or(&rec.source))
            .bind(&rec.ticket)
            .bind(&rec.id)
            .bind(&effect.payload)
            .bind(*now)
            .bind(*now)
            .bind(&r.trace_id));
        let governs: Vec<(&String, i64, &EvidenceRecord)> = written
            .iter()
            .flat_map(|(r, now, rec)| r.governed.iter().map(move |p| (p, *now, *rec)))
            .collect();
        execute_in_chunks!(tx, s.remember, governs, |query, (policy, now, rec)| query
            .bind(&rec.source)
            .bind(&rec.ticket)
            .bind(*policy)
            .bind(*now));
        // Claims, in recording order: each allowed decision supersedes the
        // ticket's earlier claims.
        for (((recording, _), encoded_claims), finish) in recordings.iter().zip(&encoded).zip(&finishes) {
            let Some(Finish::Finished(record)) = finish else {
                continue;
            };
            if let (Some(rec), Some(first)) = (record, recording.claims.first()) {
                sqlx::query(claims::SUPERSEDE)
                    .bind(&first.ticket.source)
                    .bind(&first.ticket.key)
                    .execute(&mut *tx)
                    .await?;
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
        }
        if appending > 0 {
            sqlx::query(evidence::SET_HEAD_HASH)
                .bind(&head.1)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(finishes
            .into_iter()
            .map(|f| f.unwrap_or(Finish::AlreadyFinished))
            .collect())
    })
}

/// The trigger of the recording's evidence when it is recorded at most once
/// ([`crate::domain::TriggerKind::recorded_once`]). Such a recording carries no
/// delivery or message, whose end would already be written when it is checked.
fn once_trigger(recording: &Recording) -> Option<&Trigger> {
    let trigger = recording
        .evidence
        .as_ref()
        .map(|e| &e.trigger)
        .filter(|t| t.kind.recorded_once())?;
    (recording.delivery.is_none() && recording.delivered.is_none()).then_some(trigger)
}

/// Ends as `AlreadyFinished` every recording still going ahead whose `key` an
/// earlier one in the batch, still going ahead, has: only the first of them
/// is written, as if they were written one after another.
fn finish_repeats<'r, K: Eq + std::hash::Hash>(
    recordings: &[(&'r Recording, i64)],
    finishes: &mut [Option<Finish>],
    key: impl Fn(&'r Recording) -> Option<K>,
) {
    let mut seen = HashSet::new();
    for ((recording, _), finish) in recordings.iter().zip(finishes.iter_mut()) {
        if finish.is_none()
            && let Some(k) = key(recording)
            && !seen.insert(k)
        {
            *finish = Some(Finish::AlreadyFinished);
        }
    }
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
