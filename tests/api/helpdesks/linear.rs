use serde_json::{Value, json};
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{body_string_contains, method, path},
};

use crate::helpers::*;

const SECRET: &str = "lin_wh_secret";
const ACTOR: &str = "2b7e4f19-8c3a-4d6e-b5f0-9a1c2d3e4f56";

async fn linear_app() -> TestApp {
    linear_app_with(None).await
}

async fn linear_app_with(policies: Option<std::path::PathBuf>) -> TestApp {
    spawn_app_with(Options {
        policies,
        sources: Some(
            json!({ "linear": { "type": "linear", "secret": { "value": SECRET }, "api_url": "{helpdesk}/graphql",
            "token": { "value": "lin_api_x" }, "bot_actor_id": "closegate-app", "reopen_state": "In Progress" } }),
        ),
        ..Default::default()
    })
    .await
}

/// The fixture with the test's role and table, sent `age_ms` ago.
fn event(role: &str, table: &str, age_ms: i64) -> String {
    let now = chrono::Utc::now().timestamp_millis() - age_ms;
    fixture("linear/issue_update_completed.json", role, table).replace("1795341792907", &now.to_string())
}

async fn post(app: &TestApp, delivery: &str, body: &str) -> reqwest::Response {
    let sig = sign_hex(SECRET, &[body.as_bytes()]);
    let headers = [
        ("linear-signature", sig.as_str()),
        ("linear-delivery", delivery),
        ("linear-event", "Issue"),
    ];
    app.post_raw("linear", &headers, body.as_bytes()).await
}

async fn mock_graphql(app: &TestApp, comments: u64, moves: u64) {
    let states: Value = serde_json::from_str(&fixture("linear/workflow_states.json", "", "")).unwrap();
    let issue = json!({ "data": { "issue": {
        "id": "7a4c2e91-0b3d-4f6a-8e5c-1d2b3a4f5e6d", "completedAt": "2026-11-22T10:03:11.482Z", "canceledAt": null,
        "state": { "id": "e9b4d7f2-1a6c-4e3b-b8d5-7c0a2f9e6d13", "name": "Done", "type": "completed" },
        "team": { "states": states["data"]["team"]["states"] }, "comments": { "nodes": [] } } } });
    let ok = |name: &str| json!({ "data": { name: { "success": true } } });
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_string_contains("issue(id:"))
        .respond_with(ResponseTemplate::new(200).set_body_json(issue))
        .mount(&app.helpdesk)
        .await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_string_contains("commentCreate"))
        .respond_with(ResponseTemplate::new(200).set_body_json(ok("commentCreate")))
        .expect(comments)
        .mount(&app.helpdesk)
        .await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_string_contains("issueUpdate"))
        .respond_with(ResponseTemplate::new(200).set_body_json(ok("issueUpdate")))
        .expect(moves)
        .mount(&app.helpdesk)
        .await;
}

async fn graphql_calls(app: &TestApp, containing: &str) -> Vec<Value> {
    app.helpdesk
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap())
        .filter(|b| b["query"].as_str().is_some_and(|q| q.contains(containing)))
        .collect()
}

#[tokio::test]
async fn a_completed_linear_issue_without_the_grant_moves_back_to_in_progress_with_a_comment() {
    let app = linear_app().await;
    let (role, table) = Target::new().await.role_with_grant("").await;
    mock_graphql(&app, 1, 1).await;

    let response = post(&app, "ld-1", &event(&role, &table, 0)).await;

    assert_eq!(response.status().as_u16(), 202);
    assert_eq!(app.settle("linear", "ACC-42").await, ["blocked"]);
    let moved = &graphql_calls(&app, "issueUpdate").await[0]["variables"];
    assert_eq!(
        moved["stateId"], "a3f1c6d8-2e4b-4c7a-9f0e-5b6d7c8e9f01",
        "the team's In Progress state"
    );
    let comment = &graphql_calls(&app, "commentCreate").await[0]["variables"]["body"];
    assert!(comment.as_str().unwrap().contains("missing SELECT"), "{comment}");
    let auth = app.helpdesk.received_requests().await.unwrap()[0]
        .headers
        .get("authorization")
        .unwrap()
        .clone();
    assert_eq!(auth, "lin_api_x", "personal API keys are sent raw");
}

#[tokio::test]
async fn a_completed_linear_issue_with_the_grant_only_gets_a_comment() {
    let app = linear_app().await;
    let (role, table) = Target::new().await.role_with_grant("SELECT").await;
    mock_graphql(&app, 1, 0).await;

    post(&app, "ld-1", &event(&role, &table, 0)).await;

    assert_eq!(app.settle("linear", "ACC-42").await, ["allowed"]);
}

#[tokio::test]
async fn linear_deliveries_outside_the_minute_or_with_a_bad_signature_are_rejected() {
    let app = linear_app().await;
    let stale = post(&app, "ld-1", &event("r", "t", 120_000)).await;
    let body = event("r", "t", 0);
    let forged = app
        .post_raw(
            "linear",
            &[("linear-signature", &"ab".repeat(32)), ("linear-delivery", "ld-2")],
            body.as_bytes(),
        )
        .await;
    let missing = app
        .post_raw("linear", &[("linear-delivery", "ld-3")], body.as_bytes())
        .await;

    assert_eq!([stale, forged, missing].map(|r| r.status().as_u16()), [401, 401, 401]);
    assert_eq!(app.stats().await.deliveries, 0);
}

