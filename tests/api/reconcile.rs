//! The missed-delivery reconciler against a fake GitHub API shaped as GitHub
//! documents it: a close whose webhook was dropped is found and decided once,
//! a received one is not decided again, pages are followed and rate limits
//! waited out.

use std::time::{Duration, Instant};

use closegate::decide::{Reconciled, reconcile_source};
use serde_json::{Value, json};
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{method, path, query_param},
};

use crate::helpers::*;

const LIST: &str = "/repos/acme/access-requests/issues";

async fn app() -> TestApp {
    spawn_app_with(Options {
        settings: Some(json!({ "reconcile": { "repositories": { "github": ["acme/access-requests"] } } })),
        ..Options::default()
    })
    .await
}

/// An instant `ago` before the app's clock, as GitHub writes it.
fn ago(app: &TestApp, ago: Duration) -> String {
    let at = app.ctx.now_ms() - ago.as_millis() as i64;
    chrono::DateTime::from_timestamp_millis(at)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Issue 42, a grant for a role that does not exist, closed at `closed_at` by bob.
fn closed_issue(closed_at: &str) -> Value {
    let mut issue = github_issue_event(
        "closed",
        &[
            ("Request type", "grant"),
            ("Database role", "nobody_here"),
            ("Table", "public.none"),
            ("Privileges", "SELECT"),
        ],
        &["access-request"],
    )["issue"]
        .clone();
    issue["closed_at"] = json!(closed_at);
    issue["closed_by"] = json!({ "login": "bob", "type": "User" });
    issue
}

/// Serves issue 42 as the API reads it, and the listing: page 1 full of pull
/// requests (not issues), page 2 with issue 42.
async fn serve_listing(app: &TestApp, issue: &Value) {
    Mock::given(method("GET"))
        .and(path("/repos/acme/access-requests/issues/42"))
        .respond_with(ResponseTemplate::new(200).set_body_json(issue))
        .mount(&app.helpdesk)
        .await;
    let pulls: Vec<Value> = (0..100)
        .map(|i| json!({ "number": 1000 + i, "closed_at": issue["closed_at"], "pull_request": { "url": "…" } }))
        .collect();
    Mock::given(method("GET"))
        .and(path(LIST))
        .and(query_param("state", "closed"))
        .and(query_param("page", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(pulls))
        .mount(&app.helpdesk)
        .await;
    Mock::given(method("GET"))
        .and(path(LIST))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([issue])))
        .mount(&app.helpdesk)
        .await;
}

async fn reconcile(app: &TestApp) -> Reconciled {
    reconcile_source(&app.ctx, "github", None)
        .await
        .expect("a reconcile pass")
}

#[tokio::test]
async fn a_dropped_close_is_found_and_decided_once_even_when_its_webhook_comes_late() {
    let app = app().await;
    let closed_at = ago(&app, Duration::from_secs(600));
    let issue = closed_issue(&closed_at);
    serve_listing(&app, &issue).await;
    // Exactly one comment and one reopen, whatever happens after.
    mock_github_closed_at(&app, 1, 1, &closed_at).await;

    let first = reconcile(&app).await;
    assert_eq!(first.missed, ["acme/access-requests#42"], "{first:?}");
    let record = app.last_record("github", "acme/access-requests#42").await;
    assert_eq!(record.trigger.kind.as_str(), "reconcile");
    assert_eq!(record.verdict.as_str(), "blocked");
    let content = record.content().unwrap();
    assert_eq!(content.event.actor.id, "bob", "the closer is GitHub's closed_by");

    // Found again on the next pass (the watermark did not pass it yet): not decided twice.
    let again = reconcile_source(
        &app.ctx,
        "github",
        Some(chrono::Utc::now() - chrono::Duration::hours(1)),
    )
    .await
    .unwrap();
    assert!(again.missed.is_empty(), "{again:?}");
    assert_eq!(app.deliver_all().await, 1);

    // The webhook arrives after all, 30 minutes late: the same close is not judged again.
    let mut late = github_issue_event("closed", &[], &["access-request"]);
    late["issue"] = issue.clone();
    let response = app
        .post_github("issues", "late-delivery", &serde_json::to_vec(&late).unwrap())
        .await;
    assert_eq!(response.status().as_u16(), 202);
    app.decide_all().await;
    assert_eq!(app.deliver_all().await, 0);
    let records = app
        .store
        .evidence_for_ticket("github", "acme/access-requests#42")
        .await
        .unwrap();
    assert_eq!(records.len(), 1, "one decision for one close");
    assert_eq!(posted_comments(&app).await.len(), 1);
}

