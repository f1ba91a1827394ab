use serde_json::{Value, json};

use super::{mock, received};
use crate::helpers::*;

const SECRET: &str = "zendesk-signing-secret";
const TICKET: &str = "/api/v2/tickets/4812.json";

async fn zendesk_app() -> TestApp {
    zendesk_app_with(None).await
}

async fn zendesk_app_with(policies: Option<std::path::PathBuf>) -> TestApp {
    spawn_app_with(Options {
        policies,
        sources: Some(
            json!({ "zendesk": { "type": "zendesk", "secret": { "value": SECRET }, "api_url": "{helpdesk}",
            "email": "closegate@acme.example", "token": { "value": "zd-token" }, "bot_user_id": "1111",
            "fields": { "36012845117451": "Database role", "36012845121419": "Privileges",
                        "36012845124235": "Request type", "36012845127051": "Table" } } }),
        ),
        ..Default::default()
    })
    .await
}

async fn post(app: &TestApp, body: &str, at: chrono::DateTime<chrono::Utc>) -> reqwest::Response {
    let ts = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let sig = sign_b64(SECRET, &[ts.as_bytes(), body.as_bytes()]);
    let headers = [
        ("x-zendesk-webhook-signature", sig.as_str()),
        ("x-zendesk-webhook-signature-timestamp", ts.as_str()),
    ];
    app.post_raw("zendesk", &headers, body.as_bytes()).await
}

/// The API's copy of the ticket, holding the test's role and table.
async fn mock_ticket(app: &TestApp, role: &str, table: &str, puts: u64) {
    let mut ticket: Value = serde_json::from_str(&fixture("zendesk/ticket_get.json", role, table)).unwrap();
    ticket["ticket"]["custom_fields"][2]["value"] = json!("grant");
    ticket["ticket"]["custom_fields"][3]["value"] = json!(table);
    mock(app, "GET", TICKET, 200, ticket, None).await;
    mock(
        app,
        "GET",
        "/api/v2/tickets/4812/comments.json",
        200,
        json!({ "comments": [], "next_page": null }),
        None,
    )
    .await;
    mock(app, "PUT", TICKET, 200, json!({ "ticket": {} }), Some(puts)).await;
}

#[tokio::test]
async fn a_solved_zendesk_ticket_without_the_grant_is_reopened_with_an_internal_note_in_one_update() {
    let app = zendesk_app().await;
    let (role, table) = Target::new().await.role_with_grant("").await;
    mock_ticket(&app, &role, &table, 1).await;

    let response = post(
        &app,
        &fixture("zendesk/ticket_status_changed.json", &role, &table),
        chrono::Utc::now(),
    )
    .await;

    assert_eq!(response.status().as_u16(), 202);
    assert_eq!(app.settle("zendesk", "4812").await, ["blocked"]);
    let update = &received(&app, "PUT", TICKET).await[0]["ticket"];
    assert_eq!(update["status"], "open");
    assert_eq!(update["comment"]["public"], false);
    let note = update["comment"]["body"].as_str().unwrap();
    assert!(
        note.starts_with("closegate: closure blocked") && note.contains("missing SELECT"),
        "{note}"
    );
    assert!(
        !note.contains("| ") && !note.contains("## "),
        "a Zendesk note is plain text: {note}"
    );
}

#[tokio::test]
async fn a_solved_zendesk_ticket_with_the_grant_gets_a_note_and_stays_solved() {
    let app = zendesk_app().await;
    let (role, table) = Target::new().await.role_with_grant("SELECT").await;
    mock_ticket(&app, &role, &table, 1).await;

    post(
        &app,
        &fixture("zendesk/ticket_status_changed.json", &role, &table),
        chrono::Utc::now(),
    )
    .await;

    assert_eq!(app.settle("zendesk", "4812").await, ["allowed"]);
    let update = &received(&app, "PUT", TICKET).await[0]["ticket"];
    assert!(update.get("status").is_none(), "{update}");
}

#[tokio::test]
async fn zendesk_signatures_outside_the_window_or_forged_are_rejected() {
    let app = zendesk_app().await;
    let body = fixture("zendesk/ticket_status_changed.json", "r", "t");
    let stale = post(&app, &body, chrono::Utc::now() - chrono::Duration::minutes(10)).await;
    let future = post(&app, &body, chrono::Utc::now() + chrono::Duration::minutes(10)).await;
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let forged = app
        .post_raw(
            "zendesk",
            &[
                ("x-zendesk-webhook-signature", "AAAA"),
                ("x-zendesk-webhook-signature-timestamp", &ts),
            ],
            body.as_bytes(),
        )
        .await;
    let missing = app.post_raw("zendesk", &[], body.as_bytes()).await;

    let codes = [stale, future, forged, missing].map(|r| r.status().as_u16());
    assert_eq!(codes, [401, 401, 401, 401]);
    assert_eq!(app.stats().await.deliveries, 0);
}

#[tokio::test]
async fn zendesk_other_events_redeliveries_and_own_updates_decide_nothing() {
    let app = zendesk_app().await;
    mock_ticket(&app, "r", "t", 0).await;
    let solved = fixture("zendesk/ticket_status_changed.json", "r", "t");
    let pending = solved
        .replace("\"current\": \"SOLVED\"", "\"current\": \"PENDING\"")
        .replace("3c9d6b1e", "4c9d6b1e");
    let own = solved
        .replace("\"actor_id\": \"9873411223307\"", "\"actor_id\": \"1111\"")
        .replace("3c9d6b1e", "5c9d6b1e");
    assert!(pending != solved && own != solved);

    post(&app, &pending, chrono::Utc::now()).await;
    post(&app, &own, chrono::Utc::now()).await;
    post(&app, &solved, chrono::Utc::now()).await;
    let again = post(&app, &solved, chrono::Utc::now()).await;
    app.decide_all().await;

    assert_eq!(again.headers().get("closegate-duplicate").unwrap(), "true");
    let stats = app.stats().await;
    assert_eq!((stats.deliveries, stats.evidence), (3, 1));
}