#[tokio::test]
async fn linear_edits_redeliveries_and_own_updates_decide_nothing() {
    let app = linear_app().await;
    mock_graphql(&app, 0, 0).await;
    let closed = event("r", "t", 0);
    let edit: String = {
        let mut v: Value = serde_json::from_str(&closed).unwrap();
        v["updatedFrom"] = json!({ "title": "old title" });
        v.to_string()
    };
    let own = closed.replace(ACTOR, "closegate-app");

    post(&app, "ld-1", &edit).await;
    post(&app, "ld-2", &own).await;
    post(&app, "ld-3", &closed).await;
    let again = post(&app, "ld-3", &closed).await;
    app.decide_all().await;

    assert_eq!(again.headers().get("closegate-duplicate").unwrap(), "true");
    let stats = app.stats().await;
    assert_eq!((stats.deliveries, stats.evidence), (3, 1));
}

#[tokio::test]
async fn linear_approvals_are_unedited_approval_comments_by_people() {
    let policies = grant_policy_with_approval(&["omar@acme.example"]);
    let app = linear_app_with(Some(policies.path().to_path_buf())).await;
    let (role, table) = Target::new().await.role_with_grant("SELECT").await;
    let comment = |id: &str, email: &str, edited: Value| {
        json!({ "id": id, "body": "/approve", "createdAt": "2026-11-21T09:00:00.000Z", "editedAt": edited,
                "user": { "id": format!("u-{id}"), "name": email, "email": email } })
    };
    // An edited approval by the data owner, and one by someone not listed.
    let comments = json!({ "data": { "issue": { "comments": { "nodes": [
        comment("c1", "omar@acme.example", json!("2026-11-21T09:05:00.000Z")),
        comment("c2", "eve@acme.example", Value::Null),
    ] } } } });
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_string_contains("editedAt"))
        .respond_with(ResponseTemplate::new(200).set_body_json(comments))
        .mount(&app.helpdesk)
        .await;
    mock_graphql(&app, 1, 1).await;

    post(&app, "ld-1", &event(&role, &table, 0)).await;

    assert_eq!(app.settle("linear", "ACC-42").await, ["blocked"]);
    let reasons = app
        .last_record("linear", "ACC-42")
        .await
        .content()
        .unwrap()
        .decision
        .reasons;
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("0 of 1") && r.contains("u-c2: not in the policy's list")),
        "the edited one is not read at all, the unlisted one is refused: {reasons:?}"
    );
}

#[tokio::test]
async fn a_linear_completion_whose_webhook_was_lost_is_found_by_cursor_and_decided_once_with_its_closer() {
    let app = linear_app().await;
    let (role, table) = Target::new().await.role_with_grant("").await;
    let now = chrono::DateTime::from_timestamp_millis(app.ctx.now_ms()).unwrap();
    let completed = (now - chrono::Duration::seconds(600)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let sent: Value = serde_json::from_str(&event(&role, &table, 0)).unwrap();
    let data = &sent["data"];
    let listing = |nodes: Value, next: Option<&str>| {
        json!({ "data": { "issues": { "nodes": nodes,
            "pageInfo": { "hasNextPage": next.is_some(), "endCursor": next } } } })
    };
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_string_contains("issues(first"))
        .and(body_string_contains(r#""after":null"#))
        .respond_with(ResponseTemplate::new(200).set_body_json(listing(
            json!([{ "identifier": "ACC-7", "completedAt": "2026-01-02T00:00:00.000Z", "canceledAt": null }]),
            Some("cursor-2"),
        )))
        .mount(&app.helpdesk)
        .await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_string_contains(r#""after":"cursor-2""#))
        .respond_with(ResponseTemplate::new(200).set_body_json(listing(
            json!([{ "identifier": "ACC-42", "completedAt": completed, "canceledAt": null }]),
            None,
        )))
        .mount(&app.helpdesk)
        .await;
    // The issue as the API reads it, with who moved it to Done.
    let issue = json!({ "data": { "issue": {
        "identifier": "ACC-42", "title": data["title"], "description": data["description"], "url": data["url"],
        "completedAt": completed, "canceledAt": null, "creator": { "id": data["creatorId"] },
        "state": data["state"], "labels": { "nodes": data["labels"] },
        "history": { "nodes": [
            { "createdAt": "2026-11-20T09:00:00.000Z", "actor": { "id": "someone-else" }, "toState": { "type": "started" } },
            { "createdAt": completed, "actor": { "id": ACTOR }, "toState": { "type": "completed" } } ] } } } });
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_string_contains("history(first"))
        .respond_with(ResponseTemplate::new(200).set_body_json(issue))
        .with_priority(1)
        .mount(&app.helpdesk)
        .await;
    // What the reopen reads: still in the close judged.
    let states: Value = serde_json::from_str(&fixture("linear/workflow_states.json", "", "")).unwrap();
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_string_contains("team { states"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "data": { "issue": {
            "id": "7a4c2e91-0b3d-4f6a-8e5c-1d2b3a4f5e6d", "completedAt": completed, "canceledAt": null,
            "state": data["state"], "team": { "states": states["data"]["team"]["states"] },
            "comments": { "nodes": [] } } } })))
        .with_priority(1)
        .mount(&app.helpdesk)
        .await;
    mock_graphql(&app, 1, 1).await;

    let record = reconcile_twice(&app, "linear", "ACC-42").await;

    let event = record.content().unwrap().event;
    assert_eq!(event.actor.id, ACTOR, "the closer from the issue's history");
    assert_eq!(event.labels, ["access-request"]);
}
