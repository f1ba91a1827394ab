//! The outbox: a helpdesk outage or a restart delays effects, never drops or
//! duplicates them.

use wiremock::{
    Mock, ResponseTemplate,
    matchers::{method, path},
};

use crate::helpers::*;

const AN_HOUR: std::time::Duration = std::time::Duration::from_secs(3600);

async fn fail_first_comment_post(app: &TestApp) {
    Mock::given(method("POST"))
        .and(path("/repos/acme/access-requests/issues/42/comments"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&app.helpdesk)
        .await;
}

#[tokio::test]
async fn a_helpdesk_error_is_retried_and_the_comment_delivered_exactly_once() {
    let app = spawn_app().await;
    fail_first_comment_post(&app).await;
    mock_github(&app, 1, 2).await;
    close_ungranted_ticket(&app).await;

    // First attempt: GitHub answers 500. Nothing is due again right away.
    assert_eq!(app.deliver_all().await, 1);
    let stats = app.stats().await;
    assert_eq!((stats.outbox_pending, stats.outbox_done), (1, 0));
    assert_eq!(app.deliver_all().await, 0, "the retry waits for its backoff");
    // Later: delivered.
    app.advance(AN_HOUR);
    assert_eq!(app.deliver_all().await, 1);
    let stats = app.stats().await;
    assert_eq!((stats.outbox_pending, stats.outbox_done), (0, 1));
    assert_eq!(posted_comments(&app).await.len(), 2, "one failed attempt, one comment");
}

#[tokio::test]
async fn a_restart_between_attempts_still_delivers_exactly_once() {
    let app = spawn_app().await;
    fail_first_comment_post(&app).await;
    mock_github(&app, 1, 2).await;
    close_ungranted_ticket(&app).await;
    app.deliver_all().await;

    let app = app.restart().await;
    app.advance(AN_HOUR);
    app.deliver_all().await;
    app.advance(AN_HOUR);
    app.deliver_all().await;

    let stats = app.stats().await;
    assert_eq!((stats.outbox_pending, stats.outbox_done, stats.evidence), (0, 1, 1));
}

#[tokio::test]
async fn a_comment_already_posted_by_a_lost_attempt_is_not_posted_again() {
    // The attempt posted the comment but crashed before recording it: the
    // marker in the comment is found and nothing is posted twice.
    let app = spawn_app().await;
    close_ungranted_ticket(&app).await;
    let claimed = app
        .store
        .claim_effect(app.ctx.now_ms(), 1, None)
        .await
        .unwrap()
        .unwrap();
    let intent: closegate::decide::Intent = serde_json::from_str(&claimed.payload).unwrap();
    let marker = format!("closegate:{}", intent.key);
    Mock::given(method("GET"))
        .and(path("/repos/acme/access-requests/issues/42/comments"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([
            { "id": 7, "body": format!("earlier text\n\n<!-- {marker} -->\n") }
        ])))
        .with_priority(1)
        .mount(&app.helpdesk)
        .await;
    mock_github(&app, 0, 1).await;

    // The lease (1 ms) has run out: another attempt picks the message up.
    app.advance(AN_HOUR);
    app.deliver_all().await;

    assert_eq!(app.stats().await.outbox_done, 1);
}

#[tokio::test]
async fn a_permanent_helpdesk_refusal_parks_the_message_as_dead_not_deleted() {
    let app = spawn_app().await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/access-requests/issues/42"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&app.helpdesk)
        .await;
    close_ungranted_ticket(&app).await;

    app.deliver_all().await;

    let stats = app.stats().await;
    assert_eq!((stats.outbox_pending, stats.outbox_dead), (0, 1));
}
