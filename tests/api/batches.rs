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
