//! Test harness: a real closegate on a random port with a fresh store (SQLite by
//! default, PostgreSQL with CLOSEGATE_TEST_BACKEND=postgres), a real PostgreSQL
//! target database, and the helpdesk faked at the HTTP level.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, LazyLock},
};

use closegate::{
    clock::ManualClock,
    config::{LogFormat, Settings},
    context::Context,
    domain::CheckResult,
    signature::StandardWebhooksKey,
    startup::Application,
    store::{EvidenceRecord, Store, StoreStats},
    telemetry,
    workers::{self, ExecutionOutcome},
};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use sqlx::{Connection, Executor as _, PgConnection};
use tempfile::TempDir;

#[path = "../support/pg.rs"]
mod pg;
pub use pg::{fresh_database, pg_url, unique};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path_regex},
};

pub const GITHUB_SECRET: &str = "gh-webhook-secret";
pub const GENERIC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const REPO_ISSUE: &str = "acme/access-requests#42";
pub const CLOSED_AT: &str = "2026-11-22T10:03:11Z";

static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var("TEST_LOG").is_ok() {
        telemetry::init(LogFormat::Pretty, "info,sqlx=warn", std::io::stdout);
    } else {
        telemetry::init(LogFormat::Pretty, "off", std::io::sink);
    }
});

/// A fresh store URL for the backend under test.
async fn fresh_store_url(dir: &Path) -> String {
    match std::env::var("CLOSEGATE_TEST_BACKEND").as_deref() {
        Ok("postgres") => fresh_database().await,
        _ => format!("sqlite://{}", dir.join("closegate.db").display()),
    }
}

pub struct TestApp {
    pub address: String,
    pub helpdesk: MockServer,
    pub store: Store,
    pub ctx: Arc<Context>,
    pub http: reqwest::Client,
    /// The app's clock: tests move it instead of sleeping.
    pub clock: ManualClock,
    config: PathBuf,
    handle: actix_web::dev::ServerHandle,
    dir: Arc<TempDir>,
}

/// What a test may change about the app.
#[derive(Default)]
pub struct Options {
    /// Target database URL for the `app-db` system (defaults to the local server).
    pub target_url: Option<String>,
    pub target_timeout_ms: Option<u64>,
    /// Policy directory (defaults to the shipped `policies/`).
    pub policies: Option<PathBuf>,
    /// Extra target systems (config `systems` entries), and system groups.
    pub systems: Option<Value>,
    pub system_groups: Option<Value>,
    /// Extra webhook sources (config `sources` entries); `{helpdesk}` in any
    /// string is replaced by the fake helpdesk's base URL.
    pub sources: Option<Value>,
    /// The synchronous gate's settings.
    pub gate: Option<Value>,
    /// The `unmatched` setting.
    pub unmatched: Option<Value>,
    /// The `evidence` settings (signing key, heads directory).
    pub evidence: Option<Value>,
    /// Worker settings merged over the test defaults.
    pub worker: Option<Value>,
    /// Intake notes on opened and edited governed requests (off unless a
    /// test is about them).
    pub intake_notes: bool,
    /// Other top-level settings, merged over the rest.
    pub settings: Option<Value>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    LazyLock::force(&TRACING);
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let helpdesk = MockServer::start().await;
    let store_url = fresh_store_url(dir.path()).await;
    let policies = options
        .policies
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies"));
    let config = dir.path().join("closegate.yaml");
    let yaml = json!({
        "listen": "127.0.0.1:0",
        "database_url": store_url,
        "policies_dir": policies,
        "max_body_bytes": 65536,
        "worker": { "enabled": false, "decision_concurrency": 1, "poll_interval_ms": 50,
                    "lease_seconds": 30, "retry_base_ms": 1000, "retry_max_ms": 60000, "max_attempts": 5 },
        "sources": {
            "github": { "type": "github", "secret": { "value": GITHUB_SECRET }, "token": { "value": "ghp_test_token" },
                        "api_url": helpdesk.uri(), "bot_login": "closegate-bot" },
            "generic": { "type": "standard-webhooks", "secret": { "value": GENERIC_SECRET },
                         "callback_url": format!("{}/callback", helpdesk.uri()), "bot_actor": "closegate" }
        },
        "systems": {
            "app-db": { "type": "postgres", "url": options.target_url.unwrap_or_else(|| pg_url("postgres")),
                        "timeout_ms": options.target_timeout_ms.unwrap_or(5000) }
        }
    });
    let mut yaml = yaml;
    if let Some(Value::Object(extra)) = options.systems {
        yaml["systems"].as_object_mut().unwrap().extend(extra);
    }
    if let Some(Value::Object(extra)) = options.sources {
        let text = Value::Object(extra).to_string().replace("{helpdesk}", &helpdesk.uri());
        let extra: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
        yaml["sources"].as_object_mut().unwrap().extend(extra);
    }
    if let Some(gate) = options.gate {
        yaml["gate"] = gate;
    }
    if let Some(unmatched) = options.unmatched {
        yaml["unmatched"] = unmatched;
    }
    if let Some(Value::Object(worker)) = options.worker {
        yaml["worker"].as_object_mut().unwrap().extend(worker);
    }
    yaml["intake_notes"] = json!(options.intake_notes);
    if let Some(evidence) = options.evidence {
        yaml["evidence"] = evidence;
    }
    if let Some(groups) = options.system_groups {
        yaml["system_groups"] = groups;
    }
    if let Some(settings) = options.settings {
        let text = settings.to_string().replace("{helpdesk}", &helpdesk.uri());
        let settings: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
        yaml.as_object_mut().unwrap().extend(settings);
    }
    std::fs::write(&config, serde_yaml::to_string(&yaml).unwrap()).unwrap();
    start(config, helpdesk, dir, ManualClock::default()).await
}

