//! `GET /metrics`: what an operator scrapes, with labels that never carry
//! ticket text, delivery ids or secrets.

use std::collections::BTreeMap;

use serde_json::json;

use crate::helpers::*;

/// One scrape: `name{sorted labels}` → value.
async fn scrape(app: &TestApp) -> (String, BTreeMap<String, f64>) {
    let response = app.http.get(format!("{}/metrics", app.address)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = response.text().await.unwrap();
    let mut samples = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let key = match series.split_once('{') {
            None => series.to_string(),
            Some((name, labels)) => {
                let mut labels: Vec<&str> = labels.trim_end_matches('}').split(',').collect();
                labels.sort();
                format!("{name}{{{}}}", labels.join(","))
            }
        };
        samples.insert(key, value.parse::<f64>().expect("numeric sample"));
    }
    (text, samples)
}

/// An app with one more GitHub source, `name`, of this test's own.
async fn app_with_github_source(name: &str) -> TestApp {
    spawn_app_with(Options {
        sources: Some(json!({
            name: { "type": "github", "secret": { "value": GITHUB_SECRET }, "token": { "value": "ghp_test_token" },
                    "api_url": "{helpdesk}", "bot_login": "closegate-bot" }
        })),
        ..Options::default()
    })
    .await
}

fn value(samples: &BTreeMap<String, f64>, key: &str) -> f64 {
    samples.get(key).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn deliveries_decisions_verifiers_and_the_outbox_are_counted_without_ticket_text() {
    // A source of this test's own, so counts are exact whatever else runs.
    let app = app_with_github_source("metrics-gh").await;
    let (_, before) = scrape(&app).await;
    let role = "metrics_secret_role_name";
    let body = grant_event(role, "public.none", "SELECT");
    assert_eq!(
        app.post_github_to("metrics-gh", "issues", "m-1", &body)
            .await
            .status()
            .as_u16(),
        202
    );
    assert_eq!(
        app.post_github_to("metrics-gh", "issues", "m-1", &body)
            .await
            .status()
            .as_u16(),
        202
    );
    let forged = app
        .post_raw(
            "metrics-gh",
            &[
                ("x-github-event", "issues"),
                ("x-github-delivery", "m-2"),
                ("x-hub-signature-256", "sha256=00"),
            ],
            &body,
        )
        .await;
    assert_eq!(forged.status().as_u16(), 401);
    let unknown = app.post_raw("no-such-source-m3tr1cs", &[], &body).await;
    assert_eq!(unknown.status().as_u16(), 404);
    app.decide_all().await;

    let (text, after) = scrape(&app).await;
    let delivered = |outcome: &str, reason: &str| {
        value(
            &after,
            &format!("closegate_deliveries_total{{outcome=\"{outcome}\",reason=\"{reason}\",source=\"metrics-gh\"}}"),
        )
    };
    assert_eq!(delivered("accepted", ""), 1.0, "{text}");
    assert_eq!(delivered("duplicate", ""), 1.0, "{text}");
    assert_eq!(delivered("refused", "invalid_signature"), 1.0, "{text}");
    assert!(
        value(&after, "closegate_ack_duration_seconds_count{source=\"metrics-gh\"}") == 3.0,
        "{text}"
    );
    let unknown_key = "closegate_deliveries_total{outcome=\"refused\",reason=\"unknown_source\",source=\"(unknown)\"}";
    assert!(value(&after, unknown_key) > value(&before, unknown_key), "{text}");
    assert!(
        !text.contains("no-such-source-m3tr1cs"),
        "a caller cannot mint label values"
    );

    let blocked = "closegate_decisions_total{policy=\"db-table-grant\",trigger=\"webhook\",verdict=\"blocked\"}";
    assert!(value(&after, blocked) > value(&before, blocked), "{text}");
    let verified = "closegate_verifier_duration_seconds_count{system=\"app-db\"}";
    assert!(value(&after, verified) > value(&before, verified), "{text}");
    let checked = "closegate_verifier_checks_total{system=\"app-db\"}";
    assert!(value(&after, checked) > value(&before, checked), "{text}");
    // The decision's check and its read of the ticket's past went through
    // merged calls, each counted with what it carried.
    for merged in [
        "closegate_merged_call_asks_count{kind=\"checks\",system=\"app-db\"}",
        "closegate_merged_call_asks_count{kind=\"ticket_pasts\"}",
    ] {
        assert!(value(&after, merged) > value(&before, merged), "{merged}: {text}");
    }
    // The blocked close owes the helpdesk one message, not yet delivered.
    assert_eq!(
        value(&after, "closegate_outbox_backlog{source=\"metrics-gh\"}"),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(&after, "closegate_outbox_dead{source=\"metrics-gh\"}"),
        0.0,
        "{text}"
    );
    assert!(
        after.contains_key("closegate_outbox_oldest_age_seconds{source=\"metrics-gh\"}"),
        "{text}"
    );
    assert!(after.contains_key("closegate_claims_active") && after.contains_key("closegate_expiries_due"));

    for secret in [role, "m-1", "m-2", GITHUB_SECRET, "ghp_test_token", "access-requests"] {
        assert!(!text.contains(secret), "{secret:?} must not reach a label");
    }
}

#[tokio::test]
async fn a_delivered_message_empties_the_lane_and_counts_as_sent() {
    let app = app_with_github_source("metrics-lane").await;
    mock_github(&app, 1, 1).await;
    let body = grant_event("nobody_here", "public.none", "SELECT");
    app.post_github_to("metrics-lane", "issues", "l-1", &body).await;
    app.decide_all().await;
    let (_, queued) = scrape(&app).await;
    assert_eq!(value(&queued, "closegate_outbox_backlog{source=\"metrics-lane\"}"), 1.0);
    assert_eq!(app.deliver_all().await, 1);
    let (text, after) = scrape(&app).await;
    assert_eq!(
        value(&after, "closegate_outbox_backlog{source=\"metrics-lane\"}"),
        0.0,
        "{text}"
    );
    assert_eq!(
        value(&after, "closegate_outbox_oldest_age_seconds{source=\"metrics-lane\"}"),
        0.0,
        "{text}"
    );
    assert_eq!(
        value(
            &after,
            "closegate_outbox_sent_total{outcome=\"delivered\",source=\"metrics-lane\"}"
        ),
        1.0,
        "{text}"
    );
}

#[tokio::test]
async fn metrics_can_be_turned_off() {
    let app = spawn_app_with(Options {
        settings: Some(json!({ "metrics": { "enabled": false } })),
        ..Options::default()
    })
    .await;
    let response = app.http.get(format!("{}/metrics", app.address)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "not_found");
}

#[tokio::test]
async fn with_a_metrics_token_only_a_scrape_that_sends_it_is_answered() {
    const TOKEN: &str = "scrape-token-7f3a";
    let app = spawn_app_with(Options {
        settings: Some(json!({ "metrics": { "token": { "value": TOKEN } } })),
        ..Options::default()
    })
    .await;
    let scrape_with = |authorization: Option<&'static str>| {
        let mut request = app.http.get(format!("{}/metrics", app.address));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        async move { request.send().await.unwrap() }
    };

    let refused = [
        scrape_with(None).await,
        scrape_with(Some("Bearer wrong-token")).await,
        scrape_with(Some("Basic c2NyYXBlLXRva2VuLTdmM2E=")).await,
        scrape_with(Some("Bearer scrape-token-7f3")).await,
    ];
    let answered = scrape_with(Some("Bearer scrape-token-7f3a")).await;
    let any_case = scrape_with(Some("bearer scrape-token-7f3a")).await;

    for response in refused {
        assert_eq!(response.status().as_u16(), 401);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], "invalid_signature");
        assert!(!body.to_string().contains(TOKEN), "{body}");
    }
    assert_eq!(any_case.status().as_u16(), 200, "the scheme is case-insensitive");
    assert_eq!(answered.status().as_u16(), 200);
    assert!(answered.text().await.unwrap().contains("closegate_"));
}
