//! `cargo bench --bench end_to_end`: closegate with its workers on, against an
//! in-process fake GitHub and the local PostgreSQL as the target system.
//! 1. the fake helpdesk's own capacity (comment posts per second), printed
//!    beside what closegate gets out of it;
//! 2. decisions alone: deliveries already stored, decided by the workers
//!    (outbox off), per second;
//! 3. N gated closes (each blocked: a comment and a reopen) from the first
//!    request to the last reopen, with the ack rate while the workers decide;
//! 4. a hung helpdesk: another source's comment delay while one source's
//!    API never answers;
//! 5. resident memory idle and after the load (this process: closegate, the
//!    fake helpdesks and the load generator);
//! 6. the ack rate sustained for a fixed time (as wrk measures it) with the
//!    workers deciding, beside the same with the workers off, before and
//!    after.
//!
//! Sizes: CLOSEGATE_BENCH_CLOSES (default 10000; 300 under `cargo test`);
//! CLOSEGATE_BENCH_SUSTAIN_SECONDS (default 10; 1 under `cargo test`).
//! Parts: CLOSEGATE_BENCH_ONLY=sustained runs only part 6 (e.g. while profiling
//! the store under it); unset, every part runs.
//! Store: SQLite; with CLOSEGATE_BENCH_PG set to a server URL
//! (`postgres://postgres@127.0.0.1:5432`), everything again on PostgreSQL.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

#[path = "load.rs"]
mod load;

use closegate::{config::Settings, startup::Application, store::Store, workers};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const SECRET: &str = "bench-secret";

