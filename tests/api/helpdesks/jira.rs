use serde_json::{Value, json};
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{method, path},
};

use super::{mock, received};
use crate::helpers::*;

const SECRET: &str = "jira-webhook-secret";

async fn jira_app(flavor: &str) -> TestApp {
    jira_app_with(flavor, None).await
}

async fn jira_app_with(flavor: &str, policies: Option<std::path::PathBuf>) -> TestApp {
    let mut source = json!({ "type": "jira", "flavor": flavor, "secret": { "value": SECRET }, "api_url": "{helpdesk}",
        "token": { "value": "jira-token" }, "bot_account": "712020:closegate", "reopen_status": "In Progress",
        "ready_statuses": ["Ready to close"],
        "fields": { "customfield_10050": "Database role", "customfield_10051": "Privileges",
                    "customfield_10052": "Request type", "customfield_10053": "Table" } });
    if flavor == "cloud" {
        source["email"] = json!("closegate@acme.example");
    }
    spawn_app_with(Options {
        sources: Some(json!({ "jira": source })),
        policies,
        ..Default::default()
    })
    .await
}

/// The documented payload, with the test's role and table in the custom fields.
fn event(path: &str, role: &str, table: &str) -> String {
    let mut v: Value = serde_json::from_str(&fixture(path, role, table)).unwrap();
    v["issue"]["fields"]["customfield_10050"] = json!(role);
    v["issue"]["fields"]["customfield_10053"] = json!(table);
    v.to_string()
}

async fn post(app: &TestApp, id: &str, body: &str) -> reqwest::Response {
    let sig = format!("sha256={}", sign_hex(SECRET, &[body.as_bytes()]));
    let headers = [
        ("x-hub-signature", sig.as_str()),
        ("x-atlassian-webhook-identifier", id),
    ];
    app.post_raw("jira", &headers, body.as_bytes()).await
}

async fn mock_issue(app: &TestApp, rest: &str, comments: u64, transitions: u64) {
    let issue: Value = serde_json::from_str(&fixture("jira/issue_get.json", "", "")).unwrap();
    let listed: Value = serde_json::from_str(&fixture("jira/transitions.json", "", "")).unwrap();
    mock(app, "GET", &format!("{rest}/issue/ACC-42"), 200, issue, None).await;
    mock(
        app,
        "GET",
        &format!("{rest}/issue/ACC-42/transitions"),
        200,
        listed,
        None,
    )
    .await;
    mock(
        app,
        "POST",
        &format!("{rest}/issue/ACC-42/transitions"),
        204,
        json!({}),
        Some(transitions),
    )
    .await;
    mock(
        app,
        "GET",
        &format!("{rest}/issue/ACC-42/comment"),
        200,
        json!({ "comments": [], "total": 0 }),
        None,
    )
    .await;
    mock(
        app,
        "POST",
        &format!("{rest}/issue/ACC-42/comment"),
        201,
        json!({ "id": "1" }),
        Some(comments),
    )
    .await;
}

