//! `cargo bench --bench ingest`: figures for the ack path.
//! 1. authenticate + parse one signed GitHub webhook (no IO);
//! 2. signed webhooks over HTTP into a running closegate, acknowledged only
//!    once durably stored: throughput and latency percentiles, on SQLite and,
//!    when CLOSEGATE_BENCH_PG is set to a server URL, on PostgreSQL.
//! Sizes: CLOSEGATE_BENCH_REQUESTS (default 20000), CLOSEGATE_BENCH_CONCURRENCY (64).

use std::time::{Duration, Instant};

use closegate::{
    adapters::{Inbound, SourceRegistry},
    config::Settings,
    startup::Application,
};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const SECRET: &str = "bench-secret";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn body(n: usize) -> Vec<u8> {
    let mut event: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/github/issues_closed.json")).unwrap();
    event["issue"]["number"] = n.into();
    // Pad the justification so the body is about 3 KB, a typical access request.
    let body = event["issue"]["body"].as_str().unwrap().to_string();
    event["issue"]["body"] = format!(
        "{body} {}",
        "Needed for the quarterly revenue reconciliation. ".repeat(20)
    )
    .into();
    serde_json::to_vec(&event).unwrap()
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn settings(dir: &std::path::Path, database_url: &str) -> Settings {
    let config = dir.join("bench.yaml");
    let yaml = serde_json::json!({
        "listen": "127.0.0.1:0",
        "database_url": database_url,
        "policies_dir": concat!(env!("CARGO_MANIFEST_DIR"), "/policies"),
        "log": { "format": "pretty", "filter": "off" },
        "worker": { "enabled": false, "decision_concurrency": 1, "poll_interval_ms": 1000, "lease_seconds": 60,
                    "retry_base_ms": 1000, "retry_max_ms": 60000, "max_attempts": 5 },
        "sources": { "github": { "type": "github", "secret": { "value": SECRET } } },
        "systems": { "app-db": { "type": "postgres", "url": "postgres://postgres@127.0.0.1:5432/postgres" } }
    });
    std::fs::write(&config, serde_yaml::to_string(&yaml).unwrap()).unwrap();
    Settings::load(Some(&config)).unwrap()
}

fn verify_and_parse(settings: &Settings) {
    let sources = SourceRegistry::from_config(&settings.sources).unwrap();
    let adapter = sources.get("github").unwrap();
    let body = body(1);
    let signature = sign(&body);
    let headers: std::collections::BTreeMap<String, String> = [
        ("x-hub-signature-256".to_string(), signature),
        ("x-github-delivery".to_string(), "d-1".to_string()),
        ("x-github-event".to_string(), "issues".to_string()),
    ]
    .into();
    let n = 20_000;
    let start = Instant::now();
    for _ in 0..n {
        let inbound = Inbound {
            source: "github",
            headers: &headers,
            body: &body,
            now: 0,
            path_token: None,
        };
        std::hint::black_box(adapter.accept(&inbound).unwrap());
    }
    let per = start.elapsed() / n;
    println!(
        "verify+parse  {} B signed GitHub webhook: {:.1} µs each",
        body.len(),
        per.as_secs_f64() * 1e6
    );
}

async fn http_ingest(label: &str, settings: Settings) {
    let requests = env_or("CLOSEGATE_BENCH_REQUESTS", 20_000);
    let concurrency = env_or("CLOSEGATE_BENCH_CONCURRENCY", 64);
    let app = Application::build(settings).await.unwrap();
    let url = format!("http://127.0.0.1:{}/hooks/github", app.port());
    let handle = app.server_handle();
    tokio::spawn(app.run_until_stopped());
    let bodies: Vec<(Vec<u8>, String)> = (0..requests)
        .map(|n| {
            let b = body(n);
            let s = sign(&b);
            (b, s)
        })
        .collect();
    let bodies = std::sync::Arc::new(bodies);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, bodies, next) = (client.clone(), url.clone(), bodies.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= bodies.len() {
                    break latencies;
                }
                let (body, signature) = &bodies[i];
                let t = Instant::now();
                let response = client
                    .post(&url)
                    .header("x-github-event", "issues")
                    .header("x-github-delivery", format!("d-{i}"))
                    .header("x-hub-signature-256", signature)
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status().as_u16(), 202);
                latencies.push(t.elapsed());
            }
        }));
    }
    let mut latencies: Vec<Duration> = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "http ingest   {label:<10} {requests} requests, {concurrency} concurrent: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        requests as f64 / elapsed.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3,
    );
    handle.stop(true).await;
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(String::from))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = settings(
        dir.path(),
        &format!("sqlite://{}", dir.path().join("bench.db").display()),
    );
    verify_and_parse(&sqlite);
    http_ingest("sqlite", sqlite).await;
    if let Ok(base) = std::env::var("CLOSEGATE_BENCH_PG") {
        use sqlx::{Connection, Executor};
        let name = format!("cg_bench_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let mut admin = sqlx::PgConnection::connect(&format!("{base}/postgres")).await.unwrap();
        admin.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
        http_ingest("postgres", settings(dir.path(), &format!("{base}/{name}"))).await;
    }
    println!(
        "peak RSS      {:.1} MiB (benchmark process: server and load generator)",
        rss_mib()
    );
}