fn closes() -> usize {
    let benching = std::env::args().any(|a| a == "--bench");
    std::env::var("CLOSEGATE_BENCH_CLOSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benching { 10_000 } else { 300 })
}

/// How long the sustained ack runs last: CLOSEGATE_BENCH_SUSTAIN_SECONDS
/// (default 10, as a wrk run; 1 under `cargo test`).
fn sustained_window() -> Duration {
    let benching = std::env::args().any(|a| a == "--bench");
    let seconds = std::env::var("CLOSEGATE_BENCH_SUSTAIN_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&s: &u64| s > 0)
        .unwrap_or(if benching { 10 } else { 1 });
    Duration::from_secs(seconds)
}

fn rss_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).map(String::from))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Asks and calls so far of each kind of merged call (checks of a target
/// system, decisions' reads of their tickets' pasts), from closegate's own
/// metric `closegate_merged_call_asks`.
fn merged_calls() -> std::collections::BTreeMap<String, (f64, f64)> {
    let mut merged = std::collections::BTreeMap::new();
    let Some(metrics) = closegate::metrics::install() else {
        return merged;
    };
    for line in metrics.render().lines() {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some((part, labels)) = series
            .strip_prefix("closegate_merged_call_asks_")
            .and_then(|s| s.split_once('{'))
        else {
            continue;
        };
        let Some(kind) = labels.split("kind=\"").nth(1).and_then(|k| k.split('"').next()) else {
            continue;
        };
        let value: f64 = value.parse().unwrap_or(0.0);
        let (asks, calls) = merged.entry(kind.to_string()).or_insert((0.0, 0.0));
        match part {
            "sum" => *asks += value,
            "count" => *calls += value,
            _ => {}
        }
    }
    merged
}

/// Asks per merged call of each kind between two readings of [`merged_calls`].
fn asks_per_call(
    before: &std::collections::BTreeMap<String, (f64, f64)>,
    after: &std::collections::BTreeMap<String, (f64, f64)>,
) -> String {
    after
        .iter()
        .map(|(kind, (asks, calls))| {
            let (asks_before, calls_before) = before.get(kind).copied().unwrap_or_default();
            let per_call = (asks - asks_before) / (calls - calls_before).max(1.0);
            format!("{kind} {per_call:.1}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the fake GitHub saw.
#[derive(Default)]
struct Seen {
    comments: AtomicU64,
    reopens: AtomicU64,
    /// Milliseconds since `epoch` of the last comment posted.
    last_comment_ms: AtomicU64,
}

struct FakeGithub {
    seen: Arc<Seen>,
    epoch: Instant,
}

async fn fake_github(
    request: actix_web::HttpRequest,
    state: actix_web::web::Data<FakeGithub>,
) -> actix_web::HttpResponse {
    use actix_web::{HttpResponse, http::Method};
    let path = request.path();
    let json = |status: u16, body: &str| {
        HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
            .content_type("application/json")
            .body(body.to_string())
    };
    match (request.method().clone(), path.ends_with("/comments")) {
        (Method::GET, true) => json(200, "[]"),
        (Method::POST, true) => {
            state.seen.comments.fetch_add(1, Ordering::Relaxed);
            let ms = state.epoch.elapsed().as_millis() as u64;
            state.seen.last_comment_ms.fetch_max(ms, Ordering::Relaxed);
            json(201, r#"{"id":1}"#)
        }
        (Method::GET, false) => json(200, r#"{"state":"closed","closed_at":"2026-11-22T10:03:11Z"}"#),
        (Method::PATCH, false) => {
            state.seen.reopens.fetch_add(1, Ordering::Relaxed);
            json(200, r#"{"state":"open"}"#)
        }
        _ => json(404, "{}"),
    }
}

/// A helpdesk that accepts connections and never answers.
async fn hung() -> actix_web::HttpResponse {
    tokio::time::sleep(Duration::from_secs(3600)).await;
    actix_web::HttpResponse::Ok().finish()
}

fn serve_fake(seen: Arc<Seen>, epoch: Instant, hang: bool) -> (String, actix_web::dev::ServerHandle) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let state = actix_web::web::Data::new(FakeGithub { seen, epoch });
    let server = actix_web::HttpServer::new(move || {
        let app = actix_web::App::new().app_data(state.clone());
        if hang {
            app.default_service(actix_web::web::to(hung))
        } else {
            app.default_service(actix_web::web::to(fake_github))
        }
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    (format!("http://127.0.0.1:{port}"), handle)
}

/// The URL of a fresh store: a new SQLite file, or a new database on the
/// PostgreSQL server at `pg` (dropped at the end).
async fn fresh_store(dir: &std::path::Path, pg: Option<&str>) -> String {
    let name = uuid::Uuid::new_v4().simple().to_string();
    match pg {
        None => format!("sqlite://{}", dir.join(format!("{name}.db")).display()),
        Some(base) => {
            use sqlx::{Connection, Executor};
            let mut admin = sqlx::PgConnection::connect(&format!("{base}/postgres")).await.unwrap();
            let db = format!("cg_bench_{}", &name[..12]);
            admin.execute(format!("CREATE DATABASE {db}").as_str()).await.unwrap();
            MADE.lock().unwrap().push((base.to_string(), db.clone()));
            format!("{base}/{db}")
        }
    }
}

fn settings(dir: &std::path::Path, database_url: &str, github: &str, hung: &str, workers_on: bool) -> Settings {
    let config = dir.join(format!("bench-{}.yaml", uuid::Uuid::new_v4().simple()));
    let source = |url: &str| {
        serde_json::json!({ "type": "github", "secret": { "value": SECRET }, "token": { "value": "t" },
                            "api_url": url, "bot_login": "closegate-bot" })
    };
    let yaml = serde_json::json!({
        "listen": "127.0.0.1:0",
        "database_url": database_url,
        "policies_dir": concat!(env!("CARGO_MANIFEST_DIR"), "/policies"),
        "log": { "format": "pretty", "filter": "off" },
        "intake_notes": false,
        "evidence": { "heads_dir": dir.join("heads") },
        "worker": { "enabled": workers_on, "decision_concurrency": 4, "decision_batch": 16, "poll_interval_ms": 20,
                    "outbox_concurrency": 8,
                    "retry_base_ms": 200, "retry_max_ms": 2000 },
        "sources": { "github": source(github), "stuck": source(hung) },
        "systems": { "app-db": { "type": "postgres", "url": "postgres://postgres@127.0.0.1:5432/postgres" } }
    });
    std::fs::write(&config, serde_yaml::to_string(&yaml).unwrap()).unwrap();
    Settings::load(Some(&config)).unwrap()
}

/// A signed close of issue `n` asking for a grant nobody made: blocked.
fn close(n: usize) -> (Vec<u8>, String) {
    let mut event: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/github/issues_closed.json")).unwrap();
    event["issue"]["number"] = n.into();
    event["issue"]["body"] = format!(
        "### Request type\n\ngrant\n\n### Database role\n\ncg_bench_nobody_{n}\n\n### Table\n\npublic.none\n\n\
         ### Privileges\n\nSELECT\n\n"
    )
    .into();
    let body = serde_json::to_vec(&event).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    (body, signature)
}

/// How much load to send: a number of requests, or as many as go in a time
/// (as wrk measures).
#[derive(Clone, Copy)]
enum Load {
    Requests(usize),
    For(Duration),
}

/// Runs `job(0..)` 64 at a time on the load generator's threads until `load`
/// is sent; completions per second.
async fn concurrently<F, Fut>(load: Load, job: F) -> f64
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let (count, until) = match load {
        Load::Requests(n) => (n, None),
        Load::For(window) => (usize::MAX, Some(start + window)),
    };
    let tasks: Vec<_> = (0..64.min(count))
        .map(|_| {
            let (next, done, job) = (next.clone(), done.clone(), job.clone());
            load::runtime().spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if i >= count || until.is_some_and(|t| Instant::now() >= t) {
                        break;
                    }
                    job(i).await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// Sends closes to `source`, numbered from `first`, until `load` is sent;
/// requests per second.
async fn send(base: &str, source: &str, first: usize, load: Load) -> f64 {
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
    let (url, source) = (format!("{base}/hooks/{source}"), source.to_string());
    concurrently(load, move |i| {
        let (client, url, source) = (client.clone(), url.clone(), source.clone());
        async move {
            let (body, signature) = close(first + i);
            let response = client
                .post(&url)
                .header("x-github-event", "issues")
                .header("x-github-delivery", format!("{source}-{}", first + i))
                .header("x-hub-signature-256", signature)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 202);
        }
    })
    .await
}

async fn wait_until(what: &str, limit: Duration, mut done: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < limit, "{what}: not done within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The fake helpdesk alone: comment posts per second at 64 concurrent.
async fn helpdesk_capacity(url: &str, n: usize) -> f64 {
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
    let url = format!("{url}/repos/acme/access-requests/issues/1/comments");
    concurrently(Load::Requests(n), move |_| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let r = client.post(&url).body(r#"{"body":"x"}"#).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 201);
        }
    })
    .await
}

/// A closegate started by [`launch`].
struct Launched {
    base: String,
    ctx: Arc<closegate::context::Context>,
    handle: actix_web::dev::ServerHandle,
    running: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Launched {
    /// Stops it, its stop (the store's checkpoint) included.
    async fn stop(self, graceful: bool) {
        self.handle.stop(graceful).await;
        self.running.await.unwrap().unwrap();
    }
}

/// The PostgreSQL databases made for the stores, as (server, database).
static MADE: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

/// Drops the PostgreSQL databases made for the stores. Once, at the end: a
/// dropped database makes PostgreSQL write a checkpoint, which would slow
/// the figure measured after it.
async fn drop_made_databases() {
    use sqlx::{Connection, Executor};
    let made = std::mem::take(&mut *MADE.lock().unwrap());
    for (base, db) in made {
        let mut admin = sqlx::PgConnection::connect(&format!("{base}/postgres")).await.unwrap();
        admin
            .execute(format!("DROP DATABASE {db} WITH (FORCE)").as_str())
            .await
            .unwrap();
    }
}

/// Starts closegate on a fresh store (SQLite, or a new database on the
/// PostgreSQL server `pg`).
async fn launch(dir: &std::path::Path, pg: Option<&str>, github: &str, hung: &str, workers_on: bool) -> Launched {
    let database_url = fresh_store(dir, pg).await;
    let app = Application::build(settings(dir, &database_url, github, hung, workers_on))
        .await
        .unwrap();
    Launched {
        base: format!("http://127.0.0.1:{}", app.port()),
        ctx: app.context(),
        handle: app.server_handle(),
        running: tokio::spawn(app.run_until_stopped()),
    }
}

#[tokio::main]
async fn main() {
    let pg = std::env::var("CLOSEGATE_BENCH_PG").ok();
    if std::env::var("CLOSEGATE_BENCH_ONLY").as_deref() != Ok("sustained") {
        run(None).await;
        if let Some(pg) = &pg {
            run(Some(pg)).await;
        }
    }
    sustained(None).await;
    if let Some(pg) = &pg {
        sustained(Some(pg)).await;
    }
    drop_made_databases().await;
}

/// Every figure on one store: SQLite, or PostgreSQL at `pg`.
async fn run(pg: Option<&str>) {
    let n = closes();
    let dir = tempfile::tempdir().unwrap();
    let epoch = Instant::now();
    let seen = Arc::new(Seen::default());
    let (github, github_handle) = serve_fake(seen.clone(), epoch, false);
    let (stuck, stuck_handle) = serve_fake(Arc::new(Seen::default()), epoch, true);
    println!(
        "end to end: {n} gated closes, {} store, local PostgreSQL target, {} cores",
        if pg.is_some() { "PostgreSQL" } else { "SQLite" },
        std::thread::available_parallelism().map_or(1, |c| c.get())
    );
    let capacity = helpdesk_capacity(&github, n.max(2000)).await;
    seen.comments.store(0, Ordering::Relaxed);

    // Decisions alone: stored first with the workers off, then decided by the
    // configured decision workers (each claiming a batch) with nothing delivered.
    let launched = launch(dir.path(), pg, &github, &stuck, false).await;
    let (base, ctx) = (launched.base.clone(), launched.ctx.clone());
    let ack_workers_off = send(&base, "github", 0, Load::Requests(n)).await;
    let merged_before = merged_calls();
    let start = Instant::now();
    let (workers_n, batch) = (ctx.settings.decision_concurrency, ctx.settings.decision_batch);
    let deciders: Vec<_> = (0..workers_n)
        .map(|_| {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                while workers::try_decide_batch(&ctx, batch).await.unwrap() == workers::ExecutionOutcome::TaskCompleted
                {
                }
            })
        })
        .collect();
    for d in deciders {
        d.await.unwrap();
    }
    let decided = ctx.store.stats().await.unwrap();
    let decisions_per_second = decided.evidence as f64 / start.elapsed().as_secs_f64();
    launched.stop(true).await;
    assert_eq!(decided.deliveries_pending, 0);
    println!(
        "  decisions alone ({workers_n} workers x {batch}, outbox off)  {decisions_per_second:>8.0} /s ({} decided; \
         asks per merged call: {})",
        decided.evidence,
        asks_per_call(&merged_before, &merged_calls())
    );

    // End to end with everything running.
    let idle_rss = rss_mib("VmRSS:");
    let launched = launch(dir.path(), pg, &github, &stuck, true).await;
    let (base, ctx) = (launched.base.clone(), launched.ctx.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started_rss = rss_mib("VmRSS:");
    let start = Instant::now();
    let ack_rate = send(&base, "github", 100_000, Load::Requests(n)).await;
    let store: Store = ctx.store.clone();
    wait_until(
        "every close decided, commented and reopened",
        Duration::from_secs(600),
        async || {
            seen.reopens.load(Ordering::Relaxed) as usize >= n && seen.comments.load(Ordering::Relaxed) as usize >= n
        },
    )
    .await;
    let total = start.elapsed();
    let stats = store.stats().await.unwrap();
    println!(
        "  {n} closes, first request to last reopen    {:>8.2} s  ({:.0} closes/s; {} comments, {} reopens)",
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64(),
        seen.comments.load(Ordering::Relaxed),
        seen.reopens.load(Ordering::Relaxed)
    );
    println!(
        "  ack rate while the workers decide           {ack_rate:>8.0} req/s ({:.2} of {ack_workers_off:.0} req/s with \
         the workers off, same closes)",
        ack_rate / ack_workers_off
    );
    println!("  fake helpdesk capacity alone (reference)    {capacity:>8.0} comment posts/s");
    assert_eq!(stats.outbox_dead, 0);

    // A hung helpdesk: ten closes for the source that never answers, then one
    // for GitHub; how long the GitHub comment takes.
    send(&base, "stuck", 200_000, Load::Requests(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = seen.comments.load(Ordering::Relaxed);
    let sent = epoch.elapsed().as_millis() as u64;
    send(&base, "github", 300_000, Load::Requests(1)).await;
    wait_until("the other source's comment", Duration::from_secs(60), async || {
        seen.comments.load(Ordering::Relaxed) > before
    })
    .await;
    let delay = seen.last_comment_ms.load(Ordering::Relaxed).saturating_sub(sent);
    println!("  comment delay with another helpdesk hung    {delay:>8} ms (target < 1000 ms)");
    println!(
        "  resident memory: {idle_rss:.1} MiB before closegate, {started_rss:.1} MiB idle, {:.1} MiB peak \
         (one process: closegate, fake helpdesks, load generator)",
        rss_mib("VmHWM:")
    );
    launched.stop(false).await;
    github_handle.stop(false).await;
    stuck_handle.stop(false).await;
}

/// The ack rate sustained, as wrk measures it: closes for a fixed time with
/// the workers off, then with them deciding and delivering as fast as they
/// are let, then off again, each on a fresh store (SQLite, or PostgreSQL at
/// `pg`). The reference is the mean of the two windows with the workers off,
/// so that the machine drifting during the run (another tenant, the page
/// cache, PostgreSQL's checkpoints) does not read as the workers' cost. Run
/// after every other figure, so that the resident memory printed before is
/// not that of its far larger backlog.
async fn sustained(pg: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let epoch = Instant::now();
    let (github, github_handle) = serve_fake(Arc::new(Seen::default()), epoch, false);
    let (stuck, stuck_handle) = serve_fake(Arc::new(Seen::default()), epoch, true);
    let window = sustained_window();
    let mut rates = Vec::new();
    for workers_on in [false, true, false] {
        let launched = launch(dir.path(), pg, &github, &stuck, workers_on).await;
        let start = Instant::now();
        let rate = send(&launched.base, "github", 1_000_000, Load::For(window)).await;
        let decided = launched.ctx.store.stats().await.unwrap().evidence;
        rates.push((rate, decided as f64 / start.elapsed().as_secs_f64()));
        launched.stop(false).await;
    }
    let [(before, _), (on, deciding), (after, _)] = rates[..] else {
        unreachable!()
    };
    let off = (before + after) / 2.0;
    println!(
        "ack rate sustained {} s, {} store: {on:.0} req/s while deciding ({:.2} of {off:.0} req/s with the workers \
         off, the mean of {before:.0} before and {after:.0} after; {deciding:.0} decisions/s meanwhile)",
        window.as_secs(),
        if pg.is_some() { "PostgreSQL" } else { "SQLite" },
        on / off
    );
    github_handle.stop(false).await;
    stuck_handle.stop(false).await;
}