#[tokio::test]
async fn a_jira_cloud_close_without_the_grant_is_transitioned_back_with_an_adf_comment() {
    let app = jira_app("cloud").await;
    let (role, table) = Target::new().await.role_with_grant("").await;
    mock_issue(&app, "/rest/api/3", 1, 1).await;

    let response = post(&app, "wh-1", &event("jira/issue_updated_done.json", &role, &table)).await;

    assert_eq!(response.status().as_u16(), 202);
    assert_eq!(app.settle("jira", "ACC-42").await, ["blocked"]);
    let transition = &received(&app, "POST", "/rest/api/3/issue/ACC-42/transitions").await[0];
    assert_eq!(
        transition,
        &json!({ "transition": { "id": "71" } }),
        "the transition to In Progress"
    );
    let doc = &received(&app, "POST", "/rest/api/3/issue/ACC-42/comment").await[0]["body"];
    assert_eq!((doc["type"].as_str(), doc["version"].as_i64()), (Some("doc"), Some(1)));
    let kinds: Vec<&str> = doc["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"heading") && kinds.contains(&"table") && kinds.contains(&"bulletList"),
        "{kinds:?}"
    );
    assert!(
        doc.to_string().contains("missing SELECT") && doc.to_string().contains(r#""type":"code""#),
        "{doc}"
    );
    let auth = app.helpdesk.received_requests().await.unwrap()[0]
        .headers
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(auth.starts_with("Basic "), "Cloud uses email + API token: {auth}");
}

#[tokio::test]
async fn a_jira_data_center_close_with_the_grant_gets_a_wiki_markup_comment() {
    let app = jira_app("data-center").await;
    let (role, table) = Target::new().await.role_with_grant("SELECT").await;
    mock_issue(&app, "/rest/api/2", 1, 0).await;

    post(&app, "wh-1", &event("jira_dc/issue_updated_done.json", &role, &table)).await;

    assert_eq!(app.settle("jira", "ACC-42").await, ["allowed"]);
    let body = received(&app, "POST", "/rest/api/2/issue/ACC-42/comment").await[0]["body"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        body.starts_with("h3. (/) closegate: closure verified") && body.contains("||Check||"),
        "{body}"
    );
    let auth = app.helpdesk.received_requests().await.unwrap()[0]
        .headers
        .get("authorization")
        .unwrap()
        .clone();
    assert_eq!(auth, "Bearer jira-token");
}

#[tokio::test]
async fn entering_ready_to_close_writes_the_result_to_the_issue_property_for_a_validator() {
    let app = jira_app("cloud").await;
    let (role, table) = Target::new().await.role_with_grant("").await;
    mock(
        &app,
        "PUT",
        "/rest/api/3/issue/ACC-42/properties/closegate",
        200,
        json!({}),
        Some(1),
    )
    .await;
    let ready = event("jira/issue_updated_done.json", &role, &table)
        .replace("\"toString\":\"Done\"", "\"toString\":\"Ready to close\"");

    post(&app, "wh-1", &ready).await;

    assert_eq!(app.settle("jira", "ACC-42").await, ["blocked"]);
    let property = &received(&app, "PUT", "/rest/api/3/issue/ACC-42/properties/closegate").await[0];
    assert_eq!(property["allowed"], false);
    assert!(
        property["reasons"][0].as_str().unwrap().contains("missing SELECT"),
        "{property}"
    );
    // The verified field values travel with the result, under a MAC only
    // closegate can write: recomputed here from the documented bytes.
    assert_eq!(property["fields"]["customfield_10050"], json!(role));
    let mac = |p: &Value| {
        let text =
            json!({ "issue": "ACC-42", "fields": p["fields"], "verdict": p["verdict"], "verifiedAt": p["verifiedAt"] });
        sign_hex(SECRET, &[text.to_string().as_bytes()])
    };
    assert_eq!(property["mac"].as_str().unwrap(), mac(property));
    // A property written by hand (allowed, for the same fields) does not verify.
    let mut forged = property.clone();
    forged["allowed"] = json!(true);
    forged["verdict"] = json!("allowed");
    assert_ne!(
        forged["mac"].as_str().unwrap(),
        mac(&forged),
        "a hand-written property is not verified"
    );
}

#[tokio::test]
async fn jira_signatures_are_checked_and_edits_echoes_and_redeliveries_decide_nothing() {
    let app = jira_app("cloud").await;
    let closed = event("jira/issue_updated_done.json", "r", "t");
    let forged = app
        .post_raw(
            "jira",
            &[("x-hub-signature", &format!("sha256={}", "00".repeat(32)))],
            closed.as_bytes(),
        )
        .await;
    let missing = app.post_raw("jira", &[], closed.as_bytes()).await;
    assert_eq!([forged, missing].map(|r| r.status().as_u16()), [401, 401]);
    assert_eq!(app.stats().await.deliveries, 0);

    let comment = event("jira/issue_updated_comment_only.json", "r", "t");
    let own = closed.replace("712020:2f6c5e0a-8d3b-4b8e-9a51-6c2f0d9e1a77", "712020:closegate");
    post(&app, "wh-1", &comment).await;
    post(&app, "wh-2", &own).await;
    post(&app, "wh-3", &closed).await;
    let again = post(&app, "wh-3", &closed).await;
    app.decide_all().await;

    assert_eq!(again.headers().get("closegate-duplicate").unwrap(), "true");
    let stats = app.stats().await;
    assert_eq!((stats.deliveries, stats.evidence), (3, 1));
}

const PATH_TOKEN: &str = "jira-path-token-Zk81";

/// The issue as the API answers it: `status`, with the given role and table.
fn issue_as_read(status: &str, category: &str, role: &str, table: &str) -> Value {
    let mut v: Value = serde_json::from_str(&fixture("jira/issue_updated_done.json", role, table)).unwrap();
    let mut issue = v["issue"].take();
    issue["fields"]["customfield_10050"] = json!(role);
    issue["fields"]["customfield_10053"] = json!(table);
    issue["fields"]["status"] = json!({ "name": status, "statusCategory": { "key": category } });
    issue
}

#[tokio::test]
async fn a_jira_path_token_source_acts_on_the_issue_as_read_not_on_the_body() {
    // Arrange: no signing secret, only a path token; the API says what is true.
    let source = json!({ "type": "jira", "flavor": "cloud", "path_token": { "value": PATH_TOKEN },
        "api_url": "{helpdesk}", "email": "closegate@acme.example", "token": { "value": "jira-token" },
        "bot_account": "712020:closegate", "reopen_status": "In Progress",
        "fields": { "customfield_10050": "Database role", "customfield_10051": "Privileges",
                    "customfield_10052": "Request type", "customfield_10053": "Table" } });
    let app = spawn_app_with(Options {
        sources: Some(json!({ "jira": source })),
        ..Default::default()
    })
    .await;
    let mut target = Target::new().await;
    let (granted, table) = target.role_with_grant("SELECT").await;
    let ungranted = target.login_role().await;
    let send = |id: &'static str, body: String| {
        let app = &app;
        async move {
            app.http
                .post(format!("{}/hooks/jira/{PATH_TOKEN}", app.address))
                .header("x-atlassian-webhook-identifier", id)
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    // A spoofed "Done" while the issue is still in progress.
    let in_progress = Mock::given(method("GET"))
        .and(path("/rest/api/3/issue/ACC-42"))
        .respond_with(ResponseTemplate::new(200).set_body_json(issue_as_read(
            "In Progress",
            "indeterminate",
            &ungranted,
            &table,
        )))
        .mount_as_scoped(&app.helpdesk)
        .await;
    assert_eq!(
        send("wh-1", event("jira/issue_updated_done.json", &granted, &table))
            .await
            .status()
            .as_u16(),
        202
    );
    app.decide_all().await;
    assert!(
        app.store
            .evidence_for_ticket("jira", "ACC-42")
            .await
            .unwrap()
            .is_empty(),
        "not a close"
    );
    drop(in_progress);

    // Act: the real close; the body names a granted role, the issue an ungranted one.
    mock_issue(&app, "/rest/api/3", 1, 1).await;
    Mock::given(method("GET"))
        .and(path("/rest/api/3/issue/ACC-42"))
        .respond_with(ResponseTemplate::new(200).set_body_json(issue_as_read("Done", "done", &ungranted, &table)))
        .with_priority(1)
        .mount(&app.helpdesk)
        .await;
    let mut real: Value = serde_json::from_str(&event("jira/issue_updated_done.json", &granted, &table)).unwrap();
    real["timestamp"] = json!(real["timestamp"].as_i64().unwrap() + 60_000);
    send("wh-2", real.to_string()).await;

    // Assert
    assert_eq!(app.settle("jira", "ACC-42").await, ["blocked"]);
    let record = &app.store.evidence_for_ticket("jira", "ACC-42").await.unwrap()[0];
    let judged = record.content().unwrap().event;
    assert_eq!(
        judged.fields["database_role"], ungranted,
        "the fields as read, not as sent"
    );
    let rereads = app
        .helpdesk
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "GET" && r.url.query().is_some_and(|q| q.contains("summary")))
        .count();
    assert_eq!(rereads, 2, "one re-read per delivery, not one per step");
}

#[tokio::test]
async fn a_jira_issue_closed_again_since_the_close_judged_is_not_transitioned_back() {
    let app = jira_app("cloud").await;
    let (role, table) = Target::new().await.role_with_grant("").await;
    mock_issue(&app, "/rest/api/3", 1, 0).await;
    // The issue's status category changed an hour after the close judged.
    let mut issue: Value = serde_json::from_str(&fixture("jira/issue_get.json", "", "")).unwrap();
    issue["fields"]["statuscategorychangedate"] = json!("2026-11-22T11:03:11.482+0000");
    Mock::given(method("GET"))
        .and(path("/rest/api/3/issue/ACC-42"))
        .respond_with(ResponseTemplate::new(200).set_body_json(issue))
        .with_priority(1)
        .mount(&app.helpdesk)
        .await;
    let mut body: Value = serde_json::from_str(&event("jira/issue_updated_done.json", &role, &table)).unwrap();
    body["timestamp"] = json!(
        chrono::DateTime::parse_from_rfc3339("2026-11-22T10:03:11.482Z")
            .unwrap()
            .timestamp_millis()
    );

    post(&app, "wh-1", &body.to_string()).await;

    assert_eq!(app.settle("jira", "ACC-42").await, ["blocked"]);
    assert_eq!(
        received(&app, "POST", "/rest/api/3/issue/ACC-42/comment").await.len(),
        1
    );
}

/// One Jira Service Management approval as the approvals API documents it.
fn approval(id: &str, final_decision: &str, approvers: &[(&str, &str, &str)]) -> Value {
    let approvers: Vec<Value> = approvers
        .iter()
        .map(|(account, email, decision)| {
            json!({ "approver": { "accountId": account, "displayName": account, "emailAddress": email },
                    "approverDecision": decision })
        })
        .collect();
    json!({ "id": id, "name": "Approve access", "finalDecision": final_decision, "canAnswerApproval": false,
            "approvers": approvers,
            "createdDate": { "epochMillis": 1763800000000_i64, "iso8601": "2025-11-22T08:26:40+0000" },
            "completedDate": { "epochMillis": 1763802000000_i64, "iso8601": "2025-11-22T09:00:00+0000" } })
}

#[tokio::test]
async fn jira_service_management_approvals_count_only_approved_decisions_by_listed_approvers() {
    let policies = grant_policy_with_approval(&["dana@acme.example"]);
    let app = jira_app_with("cloud", Some(policies.path().to_path_buf())).await;
    let (role, table) = Target::new().await.role_with_grant("SELECT").await;
    let approvals = "/rest/servicedeskapi/request/ACC-42/approval";
    let page = |values: Vec<Value>| json!({ "size": values.len(), "start": 0, "limit": 50, "isLastPage": true, "values": values });

    // Declined, pending and an approver outside the list: not enough.
    mock_issue(&app, "/rest/api/3", 1, 1).await;
    let refused = vec![
        approval("1", "declined", &[("qm:dana", "dana@acme.example", "declined")]),
        approval("2", "pending", &[("qm:dana", "dana@acme.example", "pending")]),
        approval("3", "approved", &[("qm:erin", "erin@acme.example", "approved")]),
    ];
    mock(&app, "GET", approvals, 200, page(refused), None).await;
    post(&app, "wh-1", &event("jira/issue_updated_done.json", &role, &table)).await;
    assert_eq!(app.settle("jira", "ACC-42").await, ["blocked"]);
    let record = app.last_record("jira", "ACC-42").await;
    let reasons = record.content().unwrap().decision.reasons;
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("0 of 1") && r.contains("qm:erin: not in the policy's list")),
        "{reasons:?}"
    );

    // Dana's approved decision in an approved approval: allowed, and the
    // evidence keeps who, when and where it was read.
    app.helpdesk.reset().await;
    mock_issue(&app, "/rest/api/3", 1, 0).await;
    let approved = vec![approval(
        "4",
        "approved",
        &[
            ("qm:dana", "dana@acme.example", "approved"),
            ("qm:erin", "erin@acme.example", "pending"),
        ],
    )];
    mock(&app, "GET", approvals, 200, page(approved), None).await;
    let mut again: Value = serde_json::from_str(&event("jira/issue_updated_done.json", &role, &table)).unwrap();
    again["timestamp"] = json!(1763900000000_i64);
    post(&app, "wh-2", &again.to_string()).await;
    assert_eq!(app.settle("jira", "ACC-42").await, ["blocked", "allowed"]);
    let record = app.last_record("jira", "ACC-42").await;
    let report = record.content().unwrap().decision.governance.approval.unwrap();
    let counted: Vec<_> = report
        .counted()
        .map(|a| (a.identity.as_str(), a.approval.at.as_str()))
        .collect();
    assert_eq!(counted, [("dana@acme.example", "2025-11-22T09:00:00.000Z")]);
}