async fn start(config: PathBuf, helpdesk: MockServer, dir: Arc<TempDir>, clock: ManualClock) -> TestApp {
    let settings = Settings::load(Some(&config)).expect("test settings load");
    let url = settings.database_url.resolve("database_url").unwrap();
    let store = Store::connect(url.expose()).await.expect("store opens");
    let app = Application::build_with(settings, store, Arc::new(clock.clone()))
        .await
        .expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let ctx = app.context();
    let handle = app.server_handle();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        helpdesk,
        store: ctx.store.clone(),
        ctx,
        http: reqwest::Client::new(),
        clock,
        config,
        handle,
        dir,
    }
}

impl TestApp {
    /// Another replica on the same store and helpdesk, sharing this app's
    /// clock: a context whose worker steps tests call directly.
    pub async fn replica(&self) -> Arc<Context> {
        let settings = Settings::load(Some(&self.config)).unwrap();
        let url = settings.database_url.resolve("database_url").unwrap();
        let store = Store::connect(url.expose()).await.unwrap();
        Arc::new(closegate::startup::build_context(&settings, store, Arc::new(self.clock.clone())).unwrap())
    }

    /// Runs the expiry worker until nothing is due.
    pub async fn expire_due(&self) {
        while workers::try_expire_next(&self.ctx).await.unwrap() == ExecutionOutcome::TaskCompleted {}
    }

    /// Runs the drift sweep until nothing is due.
    pub async fn sweep_due(&self) {
        while workers::try_sweep_next(&self.ctx).await.unwrap() == ExecutionOutcome::TaskCompleted {}
    }

