//! `POST /v1/gate/check`: the synchronous gate for helpdesks that can stop a
//! transition before it happens.

use std::time::Duration;

use closegate::{domain::TriggerKind, signature::StandardWebhooksKey};
use serde_json::{Value, json};

use crate::helpers::*;

const TOKEN: &str = "forge-validator-token";

async fn gate_app(deadline_ms: u64, options: Options) -> TestApp {
    spawn_app_with(Options {
        gate: Some(json!({ "deadline_ms": deadline_ms, "callers": {
            "servicenow-br": { "secret": { "value": GENERIC_SECRET } },
            "jira-forge": { "token": { "value": TOKEN }, "sources": ["generic"] } } })),
        ..options
    })
    .await
}

fn request(role: &str, table: &str) -> Value {
    json!({ "source": "generic", "ticket": "INC0042", "state": "resolved", "labels": ["access-request"],
        "fields": { "Request type": "grant", "Database role": role, "Table": table, "Privileges": "SELECT" },
        "actor": { "id": "beth.anglin", "kind": "human" } })
}

async fn check_with_token(app: &TestApp, token: &str, body: &Value) -> reqwest::Response {
    app.http
        .post(format!("{}/v1/gate/check", app.address))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_gate_allows_a_close_whose_grant_exists_and_denies_one_whose_grant_is_missing() {
    let app = gate_app(5000, Options::default()).await;
    let mut target = Target::new().await;
    let (granted, table) = target.role_with_grant("SELECT").await;
    let ungranted = target.login_role().await;

    let allowed: Value = check_with_token(&app, TOKEN, &request(&granted, &table))
        .await
        .json()
        .await
        .unwrap();
    let body = request(&ungranted, &table).to_string();
    let ts = chrono::Utc::now().timestamp();
    let sig = StandardWebhooksKey::parse(GENERIC_SECRET)
        .unwrap()
        .sign("chk-1", ts, body.as_bytes());
    let denied: Value = app
        .http
        .post(format!("{}/v1/gate/check", app.address))
        .header("webhook-id", "chk-1")
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sig)
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    assert_eq!(allowed["allowed"], true, "{allowed}");
    assert_eq!(denied["allowed"], false, "{denied}");
    assert!(
        denied["reasons"][0].as_str().unwrap().contains("missing SELECT"),
        "{denied}"
    );
    let evidence = app.store.evidence_for_ticket("generic", "INC0042").await.unwrap();
    assert_eq!(evidence.len(), 2);
    assert_eq!(denied["evidence_id"], evidence[1].id.as_str());
    assert_eq!(app.stats().await.outbox_pending, 0, "a synchronous check posts nothing");
}

#[tokio::test]
async fn a_verifier_slower_than_the_deadline_is_never_an_allow() {
    let (_slow, policies, systems) = slow_system(Duration::from_secs(3)).await;
    let app = gate_app(
        300,
        Options {
            policies: Some(policies.path().to_path_buf()),
            systems: Some(systems),
            ..Default::default()
        },
    )
    .await;

    let started = std::time::Instant::now();
    let answer: Value = check_with_token(&app, TOKEN, &request("r", "t"))
        .await
        .json()
        .await
        .unwrap();

    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered within the deadline"
    );
    assert_eq!(answer["allowed"], false);
    assert!(
        answer["reasons"][0]
            .as_str()
            .unwrap()
            .contains("verification still running"),
        "{answer}"
    );
}

#[tokio::test]
async fn the_gate_refuses_bad_tokens_bad_signatures_and_sources_a_caller_may_not_ask_about() {
    let app = gate_app(5000, Options::default()).await;
    let bad_token = check_with_token(&app, "nope", &request("r", "t")).await;
    let unsigned = app
        .http
        .post(format!("{}/v1/gate/check", app.address))
        .json(&request("r", "t"))
        .send()
        .await
        .unwrap();
    let mut other = request("r", "t");
    other["source"] = json!("github");
    let other_source = check_with_token(&app, TOKEN, &other).await;

    assert_eq!(
        [bad_token, unsigned, other_source].map(|r| r.status().as_u16()),
        [401, 401, 401]
    );
    assert_eq!(app.stats().await.deliveries, 0);
}

#[tokio::test]
async fn the_same_question_asked_again_after_the_grant_is_fixed_is_answered_afresh() {
    let app = gate_app(5000, Options::default()).await;
    let mut target = Target::new().await;
    let (role, table) = target.role_with_grant("").await;
    let body = request(&role, &table);

    let before: Value = check_with_token(&app, TOKEN, &body).await.json().await.unwrap();
    target.exec(&format!("GRANT SELECT ON {table} TO {role}")).await;
    let after: Value = check_with_token(&app, TOKEN, &body).await.json().await.unwrap();

    assert_eq!(
        (before["allowed"].as_bool(), after["allowed"].as_bool()),
        (Some(false), Some(true)),
        "{after}"
    );
    assert_ne!(before["evidence_id"], after["evidence_id"]);
}

