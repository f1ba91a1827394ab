//! Continuous verification: what an allowed close verified is kept as claims,
//! re-verified at expiry (the access must be gone) and by the drift sweep (it
//! must still match). Time is moved by the app's clock, never slept.

use std::time::Duration;

use closegate::{
    domain::{TriggerKind, Verdict},
    evidence::Finding,
    store::{ClaimFilter, ClaimState, EvidenceRecord},
};
use serde_json::{Value, json};
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{method, path_regex},
};

use crate::helpers::*;

const HOUR: Duration = Duration::from_secs(3600);

/// An elevation: membership of a group role, for a limited time.
const ELEVATION: &str = r#"
name: elevation
match:
  labels: [elevation]
require_fields: [database_role, group]
expires: "{{ fields.expires }}"
require_expiry: true
max_duration: 72h
checks:
  - name: group membership
    system: app-db
    kind: membership
    params:
      role: "{{ fields.database_role }}"
    requested: "{{ fields.group }}"
    expect: present
"#;

/// A grant that must stay exactly as asked.
const GRANT: &str = r#"
name: grant
match:
  labels: [access-request]
checks:
  - name: table privileges
    system: app-db
    kind: table_privileges
    params:
      role: "{{ fields.database_role }}"
      table: "{{ fields.table }}"
    requested: "{{ fields.privileges }}"
    expect: exact
"#;

