//! One story, run against both backends: SQLite and PostgreSQL must behave the same.

use closegate::{
    domain::{Mode, TicketRef, Trigger, TriggerKind, Verdict},
    evidence::EvidenceContent,
    store::{
        Delivered, DeliveryOutcome, Finish, GateCheckClaim, NewDelivery, NewEffect, NewEvidence, Recording, Store,
    },
};
#[path = "support/pg.rs"]
mod pg;

/// A story as two tests: on a SQLite file in a directory of its own, and on a
/// fresh PostgreSQL database.
macro_rules! on_both_stores {
    ($story:ident: $on_sqlite:ident, $on_postgres:ident) => {
        #[tokio::test]
        async fn $on_sqlite() {
            let dir = tempfile::tempdir().unwrap();
            $story(&format!("sqlite://{}", dir.path().join("store.db").display())).await;
        }

        #[tokio::test]
        async fn $on_postgres() {
            $story(&pg::fresh_database().await).await;
        }
    };
}

fn delivery(n: usize, body: &str) -> NewDelivery {
    NewDelivery {
        source: "github".into(),
        delivery_id: format!("d-{n}"),
        body_sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body.as_bytes())),
        received_at: 1_000 + n as i64,
        event: format!(r#"{{"n":{n}}}"#),
        lease_until: None,
        trace_id: None,
    }
}

fn evidence(trigger: Trigger, ticket: &str) -> NewEvidence {
    let content: EvidenceContent = serde_json::from_value(serde_json::json!({
        "event": { "ticket": { "source": "github", "key": ticket }, "kind": "closed", "event": "issues.closed",
                   "old_state": null, "new_state": "closed", "actor": { "id": "bob" }, "requester": null,
                   "title": "", "labels": [], "fields": {}, "url": null, "occurred_at": null },
        "decision": { "verdict": "blocked", "policy": "db-table-grant", "policy_hash": null, "mode": "enforce",
                      "reasons": ["missing SELECT"], "checks": [] }
    }))
    .unwrap();
    NewEvidence {
        id: uuid::Uuid::now_v7().to_string(),
        trigger,
        ticket: TicketRef {
            source: "github".into(),
            key: ticket.into(),
        },
        verdict: Verdict::Blocked,
        policy: Some("db-table-grant".into()),
        mode: Mode::Enforce,
        content,
    }
}

fn webhook(delivery: &str) -> Trigger {
    Trigger::new(TriggerKind::Webhook, delivery)
}

/// Finishes a delivery with a decision and the given outbox messages.
fn decided(delivery: &str, ticket: &str, effects: Vec<NewEffect>) -> Recording {
    Recording {
        delivery: Some((delivery.to_string(), DeliveryOutcome::Decided)),
        ..Recording::evidence(evidence(webhook(delivery), ticket), effects)
    }
}

