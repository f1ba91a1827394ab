use serde_json::{Value, json};

use super::{mock, received};
use crate::helpers::*;

const SECRET: &str = "snow-hmac-secret";
const SYS_ID: &str = "9d385017c611228701d22104cc95c371";

async fn servicenow_app() -> TestApp {
    servicenow_app_with(None).await
}

async fn servicenow_app_with(policies: Option<std::path::PathBuf>) -> TestApp {
    let api = |extra: Value| {
        let mut s = json!({ "type": "servicenow", "api_url": "{helpdesk}", "user": "closegate.integration",
            "password": { "value": "pw" }, "bot_user": "closegate.integration" });
        s.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        s
    };
    spawn_app_with(Options {
        sources: Some(json!({
            "snow": api(json!({ "secret": { "value": SECRET } })),
            "snow-token": api(json!({ "path_token": { "value": "k8Vd0Qx7u2Lp" } })),
        })),
        policies,
        ..Default::default()
    })
    .await
}

fn record(role: &str, table: &str) -> Value {
    let mut v: Value = serde_json::from_str(&fixture("servicenow/incident_resolved.json", role, table)).unwrap();
    v["u_table"] = json!(table);
    v["category"] = json!("access-request");
    v
}

async fn mock_api(app: &TestApp, role: &str, table: &str, patches: u64) {
    let mut stored: Value = serde_json::from_str(&fixture("servicenow/incident_get.json", role, table)).unwrap();
    stored["result"]["u_table"] = json!(table);
    stored["result"]["u_database_role"] = json!(role);
    stored["result"]["category"] = json!("access-request");
    mock(
        app,
        "GET",
        "/api/now/table/incident",
        200,
        json!({ "result": [stored["result"]] }),
        None,
    )
    .await;
    mock(
        app,
        "GET",
        "/api/now/table/sys_journal_field",
        200,
        json!({ "result": [] }),
        None,
    )
    .await;
    mock(
        app,
        "PATCH",
        &format!("/api/now/table/incident/{SYS_ID}"),
        200,
        json!({ "result": {} }),
        Some(patches),
    )
    .await;
}

async fn post_signed(app: &TestApp, body: &Value) -> reqwest::Response {
    let text = body.to_string();
    let sig = sign_b64(SECRET, &[text.as_bytes()]);
    app.post_raw("snow", &[("x-closegate-signature", sig.as_str())], text.as_bytes())
        .await
}

#[tokio::test]
async fn a_resolved_incident_without_the_grant_goes_back_to_in_progress_with_a_work_note() {
    let app = servicenow_app().await;
    let (role, table) = Target::new().await.role_with_grant("").await;
    mock_api(&app, &role, &table, 1).await;

    let response = post_signed(&app, &record(&role, &table)).await;

    assert_eq!(response.status().as_u16(), 202);
    assert_eq!(app.settle("snow", "INC0010042").await, ["blocked"]);
    let patch = &received(&app, "PATCH", &format!("/api/now/table/incident/{SYS_ID}")).await[0];
    assert_eq!(patch["state"], "2");
    assert!(
        patch["work_notes"].as_str().unwrap().contains("missing SELECT"),
        "{patch}"
    );
}

#[tokio::test]
async fn an_unsigned_servicenow_call_is_not_trusted_the_record_is_re_read() {
    let app = servicenow_app().await;
    let mut target = Target::new().await;
    let (granted, table) = target.role_with_grant("SELECT").await;
    let ungranted = target.login_role().await;
    // The API says the request was for `ungranted`; the body claims `granted`.
    mock_api(&app, &ungranted, &table, 1).await;

    let body = record(&granted, &table).to_string();
    let wrong_token = app.post_raw("snow-token", &[], body.as_bytes()).await;
    let response = app
        .http
        .post(format!("{}/hooks/snow-token/k8Vd0Qx7u2Lp", app.address))
        .body(body)
        .send()
        .await
        .unwrap();

    assert_eq!((wrong_token.status().as_u16(), response.status().as_u16()), (401, 202));
    assert_eq!(app.settle("snow-token", "INC0010042").await, ["blocked"]);
}

