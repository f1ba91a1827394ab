//! Decisions and outbox messages claimed and carried out in batches keep the
//! guarantees of one at a time: one decision and one comment per gated close,
//! even with two replicas taking batches from the same store at once.

use closegate::{context::Context, workers};

use crate::helpers::*;

const CLOSES: usize = 30;

/// Decides in batches of `limit` until no delivery is waiting.
async fn decide_in_batches(ctx: &Context, limit: usize) {
    while workers::try_decide_batch(ctx, limit).await.unwrap() == workers::ExecutionOutcome::TaskCompleted {}
}

/// Delivers in batches of `limit` until no message is due.
async fn deliver_in_batches(ctx: &Context, limit: usize) {
    while workers::deliver_next(ctx, Some("github"), limit)
        .await
        .unwrap()
        .is_some()
    {}
}

#[tokio::test]
async fn two_replicas_deciding_and_delivering_in_batches_give_one_decision_and_one_comment_per_close() {
    let app = spawn_app().await;
    // Every close asks for a grant nobody made: blocked, one comment and one
    // reopen each, exactly.
    mock_github_issues(&app, r"\d+", CLOSES as u64, CLOSES as u64, CLOSED_AT).await;
    for n in 0..CLOSES {
        let mut event: serde_json::Value =
            serde_json::from_slice(&grant_event(&format!("nobody_{n}"), "public.none", "SELECT")).unwrap();
        event["issue"]["number"] = (100 + n).into();
        let body = serde_json::to_vec(&event).unwrap();
        let response = app.post_github("issues", &format!("d-{n}"), &body).await;
        assert_eq!(response.status().as_u16(), 202);
    }

    let other = app.replica().await;
    tokio::join!(decide_in_batches(&app.ctx, 8), decide_in_batches(&other, 8));
    tokio::join!(deliver_in_batches(&app.ctx, 8), deliver_in_batches(&other, 8));

    let stats = app.stats().await;
    assert_eq!(stats.deliveries_pending, 0);
    assert_eq!((stats.evidence, stats.outbox_done), (CLOSES as i64, CLOSES as i64));
    for n in 0..CLOSES {
        let records = app.evidence(&format!("acme/access-requests#{}", 100 + n)).await;
        assert_eq!(records.len(), 1, "ticket {}: one decision", 100 + n);
        assert_eq!(records[0].verdict.as_str(), "blocked");
    }
    assert_eq!(app.ctx.store.verify_chain().await.unwrap().broken, None);
    // The mocks' exact counts are checked when the helpdesk is dropped.
}

#[tokio::test]
async fn a_decision_slower_than_the_lease_keeps_its_delivery_from_another_replica() {
    // Arrange: a 1 s lease, and a target system that takes 2.5 s to answer.
    let (slow, policies, systems) = slow_system(std::time::Duration::from_millis(2500)).await;
    let app = spawn_app_with(Options {
        policies: Some(policies.path().to_path_buf()),
        systems: Some(systems),
        worker: Some(serde_json::json!({ "lease_seconds": 1 })),
        ..Default::default()
    })
    .await;
    let response = app
        .post_generic("slow-1", chrono::Utc::now().timestamp(), &generic_close("T-9", &[]))
        .await;
    assert_eq!(response.status().as_u16(), 202);
    let other = app.replica().await;

    // Act: replica A decides; replica B keeps trying while A waits on the target.
    let a = workers::try_decide_next(&app.ctx);
    let b = async {
        let mut took = 0;
        for _ in 0..13 {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            if workers::try_decide_next(&other).await.unwrap() == workers::ExecutionOutcome::TaskCompleted {
                took += 1;
            }
        }
        took
    };
    let (a, b_took) = tokio::join!(a, b);

    // Assert
    assert!(a.unwrap() == workers::ExecutionOutcome::TaskCompleted);
    assert_eq!(b_took, 0, "the other replica took over a delivery still being decided");
    assert_eq!(slow.received_requests().await.unwrap().len(), 1, "verified once");
    assert_eq!(app.store.evidence_for_ticket("generic", "T-9").await.unwrap().len(), 1);
}
