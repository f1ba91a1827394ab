use serde_json::json;

use super::{mock, received};
use crate::helpers::*;

const SECRET: &str = "gitea-hook-secret";
const ISSUE: &str = "/api/v1/repos/acme/access-requests/issues/42";

async fn gitea_app() -> TestApp {
    spawn_app_with(Options {
        sources: Some(
            json!({ "gitea": { "type": "gitea", "secret": { "value": SECRET }, "api_url": "{helpdesk}",
            "token": { "value": "gt-token" }, "bot_login": "closegate-bot" } }),
        ),
        ..Default::default()
    })
    .await
}

async fn post(app: &TestApp, delivery: &str, body: &str, signature: Option<String>) -> reqwest::Response {
    let sig = signature.unwrap_or_else(|| sign_hex(SECRET, &[body.as_bytes()]));
    let headers = [
        ("x-gitea-event", "issues"),
        ("x-gitea-delivery", delivery),
        ("x-gitea-signature", sig.as_str()),
    ];
    app.post_raw("gitea", &headers, body.as_bytes()).await
}

async fn mock_issue(app: &TestApp, posts: u64, reopens: u64) {
    mock(
        app,
        "GET",
        ISSUE,
        200,
        json!({ "state": "closed", "closed_at": "2026-11-22T11:03:11+01:00" }),
        None,
    )
    .await;
    mock(app, "GET", &format!("{ISSUE}/comments"), 200, json!([]), None).await;
    mock(
        app,
        "POST",
        &format!("{ISSUE}/comments"),
        201,
        json!({ "id": 1 }),
        Some(posts),
    )
    .await;
    mock(app, "PATCH", ISSUE, 201, json!({ "state": "open" }), Some(reopens)).await;
}

#[tokio::test]
async fn a_gitea_close_with_the_grant_in_place_gets_a_markdown_evidence_comment() {
    let app = gitea_app().await;
    let (role, table) = Target::new().await.role_with_grant("SELECT").await;
    mock_issue(&app, 1, 0).await;

    let response = post(&app, "d-1", &fixture("gitea/issue_closed.json", &role, &table), None).await;

    assert_eq!(response.status().as_u16(), 202);
    assert_eq!(app.settle("gitea", "acme/access-requests#42").await, ["allowed"]);
    let comment = received(&app, "POST", &format!("{ISSUE}/comments")).await[0]["body"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        comment.starts_with("## ✅ closegate: closure verified") && comment.contains("<!-- closegate:cg-"),
        "{comment}"
    );
}

#[tokio::test]
async fn a_gitea_close_without_the_grant_is_reopened_with_a_rejection() {
    let app = gitea_app().await;
    let (role, table) = Target::new().await.role_with_grant("").await;
    mock_issue(&app, 1, 1).await;

    post(&app, "d-1", &fixture("gitea/issue_closed.json", &role, &table), None).await;

    assert_eq!(app.settle("gitea", "acme/access-requests#42").await, ["blocked"]);
    assert_eq!(received(&app, "PATCH", ISSUE).await[0], json!({ "state": "open" }));
    let comment = received(&app, "POST", &format!("{ISSUE}/comments")).await[0]["body"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(comment.contains("missing SELECT"), "{comment}");
}

#[tokio::test]
async fn gitea_and_forgejo_signatures_are_checked_and_bad_ones_change_nothing() {
    let app = gitea_app().await;
    let body = fixture("gitea/issue_closed.json", "r", "public.t");

    let wrong = post(&app, "d-1", &body, Some("00".repeat(32))).await;
    let missing = app
        .post_raw(
            "gitea",
            &[("x-gitea-event", "issues"), ("x-gitea-delivery", "d-2")],
            body.as_bytes(),
        )
        .await;
    let prefixed = post(
        &app,
        "d-3",
        &body,
        Some(format!("sha256={}", sign_hex(SECRET, &[body.as_bytes()]))),
    )
    .await;
    assert_eq!(
        [
            wrong.status().as_u16(),
            missing.status().as_u16(),
            prefixed.status().as_u16()
        ],
        [401, 401, 401]
    );
    assert_eq!(app.stats().await.deliveries, 0);

    let sig = sign_hex(SECRET, &[body.as_bytes()]);
    let forgejo = [
        ("x-forgejo-event", "issues"),
        ("x-forgejo-delivery", "f-1"),
        ("x-forgejo-signature", sig.as_str()),
    ];
    assert_eq!(
        app.post_raw("gitea", &forgejo, body.as_bytes()).await.status().as_u16(),
        202
    );
}

#[tokio::test]
async fn gitea_non_closes_redeliveries_and_own_echoes_decide_nothing() {
    let app = gitea_app().await;
    mock_issue(&app, 0, 0).await;
    let closed = fixture("gitea/issue_closed.json", "r", "public.t");
    let opened = closed.replacen("\"action\": \"closed\"", "\"action\": \"opened\"", 1);
    let echo = closed.replace("\"login\": \"dokafor\"", "\"login\": \"closegate-bot\"");
    assert_ne!(echo, closed);

    post(&app, "d-1", &opened, None).await;
    post(&app, "d-2", &echo, None).await;
    post(&app, "d-3", &closed, None).await;
    let again = post(&app, "d-3", &closed, None).await;
    app.decide_all().await;

    assert_eq!(again.headers().get("closegate-duplicate").unwrap(), "true");
    let stats = app.stats().await;
    assert_eq!((stats.deliveries, stats.evidence), (3, 1));
}

#[tokio::test]
async fn a_gitea_close_whose_webhook_was_lost_is_found_page_by_page_and_decided_once() {
    let app = spawn_app_with(Options {
        sources: Some(
            json!({ "gitea": { "type": "gitea", "secret": { "value": SECRET }, "api_url": "{helpdesk}",
            "token": { "value": "gt-token" }, "bot_login": "closegate-bot" } }),
        ),
        settings: Some(json!({ "reconcile": { "repositories": { "gitea": ["acme/access-requests"] } } })),
        ..Default::default()
    })
    .await;
    let (role, table) = Target::new().await.role_with_grant("").await;
    let now = chrono::DateTime::from_timestamp_millis(app.ctx.now_ms()).unwrap();
    let closed_at = (now - chrono::Duration::seconds(600)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let hook: serde_json::Value = serde_json::from_str(&fixture("gitea/issue_closed.json", &role, &table)).unwrap();
    let mut issue = hook["issue"].clone();
    issue["closed_at"] = json!(closed_at);
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .and(wiremock::matchers::path(ISSUE))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(&issue))
        .with_priority(1)
        .mount(&app.helpdesk)
        .await;
    // Gitea pages by `limit` (50 at most) and `page`.
    let others: Vec<serde_json::Value> = (1..=50)
        .map(|n| json!({ "number": 1000 + n, "state": "closed", "closed_at": "2026-01-01T00:00:00Z" }))
        .collect();
    for (page, body) in [("1", json!(others)), ("2", json!([issue]))] {
        wiremock::Mock::given(wiremock::matchers::method("GET"))
            .and(wiremock::matchers::path("/api/v1/repos/acme/access-requests/issues"))
            .and(wiremock::matchers::query_param("type", "issues"))
            .and(wiremock::matchers::query_param("limit", "50"))
            .and(wiremock::matchers::query_param("page", page))
            .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(body))
            .mount(&app.helpdesk)
            .await;
    }
    mock_issue(&app, 1, 1).await;

    reconcile_twice(&app, "gitea", "acme/access-requests#42").await;

    assert_eq!(received(&app, "PATCH", ISSUE).await.len(), 1, "reopened once");
}
