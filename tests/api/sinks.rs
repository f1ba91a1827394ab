//! Evidence for SIEM and GRC: every record is sent to each sink as a signed
//! CloudEvent through the outbox, exactly once and never dropped; and
//! `evidence export` prints JSON lines, CSV or CloudEvents.

use closegate::signature::StandardWebhooksKey;
use serde_json::{Value, json};
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{method, path},
};

use crate::helpers::*;

async fn app_with_sink() -> TestApp {
    spawn_app_with(Options {
        settings: Some(
            json!({ "sinks": { "siem": { "url": "{helpdesk}/siem", "secret": { "value": GENERIC_SECRET } } } }),
        ),
        ..Options::default()
    })
    .await
}

async fn sink_posts(app: &TestApp) -> Vec<wiremock::Request> {
    app.helpdesk
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == "/siem")
        .collect()
}

#[tokio::test]
async fn every_record_reaches_the_sink_once_as_a_signed_cloud_event() {
    let app = app_with_sink().await;
    Mock::given(method("POST"))
        .and(path("/siem"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&app.helpdesk)
        .await;
    mock_github(&app, 1, 1).await;
    close_ungranted_ticket(&app).await;
    let record = app.last_record("github", REPO_ISSUE).await;

    let delivered = app.deliver_all().await;
    let again = app.deliver_all().await;

    assert_eq!((delivered, again), (2, 0), "the comment and the event, each once");
    let posts = sink_posts(&app).await;
    assert_eq!(posts.len(), 1);
    let post = &posts[0];
    let header = |name: &str| post.headers.get(name).and_then(|v| v.to_str().ok());
    assert_eq!(header("content-type"), Some("application/cloudevents+json"));
    assert_eq!(
        header("webhook-id"),
        Some(record.id.as_str()),
        "deduplicated by event id"
    );
    let key = StandardWebhooksKey::parse(GENERIC_SECRET).unwrap();
    let now = chrono::Utc::now().timestamp();
    key.verify(
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
        &post.body,
        now,
    )
    .expect("signed the Standard Webhooks way");
    let event: Value = serde_json::from_slice(&post.body).unwrap();
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["id"], json!(record.id));
    assert_eq!(event["type"], "dev.closegate.evidence.close");
    assert_eq!(event["subject"], json!(format!("github:{REPO_ISSUE}")));
    assert_eq!(event["data"]["verdict"], "blocked");
    assert_eq!(event["data"]["hash"], json!(record.hash));
    assert_eq!(
        event["data"]["record"],
        json!(record.record),
        "the hashed text, byte for byte"
    );
}

#[tokio::test]
async fn a_sink_that_fails_gets_the_event_later_and_other_lanes_are_not_held_up() {
    let app = app_with_sink().await;
    Mock::given(method("POST"))
        .and(path("/siem"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&app.helpdesk)
        .await;
    Mock::given(method("POST"))
        .and(path("/siem"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&app.helpdesk)
        .await;
    mock_github(&app, 1, 1).await;
    close_ungranted_ticket(&app).await;

    assert_eq!(
        app.deliver_all().await,
        2,
        "the comment is posted; the event fails once"
    );
    assert_eq!(posted_comments(&app).await.len(), 1);
    assert_eq!(app.stats().await.outbox_pending, 1, "kept for a retry, not dropped");
    app.advance(std::time::Duration::from_secs(120));
    assert_eq!(app.deliver_all().await, 1);
    let posts = sink_posts(&app).await;
    assert_eq!(posts.len(), 2);
    assert_eq!(
        posts[0].headers.get("webhook-id"),
        posts[1].headers.get("webhook-id"),
        "the same event id"
    );
    assert_eq!(app.stats().await.outbox_pending, 0);
}

#[tokio::test]
async fn evidence_export_prints_csv_and_cloud_events() {
    let app = spawn_app().await;
    close_ungranted_ticket(&app).await;
    let record = app.last_record("github", REPO_ISSUE).await;
    let export = |format: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_closegate"))
            .arg("--config")
            .arg(app.dir().join("closegate.yaml"))
            .args(["evidence", "export", "--since", "1h", "--format", format])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };

    let csv = export("csv");
    let events = export("cloudevents");

    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], closegate::export::CSV_HEADER);
    assert_eq!(rows.len(), 2, "{csv}");
    assert!(
        rows[1].starts_with(&format!("\"{}\",\"{}\",", record.seq, record.id)),
        "{}",
        rows[1]
    );
    assert!(rows[1].contains(&format!("\"{}\"", record.hash)));
    let events: Vec<Value> = events.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["id"], json!(record.id));
    assert_eq!(events[0]["specversion"], "1.0");
}