    /// Stops this instance and starts a new one on the same store and helpdesk.
    pub async fn restart(self) -> TestApp {
        self.handle.stop(true).await;
        drop(self.ctx);
        start(self.config, self.helpdesk, self.dir, self.clock).await
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub async fn post_github(&self, event: &str, delivery: &str, body: &[u8]) -> reqwest::Response {
        self.post_github_to("github", event, delivery, body).await
    }

    /// [`Self::post_github`] to another GitHub source of the same secret.
    pub async fn post_github_to(&self, source: &str, event: &str, delivery: &str, body: &[u8]) -> reqwest::Response {
        let mut mac = Hmac::<Sha256>::new_from_slice(GITHUB_SECRET.as_bytes()).unwrap();
        mac.update(body);
        let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        self.post_raw(
            source,
            &[
                ("x-github-event", event),
                ("x-github-delivery", delivery),
                ("x-hub-signature-256", &signature),
            ],
            body,
        )
        .await
    }

    pub async fn post_generic(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> reqwest::Response {
        let signature = StandardWebhooksKey::parse(GENERIC_SECRET)
            .unwrap()
            .sign(msg_id, timestamp, body);
        let ts = timestamp.to_string();
        self.post_raw(
            "generic",
            &[
                ("webhook-id", msg_id),
                ("webhook-timestamp", &ts),
                ("webhook-signature", &signature),
            ],
            body,
        )
        .await
    }

    pub async fn post_raw(&self, source: &str, headers: &[(&str, &str)], body: &[u8]) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/hooks/{source}", self.address))
            .header("content-type", "application/json")
            .body(body.to_vec());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("request sent")
    }

    /// Runs the decision worker until no delivery is waiting.
    pub async fn decide_all(&self) {
        while workers::try_decide_next(&self.ctx).await.unwrap() == ExecutionOutcome::TaskCompleted {}
    }

    /// Runs the outbox worker once per message due now (by the app's clock).
    pub async fn deliver_all(&self) -> usize {
        let mut n = 0;
        while workers::try_deliver_next(&self.ctx).await.unwrap() == ExecutionOutcome::TaskCompleted {
            n += 1;
        }
        n
    }

    /// Moves the app's clock forward.
    pub fn advance(&self, by: std::time::Duration) {
        self.clock.advance_ms(by.as_millis() as i64);
    }

    /// Sends a signed GitHub `issues` event, then decides and delivers everything:
    /// what a running instance does in the background.
    pub async fn close_on_github(&self, delivery: &str, body: &[u8]) {
        let response = self.post_github("issues", delivery, body).await;
        assert_eq!(response.status().as_u16(), 202);
        self.settle_all().await;
    }

    /// Decides and delivers everything pending now.
    pub async fn settle_all(&self) {
        self.decide_all().await;
        self.deliver_all().await;
    }

    /// Settles everything and returns the verdicts recorded for one ticket.
    pub async fn settle(&self, source: &str, ticket: &str) -> Vec<String> {
        self.settle_all().await;
        self.store
            .evidence_for_ticket(source, ticket)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.verdict.to_string())
            .collect()
    }

    pub async fn stats(&self) -> StoreStats {
        self.store.stats().await.unwrap()
    }

    /// The latest evidence record of a ticket.
    pub async fn last_record(&self, source: &str, ticket: &str) -> EvidenceRecord {
        let mut records = self.store.evidence_for_ticket(source, ticket).await.unwrap();
        records.pop().expect("an evidence record")
    }

    pub async fn evidence(&self, ticket: &str) -> Vec<EvidenceRecord> {
        self.store.evidence_for_ticket("github", ticket).await.unwrap()
    }
}

/// Hex HMAC-SHA256 of the parts.
pub fn sign_hex(secret: &str, parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    for p in parts {
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// Base64 HMAC-SHA256 of the parts.
pub fn sign_b64(secret: &str, parts: &[&[u8]]) -> String {
    use base64::Engine as _;
    let tag = hex::decode(sign_hex(secret, parts)).unwrap();
    base64::engine::general_purpose::STANDARD.encode(tag)
}

/// A fixture's text with the example role and table replaced by a test's own.
pub fn fixture(path: &str, role: &str, table: &str) -> String {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path);
    std::fs::read_to_string(&full)
        .unwrap()
        .replace("app_reader", role)
        .replace("public.orders", table)
}

/// The shipped table-grant policy with an approval rule added: one approval
/// by a listed identity, compared by the approver's email.
pub fn grant_policy_with_approval(approvers: &[&str]) -> TempDir {
    grant_policy_with_approval_and(approvers, "")
}

/// [`grant_policy_with_approval`] with more lines in the approval block.
pub fn grant_policy_with_approval_and(approvers: &[&str], more: &str) -> TempDir {
    let shipped =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies/db-table-grant.yaml"))
            .unwrap();
    let block = format!(
        "approval:\n  approvers: {{ users: [{}] }}\n  identity: \"{{{{ approver.email }}}}\"\n  separate: [requester, approver, closer]\n",
        approvers.join(", ")
    );
    policy_dir(&[("db-table-grant", &format!("{shipped}\n{block}{more}"))])
}

/// A directory holding the given policy files.
pub fn policy_dir(files: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(format!("{name}.yaml")), text).unwrap();
    }
    dir
}