#[tokio::test]
async fn servicenow_forged_signatures_other_states_and_own_updates_decide_nothing() {
    let app = servicenow_app().await;
    mock_api(&app, "r", "t", 0).await;
    let forged = app
        .post_raw(
            "snow",
            &[("x-closegate-signature", "AAAA")],
            record("r", "t").to_string().as_bytes(),
        )
        .await;
    assert_eq!(forged.status().as_u16(), 401);
    let mut on_hold = record("r", "t");
    on_hold["state"] = json!("3");
    on_hold["delivery_id"] = json!("d-hold");
    let mut own = record("r", "t");
    own["sys_updated_by"] = json!("closegate.integration");
    own["delivery_id"] = json!("d-own");

    post_signed(&app, &on_hold).await;
    post_signed(&app, &own).await;
    post_signed(&app, &record("r", "t")).await;
    let again = post_signed(&app, &record("r", "t")).await;
    app.decide_all().await;

    assert_eq!(again.headers().get("closegate-duplicate").unwrap(), "true");
    let stats = app.stats().await;
    assert_eq!((stats.deliveries, stats.evidence), (3, 1));
}

#[tokio::test]
async fn a_resolved_incident_with_the_grant_gets_a_work_note_and_stays_resolved() {
    let app = servicenow_app().await;
    let (role, table) = Target::new().await.role_with_grant("SELECT").await;
    mock_api(&app, &role, &table, 1).await;

    post_signed(&app, &record(&role, &table)).await;

    assert_eq!(app.settle("snow", "INC0010042").await, ["allowed"]);
    let patch = &received(&app, "PATCH", &format!("/api/now/table/incident/{SYS_ID}")).await[0];
    assert!(patch.get("state").is_none(), "{patch}");
    let note = patch["work_notes"].as_str().unwrap();
    assert!(
        note.starts_with("closegate: closure verified") && note.contains("[closegate:cg-"),
        "{note}"
    );
}

/// A `sysapproval_approver` row as the Table API returns it with raw values
/// and the approver dot-walked.
fn approver_row(user: &str, state: &str, updated: &str) -> Value {
    json!({ "sys_id": format!("a{user}"), "state": state, "sys_updated_on": updated,
            "approver": { "link": "https://x/api/now/table/sys_user/1", "value": format!("u{user}") },
            "approver.user_name": user, "approver.email": format!("{user}@acme.example"), "approver.name": user })
}

#[tokio::test]
async fn servicenow_approvals_are_the_approved_sysapproval_approver_rows_of_the_record() {
    let policies = grant_policy_with_approval(&["fred@acme.example"]);
    let app = servicenow_app_with(Some(policies.path().to_path_buf())).await;
    let (role, table) = Target::new().await.role_with_grant("SELECT").await;
    mock_api(&app, &role, &table, 1).await;
    let rows = vec![
        approver_row("fred", "approved", "2026-11-22 09:00:00"),
        approver_row("gina", "rejected", "2026-11-22 09:05:00"),
    ];
    mock(
        &app,
        "GET",
        "/api/now/table/sysapproval_approver",
        200,
        json!({ "result": rows }),
        None,
    )
    .await;

    post_signed(&app, &record(&role, &table)).await;

    assert_eq!(app.settle("snow", "INC0010042").await, ["allowed"]);
    let asked = app.helpdesk.received_requests().await.unwrap();
    let query = asked
        .iter()
        .find(|r| r.url.path() == "/api/now/table/sysapproval_approver")
        .map(|r| r.url.query().unwrap_or_default().to_string())
        .unwrap();
    assert!(
        query.contains(&format!("sysapproval%3D{SYS_ID}%5Estate%3Dapproved")),
        "{query}"
    );
    let note = received(&app, "PATCH", &format!("/api/now/table/incident/{SYS_ID}")).await[0]["work_notes"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        note.contains("Approval: fred@acme.example at 2026-11-22T09:00:00Z"),
        "{note}"
    );
}

#[tokio::test]
async fn a_failing_servicenow_approvals_api_blocks_as_could_not_verify() {
    let policies = grant_policy_with_approval(&["fred@acme.example"]);
    let app = servicenow_app_with(Some(policies.path().to_path_buf())).await;
    let (role, table) = Target::new().await.role_with_grant("SELECT").await;
    mock_api(&app, &role, &table, 1).await;
    mock(
        &app,
        "GET",
        "/api/now/table/sysapproval_approver",
        403,
        json!({ "error": {} }),
        None,
    )
    .await;

    post_signed(&app, &record(&role, &table)).await;

    assert_eq!(app.settle("snow", "INC0010042").await, ["blocked"]);
    let patch = &received(&app, "PATCH", &format!("/api/now/table/incident/{SYS_ID}")).await[0];
    assert_eq!(patch["state"], "2", "reverted: {patch}");
    assert!(
        patch["work_notes"]
            .as_str()
            .unwrap()
            .contains("approval: could not verify"),
        "{patch}"
    );
}

