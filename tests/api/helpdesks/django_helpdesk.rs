//! A real django-helpdesk (started by tests/services/django_helpdesk.sh), driven
//! through its own API: the whole loop, reopen included.

use serde_json::{Value, json};

use closegate::decide::reconcile_source;

use crate::helpers::*;

const TOKEN: &str = "dh-path-token-4Qm9";
const POLICY: &str = r#"
name: helpdesk-revoke
match: { labels: [access], fields: { request_type: revoke } }
require_fields: [database_role]
checks:
  - name: role removed
    system: app-db
    kind: role
    params: { role: "{{ fields.database_role }}" }
    expect: absent
"#;

fn dh_url() -> String {
    std::env::var("CLOSEGATE_TEST_DH").unwrap_or_else(|_| "http://127.0.0.1:8095".into())
}

/// The `dh` source: the real helpdesk, closegate's own account, the path token.
fn dh_source() -> Value {
    json!({ "dh": { "type": "django-helpdesk", "path_token": { "value": TOKEN }, "api_url": dh_url(),
        "user": "closegate", "password": { "value": "closegate" }, "bot_user_id": 2, "queues": { "1": "access" } } })
}

fn dh_dir() -> String {
    std::env::var("CLOSEGATE_DH_DIR").unwrap_or_else(|_| "/tmp/closegate-dh".into())
}

async fn api(http: &reqwest::Client, verb: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut request = http
        .request(verb, format!("{}/api{path}", dh_url()))
        .basic_auth("admin", Some("admin"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("django-helpdesk is reachable");
    assert!(response.status().is_success(), "{path}: {}", response.status());
    response.json().await.unwrap()
}

async fn close(http: &reqwest::Client, ticket: i64) {
    let followup = json!({ "ticket": ticket, "comment": "Access removed, closing.", "public": true, "new_status": 4 });
    api(http, reqwest::Method::POST, "/followups/", Some(followup)).await;
}

#[tokio::test]
async fn a_real_django_helpdesk_close_is_reopened_until_the_revocation_is_done() {
    // Arrange: closegate with a path-token source pointed at the real helpdesk,
    // and the helpdesk's follow-up webhook pointed at closegate.
    // `_serial` is bound so the lock is held to the end (a `..` would drop it at once).
    let Setup {
        _serial,
        app,
        http,
        id,
        role,
        mut target,
        ..
    } = revoke_ticket().await;
    std::fs::write(
        format!("{}/webhook_url", dh_dir()),
        format!("{}/hooks/dh/{TOKEN}", app.address),
    )
    .unwrap();
    let key = id.to_string();

    // Act 1: closed while the role still exists.
    close(&http, id).await;
    app.decide_all().await;
    app.deliver_all().await;
    let reopened = api(&http, reqwest::Method::GET, &format!("/tickets/{id}/"), None).await;
    app.decide_all().await;

    // Act 2: the role is dropped and the ticket closed again.
    target.exec(&format!("DROP ROLE {role}")).await;
    close(&http, id).await;
    app.decide_all().await;
    app.deliver_all().await;
    let closed = api(&http, reqwest::Method::GET, &format!("/tickets/{id}/"), None).await;
    app.decide_all().await;
    std::fs::write(format!("{}/webhook_url", dh_dir()), "").unwrap();

    // Assert
    assert_eq!(reopened["status"], 2, "reopened by closegate");
    let notes: Vec<&str> = reopened["followup_set"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["comment"].as_str())
        .collect();
    assert!(
        notes.iter().any(|n| n.contains(&format!("{role} still exists"))),
        "{notes:?}"
    );
    assert_eq!(closed["status"], 4, "left closed once the revocation is verified");
    let last = closed["followup_set"].as_array().unwrap().last().unwrap()["comment"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(last.starts_with("closegate: closure verified"), "{last}");
    let verdicts: Vec<String> = app
        .store
        .evidence_for_ticket("dh", &key)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.verdict.to_string())
        .collect();
    assert_eq!(
        verdicts,
        ["blocked", "allowed"],
        "closegate's own follow-ups decided nothing"
    );
}

#[tokio::test]
async fn a_django_helpdesk_close_whose_webhook_never_came_is_found_and_decided_once() {
    let Setup {
        _serial,
        app,
        http,
        id,
        role,
        ..
    } = revoke_ticket().await;
    let started = chrono::Utc::now() - chrono::Duration::seconds(1);
    // Closed in the helpdesk; its webhook is pointed nowhere, as when a
    // delivery is lost.
    close(&http, id).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    let found = reconcile_source(&app.ctx, "dh", Some(started)).await.unwrap();
    let again = reconcile_source(&app.ctx, "dh", Some(started)).await.unwrap();
    app.deliver_all().await;
    let reopened = api(&http, reqwest::Method::GET, &format!("/tickets/{id}/"), None).await;

    assert_eq!(found.missed, [id.to_string()], "{found:?}");
    assert!(again.missed.is_empty(), "decided once: {again:?}");
    let records = app.store.evidence_for_ticket("dh", &id.to_string()).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].trigger.kind.as_str(), "reconcile");
    assert_eq!(records[0].verdict.as_str(), "blocked", "{role} still exists");
    let content = records[0].content().unwrap();
    assert_eq!(
        content.event.labels,
        ["access"],
        "the queue as configured, from the API"
    );
    assert!(content.event.actor.id.starts_with("user:"), "{:?}", content.event.actor);
    assert_eq!(reopened["status"], 2, "reopened by closegate");
}