async fn story(url: &str) {
    let store = Store::connect(url).await.expect("store opens");
    store.ready().await.expect("migrations applied");

    // Ingest: new, same delivery id, same body under a new id.
    let first = store.ingest(delivery(1, "body-1")).await.unwrap();
    assert!(!first.duplicate);
    let again = store.ingest(delivery(1, "body-1")).await.unwrap();
    assert_eq!((again.id.as_str(), again.duplicate), (first.id.as_str(), true));
    let mut replay = delivery(99, "body-1");
    replay.received_at = 5_000;
    let replay = store.ingest(replay).await.unwrap();
    assert_eq!((replay.id.as_str(), replay.duplicate), (first.id.as_str(), true));

    // Many at once share commits and all land once.
    let handles: Vec<_> = (2..102)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move { store.ingest(delivery(n, &format!("body-{n}"))).await.unwrap() })
        })
        .collect();
    for h in handles {
        assert!(!h.await.unwrap().duplicate);
    }
    assert_eq!(store.stats().await.unwrap().deliveries, 101);

    // Claims: oldest first, leased, reclaimable after the lease.
    let now = 10_000;
    let a = store.claim_delivery(now, 1_000).await.unwrap().unwrap();
    assert_eq!((a.id.as_str(), a.attempts), (first.id.as_str(), 1));
    let b = store.claim_delivery(now, 1_000).await.unwrap().unwrap();
    assert_ne!(a.id, b.id);
    let a_again = store.claim_delivery(now + 2_000, 1_000).await.unwrap().unwrap();
    assert_eq!((a_again.id.as_str(), a_again.attempts), (a.id.as_str(), 2));

    // Finish with evidence and an effect, atomically; finishing twice writes nothing.
    let effect = NewEffect {
        idempotency_key: "cg-first".into(),
        payload: "{}".into(),
        lane: None,
    };
    let Finish::Finished(Some(rec)) = store
        .record(decided(&a.id, "acme/x#1", vec![effect]), now)
        .await
        .unwrap()
    else {
        panic!("expected a record")
    };
    assert_eq!((rec.seq, rec.prev_hash.as_str()), (1, "0".repeat(64).as_str()));
    assert_eq!(rec.trigger, webhook(&a.id));
    let twice = store.record(decided(&a.id, "acme/x#1", Vec::new()), now).await.unwrap();
    assert!(matches!(twice, Finish::AlreadyFinished));
    store
        .finish_delivery(&b.id, DeliveryOutcome::NotGated, now)
        .await
        .unwrap();
    let c = store.claim_delivery(now, 1_000).await.unwrap().unwrap();
    let Finish::Finished(Some(rec2)) = store.record(decided(&c.id, "acme/x#1", Vec::new()), now).await.unwrap() else {
        panic!("expected a record")
    };
    assert_eq!((rec2.seq, rec2.prev_hash.as_str()), (2, rec.hash.as_str()));
    assert_eq!(store.evidence_for_ticket("github", "acme/x#1").await.unwrap().len(), 2);
    assert_eq!(
        store.evidence_for_trigger(&webhook(&c.id)).await.unwrap(),
        Some(rec2.clone())
    );

    // A decision without a delivery (an expiry, a gate check) names its trigger.
    let expiry = Trigger::new(TriggerKind::Expiry, "claim-1");
    let recording = Recording::evidence(evidence(expiry.clone(), "acme/x#2"), Vec::new());
    let Finish::Finished(Some(rec3)) = store.record(recording, now).await.unwrap() else {
        panic!("expected a record")
    };
    assert_eq!((rec3.seq, rec3.prev_hash.as_str()), (3, rec2.hash.as_str()));
    assert_eq!(store.evidence_by_id(&rec3.id).await.unwrap().unwrap().trigger, expiry);
    let report = store.verify_chain().await.unwrap();
    assert_eq!((report.records, report.broken), (3, None));

    // Gate-check ids: per caller, bound to their question; an id claimed
    // before `stale_before` with nothing recorded is taken over, once.
    let check = |id: &str| Trigger::new(TriggerKind::SyncCheck, id);
    let claim = |caller: &'static str, question: &'static str, at: i64| {
        let store = store.clone();
        async move {
            let trigger = check(&format!("{caller}/r-1"));
            store
                .claim_gate_check(caller, "r-1", question, &trigger, at, at - 1_000)
                .await
                .unwrap()
        }
    };
    assert_eq!(claim("snow", "q1", now).await, GateCheckClaim::New { claimed_at: now });
    assert_eq!(claim("snow", "q1", now).await, GateCheckClaim::Repeat);
    assert_eq!(claim("snow", "q2", now).await, GateCheckClaim::Conflict);
    assert_eq!(claim("jira", "q2", now).await, GateCheckClaim::New { claimed_at: now });
    let later = now + 1_001;
    assert_eq!(
        claim("snow", "q1", later).await,
        GateCheckClaim::New { claimed_at: later }
    );
    assert_eq!(
        claim("snow", "q1", later).await,
        GateCheckClaim::Repeat,
        "taken over once"
    );
    assert_eq!(claim("snow", "q2", later + 5_000).await, GateCheckClaim::Conflict);
    // The stopped decider's give-back no longer holds the id; the new one's does.
    store
        .release_gate_check("snow", "r-1", now, &check("snow/r-1"))
        .await
        .unwrap();
    assert_eq!(claim("snow", "q1", later).await, GateCheckClaim::Repeat);
    store
        .release_gate_check("snow", "r-1", later, &check("snow/r-1"))
        .await
        .unwrap();
    assert_eq!(
        claim("snow", "q1", later).await,
        GateCheckClaim::New { claimed_at: later }
    );

    // Outbox: due now, retried later, then done.
    let msg = store.claim_effect(now, 1_000, None).await.unwrap().unwrap();
    assert_eq!(msg.idempotency_key, "cg-first");
    assert!(store.claim_effect(now, 1_000, None).await.unwrap().is_none(), "leased");
    store.fail_effect(&msg, "HTTP 500", Some(now + 60_000)).await.unwrap();
    assert!(
        store.claim_effect(now + 30_000, 1_000, None).await.unwrap().is_none(),
        "backing off"
    );
    let retry = store
        .claim_effect(now + 60_000, 1_000, Some("github"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(retry.attempts, 2);
    assert!(
        store
            .claim_effect(now + 90_000, 1_000, Some("other"))
            .await
            .unwrap()
            .is_none(),
        "another lane"
    );
    // The lease runs out while the first holder is still at work: a second
    // claim takes over, and the first holder can neither renew nor complete.
    let taken = store.claim_effect(now + 61_001, 1_000, None).await.unwrap().unwrap();
    assert!(
        !store.renew_effect(&retry, now + 70_000).await.unwrap(),
        "renewal fenced"
    );
    assert!(
        !store.complete_effect(&retry, now + 61_002).await.unwrap(),
        "completion fenced"
    );
    assert!(
        !store.fail_effect(&retry, "late", None).await.unwrap(),
        "failure fenced"
    );
    assert!(store.renew_effect(&taken, now + 70_000).await.unwrap());
    assert!(store.complete_effect(&taken, now + 61_003).await.unwrap());
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.outbox_pending, stats.outbox_done, stats.evidence), (0, 1, 3));

    // Last-known ticket state: a retried delivery sees what it saw the first time.
    assert_eq!(
        store
            .swap_ticket_state("dh", "7", "d-a", "1", false, now)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.swap_ticket_state("dh", "7", "d-b", "4", true, now).await.unwrap(),
        Some(false)
    );
    assert_eq!(
        store.swap_ticket_state("dh", "7", "d-b", "4", true, now).await.unwrap(),
        Some(false),
        "a retry"
    );
    assert_eq!(
        store.swap_ticket_state("dh", "7", "d-c", "4", true, now).await.unwrap(),
        Some(true)
    );

    // Housekeeping: finished rows past retention go; pending, dead and evidence stay.
    let before = store.stats().await.unwrap();
    let swept = store.housekeep(now + 1, now + 70_000).await.unwrap();
    assert_eq!(
        (swept.deliveries, swept.outbox),
        (3, 1),
        "a, b and c were finished at `now`; one message done"
    );
    let after = store.stats().await.unwrap();
    assert_eq!(after.deliveries, before.deliveries - 3);
    assert_eq!(after.deliveries_pending, before.deliveries_pending);
    assert_eq!((after.evidence, after.outbox_done), (before.evidence, 0));
    assert_eq!(
        store.housekeep(now + 1, now + 70_000).await.unwrap(),
        Default::default()
    );

    // Reopening the store keeps everything.
    drop(store);
    let reopened = Store::connect(url).await.unwrap();
    assert_eq!(reopened.stats().await.unwrap().evidence, 3);
    assert_eq!(reopened.verify_chain().await.unwrap().broken, None);
}

