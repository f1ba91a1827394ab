//! Webhook secrets are rotated without downtime: while a source lists the new
//! and the old secret, deliveries signed with either are accepted, and any
//! other signature is still refused.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn during_a_rotation_either_secret_is_accepted_and_nothing_else() {
    let app = spawn_app_with(Options {
        sources: Some(json!({
            "gh-rotating": { "type": "github", "secret": [{ "value": "new-secret" }, { "value": "old-secret" }],
                             "api_url": "{helpdesk}" },
            "snow-rotating": { "type": "servicenow", "secret": [{ "value": "bmV3" }, { "value": "b2xk" }],
                               "api_url": "{helpdesk}" },
            "gl-rotating": { "type": "gitlab", "secret_token": [{ "value": "new-token" }, { "value": "old-token" }],
                             "api_url": "{helpdesk}" },
        })),
        ..Options::default()
    })
    .await;
    let body = grant_event("r", "t", "SELECT");
    let github = |secret: &'static str, delivery: &'static str| {
        let signature = format!("sha256={}", sign_hex(secret, &[&body]));
        let app = &app;
        let body = body.clone();
        async move {
            app.post_raw(
                "gh-rotating",
                &[
                    ("x-github-event", "issues"),
                    ("x-github-delivery", delivery),
                    ("x-hub-signature-256", &signature),
                ],
                &body,
            )
            .await
            .status()
            .as_u16()
        }
    };
    assert_eq!(github("new-secret", "r-1").await, 202);
    assert_eq!(github("old-secret", "r-2").await, 202);
    assert_eq!(github("another-secret", "r-3").await, 401);

    let record = fixture("servicenow/incident_resolved.json", "r", "t").into_bytes();
    for (secret, expected) in [("bmV3", 202), ("b2xk", 202), ("b3RoZXI=", 401)] {
        let signature = sign_b64(secret, &[&record]);
        let status = app
            .post_raw("snow-rotating", &[("x-closegate-signature", &signature)], &record)
            .await
            .status()
            .as_u16();
        assert_eq!(status, expected, "servicenow signed with {secret}");
    }

    let hook = std::fs::read(format!(
        "{}/tests/fixtures/gitlab/issue_close.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    for (n, (token, expected)) in [("new-token", 202), ("old-token", 202), ("other-token", 401)]
        .into_iter()
        .enumerate()
    {
        let uuid = format!("0b0d0f00-0000-4000-8000-00000000000{n}");
        let status = app
            .post_raw(
                "gl-rotating",
                &[
                    ("x-gitlab-token", token),
                    ("x-gitlab-event", "Issue Hook"),
                    ("x-gitlab-event-uuid", &uuid),
                ],
                &hook,
            )
            .await
            .status()
            .as_u16();
        assert_eq!(status, expected, "gitlab token {token}");
    }
    // One stored row per body (a second signature over the same body is a
    // redelivery); the refused ones stored nothing.
    assert_eq!(app.stats().await.deliveries, 3);
}