#[tokio::test]
async fn a_jira_close_whose_webhook_was_lost_is_found_by_jql_page_by_page_and_decided_once() {
    let app = jira_app("cloud").await;
    mock_issue(&app, "/rest/api/3", 1, 1).await;
    let now = chrono::DateTime::from_timestamp_millis(app.ctx.now_ms()).unwrap();
    let jira_time = |ago: i64| {
        (now - chrono::Duration::seconds(ago))
            .format("%Y-%m-%dT%H:%M:%S%.3f+0000")
            .to_string()
    };
    // The API's copy of the issue: what the webhook would have carried.
    let (role, table) = Target::new().await.role_with_grant("").await;
    let sent: Value = serde_json::from_str(&event("jira/issue_updated_done.json", &role, &table)).unwrap();
    let mut issue = sent["issue"].clone();
    issue["fields"]["statuscategorychangedate"] = json!(jira_time(600));
    Mock::given(method("GET"))
        .and(path("/rest/api/3/issue/ACC-42"))
        .respond_with(ResponseTemplate::new(200).set_body_json(issue))
        .with_priority(1)
        .mount(&app.helpdesk)
        .await;
    let search = "/rest/api/3/search/jql";
    Mock::given(method("GET"))
        .and(path(search))
        .and(wiremock::matchers::query_param_is_missing("nextPageToken"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issues": [{ "key": "ACC-7", "fields": { "statuscategorychangedate": jira_time(3 * 86_400) } }],
            "nextPageToken": "page-2", "isLast": false })))
        .mount(&app.helpdesk)
        .await;
    Mock::given(method("GET"))
        .and(path(search))
        .and(wiremock::matchers::query_param("nextPageToken", "page-2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issues": [{ "key": "ACC-42", "fields": { "statuscategorychangedate": jira_time(600) } }],
            "isLast": true })))
        .mount(&app.helpdesk)
        .await;

    reconcile_twice(&app, "jira", "ACC-42").await;

    let jql = query_param_of(&app, search, "jql").await;
    assert!(jql.starts_with("statusCategory = Done AND updated >= -"), "{jql}");
}