/// A target system `slow` (HTTP) that answers every check `present` after
/// `delay`, the policy directory whose one check asks it, and the `systems`
/// entry that configures it.
pub async fn slow_system(delay: std::time::Duration) -> (MockServer, TempDir, Value) {
    let slow = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "ok": true }))
                .set_delay(delay),
        )
        .mount(&slow)
        .await;
    let policy = r#"
match: { labels: [access-request] }
checks:
  - { name: slow api, system: slow, kind: json, params: { path: "/x" }, expect: present }
"#;
    let policies = policy_dir(&[("slow", policy)]);
    let systems = json!({ "slow": { "type": "http", "base_url": slow.uri(), "timeout_ms": 5000 } });
    (slow, policies, systems)
}

/// A generic-source event moving `ticket` to closed, with these fields.
pub fn generic_close(ticket: &str, fields: &[(&str, &str)]) -> Vec<u8> {
    let fields: serde_json::Map<String, Value> = fields.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    serde_json::to_vec(&json!({
        "type": "ticket.updated",
        "data": {
            "ticket": ticket, "state": "closed", "previous_state": "open", "title": "Access request",
            "labels": ["access-request"], "fields": fields,
            "actor": { "id": "fulfilment", "kind": "human" }, "requester": { "id": "ci-job", "kind": "service" }
        }
    }))
    .unwrap()
}

impl TestApp {
    /// Closes `ticket` through the generic source and returns its evidence record.
    pub async fn close_generic(&self, ticket: &str, fields: &[(&str, &str)]) -> EvidenceRecord {
        let msg_id = format!("msg_{}", uuid::Uuid::new_v4().simple());
        let response = self
            .post_generic(&msg_id, chrono::Utc::now().timestamp(), &generic_close(ticket, fields))
            .await;
        assert_eq!(response.status().as_u16(), 202);
        self.decide_all().await;
        let mut records = self.store.evidence_for_ticket("generic", ticket).await.unwrap();
        records.pop().expect("an evidence record")
    }
}

/// The checks a record holds.
pub fn checks(record: &EvidenceRecord) -> Vec<CheckResult> {
    record.content().expect("the evidence record parses").decision.checks
}

/// The verdict and, per check, (system, outcome status, observed items).
pub fn summary(record: &EvidenceRecord) -> (String, Vec<(String, String, Value)>) {
    let checks = checks(record)
        .into_iter()
        .map(|c| {
            (
                c.spec.system.clone(),
                c.outcome.status().to_string(),
                c.observation.map(|o| json!(o.held)).unwrap_or(Value::Null),
            )
        })
        .collect();
    (record.verdict.to_string(), checks)
}

/// A GitHub `issues` event shaped like the documented payload.
pub fn github_issue_event(action: &str, fields: &[(&str, &str)], labels: &[&str]) -> Value {
    let mut event: Value = serde_json::from_str(include_str!("../fixtures/github/issues_closed.json")).unwrap();
    let body: String = fields.iter().map(|(k, v)| format!("### {k}\n\n{v}\n\n")).collect();
    event["action"] = json!(action);
    event["issue"]["body"] = json!(body);
    event["issue"]["labels"] = json!(labels.iter().map(|l| json!({ "name": l })).collect::<Vec<_>>());
    if action != "closed" {
        event["issue"]["state"] = json!("open");
        event["issue"]["closed_at"] = Value::Null;
    }
    event
}