#[tokio::test]
async fn a_close_whose_webhook_arrived_is_not_decided_again() {
    let app = app().await;
    let closed_at = ago(&app, Duration::from_secs(600));
    let issue = closed_issue(&closed_at);
    serve_listing(&app, &issue).await;
    mock_github_closed_at(&app, 1, 1, &closed_at).await;
    let mut event = github_issue_event("closed", &[], &["access-request"]);
    event["issue"] = issue;
    app.post_github("issues", "on-time", &serde_json::to_vec(&event).unwrap())
        .await;
    app.decide_all().await;

    let pass = reconcile(&app).await;
    assert_eq!(pass.listed, 1, "{pass:?}");
    assert!(pass.missed.is_empty(), "{pass:?}");
    let records = app
        .store
        .evidence_for_ticket("github", "acme/access-requests#42")
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].trigger.kind.as_str(), "webhook");
    assert_eq!(app.deliver_all().await, 1);
}

#[tokio::test]
async fn a_recent_close_is_left_to_its_webhook_until_the_grace_has_passed() {
    let app = app().await;
    let closed_at = ago(&app, Duration::from_secs(30));
    serve_listing(&app, &closed_issue(&closed_at)).await;

    let early = reconcile(&app).await;
    assert!(early.missed.is_empty() && early.deferred == 1, "{early:?}");
    let closed_ms = chrono::DateTime::parse_from_rfc3339(&closed_at)
        .unwrap()
        .timestamp_millis();
    assert!(
        early.watermark < closed_ms,
        "the watermark stays before the deferred close"
    );
    assert_eq!(app.store.watermark("github").await.unwrap(), Some(early.watermark));

    app.advance(Duration::from_secs(180));
    let later = reconcile(&app).await;
    assert_eq!(later.missed, ["acme/access-requests#42"], "{later:?}");
}

#[tokio::test]
async fn rate_limits_are_waited_out_as_the_helpdesk_asks() {
    let app = app().await;
    let closed_at = ago(&app, Duration::from_secs(600));
    let issue = closed_issue(&closed_at);
    // First a 429 with Retry-After, then GitHub's secondary limit: a 403 with
    // the limit used up until X-RateLimit-Reset.
    Mock::given(method("GET"))
        .and(path(LIST))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&app.helpdesk)
        .await;
    let reset = (chrono::Utc::now().timestamp() + 1).to_string();
    Mock::given(method("GET"))
        .and(path(LIST))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", reset.as_str()),
        )
        .up_to_n_times(1)
        .with_priority(2)
        .mount(&app.helpdesk)
        .await;
    serve_listing(&app, &issue).await;

    let started = Instant::now();
    let pass = reconcile(&app).await;
    assert_eq!(pass.missed, ["acme/access-requests#42"], "{pass:?}");
    assert!(started.elapsed() >= Duration::from_secs(1), "waited as asked");
    let listings = app
        .helpdesk
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == LIST)
        .count();
    assert_eq!(listings, 4, "429, 403, then pages 1 and 2");
}

#[tokio::test]
async fn a_listing_that_fails_leaves_the_watermark_where_it_was() {
    let app = app().await;
    Mock::given(method("GET"))
        .and(path(LIST))
        .respond_with(ResponseTemplate::new(500))
        .mount(&app.helpdesk)
        .await;
    let error = reconcile_source(&app.ctx, "github", None).await.unwrap_err();
    assert!(format!("{error:#}").contains("github"), "{error:#}");
    let before = app.store.watermark("github").await.unwrap().unwrap();
    app.advance(Duration::from_secs(3600));
    assert!(reconcile_source(&app.ctx, "github", None).await.is_err());
    assert_eq!(app.store.watermark("github").await.unwrap(), Some(before));
}