on_both_stores!(
    story:
    the_store_story_holds_on_sqlite,
    the_store_story_holds_on_postgres
);

/// Recordings sent together share one commit, with the effect of writing them
/// one after another: of two recordings that finish the same delivery, or
/// complete the same message, only the first is written; a completion whose
/// claim lost its lease writes nothing.
async fn batch_story(url: &str) {
    const N: usize = 40;
    let store = Store::connect(url).await.expect("store opens");
    store.ready().await.expect("migrations applied");
    for n in 0..N {
        store.ingest(delivery(n, &format!("batch-{n}"))).await.unwrap();
    }
    let now = 10_000;
    let claimed = store.claim_deliveries(now, 60_000, N).await.unwrap();
    assert_eq!(claimed.len(), N);
    let effect = |key: String| NewEffect {
        idempotency_key: key,
        payload: "{}".into(),
        lane: None,
    };
    // Each delivery finished twice, the second time with another message.
    let recordings = claimed.iter().enumerate().flat_map(|(n, c)| {
        [
            decided(&c.id, &format!("acme/b#{n}"), vec![effect(format!("first-{n}"))]),
            decided(&c.id, &format!("acme/b#{n}"), vec![effect(format!("second-{n}"))]),
        ]
    });
    let finishes = futures_util::future::join_all(recordings.map(|r| store.record(r, now))).await;
    for (n, pair) in finishes.chunks(2).enumerate() {
        assert!(matches!(pair[0], Ok(Finish::Finished(Some(_)))), "{n}: {:?}", pair[0]);
        assert!(matches!(pair[1], Ok(Finish::AlreadyFinished)), "{n}: {:?}", pair[1]);
        assert_eq!(
            store
                .evidence_for_ticket("github", &format!("acme/b#{n}"))
                .await
                .unwrap()
                .len(),
            1
        );
    }
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats.evidence, stats.deliveries_pending, stats.outbox_pending),
        (N as i64, 0, N as i64)
    );
    let report = store.verify_chain().await.unwrap();
    assert_eq!((report.records, report.broken), (N as i64, None));

    // Every message claimed, then claimed again by another replica after the
    // lease ran out: completions under the old claim, the new one, and the new
    // one twice, all in one batch.
    let old = store.claim_effects(now, 1_000, None, N).await.unwrap();
    let mut keys: Vec<String> = old.iter().map(|m| m.idempotency_key.clone()).collect();
    keys.sort();
    let mut expected: Vec<String> = (0..N).map(|n| format!("first-{n}")).collect();
    expected.sort();
    assert_eq!(keys, expected);
    // Each claimed message names the record that enqueued it, and those
    // records are read at once, past one statement's worth of ids, the ids
    // of no record left out.
    let missing: Vec<String> = (0..N).map(|n| format!("no-such-record-{n}")).collect();
    let ids: Vec<&str> = old
        .iter()
        .map(|m| m.evidence_id.as_str())
        .chain(missing.iter().map(String::as_str))
        .collect();
    let records = store.evidence_by_ids(&ids).await.unwrap();
    assert_eq!(records.len(), N);
    for m in &old {
        let record = records
            .iter()
            .find(|r| r.id == m.evidence_id)
            .expect("the message's record");
        let n = m.idempotency_key.trim_start_matches("first-");
        assert_eq!(record.ticket, format!("acme/b#{n}"));
    }
    let new = store.claim_effects(now + 2_000, 60_000, None, N).await.unwrap();
    assert_eq!(new.len(), N);
    let completion = |m: &closegate::store::ClaimedEffect| Recording {
        delivered: Some(Delivered {
            id: m.id.clone(),
            lease_token: m.lease_token.clone(),
        }),
        ..Recording::default()
    };
    let by_id = |id: &str| new.iter().find(|m| m.id == id).unwrap();
    let completions = old
        .iter()
        .flat_map(|m| [completion(m), completion(by_id(&m.id)), completion(by_id(&m.id))]);
    let finishes = futures_util::future::join_all(completions.map(|r| store.record(r, now + 2_500))).await;
    for triple in finishes.chunks(3) {
        assert!(matches!(triple[0], Ok(Finish::AlreadyFinished)), "{:?}", triple[0]);
        assert!(matches!(triple[1], Ok(Finish::Finished(None))), "{:?}", triple[1]);
        assert!(matches!(triple[2], Ok(Finish::AlreadyFinished)), "{:?}", triple[2]);
    }
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.outbox_pending, stats.outbox_done), (0, N as i64));
}