#[tokio::test]
async fn a_django_helpdesk_call_without_the_path_token_is_refused_and_changes_nothing() {
    let app = spawn_app_with(Options {
        sources: Some(dh_source()),
        ..Default::default()
    })
    .await;
    let body = std::fs::read(format!(
        "{}/tests/fixtures/django_helpdesk/followup_closed.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();

    let without = app
        .http
        .post(format!("{}/hooks/dh", app.address))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let wrong = app
        .http
        .post(format!("{}/hooks/dh/not-the-token", app.address))
        .body(body)
        .send()
        .await
        .unwrap();

    assert_eq!([without.status().as_u16(), wrong.status().as_u16()], [401, 401]);
    assert_eq!(app.stats().await.deliveries, 0);
}

/// closegate on a path-token source pointed at the real helpdesk, and a
/// revoke ticket whose role still exists: every close must be blocked until
/// the role is dropped. The helpdesk's own webhook is not pointed at it.
struct Setup {
    /// The helpdesk is one server with one webhook URL: its tests take turns.
    _serial: tokio::sync::MutexGuard<'static, ()>,
    app: TestApp,
    _policies: tempfile::TempDir,
    http: reqwest::Client,
    id: i64,
    role: String,
    target: Target,
}

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn revoke_ticket() -> Setup {
    let serial = SERIAL.lock().await;
    let policies = policy_dir(&[("revoke", POLICY)]);
    let app = spawn_app_with(Options {
        policies: Some(policies.path().to_path_buf()),
        sources: Some(dh_source()),
        settings: Some(json!({ "reconcile": { "grace_seconds": 0 } })),
        ..Default::default()
    })
    .await;
    let mut target = Target::new().await;
    let role = target.login_role().await;
    let http = reqwest::Client::new();
    let created = api(
        &http,
        reqwest::Method::POST,
        "/tickets/",
        Some(json!({
        "queue": 1, "title": "Offboard contractor", "description": "Remove database access", "priority": 3,
        "submitter_email": "hr@acme.example", "custom_request_type": "revoke", "custom_database_role": role })),
    )
    .await;
    let id = created["id"].as_i64().unwrap();
    Setup {
        _serial: serial,
        app,
        _policies: policies,
        http,
        id,
        role,
        target,
    }
}

async fn deliver(app: &TestApp, body: Value) -> reqwest::Response {
    app.http
        .post(format!("{}/hooks/dh/{TOKEN}", app.address))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Closes the ticket through the helpdesk's API and delivers the webhook body
/// the helpdesk would send for that follow-up.
async fn real_close(app: &TestApp, http: &reqwest::Client, id: i64) -> i64 {
    let followup = json!({ "ticket": id, "comment": "Done.", "public": true, "new_status": 4 });
    let followup = api(http, reqwest::Method::POST, "/followups/", Some(followup)).await;
    let ticket = api(http, reqwest::Method::GET, &format!("/tickets/{id}/"), None).await;
    let n = followup["id"].as_i64().unwrap();
    let response = deliver(
        app,
        json!({ "ticket": ticket, "followup_id": n, "queue_slug": "access" }),
    )
    .await;
    assert_eq!(response.status().as_u16(), 202);
    n
}

async fn status(http: &reqwest::Client, id: i64) -> i64 {
    api(http, reqwest::Method::GET, &format!("/tickets/{id}/"), None).await["status"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn a_spoofed_unsigned_body_claiming_an_earlier_close_by_closegate_does_not_ungate_the_real_close() {
    // `_serial` is bound so the lock is held to the end (a `..` would drop it at once).
    let Setup {
        _serial, app, http, id, ..
    } = revoke_ticket().await;
    // The attack: a body that says the ticket is already closed, by closegate's own account.
    let spoof = json!({ "ticket": { "id": id, "status": 4, "custom_request_type": "revoke",
        "followup_set": [{ "id": 990001, "user": 2 }] }, "followup_id": 990001, "queue_slug": "access" });
    assert_eq!(deliver(&app, spoof).await.status().as_u16(), 202);
    app.decide_all().await;

    real_close(&app, &http, id).await;
    app.decide_all().await;
    app.deliver_all().await;

    let verdicts = app.settle("dh", &id.to_string()).await;
    assert_eq!(verdicts, ["blocked"], "the real close is judged");
    assert_eq!(status(&http, id).await, 2, "and reopened in the real helpdesk");
}

#[tokio::test]
async fn a_forged_body_sent_in_advance_under_the_real_follow_up_id_does_not_swallow_the_real_close() {
    // `_serial` is bound so the lock is held to the end (a `..` would drop it at once).
    let Setup {
        _serial, app, http, id, ..
    } = revoke_ticket().await;
    // The helpdesk records the close; the attacker's harmless body under that
    // follow-up's id reaches closegate first.
    let followup = json!({ "ticket": id, "comment": "Done.", "public": true, "new_status": 4 });
    let n = api(&http, reqwest::Method::POST, "/followups/", Some(followup)).await["id"]
        .as_i64()
        .unwrap();
    let harmless = json!({ "ticket": { "id": id, "status": 1 }, "followup_id": n, "queue_slug": "access" });
    assert_eq!(deliver(&app, harmless).await.status().as_u16(), 202);
    let ticket = api(&http, reqwest::Method::GET, &format!("/tickets/{id}/"), None).await;

    let real = deliver(
        &app,
        json!({ "ticket": ticket, "followup_id": n, "queue_slug": "access" }),
    )
    .await;
    app.decide_all().await;
    app.deliver_all().await;

    assert!(
        real.headers().get("closegate-duplicate").is_none(),
        "not taken for a redelivery"
    );
    let verdicts = app.settle("dh", &id.to_string()).await;
    assert!(verdicts.contains(&"blocked".to_string()), "{verdicts:?}");
    assert_eq!(status(&http, id).await, 2, "reopened in the real helpdesk");
}

#[tokio::test]
async fn a_reopen_is_skipped_when_the_ticket_was_reopened_and_closed_again_since_the_close_judged() {
    // `_serial` is bound so the lock is held to the end (a `..` would drop it at once).
    let Setup {
        _serial, app, http, id, ..
    } = revoke_ticket().await;
    real_close(&app, &http, id).await;
    app.decide_all().await;

    // Before closegate's reopen goes out, a person reopens and closes again.
    for new_status in [1, 4] {
        let followup = json!({ "ticket": id, "comment": "Again.", "public": true, "new_status": new_status });
        api(&http, reqwest::Method::POST, "/followups/", Some(followup)).await;
    }
    app.deliver_all().await;

    let ticket = api(&http, reqwest::Method::GET, &format!("/tickets/{id}/"), None).await;
    assert_eq!(
        ticket["status"], 4,
        "the later close is not reverted by the earlier decision"
    );
    let noted = ticket["followup_set"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["comment"].as_str().is_some_and(|c| c.contains("closure blocked")));
    assert!(noted, "the rejection is still posted");
}

#[tokio::test]
async fn a_real_django_helpdesk_follow_up_approval_counts_and_its_absence_blocks() {
    let _serial = SERIAL.lock().await;
    let http = reqwest::Client::new();
    let mut target = Target::new().await;
    let ticket = |role: String| {
        json!({ "queue": 1, "title": "Offboard contractor", "description": "Remove database access", "priority": 3,
                "submitter_email": "hr@acme.example", "custom_request_type": "revoke", "custom_database_role": role })
    };
    let approved = api(
        &http,
        reqwest::Method::POST,
        "/tickets/",
        Some(ticket(target.login_role().await)),
    )
    .await;
    let unapproved = api(
        &http,
        reqwest::Method::POST,
        "/tickets/",
        Some(ticket(target.login_role().await)),
    )
    .await;
    let (approved, unapproved) = (approved["id"].as_i64().unwrap(), unapproved["id"].as_i64().unwrap());
    let approval =
        json!({ "ticket": approved, "comment": "/approve\nHR confirmed the contract ended.", "public": true });
    let approval = api(&http, reqwest::Method::POST, "/followups/", Some(approval)).await;
    let approver = format!(
        "user:{}",
        approval["user"].as_i64().expect("the follow-up names its user")
    );
    let policy =
        format!("{POLICY}approval:\n  approvers: {{ users: [\"{approver}\"] }}\n  separate: [requester, approver]\n");
    let policies = policy_dir(&[("revoke", &policy)]);
    let app = spawn_app_with(Options {
        policies: Some(policies.path().to_path_buf()),
        sources: Some(dh_source()),
        ..Default::default()
    })
    .await;

    // Both roles are gone: only the approval differs.
    for id in [approved, unapproved] {
        let role = api(&http, reqwest::Method::GET, &format!("/tickets/{id}/"), None).await["custom_database_role"]
            .as_str()
            .unwrap()
            .to_string();
        target.exec(&format!("DROP ROLE {role}")).await;
        real_close(&app, &http, id).await;
    }
    app.decide_all().await;

    let allowed = app.last_record("dh", &approved.to_string()).await;
    assert_eq!(allowed.verdict.as_str(), "allowed");
    let report = allowed.content().unwrap().decision.governance.approval.unwrap();
    assert_eq!(
        report.counted().map(|a| a.identity.as_str()).collect::<Vec<_>>(),
        [approver.as_str()]
    );
    let blocked = app.last_record("dh", &unapproved.to_string()).await;
    assert_eq!(blocked.verdict.as_str(), "blocked");
    let reasons = blocked.content().unwrap().decision.reasons;
    assert!(
        reasons.iter().any(|r| r.contains("approval: 0 of 1 needed")),
        "{reasons:?}"
    );
}