/// Closes a grant ticket for a role that does not exist, and decides it.
pub async fn close_ungranted_ticket(app: &TestApp) {
    app.post_github("issues", "d-1", &grant_event("nobody_here", "public.none", "SELECT"))
        .await;
    app.decide_all().await;
}

pub fn grant_event(role: &str, table: &str, privileges: &str) -> Vec<u8> {
    let event = github_issue_event(
        "closed",
        &[
            ("Request type", "grant"),
            ("Database role", role),
            ("Table", table),
            ("Privileges", privileges),
        ],
        &["access-request"],
    );
    serde_json::to_vec(&event).unwrap()
}

pub fn revoke_event(role: &str) -> Vec<u8> {
    let event = github_issue_event(
        "closed",
        &[("Request type", "revoke"), ("Database role", role)],
        &["access-request"],
    );
    serde_json::to_vec(&event).unwrap()
}

/// The fake GitHub API: comments listed empty, posts answered 201, the issue
/// still closed. `posts` and `reopens` are the exact numbers of calls expected.
pub async fn mock_github(app: &TestApp, posts: u64, reopens: u64) {
    mock_github_closed_at(app, posts, reopens, CLOSED_AT).await
}

/// [`mock_github`] for an issue closed at `closed_at`.
pub async fn mock_github_closed_at(app: &TestApp, posts: u64, reopens: u64, closed_at: &str) {
    mock_github_issues(app, "42", posts, reopens, closed_at).await
}

/// [`mock_github`] for the issues whose number matches the regex `issue`;
/// `posts` and `reopens` are the exact totals over all of them.
pub async fn mock_github_issues(app: &TestApp, issue: &str, posts: u64, reopens: u64, closed_at: &str) {
    let issue_path = format!(r"^/repos/acme/access-requests/issues/{issue}$");
    let comments_path = format!(r"^/repos/acme/access-requests/issues/{issue}/comments$");
    Mock::given(method("GET"))
        .and(path_regex(r"^/repos/acme/access-requests/issues/\d+/comments$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&app.helpdesk)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(comments_path))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "id": 1 })))
        .expect(posts)
        .mount(&app.helpdesk)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(issue_path.clone()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "state": "closed", "closed_at": closed_at })))
        .mount(&app.helpdesk)
        .await;
    Mock::given(method("PATCH"))
        .and(path_regex(issue_path))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "state": "open" })))
        .expect(reopens)
        .mount(&app.helpdesk)
        .await;
}

/// Two reconcile passes over `source` (the second from a day back), then the
/// outbox: the close of `ticket` is decided by the first pass only, as one
/// blocked `reconcile` record, which is returned.
pub async fn reconcile_twice(app: &TestApp, source: &str, ticket: &str) -> EvidenceRecord {
    use closegate::decide::reconcile_source;
    let first = reconcile_source(&app.ctx, source, None).await.unwrap();
    let day_ago = chrono::Utc::now() - chrono::Duration::days(1);
    let second = reconcile_source(&app.ctx, source, Some(day_ago)).await.unwrap();
    app.deliver_all().await;
    assert_eq!(first.missed, [ticket], "{first:?}");
    assert!(second.missed.is_empty(), "decided once: {second:?}");
    let mut records = app.store.evidence_for_ticket(source, ticket).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(
        (records[0].trigger.kind.as_str(), records[0].verdict.as_str()),
        ("reconcile", "blocked")
    );
    records.remove(0)
}

/// Query parameter `name` of the first request the fake helpdesk received at `at`.
pub async fn query_param_of(app: &TestApp, at: &str, name: &str) -> String {
    let request = app
        .helpdesk
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.url.path() == at)
        .expect("the path was asked");
    request
        .url
        .query_pairs()
        .find(|(k, _)| k == name)
        .expect("the parameter")
        .1
        .into_owned()
}