on_both_stores!(
    batch_story:
    recordings_in_one_batch_are_written_as_if_one_by_one_on_sqlite,
    recordings_in_one_batch_are_written_as_if_one_by_one_on_postgres
);

/// Acks in a steady stream from 64 callers, each sending its next delivery as
/// soon as the last one is answered, with every tenth a replay of a delivery
/// that may still be in flight: every call is answered, each pair of original
/// and replay is stored once under one id, and nothing else is lost. Then a
/// burst of large deliveries all at once.
async fn flood_story(url: &str) {
    const N: usize = 3_000;
    let store = Store::connect(url).await.expect("store opens");
    let callers: Vec<_> = (0..64)
        .map(|caller| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut answers = Vec::new();
                for n in (caller..N).step_by(64) {
                    // A replay carries its original's delivery id and body.
                    let of = if n % 10 == 9 { n - 5 } else { n };
                    let outcome = store.ingest(delivery(of, &format!("body-{of}"))).await.unwrap();
                    answers.push((n, of, outcome));
                }
                answers
            })
        })
        .collect();
    let answers = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        futures_util::future::join_all(callers),
    )
    .await
    .expect("every ack is answered");
    let mut by_delivery: std::collections::BTreeMap<usize, Vec<closegate::store::IngestOutcome>> = Default::default();
    for (_, of, outcome) in answers.into_iter().flat_map(Result::unwrap) {
        by_delivery.entry(of).or_default().push(outcome);
    }
    let replays = (0..N).filter(|n| n % 10 == 9).count();
    assert_eq!(by_delivery.len(), N - replays);
    for (of, outcomes) in &by_delivery {
        let originals = outcomes.iter().filter(|o| !o.duplicate).count();
        assert_eq!(originals, 1, "delivery {of}: {outcomes:?}");
        assert!(
            outcomes.iter().all(|o| o.id == outcomes[0].id),
            "delivery {of}: {outcomes:?}"
        );
    }
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats.deliveries, stats.deliveries_pending),
        ((N - replays) as i64, (N - replays) as i64)
    );

    // A burst of large deliveries that takes a while to commit, a few more
    // arriving meanwhile, then silence: those few are answered without
    // waiting for yet another delivery.
    let send = |n: usize, size: usize| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .ingest(delivery(n, &format!("{n}-{}", "x".repeat(size))))
                .await
                .unwrap()
        })
    };
    let mut burst: Vec<_> = (N..N + 512).map(|n| send(n, 65_536)).collect();
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    burst.extend((N + 512..N + 520).map(|n| send(n, 16)));
    let burst = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        futures_util::future::join_all(burst),
    )
    .await
    .expect("every ack of the burst is answered");
    assert!(burst.into_iter().all(|o| !o.unwrap().duplicate));
    assert_eq!(store.stats().await.unwrap().deliveries, (N - replays + 520) as i64);
}