fn now_rfc3339(app: &TestApp) -> String {
    chrono::DateTime::from_timestamp_millis(app.ctx.now_ms())
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A GitHub close of issue 42 at the app's "now", with these fields and label.
fn close_event(closed_at: &str, label: &str, fields: &[(&str, &str)]) -> Vec<u8> {
    let mut event = github_issue_event("closed", fields, &[label]);
    event["issue"]["closed_at"] = Value::from(closed_at);
    event["issue"]["updated_at"] = Value::from(closed_at);
    serde_json::to_vec(&event).unwrap()
}

async fn app_with(policy: &str) -> (TestApp, tempfile::TempDir) {
    let dir = policy_dir(&[("policy", policy)]);
    let app = spawn_app_with(Options {
        policies: Some(dir.path().to_path_buf()),
        ..Default::default()
    })
    .await;
    (app, dir)
}

/// An elevation (membership of a group role) closed on GitHub and allowed,
/// expiring after `expires`; the fake GitHub expects `posts` comments and
/// `reopens` reopens in all. Returns the close time too.
async fn elevation(
    posts: u64,
    reopens: u64,
    expires: &str,
) -> (TestApp, tempfile::TempDir, Target, (String, String), String) {
    let (app, dir) = app_with(ELEVATION).await;
    let mut target = Target::new().await;
    let (role, group) = member_of_group(&mut target).await;
    let closed_at = now_rfc3339(&app);
    mock_github_closed_at(&app, posts, reopens, &closed_at).await;
    let fields = [
        ("Database role", role.as_str()),
        ("Group", group.as_str()),
        ("Expires", expires),
    ];
    app.close_on_github("d-1", &close_event(&closed_at, "elevation", &fields))
        .await;
    (app, dir, target, (role, group), closed_at)
}

/// A SELECT grant closed on GitHub and allowed, so a claim is active; the fake
/// GitHub expects `posts` comments and `reopens` reopens in all.
async fn allowed_grant(posts: u64, reopens: u64) -> (TestApp, tempfile::TempDir, Target, (String, String)) {
    let (app, dir) = app_with(GRANT).await;
    let mut target = Target::new().await;
    let (role, table) = target.role_with_grant("SELECT").await;
    let closed_at = now_rfc3339(&app);
    mock_github_closed_at(&app, posts, reopens, &closed_at).await;
    let fields = [
        ("Database role", role.as_str()),
        ("Table", table.as_str()),
        ("Privileges", "SELECT"),
    ];
    app.close_on_github("d-1", &close_event(&closed_at, "access-request", &fields))
        .await;
    (app, dir, target, (role, table))
}

/// Creates a role that is a member of a fresh group role: (role, group).
async fn member_of_group(target: &mut Target) -> (String, String) {
    let role = target.login_role().await;
    let group = unique("cg_group");
    target.exec(&format!("CREATE ROLE {group} NOLOGIN")).await;
    target.exec(&format!("GRANT {group} TO {role}")).await;
    (role, group)
}

fn last(records: &[EvidenceRecord]) -> (TriggerKind, Verdict, Finding) {
    let r = records.last().expect("a record");
    (r.trigger.kind, r.verdict, r.content().unwrap().finding)
}

#[tokio::test]
async fn an_elevation_still_held_at_its_expiry_is_reported_as_drift_and_the_ticket_reopened() {
    // Arrange
    let (app, _dir, _target, (_role, group), closed_at) = elevation(/* posts */ 2, /* reopens */ 1, "2h").await;
    let claims = app.store.list_claims(&ClaimFilter::default(), "", 10).await.unwrap();
    assert_eq!(claims.len(), 1);
    let closed_ms = chrono::DateTime::parse_from_rfc3339(&closed_at)
        .unwrap()
        .timestamp_millis();
    assert_eq!(claims[0].valid_until, Some(closed_ms + 2 * 3_600_000));

    // Act: nothing is due before the expiry (a sweep in between changes
    // nothing); two hours later the expiry fires.
    app.expire_due().await;
    app.advance(HOUR + Duration::from_secs(1));
    app.sweep_due().await;
    assert_eq!(app.evidence(REPO_ISSUE).await.len(), 1, "not due yet");
    app.advance(HOUR + Duration::from_secs(60));
    app.expire_due().await;
    app.deliver_all().await;

    // Assert
    let records = app.evidence(REPO_ISSUE).await;
    assert_eq!(last(&records), (TriggerKind::Expiry, Verdict::Blocked, Finding::Drift));
    let comments = posted_comments(&app).await;
    assert!(comments[1].contains("drift"), "{}", comments[1]);
    assert!(
        comments[1].contains(&group),
        "names what is still held: {}",
        comments[1]
    );
    let claims = app.store.list_claims(&ClaimFilter::default(), "", 10).await.unwrap();
    assert!(
        claims[0].drift.is_some() && claims[0].next_expiry_at.is_none(),
        "{claims:?}"
    );
}

#[tokio::test]
async fn an_elevation_revoked_before_its_expiry_is_recorded_as_verified_removed_without_a_reopen() {
    let (app, _dir, mut target, (role, group), _closed_at) = elevation(/* posts */ 2, /* reopens */ 0, "2h").await;

    target.exec(&format!("REVOKE {group} FROM {role}")).await;
    app.advance(2 * HOUR + Duration::from_secs(1));
    app.expire_due().await;
    app.deliver_all().await;
    app.expire_due().await;

    let records = app.evidence(REPO_ISSUE).await;
    assert_eq!(records.len(), 2, "one close, one expiry");
    assert_eq!(
        last(&records),
        (TriggerKind::Expiry, Verdict::Allowed, Finding::Removed)
    );
    assert!(posted_comments(&app).await[1].contains("expired access verified removed"));
    let claims = app.store.list_claims(&ClaimFilter::default(), "", 10).await.unwrap();
    assert_eq!(claims[0].state, ClaimState::Ended);
}

#[tokio::test]
async fn a_target_that_cannot_be_reached_at_expiry_is_could_not_verify_and_retried_never_removed() {
    // The verifier logs in as its own role; at expiry that login is disabled.
    let mut target = Target::new().await;
    let verifier = unique("cg_verifier");
    target.exec(&format!("CREATE ROLE {verifier} LOGIN")).await;
    let dir = policy_dir(&[("policy", ELEVATION)]);
    let app = spawn_app_with(Options {
        policies: Some(dir.path().to_path_buf()),
        target_url: Some(pg_url("postgres").replacen("postgres@", &format!("{verifier}@"), 1)),
        target_timeout_ms: Some(2000),
        ..Default::default()
    })
    .await;
    let (role, group) = member_of_group(&mut target).await;
    target.exec(&format!("REVOKE {group} FROM {role}")).await;
    target.exec(&format!("GRANT {group} TO {role}")).await;
    let closed_at = now_rfc3339(&app);
    mock_github_closed_at(&app, 1, 0, &closed_at).await;
    let fields = [
        ("Database role", role.as_str()),
        ("Group", group.as_str()),
        ("Expires", "2h"),
    ];
    app.close_on_github("d-1", &close_event(&closed_at, "elevation", &fields))
        .await;
    assert_eq!(app.evidence(REPO_ISSUE).await[0].verdict, Verdict::Allowed);

    // The access is really gone, but closegate cannot see it.
    target.exec(&format!("REVOKE {group} FROM {role}")).await;
    target.exec(&format!("ALTER ROLE {verifier} NOLOGIN")).await;
    target
        .exec(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{verifier}'"
        ))
        .await;
    app.advance(3 * HOUR);
    app.expire_due().await;

    let records = app.evidence(REPO_ISSUE).await;
    assert_eq!(
        last(&records),
        (TriggerKind::Expiry, Verdict::Blocked, Finding::Unverified)
    );
    let claims = app.store.list_claims(&ClaimFilter::default(), "", 10).await.unwrap();
    assert_eq!(claims[0].state, ClaimState::Active, "never read as removed");
    let retry_at = claims[0].next_expiry_at.expect("retried later");
    assert!(retry_at > app.ctx.now_ms());

    // Once the target answers again, the retry verifies the removal.
    target.exec(&format!("ALTER ROLE {verifier} LOGIN")).await;
    app.advance(2 * HOUR);
    app.expire_due().await;
    let records = app.evidence(REPO_ISSUE).await;
    assert_eq!(
        last(&records),
        (TriggerKind::Expiry, Verdict::Allowed, Finding::Removed)
    );
}

