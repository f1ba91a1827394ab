//! Secrets stay out of the logs: a path token never appears, at any level, in
//! either log format.

use std::{
    io::Read,
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::json;

use crate::helpers::*;

const CANARY: &str = "canary-path-token-7f3b2d9e";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `closegate serve` with every log level on, sends it requests carrying
/// the canary token in the path (right and wrong), and returns what it logged.
async fn logs_of_a_server(format: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("closegate.yaml");
    let yaml = json!({
        "listen": format!("127.0.0.1:{port}"),
        "database_url": format!("sqlite://{}", dir.path().join("cg.db").display()),
        "policies_dir": concat!(env!("CARGO_MANIFEST_DIR"), "/policies"),
        "sources": { "dh": { "type": "django-helpdesk", "path_token": { "value": CANARY },
                             "api_url": "http://127.0.0.1:9/", "user": "u", "password": { "value": "p" } } },
        "systems": { "app-db": { "type": "postgres", "url": pg_url("postgres") } },
    });
    std::fs::write(&config, serde_yaml::to_string(&yaml).unwrap()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_closegate"))
        .args(["--config"])
        .arg(&config)
        .arg("serve")
        .env("RUST_LOG", "trace")
        .env("CLOSEGATE__LOG__FORMAT", format)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = json!({ "ticket": { "id": 7, "status": 4 }, "followup_id": 1, "queue_slug": "access" });
    for path in [
        format!("/hooks/dh/{CANARY}"),
        format!("/hooks/dh/{CANARY}x"),
        format!("/nowhere/{CANARY}"),
    ] {
        let response = http.post(format!("{base}{path}")).json(&body).send().await.unwrap();
        assert!(response.status().as_u16() < 500, "{path}: {}", response.status());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().unwrap();
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut out).unwrap();
    child.wait().unwrap();
    out
}

#[tokio::test]
async fn a_path_token_never_reaches_the_logs_in_either_format() {
    for format in ["pretty", "json"] {
        let logs = logs_of_a_server(format).await;

        assert!(
            logs.contains("/hooks/{source}/{token}"),
            "{format}: the route is logged:\n{logs}"
        );
        assert!(!logs.contains(CANARY), "{format}: the token leaked:\n{logs}");
    }
}