on_both_stores!(
    flood_story:
    a_flood_of_acks_is_answered_in_full_on_sqlite,
    a_flood_of_acks_is_answered_in_full_on_postgres
);

/// A close found by the reconciler and a gate check are each recorded once,
/// however many replicas record them at the same moment: the other tries end
/// as `AlreadyFinished` and write none of their messages.
async fn once_story(url: &str) {
    let a = Store::connect(url).await.expect("store opens");
    a.ready().await.expect("migrations applied");
    let b = Store::connect(url).await.expect("a second replica opens");
    let triggers = [
        Trigger::new(TriggerKind::Reconcile, "github:acme/o#1@2026-11-29T00:00:00Z"),
        Trigger::new(TriggerKind::SyncCheck, "snow/r-1"),
    ];
    for trigger in &triggers {
        let tries = (0..6).map(|i| {
            let effect = NewEffect {
                idempotency_key: format!("{}-{i}", trigger.id),
                payload: "{}".into(),
                lane: None,
            };
            let recording = Recording::evidence(evidence(trigger.clone(), "acme/o#1"), vec![effect]);
            let replica = if i % 2 == 0 { &a } else { &b };
            replica.record(recording, 1_000)
        });
        let finishes = futures_util::future::join_all(tries).await;
        let written = finishes
            .iter()
            .filter(|f| matches!(f, Ok(Finish::Finished(Some(_)))))
            .count();
        let refused = finishes
            .iter()
            .filter(|f| matches!(f, Ok(Finish::AlreadyFinished)))
            .count();
        assert_eq!((written, refused), (1, 5), "{trigger}: written, refused");
        assert!(finishes.iter().all(Result::is_ok), "{finishes:?}");
        // Asked again later, by either replica.
        let late = Recording::evidence(evidence(trigger.clone(), "acme/o#1"), Vec::new());
        assert!(matches!(b.record(late, 2_000).await, Ok(Finish::AlreadyFinished)));
    }
    let stats = a.stats().await.unwrap();
    assert_eq!(
        (stats.evidence, stats.outbox_pending),
        (2, 2),
        "one record and one message each"
    );
    assert_eq!(a.verify_chain().await.unwrap().broken, None);
}