const APPROVAL_FIELD: &str = "36012845199999";
const REQUESTER: &str = "9873420559243";

/// Closes ticket 4812 (granted) with these audits; the evidence's approvals.
async fn close_with_audits(audits: Value) -> (String, Vec<(String, String)>) {
    let policies = grant_policy_with_approval_and(&["omar@acme.example"], &format!("  field: \"{APPROVAL_FIELD}\"\n"));
    let app = zendesk_app_with(Some(policies.path().to_path_buf())).await;
    let (role, table) = Target::new().await.role_with_grant("SELECT").await;
    mock_ticket(&app, &role, &table, 1).await;
    mock(
        &app,
        "GET",
        "/api/v2/tickets/4812/audits.json",
        200,
        json!({ "audits": audits, "next_page": null }),
        None,
    )
    .await;
    for (id, email) in [(REQUESTER, "rita@acme.example"), ("7001", "omar@acme.example")] {
        mock(
            &app,
            "GET",
            &format!("/api/v2/users/{id}.json"),
            200,
            json!({ "user": { "id": id, "email": email } }),
            None,
        )
        .await;
    }
    post(
        &app,
        &fixture("zendesk/ticket_status_changed.json", &role, &table),
        chrono::Utc::now(),
    )
    .await;
    let verdict = app.settle("zendesk", "4812").await.pop().unwrap();
    let record = app.last_record("zendesk", "4812").await;
    let report = record.content().unwrap().decision.governance.approval.unwrap();
    let standings = report
        .approvals
        .iter()
        .map(|a| (a.identity.clone(), format!("{:?}", a.standing)))
        .collect();
    (verdict, standings)
}

fn audit(id: u64, author: &str, at: &str, events: Value) -> Value {
    json!({ "id": id, "ticket_id": 4812, "author_id": author.parse::<u64>().unwrap(), "created_at": at, "events": events })
}

#[tokio::test]
async fn zendesk_approvals_come_from_the_audits_with_who_set_the_approval_field() {
    // The requester's own /approve comment is not counted; the data owner
    // setting the approval field is.
    let audits = json!([
        audit(
            1,
            REQUESTER,
            "2026-11-21T08:00:00Z",
            json!([{ "id": 11, "type": "Comment", "body": "/approve please", "public": true }])
        ),
        audit(
            2,
            "7001",
            "2026-11-21T09:00:00Z",
            json!([{ "id": 21, "type": "Change", "field_name": APPROVAL_FIELD, "value": "true", "previous_value": "false" }])
        ),
    ]);
    let (verdict, standings) = close_with_audits(audits).await;
    assert_eq!(verdict, "allowed", "{standings:?}");
    assert!(standings[0].1.starts_with("SelfApproval"), "{standings:?}");
    assert_eq!(standings[1], ("omar@acme.example".to_string(), "Counted".to_string()));

    // Set, then cleared: withdrawn.
    let audits = json!([
        audit(
            2,
            "7001",
            "2026-11-21T09:00:00Z",
            json!([{ "id": 21, "type": "Change", "field_name": APPROVAL_FIELD, "value": "true", "previous_value": "false" }])
        ),
        audit(
            3,
            "7001",
            "2026-11-21T09:30:00Z",
            json!([{ "id": 31, "type": "Change", "field_name": APPROVAL_FIELD, "value": "false", "previous_value": "true" }])
        ),
    ]);
    let (verdict, standings) = close_with_audits(audits).await;
    assert_eq!(verdict, "blocked");
    assert!(standings.is_empty(), "{standings:?}");
}

#[tokio::test]
async fn a_solved_ticket_whose_webhook_was_lost_is_found_in_the_incremental_export_and_decided_once() {
    let app = zendesk_app().await;
    let (role, table) = Target::new().await.role_with_grant("").await;
    mock_ticket(&app, &role, &table, 1).await;
    let now = chrono::DateTime::from_timestamp_millis(app.ctx.now_ms()).unwrap();
    let at = |ago: i64| (now - chrono::Duration::seconds(ago)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let export = "/api/v2/incremental/tickets/cursor.json";
    // The export allows 10 requests a minute: the first answer asks to wait.
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .and(wiremock::matchers::path(export))
        .respond_with(wiremock::ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&app.helpdesk)
        .await;
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .and(wiremock::matchers::path(export))
        .and(wiremock::matchers::query_param_is_missing("cursor"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(json!({
            "tickets": [{ "id": 4700, "status": "open", "updated_at": at(900) }],
            "after_cursor": "MTU3NjYxMzUzOS4wfHw0Njd8", "end_of_stream": false })))
        .with_priority(2)
        .mount(&app.helpdesk)
        .await;
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .and(wiremock::matchers::path(export))
        .and(wiremock::matchers::query_param("cursor", "MTU3NjYxMzUzOS4wfHw0Njd8"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(json!({
            "tickets": [{ "id": 4812, "status": "solved", "updated_at": at(600) }],
            "after_cursor": null, "end_of_stream": true })))
        .with_priority(2)
        .mount(&app.helpdesk)
        .await;

    // The open ticket is not a close.
    reconcile_twice(&app, "zendesk", "4812").await;

    assert_eq!(received(&app, "PUT", TICKET).await.len(), 1, "reopened once");
}