#[tokio::test]
async fn a_missed_close_with_no_known_closer_fails_separation_of_duties() {
    let policies = grant_policy_with_approval(&["dba@acme.example"]);
    let app = spawn_app_with(Options {
        policies: Some(policies.path().to_path_buf()),
        settings: Some(json!({ "reconcile": { "repositories": { "github": ["acme/access-requests"] } } })),
        ..Options::default()
    })
    .await;
    let closed_at = ago(&app, Duration::from_secs(600));
    let mut issue = closed_issue(&closed_at);
    issue.as_object_mut().unwrap().remove("closed_by");
    serve_listing(&app, &issue).await;
    for events in ["events", "timeline"] {
        Mock::given(method("GET"))
            .and(path(format!("/repos/acme/access-requests/issues/42/{events}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
            .mount(&app.helpdesk)
            .await;
    }
    mock_github_closed_at(&app, 0, 0, &closed_at).await;

    let pass = reconcile(&app).await;

    assert_eq!(pass.missed, ["acme/access-requests#42"]);
    let record = app.last_record("github", "acme/access-requests#42").await;
    assert_eq!(record.verdict.as_str(), "blocked");
    let reasons = record.content().unwrap().decision.reasons;
    assert!(
        reasons.iter().any(|r| r.contains("who closed the ticket is not known")),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn failed_hook_deliveries_are_asked_for_again_once_page_by_page() {
    let app = spawn_app_with(Options {
        sources: Some(json!({
            "gh-hooked": { "type": "github", "secret": { "value": GITHUB_SECRET }, "token": { "value": "ghp_test_token" },
                           "api_url": "{helpdesk}", "hooks": [{ "repository": "acme/access-requests", "id": 77 }] }
        })),
        ..Options::default()
    })
    .await;
    let recent = ago(&app, Duration::from_secs(300));
    let old = ago(&app, Duration::from_secs(3 * 86_400));
    let deliveries = "/repos/acme/access-requests/hooks/77/deliveries";
    let delivery = |id: u64, guid: &str, code: u64, event: &str, at: &str| json!({ "id": id, "guid": guid, "delivered_at": at, "status_code": code, "event": event, "action": "closed" });
    // Newest first. Page 1: a failed close, one delivered, one failed but received
    // after all (by an earlier retry), and a failed ping. Page 2 (by cursor): a
    // failed close, then one older than the watermark, where the listing stops.
    Mock::given(method("GET"))
        .and(path(deliveries))
        .and(query_param("per_page", "100"))
        .and(wiremock::matchers::query_param_is_missing("cursor"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header(
                    "link",
                    format!(
                        "<{}{deliveries}?per_page=100&cursor=v1_2>; rel=\"next\"",
                        "https://elsewhere.example"
                    )
                    .as_str(),
                )
                .set_body_json(json!([
                    delivery(11, "g-failed-1", 502, "issues", &recent),
                    delivery(12, "g-ok", 200, "issues", &recent),
                    delivery(13, "g-received", 504, "issues", &recent),
                    delivery(14, "g-ping", 500, "ping", &recent),
                ])),
        )
        .mount(&app.helpdesk)
        .await;
    Mock::given(method("GET"))
        .and(path(deliveries))
        .and(query_param("cursor", "v1_2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            delivery(15, "g-failed-2", 0, "issues", &recent),
            delivery(16, "g-too-old", 502, "issues", &old),
        ])))
        .mount(&app.helpdesk)
        .await;
    for id in [11, 15] {
        Mock::given(method("POST"))
            .and(path(format!("{deliveries}/{id}/attempts")))
            .respond_with(ResponseTemplate::new(202))
            .expect(1)
            .mount(&app.helpdesk)
            .await;
    }
    Mock::given(method("GET"))
        .and(path(LIST))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&app.helpdesk)
        .await;
    let body = grant_event("r", "t", "SELECT");
    assert_eq!(
        app.post_github_to("gh-hooked", "issues", "g-received", &body)
            .await
            .status()
            .as_u16(),
        202
    );

    let pass = reconcile_source(&app.ctx, "gh-hooked", None).await.unwrap();

    assert_eq!(pass.redelivered, ["g-failed-1", "g-failed-2"], "{pass:?}");
    let posts: Vec<String> = app
        .helpdesk
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .map(|r| r.url.path().to_string())
        .collect();
    // Page 2 was read from the configured origin by its cursor alone: the link
    // named another host, which this machine cannot even reach.
    assert_eq!(posts.len(), 2, "{posts:?}");
}

#[tokio::test]
async fn a_later_webhook_about_something_else_does_not_hide_a_lost_close() {
    let app = app().await;
    let closed_at = ago(&app, Duration::from_secs(600));
    let issue = closed_issue(&closed_at);
    serve_listing(&app, &issue).await;
    mock_github_closed_at(&app, 1, 1, &closed_at).await;
    // The close's webhook was lost; a label added afterwards arrives.
    let mut labeled = github_issue_event("labeled", &[], &["access-request"]);
    labeled["issue"] = issue.clone();
    labeled["label"] = json!({ "name": "audited" });
    let response = app
        .post_github("issues", "labeled-1", &serde_json::to_vec(&labeled).unwrap())
        .await;
    assert_eq!(response.status().as_u16(), 202);
    app.decide_all().await;

    let pass = reconcile(&app).await;

    assert_eq!(pass.missed, ["acme/access-requests#42"], "{pass:?}");
    assert_eq!(
        app.last_record("github", "acme/access-requests#42")
            .await
            .verdict
            .as_str(),
        "blocked"
    );
    assert_eq!(app.deliver_all().await, 1, "commented and reopened");
}

#[tokio::test]
async fn two_passes_that_overlap_past_the_lease_decide_a_missed_close_once() {
    // Arrange: a missed close, and a helpdesk slow to answer the ticket read,
    // so that the pass reading it outlives its lease.
    let app = app().await;
    let closed_at = ago(&app, Duration::from_secs(600));
    let issue = closed_issue(&closed_at);
    Mock::given(method("GET"))
        .and(path("/repos/acme/access-requests/issues/42"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(&issue)
                .set_delay(Duration::from_millis(1500)),
        )
        .with_priority(1)
        .mount(&app.helpdesk)
        .await;
    serve_listing(&app, &issue).await;
    // Exactly one comment and one reopen.
    mock_github_closed_at(&app, 1, 1, &closed_at).await;
    let other = app.replica().await;
    let reads = || async {
        let requests = app.helpdesk.received_requests().await.unwrap_or_default();
        requests
            .iter()
            .filter(|r| r.url.path() == "/repos/acme/access-requests/issues/42")
            .count()
    };

    // Act: replica A's pass is reading the ticket when its lease runs out;
    // replica B's pass takes the watermark and finds the same close.
    let a = reconcile_source(&app.ctx, "github", None);
    let b = async {
        let reading = async {
            while reads().await == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(20), reading)
            .await
            .expect("pass A reads the ticket");
        app.advance(Duration::from_secs(app.ctx.settings.lease_seconds as u64 + 1));
        reconcile_source(&other, "github", None).await
    };
    let (a, b) = tokio::join!(a, b);

    // Assert (the fake helpdesk checks one comment and one reopen when dropped)
    let (a, b) = (a.expect("pass A"), b.expect("pass B"));
    assert_eq!(a.missed.len() + b.missed.len(), 1, "decided by one pass: {a:?} {b:?}");
    let records = app
        .store
        .evidence_for_ticket("github", "acme/access-requests#42")
        .await
        .unwrap();
    assert_eq!(records.len(), 1, "one decision for one close");
    assert_eq!(app.deliver_all().await, 1);
}