#[tokio::test]
async fn the_expiry_fires_after_a_restart_and_once_across_two_replicas() {
    let (app, _dir, _target, _, _) = elevation(/* posts */ 2, /* reopens */ 1, "1h").await;

    let app = app.restart().await;
    let other = app.replica().await;
    app.advance(2 * HOUR);
    let (a, b) = tokio::join!(
        closegate::workers::try_expire_next(&app.ctx),
        closegate::workers::try_expire_next(&other)
    );
    a.unwrap();
    b.unwrap();
    app.expire_due().await;
    app.deliver_all().await;

    let expiries: Vec<_> = app
        .evidence(REPO_ISSUE)
        .await
        .into_iter()
        .filter(|r| r.trigger.kind == TriggerKind::Expiry)
        .collect();
    assert_eq!(expiries.len(), 1, "exactly one expiry decision");
}

#[tokio::test]
async fn a_grant_widened_after_the_close_is_reported_once_by_the_sweep_and_resolved_when_fixed() {
    let (app, _dir, mut target, (role, table)) = allowed_grant(/* posts */ 3, /* reopens */ 1).await;

    // Widened: INSERT added after the close.
    target.exec(&format!("GRANT INSERT ON {table} TO {role}")).await;
    app.advance(HOUR + Duration::from_secs(1));
    app.sweep_due().await;
    app.advance(HOUR + Duration::from_secs(1));
    app.sweep_due().await;
    app.deliver_all().await;
    let records = app.evidence(REPO_ISSUE).await;
    assert_eq!(records.len(), 2, "the drift is reported once, not at every sweep");
    assert_eq!(last(&records), (TriggerKind::Sweep, Verdict::Blocked, Finding::Drift));
    assert!(posted_comments(&app).await[1].contains("INSERT"));
    let drifted = ClaimFilter {
        drifted: true,
        ..Default::default()
    };
    assert_eq!(app.store.list_claims(&drifted, "", 10).await.unwrap().len(), 1);

    // Fixed.
    target.exec(&format!("REVOKE INSERT ON {table} FROM {role}")).await;
    app.advance(HOUR + Duration::from_secs(1));
    app.sweep_due().await;
    app.deliver_all().await;

    let records = app.evidence(REPO_ISSUE).await;
    assert_eq!(
        last(&records),
        (TriggerKind::Sweep, Verdict::Allowed, Finding::DriftResolved)
    );
    assert!(app.store.list_claims(&drifted, "", 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn unparseable_past_and_too_long_expiries_block_the_close_naming_the_field() {
    let (app, _dir) = app_with(ELEVATION).await;
    let mut target = Target::new().await;
    let (role, group) = member_of_group(&mut target).await;
    let closed_at = now_rfc3339(&app);
    mock_github_closed_at(&app, 4, 4, &closed_at).await;
    for (i, expires) in ["someday", "2020-01-01T00:00:00Z", "5d", ""].iter().enumerate() {
        let mut fields = vec![("Database role", role.as_str()), ("Group", group.as_str())];
        if !expires.is_empty() {
            fields.push(("Expires", expires));
        }
        let mut event: Value = serde_json::from_slice(&close_event(&closed_at, "elevation", &fields)).unwrap();
        event["issue"]["updated_at"] = Value::from(format!("{closed_at}-{i}"));
        app.close_on_github(&format!("d-{i}"), &serde_json::to_vec(&event).unwrap())
            .await;
    }

    let records = app.evidence(REPO_ISSUE).await;
    assert_eq!(records.len(), 4);
    for record in &records {
        assert_eq!(record.verdict, Verdict::Blocked);
        let reasons = record.content().unwrap().decision.reasons;
        assert!(reasons[0].contains("`expires`"), "{reasons:?}");
    }
    assert!(
        app.store
            .list_claims(&ClaimFilter::default(), "", 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Runs the CLI against the app's config.
fn cli(app: &TestApp, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_closegate"))
        .arg("--config")
        .arg(app.dir().join("closegate.yaml"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn drift_scan_reports_a_widened_grant_and_claims_list_shows_the_claim() {
    let (app, _dir, mut target, (role, table)) = allowed_grant(/* posts */ 1, /* reopens */ 0).await;

    let (code, listed) = cli(&app, &["claims", "list", "--ticket", REPO_ISSUE]);
    assert_eq!(code, 0, "{listed}");
    assert!(listed.contains(&role) && listed.contains("active"), "{listed}");
    let (code, clean) = cli(&app, &["drift", "scan"]);
    assert_eq!((code, clean.contains("1 claims checked")), (0, true), "{clean}");

    target.exec(&format!("GRANT INSERT ON {table} TO {role}")).await;
    let (code, scanned) = cli(&app, &["drift", "scan", "--dry-run"]);

    assert_eq!(code, 1, "{scanned}");
    assert!(
        scanned.contains("1 drifted (new)") && scanned.contains("dry run"),
        "{scanned}"
    );
    assert_eq!(app.evidence(REPO_ISSUE).await.len(), 1, "a dry run records nothing");
}

fn with_labels(event: Vec<u8>, labels: &[&str]) -> Vec<u8> {
    let mut event: Value = serde_json::from_slice(&event).unwrap();
    event["issue"]["labels"] = labels.iter().map(|l| serde_json::json!({ "name": l })).collect();
    serde_json::to_vec(&event).unwrap()
}

const BREAK_GLASS: &str = "break_glass:\n  label: break-glass\n  verify_within: 4h\n";

/// A grant ticket closed with the break-glass label while the grant is
/// missing; the fake GitHub expects two comments and `reopens` reopens.
async fn break_glass_close(reopens: u64) -> (TestApp, tempfile::TempDir, Target, (String, String)) {
    let (app, dir) = app_with(&format!("{GRANT}{BREAK_GLASS}")).await;
    let mut target = Target::new().await;
    let (role, table) = target.role_with_grant("").await;
    let closed_at = now_rfc3339(&app);
    mock_github_closed_at(&app, 2, reopens, &closed_at).await;
    let fields = [
        ("Database role", role.as_str()),
        ("Table", table.as_str()),
        ("Privileges", "SELECT"),
    ];
    let event = with_labels(
        close_event(&closed_at, "access-request", &fields),
        &["access-request", "break-glass"],
    );
    app.close_on_github("d-1", &event).await;
    (app, dir, target, (role, table))
}

#[tokio::test]
async fn a_break_glass_close_is_allowed_as_an_exception_and_drift_if_not_compliant_by_its_deadline() {
    let (app, _dir, _target, _grant) = break_glass_close(/* reopens */ 1).await;

    let records = app.evidence(REPO_ISSUE).await;
    let decision = records[0].content().unwrap().decision;
    assert_eq!(records[0].verdict, Verdict::Allowed, "allowed at once");
    let exception = decision.exception.expect("recorded as an exception");
    assert_eq!(exception.closer.id, "dba-alice", "the closer is named");
    assert!(posted_comments(&app).await[0].contains("break-glass close allowed as an exception"));

    // Three hours on: not yet due. Past the deadline, still not granted: drift.
    app.advance(3 * HOUR);
    app.sweep_due().await;
    assert_eq!(app.evidence(REPO_ISSUE).await.len(), 1);
    app.advance(2 * HOUR);
    app.sweep_due().await;
    app.deliver_all().await;

    let records = app.evidence(REPO_ISSUE).await;
    assert_eq!(
        last(&records),
        (TriggerKind::BreakGlassDeadline, Verdict::Blocked, Finding::Drift)
    );
}

#[tokio::test]
async fn a_break_glass_close_made_compliant_by_its_deadline_is_verified_after_the_fact() {
    let (app, _dir, mut target, (role, table)) = break_glass_close(/* reopens */ 0).await;

    target.exec(&format!("GRANT SELECT ON {table} TO {role}")).await;
    app.advance(4 * HOUR + Duration::from_secs(1));
    app.sweep_due().await;
    app.deliver_all().await;

    let records = app.evidence(REPO_ISSUE).await;
    assert_eq!(
        last(&records),
        (
            TriggerKind::BreakGlassDeadline,
            Verdict::Allowed,
            Finding::BreakGlassVerified
        )
    );
    assert!(posted_comments(&app).await[1].contains("verified after the fact"));
}

#[tokio::test]
async fn a_grant_made_just_after_the_close_is_allowed_within_the_settle_window_with_the_attempts_recorded() {
    // A window of many backoffs, within a lease long enough to hold it.
    let dir = policy_dir(&[("policy", &format!("{GRANT}settle: 240s\n"))]);
    let app = spawn_app_with(Options {
        policies: Some(dir.path().to_path_buf()),
        worker: Some(json!({ "lease_seconds": 300 })),
        ..Default::default()
    })
    .await;
    let mut target = Target::new().await;
    let (role, table) = target.role_with_grant("").await;
    let closed_at = now_rfc3339(&app);
    mock_github_closed_at(&app, 1, 0, &closed_at).await;
    let fields = [
        ("Database role", role.as_str()),
        ("Table", table.as_str()),
        ("Privileges", "SELECT"),
    ];
    let grant = format!("GRANT SELECT ON {table} TO {role}");
    // Provisioning lags the close: the grant lands once closegate has found it
    // missing and backs off (its first backoff moves the clock), while it re-checks.
    let clock = app.clock.clone();
    let before = clock.advanced_ms();
    let provisioning = tokio::spawn(async move {
        let backed_off = async {
            while clock.advanced_ms() == before {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(20), backed_off)
            .await
            .expect("closegate found the grant missing and backed off");
        target.exec(&grant).await;
    });

    app.close_on_github("d-1", &close_event(&closed_at, "access-request", &fields))
        .await;
    provisioning.await.unwrap();

    let records = app.evidence(REPO_ISSUE).await;
    assert_eq!(records[0].verdict, Verdict::Allowed);
    let attempts = records[0].content().unwrap().decision.attempts;
    assert!(
        !attempts.is_empty(),
        "the attempts that did not hold are in the evidence"
    );
    assert!(attempts[0].reasons[0].contains("missing SELECT"), "{attempts:?}");
}

#[tokio::test]
async fn two_replicas_sweeping_at_once_report_a_drift_once() {
    let (app, _dir) = app_with(GRANT).await;
    let mut target = Target::new().await;
    let mut closes = Vec::new();
    for _ in 0..3 {
        closes.push(target.role_with_grant("SELECT").await);
    }
    let closed_at = now_rfc3339(&app);
    // Three tickets (issues 1, 2, 3), each a comment at its close and one at its drift.
    let github = |verb: &'static str, at: &'static str, body: Value| {
        Mock::given(method(verb))
            .and(path_regex(at))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
    };
    github("GET", r"^/repos/acme/access-requests/issues/\d+/comments$", json!([]))
        .mount(&app.helpdesk)
        .await;
    github(
        "POST",
        r"^/repos/acme/access-requests/issues/\d+/comments$",
        json!({ "id": 1 }),
    )
    .expect(6)
    .mount(&app.helpdesk)
    .await;
    github(
        "GET",
        r"^/repos/acme/access-requests/issues/\d+$",
        json!({ "state": "closed", "closed_at": closed_at }),
    )
    .mount(&app.helpdesk)
    .await;
    github(
        "PATCH",
        r"^/repos/acme/access-requests/issues/\d+$",
        json!({ "state": "open" }),
    )
    .expect(3)
    .mount(&app.helpdesk)
    .await;
    for (i, (role, table)) in closes.iter().enumerate() {
        let fields = [
            ("Database role", role.as_str()),
            ("Table", table.as_str()),
            ("Privileges", "SELECT"),
        ];
        let mut event: Value = serde_json::from_slice(&close_event(&closed_at, "access-request", &fields)).unwrap();
        event["issue"]["number"] = json!(i + 1);
        app.close_on_github(&format!("d-{i}"), &serde_json::to_vec(&event).unwrap())
            .await;
        target.exec(&format!("GRANT INSERT ON {table} TO {role}")).await;
    }
    let other = app.replica().await;
    app.advance(HOUR + Duration::from_secs(1));

    let (a, b) = tokio::join!(
        closegate::workers::try_sweep_next(&app.ctx),
        closegate::workers::try_sweep_next(&other)
    );
    a.unwrap();
    b.unwrap();
    app.sweep_due().await;
    app.deliver_all().await;

    let mut drifts = 0;
    for n in 1..=3 {
        let records = app.evidence(&format!("acme/access-requests#{n}")).await;
        drifts += records.iter().filter(|r| r.trigger.kind == TriggerKind::Sweep).count();
    }
    assert_eq!(
        drifts, 3,
        "one drift record per widened grant, whichever replica swept it"
    );
}

#[tokio::test]
async fn a_ticket_reopened_by_a_person_suspends_its_claims_until_it_closes_again() {
    let (app, _dir, mut target, (role, table)) = allowed_grant(/* posts */ 1, /* reopens */ 0).await;
    let fields = [
        ("Database role", role.as_str()),
        ("Table", table.as_str()),
        ("Privileges", "SELECT"),
    ];
    let reopened = github_issue_event("reopened", &fields, &["access-request"]);

    app.post_github("issues", "d-reopen", &serde_json::to_vec(&reopened).unwrap())
        .await;
    app.decide_all().await;
    target.exec(&format!("GRANT INSERT ON {table} TO {role}")).await;
    app.advance(2 * HOUR);
    app.sweep_due().await;

    let claims = app.store.list_claims(&ClaimFilter::default(), "", 10).await.unwrap();
    assert_eq!(claims[0].state, ClaimState::Suspended);
    assert_eq!(
        app.evidence(REPO_ISSUE).await.len(),
        1,
        "a suspended claim is not swept"
    );
}
