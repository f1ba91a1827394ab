//! One story, run against both backends: SQLite and PostgreSQL must behave the same.

use closegate::store::{DeliveryOutcome, Finish, NewDelivery, NewEffect, NewEvidence, Store};
#[path = "support/pg.rs"]
mod pg;

fn delivery(n: usize, body: &str) -> NewDelivery {
    NewDelivery {
        source: "github".into(),
        delivery_id: format!("d-{n}"),
        body_sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body.as_bytes())),
        received_at: 1_000 + n as i64,
        event: format!(r#"{{"n":{n}}}"#),
        body: body.into(),
        lease_until: None,
    }
}

fn evidence(delivery: &str, ticket: &str) -> NewEvidence {
    NewEvidence {
        id: uuid::Uuid::now_v7().to_string(),
        delivery: delivery.into(),
        source: "github".into(),
        ticket: ticket.into(),
        verdict: "blocked".into(),
        policy: Some("db-table-grant".into()),
        mode: "enforce".into(),
        content: serde_json::json!({ "reasons": ["missing SELECT"] }),
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
    let finished = store
        .finish_delivery(
            &a.id,
            DeliveryOutcome::Decided,
            Some(evidence(&a.id, "acme/x#1")),
            now,
            |rec| {
                vec![NewEffect {
                    idempotency_key: format!("cg-{}", rec.id),
                    payload: "{}".into(),
                }]
            },
        )
        .await
        .unwrap();
    let Finish::Finished(Some(rec)) = finished else {
        panic!("expected a record")
    };
    assert_eq!((rec.seq, rec.prev_hash.as_str()), (1, "0".repeat(64).as_str()));
    let twice = store
        .finish_delivery(
            &a.id,
            DeliveryOutcome::Decided,
            Some(evidence(&a.id, "acme/x#1")),
            now,
            |_| Vec::new(),
        )
        .await
        .unwrap();
    assert!(matches!(twice, Finish::AlreadyFinished));
    store
        .finish_delivery(&b.id, DeliveryOutcome::NotGated, None, now, |_| Vec::new())
        .await
        .unwrap();
    let c = store.claim_delivery(now, 1_000).await.unwrap().unwrap();
    let Finish::Finished(Some(rec2)) = store
        .finish_delivery(
            &c.id,
            DeliveryOutcome::Decided,
            Some(evidence(&c.id, "acme/x#1")),
            now,
            |_| Vec::new(),
        )
        .await
        .unwrap()
    else {
        panic!("expected a record")
    };
    assert_eq!((rec2.seq, rec2.prev_hash.as_str()), (2, rec.hash.as_str()));
    assert_eq!(store.evidence_for_ticket("github", "acme/x#1").await.unwrap().len(), 2);
    let report = store.verify_chain().await.unwrap();
    assert_eq!((report.records, report.broken), (2, None));

    // Outbox: due now, retried later, then done.
    let msg = store.claim_effect(now, 1_000).await.unwrap().unwrap();
    assert_eq!(msg.idempotency_key, format!("cg-{}", rec.id));
    assert!(store.claim_effect(now, 1_000).await.unwrap().is_none(), "leased");
    store
        .fail_effect(&msg.id, "HTTP 500", Some(now + 60_000))
        .await
        .unwrap();
    assert!(
        store.claim_effect(now + 30_000, 1_000).await.unwrap().is_none(),
        "backing off"
    );
    let retry = store.claim_effect(now + 60_000, 1_000).await.unwrap().unwrap();
    assert_eq!(retry.attempts, 2);
    store.complete_effect(&retry.id, now + 60_001).await.unwrap();
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.outbox_pending, stats.outbox_done, stats.evidence), (0, 1, 2));

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

    // Reopening the store keeps everything.
    drop(store);
    let reopened = Store::connect(url).await.unwrap();
    assert_eq!(reopened.stats().await.unwrap().evidence, 2);
    assert_eq!(reopened.verify_chain().await.unwrap().broken, None);
}

#[tokio::test]
async fn the_store_story_holds_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    story(&format!("sqlite://{}", dir.path().join("store.db").display())).await;
}

#[tokio::test]
async fn the_store_story_holds_on_postgres() {
    story(&pg::fresh_database().await).await;
}
