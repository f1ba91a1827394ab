//! One trace from the webhook to the helpdesk calls its decision causes: the
//! sender's W3C `traceparent` is kept, or a trace is started at the ack.

use crate::helpers::*;

async fn close_with(app: &TestApp, traceparent: Option<&str>) {
    let body = grant_event("nobody_here", "public.none", "SELECT");
    let signature = format!("sha256={}", sign_hex(GITHUB_SECRET, &[&body]));
    let mut headers = vec![
        ("x-github-event", "issues"),
        ("x-github-delivery", "t-1"),
        ("x-hub-signature-256", signature.as_str()),
    ];
    headers.extend(traceparent.map(|t| ("traceparent", t)));
    assert_eq!(app.post_raw("github", &headers, &body).await.status().as_u16(), 202);
    app.decide_all().await;
    app.deliver_all().await;
}

/// The trace ids of the calls the fake helpdesk received.
async fn traces(app: &TestApp) -> Vec<String> {
    app.helpdesk
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let header = r
                .headers
                .get("traceparent")
                .expect("every helpdesk call carries the trace");
            let parts: Vec<String> = header.to_str().unwrap().split('-').map(String::from).collect();
            assert_eq!(
                (parts.len(), parts[0].as_str(), parts[2].len()),
                (4, "00", 16),
                "{parts:?}"
            );
            parts[1].clone()
        })
        .collect()
}

#[tokio::test]
async fn the_senders_trace_reaches_the_helpdesk_calls_of_its_decision() {
    let app = spawn_app().await;
    mock_github(&app, 1, 1).await;

    close_with(&app, Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")).await;

    let traces = traces(&app).await;
    assert!(
        traces.len() >= 3,
        "comments read, comment posted, issue reopened: {traces:?}"
    );
    assert!(
        traces.iter().all(|t| t == "4bf92f3577b34da6a3ce929d0e0e4736"),
        "{traces:?}"
    );
}

#[tokio::test]
async fn a_webhook_without_a_trace_starts_one_that_its_calls_share() {
    let app = spawn_app().await;
    mock_github(&app, 1, 1).await;

    // A malformed traceparent is not taken up.
    close_with(&app, Some("00-not-a-trace-01")).await;

    let traces = traces(&app).await;
    assert!(traces.len() >= 3, "{traces:?}");
    assert_eq!(traces[0].len(), 32);
    assert!(traces.iter().all(|t| t == &traces[0]), "one trace: {traces:?}");
}
