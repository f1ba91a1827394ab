//! The generic source: Standard Webhooks in, signed decision callbacks out.

use closegate::signature::StandardWebhooksKey;
use serde_json::{Value, json};
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{method, path},
};

use crate::helpers::*;

fn closed(ticket: &str, role: &str, actor: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "type": "ticket.updated",
        "timestamp": "2026-11-22T10:00:00Z",
        "data": {
            "ticket": ticket, "state": "Resolved", "previous_state": "In Progress",
            "title": "Offboard contractor", "labels": ["access-request"],
            "fields": { "Request type": "revoke", "Database role": role },
            "actor": { "id": actor, "kind": "human" },
            "requester": { "id": "hr-sync", "kind": "service" }
        }
    }))
    .unwrap()
}

#[tokio::test]
async fn a_generic_close_is_decided_and_the_decision_sent_back_as_a_signed_callback() {
    // Arrange
    let app = spawn_app().await;
    let mut target = Target::new().await;
    let role = target.login_role().await;
    Mock::given(method("POST"))
        .and(path("/callback"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&app.helpdesk)
        .await;

    // Act
    let response = app
        .post_generic(
            "msg_abc",
            chrono::Utc::now().timestamp(),
            &closed("ACC-7", &role, "bob"),
        )
        .await;
    app.decide_all().await;
    app.deliver_all().await;

    // Assert
    assert_eq!(response.status().as_u16(), 202);
    let requests = app.helpdesk.received_requests().await.unwrap();
    let callback = requests.iter().find(|r| r.url.path() == "/callback").unwrap();
    let header = |n: &str| callback.headers.get(n).unwrap().to_str().unwrap().to_string();
    let key = StandardWebhooksKey::parse(GENERIC_SECRET).unwrap();
    key.verify(
        Some(&header("webhook-id")),
        Some(&header("webhook-timestamp")),
        Some(&header("webhook-signature")),
        &callback.body,
        chrono::Utc::now().timestamp(),
    )
    .expect("the callback is signed");
    let body: Value = serde_json::from_slice(&callback.body).unwrap();
    assert_eq!(body["type"], "closegate.decision");
    assert_eq!(body["data"]["verdict"], "blocked");
    assert_eq!(body["data"]["reopen"], true);
    assert_eq!(body["data"]["ticket"]["key"], "ACC-7");
    assert!(
        body["data"]["comment"]
            .as_str()
            .unwrap()
            .contains(&format!("{role} still exists"))
    );
    let evidence = app.store.evidence_for_ticket("generic", "ACC-7").await.unwrap();
    assert_eq!(evidence.len(), 1);
    assert_eq!(body["data"]["evidence_hash"], evidence[0].hash);
}

#[tokio::test]
async fn generic_events_from_the_gate_identity_are_ignored() {
    let app = spawn_app().await;
    Mock::given(method("POST"))
        .and(path("/callback"))
        .respond_with(ResponseTemplate::new(204))
        .expect(0)
        .mount(&app.helpdesk)
        .await;

    app.post_generic(
        "msg_1",
        chrono::Utc::now().timestamp(),
        &closed("ACC-8", "r", "closegate"),
    )
    .await;
    app.decide_all().await;
    app.deliver_all().await;

    let stats = app.stats().await;
    assert_eq!((stats.deliveries, stats.evidence), (1, 0));
}

#[tokio::test]
async fn a_generic_source_with_signed_ids_tells_two_identical_closes_apart_by_id() {
    // The webhook-id is signed, so a ticket closed, reopened and closed again with
    // the same body is two closes; the same id twice is one.
    let app = spawn_app().await;
    let body = closed("ACC-9", "nobody_here", "bob");
    let now = chrono::Utc::now().timestamp();

    let first = app.post_generic("msg_1", now, &body).await;
    let same_id = app.post_generic("msg_1", now, &body).await;
    let new_id = app.post_generic("msg_2", now, &body).await;
    app.decide_all().await;

    assert!(first.headers().get("closegate-duplicate").is_none());
    assert_eq!(same_id.headers().get("closegate-duplicate").unwrap(), "true");
    assert!(new_id.headers().get("closegate-duplicate").is_none());
    assert_eq!(
        app.store.evidence_for_ticket("generic", "ACC-9").await.unwrap().len(),
        2
    );
}