#[tokio::test]
async fn an_oversized_gate_check_gets_a_json_413_and_records_nothing() {
    let app = gate_app(5000, Options::default()).await;
    let mut body = request("r", "t");
    body["title"] = json!("x".repeat(70 * 1024));

    let response = check_with_token(&app, TOKEN, &body).await;

    assert_eq!(response.status().as_u16(), 413);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["code"], "payload_too_large");
    assert_eq!(app.stats().await.deliveries, 0);
}

async fn check_with_id(app: &TestApp, id: &str, body: &Value) -> reqwest::Response {
    app.http
        .post(format!("{}/v1/gate/check", app.address))
        .bearer_auth(TOKEN)
        .header("webhook-id", id)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_gate_check_id_replayed_for_another_ticket_is_refused_with_409() {
    let app = gate_app(5000, Options::default()).await;
    let mut target = Target::new().await;
    let (granted, table) = target.role_with_grant("SELECT").await;
    let ungranted = target.login_role().await;
    let allowed: Value = check_with_id(&app, "chk-7", &request(&granted, &table))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(allowed["allowed"], true, "{allowed}");

    // The same id, asking about another ticket (here: another role), must not
    // borrow the earlier "allowed".
    let mut other = request(&ungranted, &table);
    other["ticket"] = json!("INC0043");
    let replayed = check_with_id(&app, "chk-7", &other).await;
    let repeated: Value = check_with_id(&app, "chk-7", &request(&granted, &table))
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(replayed.status().as_u16(), 409);
    let error: Value = replayed.json().await.unwrap();
    assert_eq!(error["code"], "request_id_conflict");
    assert_eq!(
        repeated["evidence_id"], allowed["evidence_id"],
        "the same question gets the recorded answer"
    );
    assert_eq!(app.stats().await.evidence, 1, "nothing decided for the replay");
}

#[tokio::test]
async fn a_gate_check_cannot_pre_claim_a_webhook_delivery_id() {
    let app = gate_app(5000, Options::default()).await;
    mock_github(&app, 1, 1).await;
    // A caller asks about the same source and ticket under the id the
    // helpdesk's next delivery will carry.
    let mut body = request("nobody", "public.none");
    body["source"] = json!("github");
    body["ticket"] = json!(REPO_ISSUE);
    let body = body.to_string();
    let ts = chrono::Utc::now().timestamp();
    let sig = StandardWebhooksKey::parse(GENERIC_SECRET)
        .unwrap()
        .sign("d-1", ts, body.as_bytes());
    let response = app
        .http
        .post(format!("{}/v1/gate/check", app.address))
        .header("webhook-id", "d-1")
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sig)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);

    close_ungranted_ticket(&app).await;

    app.settle_all().await;
    let triggers: Vec<_> = app
        .evidence(REPO_ISSUE)
        .await
        .into_iter()
        .map(|r| r.trigger.kind)
        .collect();
    assert_eq!(
        triggers,
        [TriggerKind::SyncCheck, TriggerKind::Webhook],
        "the real close is judged"
    );
}

#[tokio::test]
async fn a_gate_check_whose_decider_stopped_is_decided_when_asked_again_after_the_lease() {
    // Arrange: a replica claimed request id chk-9 for this question and stopped
    // before deciding it: its claim is stored, no record.
    let app = gate_app(5000, Options::default()).await;
    let mut target = Target::new().await;
    let (granted, table) = target.role_with_grant("SELECT").await;
    let body = request(&granted, &table);
    let question = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        serde_json::to_vec(&body).unwrap(),
    ));
    let claimed = format!(
        "INSERT INTO gate_checks (caller, request_id, question_sha256, created_at) \
         VALUES ('jira-forge', 'chk-9', $1, {})",
        app.ctx.now_ms()
    );
    Db::open(&app).await.exec(&claimed, &[&question]).await;
    let ask = || async { check_with_id(&app, "chk-9", &body).await.json::<Value>().await.unwrap() };

    // Act
    let within_lease = ask().await;
    app.advance(Duration::from_secs(app.ctx.settings.lease_seconds as u64 + 1));
    let after_lease = ask().await;
    let again = ask().await;

    // Assert
    assert_eq!(within_lease["verdict"], "pending", "{within_lease}");
    assert_eq!(after_lease["allowed"], true, "{after_lease}");
    assert!(after_lease["evidence_id"].is_string(), "{after_lease}");
    assert_eq!(again["evidence_id"], after_lease["evidence_id"], "the recorded answer");
    assert_eq!(app.stats().await.evidence, 1);
}
