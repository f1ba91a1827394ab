//! Ways around the gate, each reproduced as an attack first.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn removing_the_label_before_closing_does_not_walk_around_the_gate() {
    // Arrange: the request is opened as an access request...
    let app = spawn_app().await;
    mock_github(&app, 1, 1).await;
    let fields = [
        ("Request type", "grant"),
        ("Database role", "nobody_here"),
        ("Table", "public.none"),
        ("Privileges", "SELECT"),
    ];
    let opened = github_issue_event("opened", &fields, &["access-request"]);
    app.post_github("issues", "d-open", &serde_json::to_vec(&opened).unwrap())
        .await;
    app.decide_all().await;

    // Act: ...and the fulfiller removes the label, then closes it without the grant.
    let closed = github_issue_event("closed", &fields, &[]);
    app.close_on_github("d-close", &serde_json::to_vec(&closed).unwrap())
        .await;

    // Assert
    let evidence = app.evidence(REPO_ISSUE).await;
    assert_eq!(evidence.len(), 1);
    assert_eq!(
        evidence[0].verdict.as_str(),
        "blocked",
        "judged against the policy it matched"
    );
    let comment = &posted_comments(&app).await[0];
    assert!(
        comment.contains("no longer matches the selector of policy db-table-grant"),
        "{comment}"
    );
}

#[tokio::test]
async fn a_marked_request_of_an_unknown_kind_is_blocked_when_unmatched_is_block() {
    let app = spawn_app_with(Options {
        unmatched: Some(json!({ "label": "access-request", "action": "block" })),
        ..Default::default()
    })
    .await;
    mock_github(&app, 1, 1).await;
    let closed = github_issue_event(
        "closed",
        &[("Request type", "superuser"), ("Database role", "anyone")],
        &["access-request"],
    );

    app.close_on_github("d-1", &serde_json::to_vec(&closed).unwrap()).await;

    let evidence = app.evidence(REPO_ISSUE).await;
    assert_eq!(evidence[0].verdict.as_str(), "blocked");
    let reasons = evidence[0].content().unwrap().decision.reasons;
    assert!(reasons[0].contains("\"superuser\""), "{reasons:?}");
}

#[tokio::test]
async fn a_marked_request_of_an_unknown_kind_passes_as_ungated_without_an_unmatched_rule() {
    let app = spawn_app().await;
    mock_github(&app, 0, 0).await;
    let closed = github_issue_event("closed", &[("Request type", "superuser")], &["access-request"]);

    app.close_on_github("d-1", &serde_json::to_vec(&closed).unwrap()).await;

    assert_eq!(app.evidence(REPO_ISSUE).await[0].verdict.as_str(), "ungated");
}