on_both_stores!(
    once_story:
    a_reconciled_close_or_gate_check_is_recorded_once_across_replicas_on_sqlite,
    a_reconciled_close_or_gate_check_is_recorded_once_across_replicas_on_postgres
);

/// What is finished stays finished: a message parked as dead, or delivered,
/// is not completed afterwards under the claim that finished it.
async fn finished_story(url: &str) {
    let store = Store::connect(url).await.expect("store opens");
    let effect = |key: &str| NewEffect {
        idempotency_key: key.into(),
        payload: "{}".into(),
        lane: None,
    };
    let recording = Recording::evidence(
        evidence(webhook("f-1"), "acme/f#1"),
        vec![effect("dead"), effect("done")],
    );
    store.record(recording, 1_000).await.unwrap();
    let claimed = store.claim_effects(2_000, 60_000, None, 2).await.unwrap();
    let by_key = |key: &str| claimed.iter().find(|m| m.idempotency_key == key).expect("claimed");
    let (dead, done) = (by_key("dead"), by_key("done"));
    assert!(store.fail_effect(dead, "HTTP 404", None).await.unwrap());
    assert!(store.complete_effect(done, 2_001).await.unwrap());
    assert!(
        !store.complete_effect(dead, 2_002).await.unwrap(),
        "a dead message completed by the claim that parked it"
    );
    assert!(
        !store.complete_effect(done, 2_003).await.unwrap(),
        "a delivered message completed twice"
    );
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.outbox_pending, stats.outbox_done, stats.outbox_dead), (0, 1, 1));
}

on_both_stores!(
    finished_story:
    a_finished_message_is_not_completed_again_on_sqlite,
    a_finished_message_is_not_completed_again_on_postgres
);

/// Decisions side by side read their tickets' pasts at once; the reads are
/// merged, and each decision still gets its own ticket's past: its governing
/// policies in name order and the reconciler's records, nothing of another
/// ticket or another source's ticket of the same key, nothing of other
/// triggers' records.
async fn past_story(url: &str) {
    let store = Store::connect(url).await.expect("store opens");
    let ticket = |source: &str, i: usize| TicketRef {
        source: source.into(),
        key: format!("acme/o#{i}"),
    };
    let governing = |i: usize| -> Vec<String> {
        match i % 3 {
            0 => vec!["b-policy".into(), "a-policy".into()],
            1 => vec!["a-policy".into()],
            _ => Vec::new(),
        }
    };
    for i in 0..70 {
        store
            .remember_governed(&ticket("github", i), &governing(i), 1_000)
            .await
            .unwrap();
    }
    store
        .remember_governed(&ticket("gitlab", 1), &["z-policy".to_string()], 1_000)
        .await
        .unwrap();
    for i in [5, 6] {
        let trigger = Trigger::new(
            TriggerKind::Reconcile,
            format!("github:acme/o#{i}@2026-11-29T00:00:00Z"),
        );
        let recording = Recording::evidence(evidence(trigger, &format!("acme/o#{i}")), Vec::new());
        store.record(recording, 1_000).await.unwrap();
    }
    let gate_check = Trigger::new(TriggerKind::SyncCheck, "snow/r-7");
    let recording = Recording::evidence(evidence(gate_check, "acme/o#7"), Vec::new());
    store.record(recording, 1_000).await.unwrap();

    let before = store.ticket_past_merges();
    let asks = (0..140).map(|n| {
        let (store, ticket) = (store.clone(), ticket("github", n % 70));
        async move { (n % 70, store.ticket_past(&ticket).await) }
    });
    for (i, past) in futures_util::future::join_all(asks).await {
        let past = past.unwrap();
        let mut expected = governing(i);
        expected.sort();
        assert_eq!(past.governed_by, expected, "ticket {i}");
        let reconciled = usize::from(i == 5 || i == 6);
        assert_eq!(past.reconciled.len(), reconciled, "ticket {i}");
    }
    // The reads travelled together: at least two asks per statement on
    // average.
    let merged = store.ticket_past_merges();
    let (calls, asks) = (merged.calls - before.calls, merged.asks - before.asks);
    assert_eq!(asks, 140);
    assert!(2 * calls <= asks, "140 reads took {calls} statements");
    let other = store.ticket_past(&ticket("gitlab", 1)).await.unwrap();
    assert_eq!(
        (other.governed_by, other.reconciled.len()),
        (vec!["z-policy".to_string()], 0)
    );
}

