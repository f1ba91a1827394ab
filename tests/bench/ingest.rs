//! `cargo bench --bench ingest`: figures for the ack path.
//! 1. authenticate + parse one signed GitHub webhook (no IO);
//! 2. signed webhooks over HTTP (from a load generator on threads of its own)
//!    into a running closegate, acknowledged only
//!    once durably stored: throughput and latency percentiles, on SQLite and,
//!    when CLOSEGATE_BENCH_PG is set to a server URL, on PostgreSQL;
//! 3. beside each, in the same run and with the same load, a bare receiver:
//!    actix-web + HMAC + serde storing each delivery's row (SQLite: one writer
//!    that group-commits; PostgreSQL: one commit per request): the limit.
//! 4. under `cargo bench`, when Node.js and npm are here, the same load against
//!    a Node receiver built on @octokit/webhooks storing each delivery with
//!    better-sqlite3 (`tests/bench/node`, installed with `npm ci` on first use).
//!
//! Sizes: CLOSEGATE_BENCH_REQUESTS (default 20000; 2000 under `cargo test`),
//! CLOSEGATE_BENCH_CONCURRENCY (64).

#[path = "load.rs"]
mod load;

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

/// Requests per run: `cargo bench` passes --bench; `cargo test --all-targets`
/// runs this as a small smoke run.
fn requests() -> usize {
    let benching = std::env::args().any(|a| a == "--bench");
    env_or("CLOSEGATE_BENCH_REQUESTS", if benching { 20_000 } else { 2_000 })
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

/// Throughput and latency of `requests` signed deliveries sent to `url`.
struct Load {
    per_second: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

async fn load(url: &str) -> Load {
    let requests = requests();
    let concurrency = env_or("CLOSEGATE_BENCH_CONCURRENCY", 64);
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
        let (client, url, bodies, next) = (client.clone(), url.to_string(), bodies.clone(), next.clone());
        tasks.push(load::runtime().spawn(async move {
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
    Load {
        per_second: requests as f64 / elapsed.as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
        max: *latencies.last().unwrap(),
    }
}

fn print(label: &str, load: &Load) {
    println!(
        "  {label:<46} {:>7.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms",
        load.per_second,
        load.p50.as_secs_f64() * 1e3,
        load.p99.as_secs_f64() * 1e3,
        load.max.as_secs_f64() * 1e3,
    );
}

/// closegate's ack path, then the bare receiver on the same backend; the
/// closegate figures.
async fn http_ingest(label: &str, settings: Settings, bare_store: BareStore) -> Load {
    let app = Application::build(settings).await.unwrap();
    let url = format!("http://127.0.0.1:{}/hooks/github", app.port());
    let handle = app.server_handle();
    let running = tokio::spawn(app.run_until_stopped());
    let closegate = load(&url).await;
    handle.stop(true).await;
    // Its stop (the WAL copied into the database file) is over before the
    // bare receiver's load starts.
    running.await.unwrap().unwrap();
    let (bare_url, bare) = bare_receiver(bare_store);
    let limit = load(&bare_url).await;
    bare.stop(true).await;
    println!(
        "http ingest on {label}, {} requests, {} concurrent, {} cores:",
        requests(),
        env_or("CLOSEGATE_BENCH_CONCURRENCY", 64),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    print("closegate (workers off)", &closegate);
    let reference = match label {
        "sqlite" => "bare receiver, one writer, group commit",
        _ => "bare receiver, one commit per request",
    };
    print(reference, &limit);
    println!(
        "  ratio closegate / bare: {:.2}",
        closegate.per_second / limit.per_second
    );
    closegate
}

/// The Node reference receiver (`tests/bench/node`), started on a free port;
/// `None` with the reason printed when Node.js or its packages are not here.
async fn node_reference(dir: &std::path::Path) -> Option<(String, std::process::Child)> {
    use std::{
        io::BufRead as _,
        process::{Command, Stdio},
    };
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bench/node");
    if !std::path::Path::new(root).join("node_modules").exists() {
        let installed = Command::new("npm")
            .args(["ci", "--prefix", root, "--no-audit", "--no-fund"])
            .stdout(Stdio::null())
            .status();
        if !installed.is_ok_and(|s| s.success()) {
            println!("  node reference skipped: `npm ci --prefix tests/bench/node` did not succeed");
            return None;
        }
    }
    let mut child = Command::new("node")
        .arg(format!("{root}/receiver.mjs"))
        .env("SECRET", SECRET)
        .env("DB", dir.join("node.db"))
        .env("PORT", "0")
        .stdout(Stdio::piped())
        .spawn()
        .inspect_err(|e| println!("  node reference skipped: {e}"))
        .ok()?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take()?)
        .read_line(&mut line)
        .ok()?;
    let port = line.trim().strip_prefix("listening on ")?.to_string();
    Some((format!("http://127.0.0.1:{port}/hook"), child))
}

/// Where the bare receiver stores its rows.
enum BareStore {
    /// Rows go to one writer task that commits whatever has queued up at once.
    Sqlite(tokio::sync::mpsc::Sender<(String, Vec<u8>, tokio::sync::oneshot::Sender<()>)>),
    Postgres(sqlx::PgPool),
}

impl BareStore {
    async fn sqlite(path: &std::path::Path) -> BareStore {
        use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full);
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE bare (delivery TEXT PRIMARY KEY, body BLOB NOT NULL)")
            .execute(&pool)
            .await
            .unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(String, Vec<u8>, tokio::sync::oneshot::Sender<()>)>(4096);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < 512 {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let mut db = pool.begin().await.unwrap();
                for (delivery, body, _) in &batch {
                    sqlx::query("INSERT INTO bare (delivery, body) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                        .bind(delivery)
                        .bind(body)
                        .execute(&mut *db)
                        .await
                        .unwrap();
                }
                db.commit().await.unwrap();
                for (_, _, done) in batch {
                    let _ = done.send(());
                }
            }
        });
        BareStore::Sqlite(tx)
    }

    async fn postgres(url: &str) -> BareStore {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(16)
            .connect(url)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE bare (delivery TEXT PRIMARY KEY, body BYTEA NOT NULL)")
            .execute(&pool)
            .await
            .unwrap();
        BareStore::Postgres(pool)
    }
}

#[derive(serde::Deserialize)]
struct BareIssue {
    #[allow(dead_code)]
    number: u64,
}

#[derive(serde::Deserialize)]
struct BareEvent {
    #[allow(dead_code)]
    action: String,
    #[allow(dead_code)]
    issue: BareIssue,
}

/// The least a receiver can do: verify, parse, store, answer.
async fn bare_hook(
    request: actix_web::HttpRequest,
    body: actix_web::web::Bytes,
    store: actix_web::web::Data<BareStore>,
) -> actix_web::HttpResponse {
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
    let Some(tag) = header("x-hub-signature-256")
        .and_then(|v| v.strip_prefix("sha256="))
        .and_then(|h| hex::decode(h).ok())
    else {
        return actix_web::HttpResponse::Unauthorized().finish();
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&body);
    if mac.verify_slice(&tag).is_err() {
        return actix_web::HttpResponse::Unauthorized().finish();
    }
    if serde_json::from_slice::<BareEvent>(&body).is_err() {
        return actix_web::HttpResponse::BadRequest().finish();
    }
    let delivery = header("x-github-delivery").unwrap_or_default().to_string();
    match store.get_ref() {
        BareStore::Sqlite(tx) => {
            let (done, stored) = tokio::sync::oneshot::channel();
            tx.send((delivery, body.to_vec(), done)).await.unwrap();
            stored.await.unwrap();
        }
        BareStore::Postgres(pool) => {
            sqlx::query("INSERT INTO bare (delivery, body) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(delivery)
                .bind(body.to_vec())
                .execute(pool)
                .await
                .unwrap();
        }
    }
    actix_web::HttpResponse::Accepted().finish()
}

fn bare_receiver(store: BareStore) -> (String, actix_web::dev::ServerHandle) {
    let store = actix_web::web::Data::new(store);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(store.clone())
            .route("/hook", actix_web::web::post().to(bare_hook))
    })
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    (format!("http://127.0.0.1:{port}/hook"), handle)
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
    let bare = BareStore::sqlite(&dir.path().join("bare.db")).await;
    let closegate = http_ingest("sqlite", sqlite, bare).await;
    if std::env::args().any(|a| a == "--bench")
        && let Some((url, mut node)) = node_reference(dir.path()).await
    {
        let reference = load(&url).await;
        let _ = node.kill();
        print("node: @octokit/webhooks + better-sqlite3", &reference);
        println!(
            "  ratio closegate / node: {:.2}",
            closegate.per_second / reference.per_second
        );
    }
    if let Ok(base) = std::env::var("CLOSEGATE_BENCH_PG") {
        use sqlx::{Connection, Executor};
        let mut admin = sqlx::PgConnection::connect(&format!("{base}/postgres")).await.unwrap();
        let fresh = || format!("cg_bench_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let (name, bare_name) = (fresh(), fresh());
        for db in [&name, &bare_name] {
            admin.execute(format!("CREATE DATABASE {db}").as_str()).await.unwrap();
        }
        let bare = BareStore::postgres(&format!("{base}/{bare_name}")).await;
        http_ingest("postgres", settings(dir.path(), &format!("{base}/{name}")), bare).await;
        for db in [&name, &bare_name] {
            admin
                .execute(format!("DROP DATABASE {db} WITH (FORCE)").as_str())
                .await
                .unwrap();
        }
    }
    println!(
        "peak RSS      {:.1} MiB (benchmark process: server and load generator)",
        rss_mib()
    );
}