#[tokio::test]
async fn a_resolved_incident_whose_business_rule_call_was_lost_is_found_page_by_page_and_decided_once() {
    let app = servicenow_app().await;
    let (role, table) = Target::new().await.role_with_grant("").await;
    let now = chrono::DateTime::from_timestamp_millis(app.ctx.now_ms()).unwrap();
    let stamp = |ago: i64| {
        (now - chrono::Duration::seconds(ago))
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    // Page 1: a full page of records resolved before the watermark; page 2: ours.
    let old: Vec<Value> = (0..100)
        .map(|i| json!({ "number": format!("INC90{i:05}"), "state": "6", "closed_at": stamp(3 * 86_400), "sys_updated_on": stamp(600) }))
        .collect();
    for (offset, rows) in [
        ("0", json!(old)),
        (
            "100",
            json!([{ "number": "INC0010042", "state": "6", "closed_at": "", "sys_updated_on": stamp(600) }]),
        ),
    ] {
        wiremock::Mock::given(wiremock::matchers::method("GET"))
            .and(wiremock::matchers::path("/api/now/table/incident"))
            .and(wiremock::matchers::query_param("sysparm_offset", offset))
            .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(json!({ "result": rows })))
            .with_priority(1)
            .mount(&app.helpdesk)
            .await;
    }
    mock_api(&app, &role, &table, 1).await;

    reconcile_twice(&app, "snow", "INC0010042").await;

    let query = query_param_of(&app, "/api/now/table/incident", "sysparm_query").await;
    assert!(query.starts_with("stateIN6,7^sys_updated_on>="), "{query}");
}

#[tokio::test]
async fn a_gate_check_whose_record_could_not_be_read_is_decided_when_asked_again_under_its_id() {
    let app = spawn_app_with(Options {
        sources: Some(
            json!({ "snow": { "type": "servicenow", "api_url": "{helpdesk}", "user": "closegate.integration",
            "password": { "value": "pw" }, "bot_user": "closegate.integration", "secret": { "value": SECRET } } }),
        ),
        gate: Some(
            json!({ "deadline_ms": 5000, "callers": { "servicenow-br": { "secret": { "value": GENERIC_SECRET } } } }),
        ),
        ..Default::default()
    })
    .await;
    // The instance fails the first read of the record, then answers.
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .and(wiremock::matchers::path("/api/now/table/incident"))
        .respond_with(wiremock::ResponseTemplate::new(500))
        .up_to_n_times(1)
        .mount(&app.helpdesk)
        .await;
    mock_api(&app, "nobody_here", "public.none", 0).await;
    // The check names the record only: it is read from the instance.
    let body = json!({ "source": "snow", "ticket": "INC0010042", "state": "6" }).to_string();
    let ask = async || {
        let ts = chrono::Utc::now().timestamp();
        let sig = closegate::signature::StandardWebhooksKey::parse(GENERIC_SECRET)
            .unwrap()
            .sign("chk-retried", ts, body.as_bytes());
        app.http
            .post(format!("{}/v1/gate/check", app.address))
            .header("webhook-id", "chk-retried")
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap()
    };

    let failed = ask().await;
    assert_eq!(failed.status().as_u16(), 500, "the record could not be read");
    assert_eq!(app.stats().await.evidence, 0);
    let retried: Value = ask().await.json().await.unwrap();
    let repeated: Value = ask().await.json().await.unwrap();

    assert_eq!(retried["verdict"], "blocked", "decided, not left pending: {retried}");
    assert_eq!(retried["allowed"], false);
    let records = app.store.evidence_for_ticket("snow", "INC0010042").await.unwrap();
    assert_eq!(records.len(), 1, "decided once");
    assert_eq!(retried["evidence_id"], records[0].id.as_str());
    assert_eq!(
        repeated, retried,
        "a repeat after the decision gets the recorded answer"
    );
}
