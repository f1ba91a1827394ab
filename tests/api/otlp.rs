//! Spans exported over OTLP/HTTP: the webhook's trace (from its
//! `traceparent`) holds the request, the decision and the outbox call.

use std::time::{Duration, Instant};

use serde_json::json;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::method};

use crate::helpers::*;

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

/// The names of the exported spans in `TRACE`, from OTLP/JSON bodies.
fn spans_in_trace(bodies: &[serde_json::Value]) -> Vec<String> {
    let mut names = Vec::new();
    for body in bodies {
        for resource in body["resourceSpans"].as_array().into_iter().flatten() {
            for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                for span in scope["spans"].as_array().into_iter().flatten() {
                    if span["traceId"].as_str() == Some(TRACE) {
                        names.push(span["name"].as_str().unwrap_or_default().to_string());
                    }
                }
            }
        }
    }
    names
}

#[tokio::test]
async fn the_webhook_decision_and_outbox_spans_are_exported_in_the_senders_trace() {
    let collector = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&collector)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = json!({
        "listen": format!("127.0.0.1:{port}"),
        "database_url": format!("sqlite://{}/closegate.db", dir.path().display()),
        "policies_dir": concat!(env!("CARGO_MANIFEST_DIR"), "/policies"),
        "log": { "format": "json", "filter": "info,sqlx=warn", "otlp_endpoint": format!("{}/v1/traces", collector.uri()) },
        "worker": { "enabled": true, "decision_concurrency": 1, "poll_interval_ms": 100, "lease_seconds": 30,
                    "retry_base_ms": 60000, "retry_max_ms": 60000, "max_attempts": 3 },
        "sources": { "github": { "type": "github", "secret": { "value": GITHUB_SECRET }, "token": { "value": "t" },
                                 "api_url": "http://127.0.0.1:9" } },
        "systems": { "app-db": { "type": "postgres", "url": pg_url("postgres") } },
        "evidence": { "heads_dir": dir.path().join("heads") },
        "intake_notes": false,
    });
    let path = dir.path().join("closegate.yaml");
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_closegate"))
        .arg("--config")
        .arg(&path)
        .arg("serve")
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .env_remove("CLOSEGATE_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while http.get(format!("{base}/healthz")).send().await.is_err() && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = grant_event("nobody_here", "public.none", "SELECT");
    let signature = format!("sha256={}", sign_hex(GITHUB_SECRET, &[&body]));
    let response = http
        .post(format!("{base}/hooks/github"))
        .header("x-github-event", "issues")
        .header("x-github-delivery", "otlp-1")
        .header("x-hub-signature-256", signature)
        .header("traceparent", format!("00-{TRACE}-b7ad6b7169203331-01"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);

    let mut names = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let bodies: Vec<serde_json::Value> = collector
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter_map(|r| serde_json::from_slice(&r.body).ok())
            .collect();
        names = spans_in_trace(&bodies);
        if ["webhook", "decision", "effect"]
            .iter()
            .all(|n| names.iter().any(|m| m == n))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = server.kill();
    let _ = server.wait();
    for expected in ["webhook", "decision", "effect"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in trace {TRACE}: {names:?}"
        );
    }
}
