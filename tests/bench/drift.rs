//! `cargo bench --bench drift`: the drift sweep (`closegate drift scan`) over
//! many active claims against the local PostgreSQL, printed beside the same
//! checks done by one bare SQL query in the same run (the floor on this machine).
//! Size: CLOSEGATE_BENCH_CLAIMS (default 1000000; 2000 under `cargo test`); target server:
//! CLOSEGATE_BENCH_TARGET (default postgres://postgres@127.0.0.1:5432/postgres).

use std::{sync::Arc, time::Instant};

use closegate::{
    clock::SystemClock,
    config::Settings,
    decide::drift_scan,
    domain::{Mode, TicketRef, Trigger, TriggerKind, Verdict},
    evidence::EvidenceContent,
    startup::build_context,
    store::{ClaimFilter, Finish, NewEvidence, Recording, Store},
};
use sqlx::{Connection, Executor as _};

const ROLES: usize = 100;
const TABLES: usize = 100;

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(String::from))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

/// 100 login roles, each granted SELECT on 100 tables.
async fn target(url: &str) {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("the target PostgreSQL");
    conn.execute("DROP SCHEMA IF EXISTS cg_bench CASCADE").await.unwrap();
    for r in 0..ROLES {
        conn.execute(format!("DROP ROLE IF EXISTS cg_bench_r{r}").as_str())
            .await
            .unwrap();
    }
    conn.execute("CREATE SCHEMA cg_bench").await.unwrap();
    for t in 0..TABLES {
        conn.execute(format!("CREATE TABLE cg_bench.t{t} (id int)").as_str())
            .await
            .unwrap();
    }
    for r in 0..ROLES {
        conn.execute(format!("CREATE ROLE cg_bench_r{r} LOGIN").as_str())
            .await
            .unwrap();
        conn.execute(format!("GRANT SELECT ON ALL TABLES IN SCHEMA cg_bench TO cg_bench_r{r}").as_str())
            .await
            .unwrap();
    }
}

/// The same (role, table) checks as one query: the floor for this machine.
async fn bare(url: &str, n: usize) -> f64 {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let start = Instant::now();
    let held: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM generate_series(0, $1 - 1) g \
         WHERE has_table_privilege('cg_bench_r' || (g % 100), 'cg_bench.t' || (g / 100 % 100), 'SELECT')",
    )
    .bind(n as i64)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(held as usize, n);
    start.elapsed().as_secs_f64()
}

/// `n` active claims, as allowed decisions would have stored them.
async fn seed(store: &Store, db_path: &std::path::Path, n: usize) {
    let content: EvidenceContent = serde_json::from_value(serde_json::json!({
        "event": { "ticket": { "source": "bench", "key": "T-0" }, "kind": "closed", "event": "bench",
                   "old_state": null, "new_state": "closed", "actor": { "id": "bench" }, "requester": null,
                   "title": "", "labels": [], "fields": {}, "url": null, "occurred_at": null },
        "decision": { "verdict": "allowed", "policy": "bench", "policy_hash": "h", "mode": "enforce",
                      "reasons": [], "checks": [] }
    }))
    .unwrap();
    let evidence = NewEvidence {
        id: "ev-bench".into(),
        trigger: Trigger::new(TriggerKind::Manual, "bench"),
        ticket: TicketRef {
            source: "bench".into(),
            key: "T-0".into(),
        },
        verdict: Verdict::Allowed,
        policy: Some("bench".into()),
        mode: Mode::Enforce,
        content,
    };
    let Finish::Finished(Some(_)) = store
        .record(Recording::evidence(evidence, Vec::new()), 0)
        .await
        .unwrap()
    else {
        panic!("seed record")
    };
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db_path.display()))
        .await
        .unwrap();
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $1 - 1) \
         INSERT INTO claims (id, evidence_id, source, ticket, policy, policy_hash, system, kind, subject, object, \
             expect, requested, spec, observation, verified_at, next_sweep_at) \
         SELECT printf('c%08d', i), 'ev-bench', 'bench', 'T-' || (i / 10), 'bench', 'h', 'bench-db', \
             'table_privileges', 'cg_bench_r' || (i % 100), 'table cg_bench.t' || (i / 100 % 100), 'exact', \
             '[\"SELECT\"]', \
             '{\"name\":\"grant\",\"system\":\"bench-db\",\"kind\":\"table_privileges\",\"params\":{\"role\":\"cg_bench_r' \
                 || (i % 100) || '\",\"table\":\"cg_bench.t' || (i / 100 % 100) \
                 || '\"},\"expect\":\"exact\",\"requested\":[\"SELECT\"]}', \
             '{\"subject\":\"cg_bench_r' || (i % 100) || '\",\"object\":\"table cg_bench.t' || (i / 100 % 100) \
                 || '\",\"exists\":true,\"held\":[\"SELECT\"],\"location\":\"bench\"}', \
             0, 0 FROM n",
    )
    .bind(n as i64)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
}