on_both_stores!(
    past_story:
    decisions_reading_their_tickets_pasts_at_once_each_get_their_own_on_sqlite,
    decisions_reading_their_tickets_pasts_at_once_each_get_their_own_on_postgres
);

/// A store at the schema before triggers, holding one decided delivery, its
/// evidence record and its outbox message; then opened by this version.
async fn upgrade_story(url: &str) {
    let old = sqlx::migrate!("./migrations/sqlite");
    let pg_old = sqlx::migrate!("./migrations/postgres");
    let pick = |m: &sqlx::migrate::Migrator| sqlx::migrate::Migrator {
        migrations: std::borrow::Cow::Owned(m.migrations[..2].to_vec()),
        ..sqlx::migrate::Migrator::DEFAULT
    };
    let record = serde_json::json!({
        "id": "ev-old", "seq": 1, "created_at": 5, "prev_hash": "0".repeat(64), "delivery": "del-old",
        "source": "github", "ticket": "acme/x#9", "verdict": "blocked", "policy": "p", "mode": "enforce",
        "content": evidence(webhook("del-old"), "acme/x#9").content,
    })
    .to_string();
    let hash = closegate::evidence::chain_hash(&"0".repeat(64), &record);
    let statements = [
        "INSERT INTO deliveries (id, source, delivery_id, body_sha256, received_at, event, body, state) \
         VALUES ('del-old', 'github', 'd-9', 'h', 1, '{\"kind\":\"closed\"}', 'raw', 'done')"
            .to_string(),
        format!(
            "INSERT INTO evidence (id, seq, delivery, source, ticket, verdict, policy, mode, record, created_at, \
             prev_hash, hash) VALUES ('ev-old', 1, 'del-old', 'github', 'acme/x#9', 'blocked', 'p', 'enforce', \
             '{}', 5, '{}', '{hash}')",
            record.replace('\'', "''"),
            "0".repeat(64)
        ),
        format!("UPDATE chain_head SET seq = 1, hash = '{hash}'"),
        "INSERT INTO outbox (id, idempotency_key, source, ticket, evidence_id, payload, next_attempt_at, created_at) \
         VALUES ('m-old', 'cg-ev-old', 'github', 'acme/x#9', 'ev-old', '{}', 0, 0)"
            .to_string(),
    ];
    if url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(&format!("{url}?mode=rwc")).await.unwrap();
        pick(&old).run(&pool).await.unwrap();
        for sql in &statements {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        pick(&pg_old).run(&pool).await.unwrap();
        for sql in &statements {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }

    let store = Store::connect(url).await.expect("the upgrade applies");
    const PAYLOAD: &str = "SELECT event FROM delivery_payloads WHERE id = 'del-old'";
    let payload: String = if url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query_scalar(PAYLOAD).fetch_one(&pool).await.unwrap()
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query_scalar(PAYLOAD).fetch_one(&pool).await.unwrap()
    };
    assert_eq!(payload, r#"{"kind":"closed"}"#, "the event moves with its delivery");

    let records = store.evidence_for_ticket("github", "acme/x#9").await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].trigger,
        webhook("del-old"),
        "the delivery becomes the trigger id"
    );
    assert_eq!(records[0].document().unwrap().trigger(), Some(webhook("del-old")));
    assert_eq!(store.verify_chain().await.unwrap().broken, None);
    let msg = store
        .claim_effect(1, 1_000, None)
        .await
        .unwrap()
        .expect("the outbox message survives");
    assert_eq!(msg.idempotency_key, "cg-ev-old");
    let next = Recording::evidence(
        evidence(Trigger::new(TriggerKind::Manual, "op"), "acme/x#9"),
        Vec::new(),
    );
    let Finish::Finished(Some(rec)) = store.record(next, 10).await.unwrap() else {
        panic!("expected a record")
    };
    assert_eq!((rec.seq, rec.prev_hash), (2, hash));
}

on_both_stores!(
    upgrade_story:
    records_written_before_triggers_survive_the_upgrade_on_sqlite,
    records_written_before_triggers_survive_the_upgrade_on_postgres
);