/// Bodies of the comments posted to the fake GitHub.
pub async fn posted_comments(app: &TestApp) -> Vec<String> {
    app.helpdesk
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path().ends_with("/comments"))
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["body"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// The real PostgreSQL target: creates the roles, tables and grants a test needs.
pub struct Target {
    conn: PgConnection,
    pub schema: String,
}

impl Target {
    pub async fn new() -> Target {
        let mut conn = PgConnection::connect(&pg_url("postgres"))
            .await
            .expect("connect to target PostgreSQL");
        let schema = unique("cg_schema");
        conn.execute(format!("CREATE SCHEMA {schema}").as_str()).await.unwrap();
        Target { conn, schema }
    }

    pub async fn exec(&mut self, sql: &str) {
        self.conn.execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Creates a login role and returns its name.
    pub async fn login_role(&mut self) -> String {
        let role = unique("cg_role");
        self.exec(&format!("CREATE ROLE {role} LOGIN")).await;
        role
    }

    /// A login role holding `privileges` (none when empty) on a fresh table:
    /// `(role, schema.table)`.
    pub async fn role_with_grant(&mut self, privileges: &str) -> (String, String) {
        let role = self.login_role().await;
        let table = self.table().await;
        if !privileges.is_empty() {
            self.exec(&format!("GRANT {privileges} ON {table} TO {role}")).await;
        }
        (role, table)
    }

    /// Creates a table in the test schema and returns `schema.table`.
    pub async fn table(&mut self) -> String {
        let table = format!("{}.orders", self.schema);
        self.exec(&format!("CREATE TABLE IF NOT EXISTS {table} (id int)")).await;
        table
    }
}

/// The app's store, opened behind its back.
pub struct Db(Backend);

enum Backend {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Db {
    pub async fn open(app: &TestApp) -> Db {
        let config = std::fs::read_to_string(app.dir().join("closegate.yaml")).unwrap();
        let url = config
            .lines()
            .find_map(|l| l.strip_prefix("database_url: "))
            .unwrap()
            .trim_matches('\'')
            .to_string();
        Db(if url.starts_with("sqlite") {
            Backend::Sqlite(sqlx::SqlitePool::connect(&url).await.unwrap())
        } else {
            Backend::Postgres(sqlx::PgPool::connect(&url).await.unwrap())
        })
    }

    pub async fn exec(&self, sql: &str, binds: &[&str]) {
        match &self.0 {
            Backend::Sqlite(pool) => {
                let mut q = sqlx::query(sql);
                for b in binds {
                    q = q.bind(*b);
                }
                q.execute(pool).await.map(drop)
            }
            Backend::Postgres(pool) => {
                let mut q = sqlx::query(sql);
                for b in binds {
                    q = q.bind(*b);
                }
                q.execute(pool).await.map(drop)
            }
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// How many delivered outbox messages each claim took (messages claimed
    /// together share a fencing token), the first claim first.
    pub async fn outbox_claim_sizes(&self) -> Vec<i64> {
        const SQL: &str = "SELECT COUNT(*) FROM outbox WHERE state = 'done' GROUP BY lease_token \
            ORDER BY MIN(created_at)";
        match &self.0 {
            Backend::Sqlite(pool) => sqlx::query_scalar(SQL).fetch_all(pool).await.unwrap(),
            Backend::Postgres(pool) => sqlx::query_scalar(SQL).fetch_all(pool).await.unwrap(),
        }
    }

    /// (seq, record) of every row.
    pub async fn records(&self) -> Vec<(i64, String)> {
        const SQL: &str = "SELECT seq, record FROM evidence ORDER BY seq";
        match &self.0 {
            Backend::Sqlite(pool) => sqlx::query_as(SQL).fetch_all(pool).await.unwrap(),
            Backend::Postgres(pool) => sqlx::query_as(SQL).fetch_all(pool).await.unwrap(),
        }
    }
}
