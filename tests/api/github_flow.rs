//! A GitHub issue used as an access request, end to end: signed webhook in,
//! real PostgreSQL checked, comment / reopen out, evidence written.

use serde_json::Value;

use closegate::domain::CheckOutcome;

use crate::helpers::*;

#[tokio::test]
async fn closing_a_grant_ticket_whose_exact_grant_exists_posts_evidence_and_keeps_it_closed() {
    // Arrange
    let app = spawn_app().await;
    let mut target = Target::new().await;
    let (role, table) = target.role_with_grant("SELECT").await;
    mock_github(&app, 1, 0).await;

    // Act
    app.close_on_github("d-1", &grant_event(&role, &table, "select")).await;

    // Assert (close_on_github asserts the 202)
    let evidence = app.evidence(REPO_ISSUE).await;
    assert_eq!(evidence.len(), 1);
    assert_eq!(evidence[0].verdict.as_str(), "allowed");
    assert_eq!(evidence[0].policy.as_deref(), Some("db-table-grant"));
    let comments = posted_comments(&app).await;
    assert_eq!(comments.len(), 1);
    let comment = &comments[0];
    assert!(comment.contains("closure verified"), "{comment}");
    assert!(
        comment.contains("db-table-grant") && comment.contains("enforce"),
        "{comment}"
    );
    assert!(comment.contains(&role) && comment.contains("SELECT"), "{comment}");
    assert!(
        comment.contains("reporting-bot (service)"),
        "the requester is shown as a machine identity: {comment}"
    );
    assert!(comment.contains("dba-alice (human)"), "{comment}");
    assert!(
        comment.contains(&evidence[0].id) && comment.contains(&evidence[0].hash),
        "{comment}"
    );
    assert!(comment.contains(&format!("<!-- closegate:cg-{} -->", evidence[0].id)));
    let stats = app.stats().await;
    assert_eq!((stats.outbox_done, stats.outbox_pending), (1, 0));
}

#[tokio::test]
async fn closing_a_grant_ticket_without_the_grant_reopens_it_and_says_what_is_missing() {
    // Arrange
    let app = spawn_app().await;
    let mut target = Target::new().await;
    let (role, table) = target.role_with_grant("").await;
    mock_github(&app, 1, 1).await;

    // Act
    app.close_on_github("d-1", &grant_event(&role, &table, "SELECT")).await;

    // Assert
    let evidence = app.evidence(REPO_ISSUE).await;
    assert_eq!(evidence[0].verdict.as_str(), "blocked");
    let comment = &posted_comments(&app).await[0];
    assert!(comment.contains("closure blocked"), "{comment}");
    assert!(
        comment.contains(&format!("{role} on table {table}: missing SELECT")),
        "{comment}"
    );
    assert!(comment.contains("How to fix"), "{comment}");
    let patch = app
        .helpdesk
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.method.as_str() == "PATCH")
        .expect("the issue was reopened");
    assert_eq!(serde_json::from_slice::<Value>(&patch.body).unwrap()["state"], "open");
    assert_eq!(patch.headers.get("authorization").unwrap(), "Bearer ghp_test_token");
}

#[tokio::test]
async fn a_grant_broader_than_requested_is_blocked_under_exact() {
    let app = spawn_app().await;
    let mut target = Target::new().await;
    let (role, table) = target.role_with_grant("SELECT, INSERT").await;
    mock_github(&app, 1, 1).await;

    app.close_on_github("d-1", &grant_event(&role, &table, "SELECT")).await;

    let evidence = app.evidence(REPO_ISSUE).await;
    assert_eq!(evidence[0].verdict.as_str(), "blocked");
    let held = checks(&evidence[0])[1].observation.clone().unwrap().held;
    assert_eq!(held, ["INSERT".to_string(), "SELECT".to_string()].into());
    let comment = &posted_comments(&app).await[0];
    assert!(comment.contains("holds more than requested: INSERT"), "{comment}");
}

#[tokio::test]
async fn a_revocation_with_the_role_still_present_is_blocked_and_one_with_it_gone_is_allowed() {
    let app = spawn_app().await;
    let mut target = Target::new().await;
    let role = target.login_role().await;
    mock_github(&app, 2, 1).await;

    // Still present: blocked.
    app.close_on_github("d-1", &revoke_event(&role)).await;
    // Dropped, and the ticket closed again: allowed.
    target.exec(&format!("DROP ROLE {role}")).await;
    let mut again: Value = serde_json::from_slice(&revoke_event(&role)).unwrap();
    again["issue"]["updated_at"] = "2026-11-22T11:00:00Z".into();
    app.close_on_github("d-2", &serde_json::to_vec(&again).unwrap()).await;

    let evidence = app.evidence(REPO_ISSUE).await;
    let verdicts: Vec<&str> = evidence.iter().map(|e| e.verdict.as_str()).collect();
    assert_eq!(verdicts, ["blocked", "allowed"]);
    let comments = posted_comments(&app).await;
    assert!(comments[0].contains(&format!("{role} still exists")), "{}", comments[0]);
    assert!(comments[1].contains("closure verified"));
}

