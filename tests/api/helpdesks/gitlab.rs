use closegate::signature::StandardWebhooksKey;
use serde_json::json;

use super::{mock, received};
use crate::helpers::*;

const TOKEN: &str = "gl-hook-token";
const ISSUE: &str = "/api/v4/projects/acme%2Faccess-requests/issues/42";

async fn gitlab_app(signing: bool) -> TestApp {
    let mut source = json!({ "type": "gitlab", "secret_token": { "value": TOKEN }, "api_url": "{helpdesk}",
        "token": { "value": "glpat-x" }, "bot_username": "closegate-bot" });
    if signing {
        source["signing_token"] = json!({ "value": GENERIC_SECRET });
    }
    spawn_app_with(Options {
        sources: Some(json!({ "gitlab": source })),
        ..Default::default()
    })
    .await
}

async fn post(app: &TestApp, key: &str, token: &str, body: &str) -> reqwest::Response {
    let headers = [
        ("x-gitlab-event", "Issue Hook"),
        ("x-gitlab-token", token),
        ("idempotency-key", key),
    ];
    app.post_raw("gitlab", &headers, body.as_bytes()).await
}

async fn mock_issue(app: &TestApp, notes: u64, reopens: u64) {
    mock(
        app,
        "GET",
        ISSUE,
        200,
        json!({ "state": "closed", "closed_at": "2026-11-22T10:03:11.000Z" }),
        None,
    )
    .await;
    mock(app, "GET", &format!("{ISSUE}/notes"), 200, json!([]), None).await;
    mock(
        app,
        "POST",
        &format!("{ISSUE}/notes"),
        201,
        json!({ "id": 1 }),
        Some(notes),
    )
    .await;
    mock(app, "PUT", ISSUE, 200, json!({ "state": "opened" }), Some(reopens)).await;
}

#[tokio::test]
async fn a_gitlab_close_without_the_grant_is_reopened_with_a_note() {
    let app = gitlab_app(false).await;
    let (role, table) = Target::new().await.role_with_grant("").await;
    mock_issue(&app, 1, 1).await;

    let response = post(&app, "k-1", TOKEN, &fixture("gitlab/issue_close.json", &role, &table)).await;

    assert_eq!(response.status().as_u16(), 202);
    assert_eq!(app.settle("gitlab", "acme/access-requests#42").await, ["blocked"]);
    assert_eq!(
        received(&app, "PUT", ISSUE).await[0],
        json!({ "state_event": "reopen" })
    );
    let note = received(&app, "POST", &format!("{ISSUE}/notes")).await[0]["body"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        note.contains("closure blocked") && note.contains("missing SELECT"),
        "{note}"
    );
}

#[tokio::test]
async fn a_gitlab_close_with_the_grant_gets_an_evidence_note_and_stays_closed() {
    let app = gitlab_app(false).await;
    let (role, table) = Target::new().await.role_with_grant("SELECT").await;
    mock_issue(&app, 1, 0).await;

    post(&app, "k-1", TOKEN, &fixture("gitlab/issue_close.json", &role, &table)).await;

    assert_eq!(app.settle("gitlab", "acme/access-requests#42").await, ["allowed"]);
}

#[tokio::test]
async fn a_wrong_or_missing_gitlab_token_or_a_stale_signature_is_rejected() {
    let app = gitlab_app(true).await;
    let body = fixture("gitlab/issue_close.json", "r", "public.t");
    let key = StandardWebhooksKey::parse(GENERIC_SECRET).unwrap();
    let now = chrono::Utc::now().timestamp();
    let signed = |ts: i64| key.sign("k-9", ts, body.as_bytes());
    let send = |token: &'static str, ts: i64| {
        let (sig, ts) = (signed(ts), ts.to_string());
        let app = &app;
        let body = body.clone();
        async move {
            let headers = [
                ("x-gitlab-token", token),
                ("idempotency-key", "k-9"),
                ("webhook-id", "k-9"),
                ("webhook-timestamp", ts.as_str()),
                ("webhook-signature", sig.as_str()),
            ];
            app.post_raw("gitlab", &headers, body.as_bytes())
                .await
                .status()
                .as_u16()
        }
    };

    assert_eq!(send("wrong", now).await, 401);
    assert_eq!(send(TOKEN, now - 600).await, 401);
    assert_eq!(
        app.post_raw("gitlab", &[("idempotency-key", "k-1")], body.as_bytes())
            .await
            .status()
            .as_u16(),
        401
    );
    assert_eq!(app.stats().await.deliveries, 0);
    assert_eq!(send(TOKEN, now).await, 202);
}