fn settings(dir: &std::path::Path, db: &std::path::Path, target: &str) -> Settings {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let config = dir.join("bench.yaml");
    let yaml = serde_json::json!({
        "listen": "127.0.0.1:0",
        "database_url": format!("sqlite://{}", db.display()),
        "policies_dir": policies,
        "log": { "format": "pretty", "filter": "off" },
        "worker": { "enabled": false, "decision_concurrency": 1, "poll_interval_ms": 1000, "lease_seconds": 60,
                    "retry_base_ms": 1000, "retry_max_ms": 60000, "max_attempts": 5, "sweep_batch": 1000 },
        "systems": { "bench-db": { "type": "postgres", "url": target, "timeout_ms": 60000 } }
    });
    std::fs::write(&config, serde_yaml::to_string(&yaml).unwrap()).unwrap();
    Settings::load(Some(&config)).unwrap()
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this as a
    // small smoke run.
    let benching = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("CLOSEGATE_BENCH_CLAIMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benching { 1_000_000 } else { 2_000 });
    let target_url = std::env::var("CLOSEGATE_BENCH_TARGET")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    target(&target_url).await;
    let floor = bare(&target_url, n).await;

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("closegate.db");
    let settings = settings(dir.path(), &db, &target_url);
    let store = Store::connect(&format!("sqlite://{}", db.display())).await.unwrap();
    let seeding = Instant::now();
    seed(&store, &db, n).await;
    let seeded = seeding.elapsed().as_secs_f64();
    let ctx = build_context(&settings, store, Arc::new(SystemClock)).unwrap();
    let filter = ClaimFilter {
        active: true,
        ..ClaimFilter::default()
    };

    let rss_before = rss_mib();
    let start = Instant::now();
    let dry = drift_scan(&ctx, &filter, true, &mut |_| {}).await.unwrap();
    let dry_secs = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let summary = drift_scan(&ctx, &filter, false, &mut |_| {}).await.unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(
        (dry.checked, summary.checked, summary.held),
        (n as u64, n as u64, n as u64)
    );

    println!(
        "drift scan on {cores} cores, {n} active claims ({ROLES} roles x {TABLES} tables), SQLite store, local PostgreSQL target"
    );
    println!("  seeding the claims (not measured below): {seeded:.1} s");
    println!(
        "  drift scan, recording each check:  {secs:6.1} s  {:>9.0} claims/s",
        n as f64 / secs
    );
    println!(
        "  drift scan --dry-run:              {dry_secs:6.1} s  {:>9.0} claims/s",
        n as f64 / dry_secs
    );
    println!(
        "  reference, one bare SQL query of {n} has_table_privilege calls: {floor:.1} s  {:.0} checks/s",
        n as f64 / floor
    );
    println!(
        "  peak RSS {:.0} MiB (before the scans: {rss_before:.0} MiB)",
        rss_mib()
    );
}