#[tokio::test]
async fn an_unreachable_target_database_blocks_as_could_not_verify() {
    let app = spawn_app_with(Options {
        target_url: Some("postgres://postgres@127.0.0.1:1/postgres".into()),
        target_timeout_ms: Some(2000),
        ..Default::default()
    })
    .await;
    mock_github(&app, 1, 1).await;

    app.close_on_github("d-1", &grant_event("someone", "public.orders", "SELECT"))
        .await;

    let evidence = app.evidence(REPO_ISSUE).await;
    assert_eq!(evidence[0].verdict.as_str(), "blocked");
    assert_eq!(checks(&evidence[0])[0].outcome.status(), "could_not_verify");
    let comment = &posted_comments(&app).await[0];
    assert!(comment.contains("could not verify"), "{comment}");
    assert!(
        !comment.contains("does not exist"),
        "an error must not read as absent: {comment}"
    );
    assert!(
        comment.contains("could not connect") || comment.contains("timed out"),
        "the failure is summarised: {comment}"
    );
    assert!(
        !comment.contains("127.0.0.1"),
        "no host or driver error in the ticket: {comment}"
    );
    let CheckOutcome::CouldNotVerify { error } = &checks(&evidence[0])[0].outcome else {
        panic!("could not verify")
    };
    assert!(
        error.contains("cannot reach") || error.contains("timed out after"),
        "the detail stays in the evidence: {error}"
    );
}

#[tokio::test]
async fn a_gated_ticket_missing_required_fields_is_blocked_naming_them() {
    let app = spawn_app().await;
    mock_github(&app, 1, 1).await;
    let event = github_issue_event(
        "closed",
        &[("Request type", "grant"), ("Database role", "x")],
        &["access-request"],
    );

    app.close_on_github("d-1", &serde_json::to_vec(&event).unwrap()).await;

    let evidence = app.evidence(REPO_ISSUE).await;
    assert_eq!(evidence[0].verdict.as_str(), "blocked");
    let comment = &posted_comments(&app).await[0];
    assert!(
        comment.contains("missing required fields: table, privileges"),
        "{comment}"
    );
}

#[tokio::test]
async fn a_close_no_policy_governs_passes_and_is_recorded_as_ungated() {
    let app = spawn_app().await;
    mock_github(&app, 0, 0).await;
    let event = github_issue_event("closed", &[("Topic", "printer broken")], &["it-support"]);

    app.close_on_github("d-1", &serde_json::to_vec(&event).unwrap()).await;

    let evidence = app.evidence(REPO_ISSUE).await;
    assert_eq!(evidence.len(), 1);
    assert_eq!(evidence[0].verdict.as_str(), "ungated");
    assert_eq!(app.stats().await.outbox_pending + app.stats().await.outbox_done, 0);
}

#[tokio::test]
async fn events_other_than_a_close_are_recorded_but_not_gated() {
    let app = spawn_app().await;
    mock_github(&app, 0, 0).await;
    let opened = github_issue_event("opened", &[("Request type", "grant")], &["access-request"]);
    let labeled = github_issue_event("labeled", &[("Request type", "grant")], &["access-request"]);

    let r1 = app
        .post_github("issues", "d-1", &serde_json::to_vec(&opened).unwrap())
        .await;
    let r2 = app
        .post_github("issues", "d-2", &serde_json::to_vec(&labeled).unwrap())
        .await;
    let r3 = app
        .post_github("ping", "d-3", br#"{"zen":"Design for failure.","hook_id":1}"#)
        .await;
    app.decide_all().await;

    assert_eq!(
        [r1.status().as_u16(), r2.status().as_u16(), r3.status().as_u16()],
        [202, 202, 202]
    );
    let stats = app.stats().await;
    assert_eq!((stats.deliveries, stats.deliveries_pending, stats.evidence), (3, 0, 0));
}

#[tokio::test]
async fn closegate_own_events_never_trigger_a_decision() {
    let app = spawn_app().await;
    mock_github(&app, 0, 0).await;
    let mut event: Value = serde_json::from_slice(&grant_event("r", "public.t", "SELECT")).unwrap();
    event["sender"]["login"] = "closegate-bot".into();

    app.post_github("issues", "d-1", &serde_json::to_vec(&event).unwrap())
        .await;
    app.decide_all().await;

    let stats = app.stats().await;
    assert_eq!((stats.deliveries, stats.evidence), (1, 0));
}

#[tokio::test]
async fn a_reopen_is_skipped_when_the_issue_has_moved_on_but_the_rejection_is_still_posted() {
    let app = spawn_app().await;
    let mut target = Target::new().await;
    let (role, table) = target.role_with_grant("").await;
    // The issue was reopened by a person before the outbox ran.
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .and(wiremock::matchers::path("/repos/acme/access-requests/issues/42"))
        .respond_with(
            wiremock::ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({ "state": "open", "closed_at": null })),
        )
        .with_priority(1)
        .mount(&app.helpdesk)
        .await;
    mock_github(&app, 1, 0).await;

    app.close_on_github("d-1", &grant_event(&role, &table, "SELECT")).await;

    assert_eq!(app.evidence(REPO_ISSUE).await[0].verdict.as_str(), "blocked");
}