#[tokio::test]
async fn gitlab_updates_redeliveries_and_own_echoes_decide_nothing() {
    let app = gitlab_app(false).await;
    mock_issue(&app, 0, 0).await;
    let closed = fixture("gitlab/issue_close.json", "r", "public.t");
    let update = closed.replace("\"action\": \"close\"", "\"action\": \"update\"");
    let echo = closed.replace("\"username\": \"dokafor\"", "\"username\": \"closegate-bot\"");
    assert!(update != closed && echo != closed);

    post(&app, "k-1", TOKEN, &update).await;
    post(&app, "k-2", TOKEN, &echo).await;
    post(&app, "k-3", TOKEN, &closed).await;
    let again = post(&app, "k-3", TOKEN, &closed).await;
    app.decide_all().await;

    assert_eq!(again.headers().get("closegate-duplicate").unwrap(), "true");
    let stats = app.stats().await;
    assert_eq!((stats.deliveries, stats.evidence), (3, 1));
}

#[tokio::test]
async fn a_gitlab_close_whose_hook_was_disabled_is_found_and_decided_once_with_its_closer() {
    let app = spawn_app_with(Options {
        sources: Some(
            json!({ "gitlab": { "type": "gitlab", "secret_token": { "value": TOKEN }, "api_url": "{helpdesk}",
            "token": { "value": "glpat-x" }, "bot_username": "closegate-bot" } }),
        ),
        settings: Some(json!({ "reconcile": { "repositories": { "gitlab": ["acme/access-requests"] } } })),
        ..Default::default()
    })
    .await;
    let (role, table) = Target::new().await.role_with_grant("").await;
    let now = chrono::DateTime::from_timestamp_millis(app.ctx.now_ms()).unwrap();
    let closed_at = (now - chrono::Duration::seconds(600)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let hook: serde_json::Value = serde_json::from_str(&fixture("gitlab/issue_close.json", &role, &table)).unwrap();
    let attrs = &hook["object_attributes"];
    // The API's issue object, as GitLab documents it.
    let issue = json!({ "iid": 42, "title": attrs["title"], "description": attrs["description"], "state": "closed",
        "closed_at": closed_at, "closed_by": { "username": "dana" }, "author": { "username": "reporting-bot" },
        "labels": ["access-request"], "web_url": attrs["url"] });
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .and(wiremock::matchers::path(ISSUE))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(&issue))
        .with_priority(1)
        .mount(&app.helpdesk)
        .await;
    let list = "/api/v4/projects/acme%2Faccess-requests/issues";
    let others: Vec<serde_json::Value> = (1..=100)
        .map(|n| json!({ "iid": 1000 + n, "state": "closed", "closed_at": "2026-01-01T00:00:00.000Z" }))
        .collect();
    for (page, body) in [("1", json!(others)), ("2", json!([issue]))] {
        wiremock::Mock::given(wiremock::matchers::method("GET"))
            .and(wiremock::matchers::path(list))
            .and(wiremock::matchers::query_param("page", page))
            .and(wiremock::matchers::query_param("state", "closed"))
            .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(body))
            .mount(&app.helpdesk)
            .await;
    }
    mock_issue(&app, 1, 1).await;

    let record = reconcile_twice(&app, "gitlab", "acme/access-requests#42").await;

    let event = record.content().unwrap().event;
    assert_eq!(
        (event.actor.id.as_str(), event.requester.map(|r| r.id)),
        ("dana", Some("reporting-bot".into()))
    );
    assert_eq!(received(&app, "PUT", ISSUE).await.len(), 1, "reopened once");
}
