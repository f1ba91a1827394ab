//! Bad input gets a clear 4xx and changes nothing.

use crate::helpers::*;

async fn assert_refused(app: &TestApp, response: reqwest::Response, status: u16, code: &str) {
    assert_eq!(response.status().as_u16(), status);
    let body: serde_json::Value = response.json().await.expect("a JSON error body");
    assert_eq!(body["code"], code, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    app.decide_all().await;
    app.deliver_all().await;
    assert_eq!(app.stats().await.deliveries, 0, "nothing may be recorded");
}

#[tokio::test]
async fn a_forged_github_signature_is_rejected() {
    let app = spawn_app().await;
    mock_github(&app, 0, 0).await;
    let body = grant_event("r", "public.t", "SELECT");
    let forged = format!("sha256={}", "ab".repeat(32));
    let response = app
        .post_raw(
            "github",
            &[
                ("x-github-event", "issues"),
                ("x-github-delivery", "d"),
                ("x-hub-signature-256", &forged),
            ],
            &body,
        )
        .await;
    assert_refused(&app, response, 401, "invalid_signature").await;
}

#[tokio::test]
async fn a_missing_github_signature_is_rejected() {
    let app = spawn_app().await;
    let body = grant_event("r", "public.t", "SELECT");
    let response = app
        .post_raw(
            "github",
            &[("x-github-event", "issues"), ("x-github-delivery", "d")],
            &body,
        )
        .await;
    assert_refused(&app, response, 401, "invalid_signature").await;
}

#[tokio::test]
async fn a_body_changed_after_signing_is_rejected() {
    let app = spawn_app().await;
    let body = grant_event("r", "public.t", "SELECT");
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(GITHUB_SECRET.as_bytes()).unwrap();
    hmac::Mac::update(&mut mac, &body);
    let signature = format!("sha256={}", hex::encode(hmac::Mac::finalize(mac).into_bytes()));
    let mut tampered = body.clone();
    let at = tampered.len() - 3;
    tampered[at] = b' ';
    let response = app
        .post_raw(
            "github",
            &[
                ("x-github-event", "issues"),
                ("x-github-delivery", "d"),
                ("x-hub-signature-256", &signature),
            ],
            &tampered,
        )
        .await;
    assert_refused(&app, response, 401, "invalid_signature").await;
}

#[tokio::test]
async fn stale_and_future_standard_webhooks_timestamps_are_rejected() {
    let app = spawn_app().await;
    let body = br#"{"type":"ticket.updated","data":{"ticket":"A-1","state":"closed","actor":{"id":"u"}}}"#;
    let now = chrono::Utc::now().timestamp();
    let stale = app.post_generic("msg_1", now - 6 * 60, body).await;
    assert_refused(&app, stale, 401, "invalid_signature").await;
    let future = app.post_generic("msg_2", now + 6 * 60, body).await;
    assert_refused(&app, future, 401, "invalid_signature").await;
}

#[tokio::test]
async fn malformed_json_with_a_valid_signature_is_rejected() {
    let app = spawn_app().await;
    let response = app.post_github("issues", "d-1", b"{\"action\": \"closed\", ").await;
    assert_refused(&app, response, 400, "malformed_payload").await;
    let now = chrono::Utc::now().timestamp();
    let response = app
        .post_generic("msg_1", now, br#"{"type":"x","data":{"ticket":"A-1"}}"#)
        .await;
    assert_refused(&app, response, 400, "malformed_payload").await;
}

#[tokio::test]
async fn an_oversized_body_is_rejected_with_413() {
    let app = spawn_app().await;
    let big = vec![b' '; 70 * 1024];
    let response = app.post_github("issues", "d-1", &big).await;
    assert_refused(&app, response, 413, "payload_too_large").await;
}

#[tokio::test]
async fn an_unknown_source_is_rejected_with_404() {
    let app = spawn_app().await;
    let response = app.post_raw("nosuchsource", &[], b"{}").await;
    assert_refused(&app, response, 404, "unknown_source").await;
}
