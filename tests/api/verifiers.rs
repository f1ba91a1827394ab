//! Each kind of target system, against a real server (MariaDB, Redis, OpenLDAP,
//! a SCIM server) or a faked HTTP API: a ticket closes through the generic
//! source and the decision and evidence show what was observed.

use ldap3::Mod;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::{Connection, Executor as _, MySqlConnection};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path},
};

use crate::{
    directory::{ldap_admin, ldap_url},
    helpers::*,
};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn mysql_url() -> String {
    env_or("CLOSEGATE_TEST_MYSQL", "mysql://root@127.0.0.1:3306/mysql")
}
fn redis_url() -> String {
    env_or("CLOSEGATE_TEST_REDIS", "redis://127.0.0.1:6379")
}
fn scim_url() -> String {
    env_or("CLOSEGATE_TEST_SCIM", "http://127.0.0.1:8090/v2")
}

/// An app whose only policy is `policy` and with the extra `systems`.
async fn app_with(systems: Value, policy: &str) -> (TestApp, tempfile::TempDir) {
    let dir = policy_dir(&[("policy", policy)]);
    let app = spawn_app_with(Options {
        policies: Some(dir.path().to_path_buf()),
        systems: Some(systems),
        ..Default::default()
    })
    .await;
    (app, dir)
}

async fn mysql(sql: &str) {
    let mut conn = MySqlConnection::connect(&mysql_url())
        .await
        .expect("MariaDB is reachable");
    conn.execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[tokio::test]
async fn mariadb_grants_are_checked_exactly_and_a_locked_account_is_not_access() {
    let user = unique("cg_u");
    mysql("CREATE DATABASE IF NOT EXISTS cg_app").await;
    mysql("CREATE TABLE IF NOT EXISTS cg_app.orders (id INT)").await;
    mysql(&format!("CREATE USER '{user}'@'%' IDENTIFIED BY 'x'")).await;
    mysql(&format!("GRANT SELECT ON cg_app.orders TO '{user}'@'%'")).await;
    let policy = r#"
match: { labels: [access-request] }
require_fields: [user, table, privileges]
checks:
  - name: table privileges
    system: maria
    kind: table_privileges
    params: { user: "{{ fields.user }}", table: "{{ fields.table }}" }
    requested: "{{ fields.privileges }}"
    expect: exact
  - name: account usable
    system: maria
    kind: account
    params: { user: "{{ fields.user }}" }
    requested: LOGIN
    expect: present
"#;
    let (app, _dir) = app_with(json!({ "maria": { "type": "mysql", "url": mysql_url() } }), policy).await;
    let fields = [
        ("user", user.as_str()),
        ("table", "cg_app.orders"),
        ("privileges", "select"),
    ];

    let exact = app.close_generic("M-1", &fields).await;
    mysql(&format!("GRANT INSERT ON cg_app.orders TO '{user}'@'%'")).await;
    let broader = app.close_generic("M-2", &fields).await;
    mysql(&format!("REVOKE INSERT ON cg_app.orders FROM '{user}'@'%'")).await;
    mysql(&format!("ALTER USER '{user}'@'%' ACCOUNT LOCK")).await;
    let locked = app.close_generic("M-3", &fields).await;
    mysql(&format!("DROP USER '{user}'@'%'")).await;

    assert_eq!(exact.verdict.as_str(), "allowed", "{:?}", summary(&exact));
    let (verdict, checks) = summary(&broader);
    assert_eq!(verdict, "blocked");
    assert_eq!(checks[0].2, json!(["INSERT", "SELECT"]), "{checks:?}");
    let (verdict, checks) = summary(&locked);
    assert_eq!(verdict, "blocked");
    assert_eq!(checks[1].2, json!(["LOCKED"]), "{checks:?}");
}

#[tokio::test]
async fn a_redis_api_key_revocation_is_verified_by_fingerprint_without_holding_the_key() {
    let user = unique("cg_svc");
    let (mut redis, acl) = redis_admin().await;
    let _: () = acl(&["SETUSER", &user, "on", ">old-key", "~app:*", "+@read"])
        .query_async(&mut redis)
        .await
        .unwrap();
    let fingerprint = hex::encode(Sha256::digest(b"old-key"));
    let policy = r#"
match: { labels: [access-request] }
require_fields: [service_account, key_fingerprint]
checks:
  - name: old key revoked
    system: cache
    kind: credential
    params: { user: "{{ fields.service_account }}" }
    requested: "{{ fields.key_fingerprint }}"
    expect: absent
  - name: account still enabled
    system: cache
    kind: user
    params: { user: "{{ fields.service_account }}" }
    requested: "on"
    expect: present
"#;
    let (app, _dir) = app_with(json!({ "cache": { "type": "redis", "url": redis_url() } }), policy).await;
    let fields = [
        ("service_account", user.as_str()),
        ("key_fingerprint", fingerprint.as_str()),
    ];

    let still_valid = app.close_generic("R-1", &fields).await;
    let _: () = acl(&["SETUSER", &user, "resetpass", ">new-key"])
        .query_async(&mut redis)
        .await
        .unwrap();
    let rotated = app.close_generic("R-2", &fields).await;
    let _: () = acl(&["SETUSER", &user, "off"]).query_async(&mut redis).await.unwrap();
    let disabled = app.close_generic("R-3", &fields).await;
    let _: () = acl(&["DELUSER", &user]).query_async(&mut redis).await.unwrap();

    let (verdict, checks) = summary(&still_valid);
    assert_eq!((verdict.as_str(), checks[0].1.as_str()), ("blocked", "mismatch"));
    assert_eq!(rotated.verdict.as_str(), "allowed", "{:?}", summary(&rotated));
    let (verdict, checks) = summary(&disabled);
    assert_eq!(verdict, "blocked");
    assert_eq!(checks[1].2, json!(["off"]), "{checks:?}");
    assert!(
        !still_valid.record.contains("old-key"),
        "the key itself never reaches the evidence"
    );
}

/// A connection to the real Redis and a builder of `ACL` commands.
async fn redis_admin() -> (redis::aio::MultiplexedConnection, impl Fn(&[&str]) -> redis::Cmd) {
    let client = redis::Client::open(redis_url()).unwrap();
    let redis = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis is reachable");
    let acl = |args: &[&str]| {
        let mut cmd = redis::cmd("ACL");
        for a in args {
            cmd.arg(*a);
        }
        cmd
    };
    (redis, acl)
}

#[tokio::test]
async fn ldap_group_membership_and_locks_are_observed_and_injected_filters_are_literal() {
    let uid = unique("cg_user");
    let group = unique("cg_dba");
    let user_dn = format!("uid={uid},ou=people,dc=closegate,dc=test");
    let group_dn = format!("cn={group},ou=groups,dc=closegate,dc=test");
    let mut ldap = ldap_admin().await;
    let set = |v: &[&str]| {
        v.iter()
            .map(|s| s.to_string())
            .collect::<std::collections::HashSet<String>>()
    };
    ldap.add(
        &user_dn,
        vec![
            ("objectClass".to_string(), set(&["inetOrgPerson"])),
            ("uid".to_string(), set(&[&uid])),
            ("cn".to_string(), set(&[&uid])),
            ("sn".to_string(), set(&["Test"])),
        ],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    ldap.add(
        &group_dn,
        vec![
            ("objectClass".to_string(), set(&["groupOfNames"])),
            ("cn".to_string(), set(&[&group])),
            ("member".to_string(), set(&[&user_dn])),
        ],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    let policy = r#"
match: { labels: [access-request] }
require_fields: [user, group]
checks:
  - name: in group
    system: directory
    kind: group_membership
    params: { user: "{{ fields.user }}" }
    requested: "{{ fields.group }}"
    expect: present
  - name: account active
    system: directory
    kind: entry
    params: { user: "{{ fields.user }}" }
    requested: ACTIVE
    expect: exact
"#;
    let systems = json!({ "directory": {
        "type": "ldap", "url": ldap_url(), "bind_dn": "cn=admin,dc=closegate,dc=test", "bind_password": { "value": "admin" },
        "user_base": "ou=people,dc=closegate,dc=test", "group_base": "ou=groups,dc=closegate,dc=test" } });
    let (app, _dir) = app_with(systems, policy).await;

    let member = app.close_generic("L-1", &[("user", &uid), ("group", &group)]).await;
    let injected = app
        .close_generic("L-2", &[("user", "*)(uid=*"), ("group", &group)])
        .await;
    let wildcard = app.close_generic("L-3", &[("user", "*"), ("group", &group)]).await;
    ldap.modify(
        &user_dn,
        vec![Mod::Add("pwdAccountLockedTime".to_string(), set(&["000001010000Z"]))],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    let locked = app.close_generic("L-4", &[("user", &uid), ("group", &group)]).await;
    ldap.delete(&group_dn).await.unwrap();
    ldap.delete(&user_dn).await.unwrap();

    assert_eq!(member.verdict.as_str(), "allowed", "{:?}", summary(&member));
    for literal in [&injected, &wildcard] {
        assert_eq!(literal.verdict.as_str(), "blocked");
        let observation = checks(literal)[0].observation.clone();
        assert!(!observation.as_ref().unwrap().exists, "{observation:?}");
    }
    let (verdict, checks) = summary(&locked);
    assert_eq!(verdict, "blocked");
    assert_eq!(checks[1].2, json!(["LOCKED"]), "{checks:?}");
}

#[tokio::test]
async fn scim_users_groups_entitlements_and_deactivation_are_observed() {
    let http = reqwest::Client::new();
    let user_name = unique("cg.scim");
    let created: Value = http
        .post(format!("{}/Users", scim_url()))
        .json(
            &json!({ "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": user_name, "active": true,
                       "entitlements": [{ "value": "prod-db-read" }] }),
        )
        .send()
        .await
        .expect("the SCIM server is reachable")
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    let group = unique("cg-analysts");
    http.post(format!("{}/Groups", scim_url()))
        .json(&json!({ "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": group, "members": [{ "value": id }] }))
        .send()
        .await
        .unwrap();
    let policy = r#"
match: { labels: [access-request] }
require_fields: [user, group, entitlement]
checks:
  - name: user active
    system: idp
    kind: user
    params: { user: "{{ fields.user }}" }
    requested: active
    expect: exact
  - name: in group
    system: idp
    kind: groups
    params: { user: "{{ fields.user }}" }
    requested: "{{ fields.group }}"
    expect: present
  - name: entitlement
    system: idp
    kind: entitlements
    params: { user: "{{ fields.user }}" }
    requested: "{{ fields.entitlement }}"
    expect: exact
"#;
    let (app, _dir) = app_with(
        json!({ "idp": { "type": "scim", "base_url": scim_url(), "page_size": 2 } }),
        policy,
    )
    .await;
    let fields = [
        ("user", user_name.as_str()),
        ("group", group.as_str()),
        ("entitlement", "prod-db-read"),
    ];

    let provisioned = app.close_generic("S-1", &fields).await;
    http.patch(format!("{}/Users/{id}", scim_url()))
        .json(&json!({ "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                       "Operations": [{ "op": "replace", "path": "active", "value": false }] }))
        .send()
        .await
        .unwrap();
    let deactivated = app.close_generic("S-2", &fields).await;
    let quoted = app
        .close_generic(
            "S-3",
            &[
                ("user", "x\" or userName pr \""),
                ("group", &group),
                ("entitlement", "e"),
            ],
        )
        .await;

    assert_eq!(provisioned.verdict.as_str(), "allowed", "{:?}", summary(&provisioned));
    let (verdict, checks) = summary(&deactivated);
    assert_eq!(verdict, "blocked");
    assert_eq!(checks[0].2, json!(["inactive"]), "{checks:?}");
    assert_eq!(quoted.verdict.as_str(), "blocked");
    assert!(!crate::helpers::checks(&quoted)[0].observation.as_ref().unwrap().exists);
}

#[tokio::test]
async fn an_http_api_is_checked_with_jsonpath_and_ticket_values_stay_inside_the_path() {
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/keys/k-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": "k-1", "scopes": ["read", "write"] })))
        .mount(&api)
        .await;
    let policy = r#"
match: { labels: [access-request] }
require_fields: [key_id, scopes]
checks:
  - name: key scopes
    system: keys
    kind: json
    params: { path: "/keys/{key}", key: "{{ fields.key_id }}", select: "$.scopes[*]" }
    requested: "{{ fields.scopes }}"
    expect: exact
"#;
    let systems =
        json!({ "keys": { "type": "http", "base_url": format!("{}/api/v1", api.uri()), "token": { "value": "t0k" } } });
    let (app, _dir) = app_with(systems, policy).await;

    let broader = app.close_generic("H-1", &[("key_id", "k-1"), ("scopes", "read")]).await;
    let exact = app
        .close_generic("H-2", &[("key_id", "k-1"), ("scopes", "read, write")])
        .await;
    let escaped = app
        .close_generic("H-3", &[("key_id", "../../admin?x=1"), ("scopes", "read")])
        .await;

    assert_eq!(summary(&broader).0, "blocked");
    assert_eq!(summary(&broader).1[0].2, json!(["read", "write"]));
    assert_eq!(exact.verdict.as_str(), "allowed");
    assert_eq!(escaped.verdict.as_str(), "blocked");
    let paths: Vec<String> = api
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.url.path().to_string())
        .collect();
    assert!(paths.iter().all(|p| p.starts_with("/api/v1/keys/")), "{paths:?}");
    assert!(
        paths.contains(&"/api/v1/keys/%2E%2E%2F%2E%2E%2Fadmin%3Fx%3D1".to_string()),
        "{paths:?}"
    );
    let auth = api.received_requests().await.unwrap()[0]
        .headers
        .get("authorization")
        .unwrap()
        .clone();
    assert_eq!(auth, "Bearer t0k");
}

#[tokio::test]
async fn a_revocation_done_in_one_tenant_but_not_another_is_blocked() {
    let (tenant_a, tenant_b) = (MockServer::start().await, MockServer::start().await);
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&tenant_a)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "user": "carol" })))
        .mount(&tenant_b)
        .await;
    let policy = r#"
match: { labels: [access-request] }
require_fields: [user]
checks:
  - name: account removed
    system: production
    kind: json
    params: { path: "/users/{user}", user: "{{ fields.user }}" }
    expect: absent
"#;
    let dir = policy_dir(&[("policy", policy)]);
    let app = spawn_app_with(Options {
        policies: Some(dir.path().to_path_buf()),
        systems: Some(json!({
            "tenant-a": { "type": "http", "base_url": tenant_a.uri(), "absent_statuses": [404] },
            "tenant-b": { "type": "http", "base_url": tenant_b.uri(), "absent_statuses": [404] },
        })),
        system_groups: Some(json!({ "production": ["tenant-a", "tenant-b"] })),
        ..Default::default()
    })
    .await;

    let record = app.close_generic("T-1", &[("user", "carol")]).await;

    let (verdict, checks) = summary(&record);
    assert_eq!(verdict, "blocked");
    let by_system: Vec<(&str, &str)> = checks.iter().map(|c| (c.0.as_str(), c.1.as_str())).collect();
    assert_eq!(by_system, [("tenant-a", "holds"), ("tenant-b", "mismatch")]);
}

#[tokio::test]
async fn every_kind_of_unreachable_target_blocks_as_could_not_verify() {
    let policy = r#"
match: { labels: [access-request] }
checks:
  - { name: mariadb, system: maria, kind: account, params: { user: u }, expect: absent }
  - { name: redis, system: cache, kind: user, params: { user: u }, expect: absent }
  - { name: ldap, system: directory, kind: entry, params: { user: u }, expect: absent }
  - { name: scim, system: idp, kind: user, params: { user: u }, expect: absent }
  - { name: http, system: api, kind: json, params: { path: "/u" }, expect: absent }
"#;
    let systems = json!({
        "maria": { "type": "mysql", "url": "mysql://root@127.0.0.1:1/mysql", "timeout_ms": 2000 },
        "cache": { "type": "redis", "url": "redis://127.0.0.1:1", "timeout_ms": 2000 },
        "directory": { "type": "ldap", "url": "ldap://127.0.0.1:1", "user_base": "dc=x", "group_base": "dc=x", "timeout_ms": 2000 },
        "idp": { "type": "scim", "base_url": "http://127.0.0.1:1/v2", "timeout_ms": 2000 },
        "api": { "type": "http", "base_url": "http://127.0.0.1:1", "timeout_ms": 2000 },
    });
    let (app, _dir) = app_with(systems, policy).await;

    let record = app.close_generic("U-1", &[]).await;

    let (verdict, checks) = summary(&record);
    assert_eq!(verdict, "blocked");
    assert_eq!(checks.len(), 5);
    assert!(checks.iter().all(|c| c.1 == "could_not_verify"), "{checks:?}");
}

#[tokio::test]
async fn verifiers_check_reports_each_system_and_fails_on_an_unreachable_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.yaml");
    let yaml = json!({
        "systems": {
            "app-db": { "type": "postgres", "url": pg_url("postgres") },
            "cache": { "type": "redis", "url": redis_url() },
            "down": { "type": "mysql", "url": "mysql://root@127.0.0.1:1/mysql", "timeout_ms": 1000 },
        }
    });
    std::fs::write(&config, serde_yaml::to_string(&yaml).unwrap()).unwrap();

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_closegate"))
        .args(["--config", config.to_str().unwrap(), "verifiers", "check"])
        .output()
        .unwrap();

    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("ok    app-db: postgresql://127.0.0.1:5432/postgres as"),
        "{text}"
    );
    assert!(
        text.contains("ok    cache: redis://127.0.0.1:6379 as default"),
        "{text}"
    );
    assert!(text.contains("FAIL  down:"), "{text}");
}

#[tokio::test]
async fn a_revocation_checked_through_an_api_that_answers_403_or_an_unconfigured_404_is_could_not_verify() {
    // The API hides what the verifier may not see: 403 here, a 404 there.
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/users/carol"))
        .respond_with(ResponseTemplate::new(403))
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path("/users/dave"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&api)
        .await;
    let policy = r#"
match: { labels: [access-request] }
require_fields: [user]
checks:
  - name: account removed
    system: api
    kind: json
    params: { path: "/users/{user}", user: "{{ fields.user }}" }
    expect: absent
"#;
    let dir = policy_dir(&[("policy", policy)]);
    let app = spawn_app_with(Options {
        policies: Some(dir.path().to_path_buf()),
        systems: Some(json!({ "api": { "type": "http", "base_url": api.uri() } })),
        ..Default::default()
    })
    .await;

    for user in ["carol", "dave"] {
        let record = app.close_generic(&format!("T-{user}"), &[("user", user)]).await;

        let (verdict, checks) = summary(&record);
        assert_eq!(
            (verdict.as_str(), checks[0].1.as_str()),
            ("blocked", "could_not_verify"),
            "{user}"
        );
    }
}

#[test]
fn an_http_system_that_would_read_403_as_absent_stops_the_start() {
    let config: closegate::config::SystemConfig = serde_json::from_value(json!({
        "type": "http", "base_url": "http://127.0.0.1:1", "absent_statuses": [404, 403]
    }))
    .unwrap();
    let systems = std::collections::BTreeMap::from([("api".to_string(), config)]);

    let error = closegate::verifiers::VerifierRegistry::from_config(&systems)
        .err()
        .unwrap();

    assert!(error.contains("403"), "{error}");
}

#[tokio::test]
async fn an_ldap_bind_that_cannot_see_its_canary_never_verifies_a_removal() {
    // A canary user the bind must always see.
    let canary = unique("cg_canary");
    let canary_dn = format!("uid={canary},ou=people,dc=closegate,dc=test");
    let mut ldap = ldap_admin().await;
    let one = |v: &str| std::collections::HashSet::from([v.to_string()]);
    ldap.add(
        &canary_dn,
        vec![
            ("objectClass".to_string(), one("inetOrgPerson")),
            ("uid".to_string(), one(&canary)),
            ("cn".to_string(), one(&canary)),
            ("sn".to_string(), one("Canary")),
        ],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    let policy = r#"
match: { labels: [access-request] }
require_fields: [user]
checks:
  - { name: account removed, systems: [seen, blind], kind: entry, params: { user: "{{ fields.user }}" }, expect: absent }
"#;
    let directory = |canary: &str| {
        json!({ "type": "ldap", "url": ldap_url(), "bind_dn": "cn=admin,dc=closegate,dc=test",
            "bind_password": { "value": "admin" }, "user_base": "ou=people,dc=closegate,dc=test",
            "group_base": "ou=groups,dc=closegate,dc=test", "canary": canary })
    };
    // `blind` stands for a bind whose view lost the people branch: its canary is gone.
    let systems = json!({ "seen": directory(&canary), "blind": directory(&unique("cg_gone")) });
    let (app, _dir) = app_with(systems, policy).await;

    let record = app.close_generic("C-1", &[("user", &unique("cg_departed"))]).await;
    ldap.delete(&canary_dn).await.unwrap();

    let (verdict, checks) = summary(&record);
    assert_eq!(verdict, "blocked");
    let by_system: Vec<(&str, &str)> = checks.iter().map(|c| (c.0.as_str(), c.1.as_str())).collect();
    assert_eq!(by_system, [("seen", "holds"), ("blind", "could_not_verify")]);
}

#[tokio::test]
async fn a_revoked_redis_credential_made_valid_again_is_drift_for_the_sweep() {
    let user = unique("cg_svc");
    let (mut redis, acl) = redis_admin().await;
    let _: () = acl(&["SETUSER", &user, "on", ">new-key", "~app:*", "+@read"])
        .query_async(&mut redis)
        .await
        .unwrap();
    let fingerprint = hex::encode(Sha256::digest(b"old-key"));
    let policy = r#"
match: { labels: [access-request] }
require_fields: [service_account, key_fingerprint]
checks:
  - name: old key revoked
    system: cache
    kind: credential
    params: { user: "{{ fields.service_account }}" }
    requested: "{{ fields.key_fingerprint }}"
    expect: absent
"#;
    let (app, _dir) = app_with(json!({ "cache": { "type": "redis", "url": redis_url() } }), policy).await;
    let revoked = app
        .close_generic("R-9", &[("service_account", &user), ("key_fingerprint", &fingerprint)])
        .await;
    assert_eq!(revoked.verdict.as_str(), "allowed", "{:?}", summary(&revoked));

    // Someone restores the old key.
    let _: () = acl(&["SETUSER", &user, ">old-key"])
        .query_async(&mut redis)
        .await
        .unwrap();
    app.advance(std::time::Duration::from_secs(3601));
    app.sweep_due().await;
    let _: () = acl(&["DELUSER", &user]).query_async(&mut redis).await.unwrap();

    let records = app.store.evidence_for_ticket("generic", "R-9").await.unwrap();
    assert_eq!(records.len(), 2);
    let drift = records[1].content().unwrap();
    assert_eq!(drift.finding, closegate::evidence::Finding::Drift);
    assert!(
        drift.decision.reasons[0].contains("still holds"),
        "{:?}",
        drift.decision.reasons
    );
}

#[tokio::test]
async fn a_scim_token_that_cannot_see_its_canary_never_verifies_a_removal() {
    let http = reqwest::Client::new();
    let canary = unique("cg.canary");
    let created: Value = http
        .post(format!("{}/Users", scim_url()))
        .json(&json!({ "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": canary, "active": true }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let policy = r#"
match: { labels: [access-request] }
require_fields: [user]
checks:
  - { name: account removed, systems: [seen, blind], kind: user, params: { user: "{{ fields.user }}" }, expect: absent }
"#;
    // `blind` stands for a token whose view lost the users: its canary is gone.
    let systems = json!({
        "seen": { "type": "scim", "base_url": scim_url(), "canary": canary },
        "blind": { "type": "scim", "base_url": scim_url(), "canary": unique("cg.gone") },
    });
    let (app, _dir) = app_with(systems, policy).await;

    let record = app.close_generic("S-1", &[("user", &unique("cg.departed"))]).await;
    http.delete(format!("{}/Users/{}", scim_url(), created["id"].as_str().unwrap()))
        .send()
        .await
        .unwrap();

    let (verdict, checks) = summary(&record);
    assert_eq!(verdict, "blocked");
    let by_system: Vec<(&str, &str)> = checks.iter().map(|c| (c.0.as_str(), c.1.as_str())).collect();
    assert_eq!(by_system, [("seen", "holds"), ("blind", "could_not_verify")]);
}

/// Role checks of several closes decided in one batch travel in one query to
/// PostgreSQL; each still sees its own role: usable, expired, unable to log
/// in, missing, or holding more than was asked.
#[tokio::test]
async fn postgres_roles_checked_together_are_each_seen_as_they_are() {
    let mut target = Target::new().await;
    let role = |tag: &str| unique(&format!("cg_r{tag}"));
    let (usable, expired, nologin, missing, superuser) = (role("u"), role("e"), role("n"), role("m"), role("s"));
    target.exec(&format!("CREATE ROLE {usable} LOGIN")).await;
    target
        .exec(&format!("CREATE ROLE {expired} LOGIN VALID UNTIL '2001-01-01'"))
        .await;
    target.exec(&format!("CREATE ROLE {nologin} NOLOGIN")).await;
    target.exec(&format!("CREATE ROLE {superuser} LOGIN SUPERUSER")).await;
    let policy = r#"
match: { labels: [access-request] }
require_fields: [role]
checks:
  - name: role can log in and nothing more
    system: app-db
    kind: role
    params: { role: "{{ fields.role }}" }
    requested: LOGIN
    expect: exact
"#;
    let (app, _dir) = app_with(json!({}), policy).await;
    let cases = [
        (&usable, "allowed", json!(["LOGIN"])),
        (&expired, "blocked", json!([])),
        (&nologin, "blocked", json!([])),
        (&missing, "blocked", json!([])),
        (&superuser, "blocked", json!(["LOGIN", "SUPERUSER"])),
    ];
    for (n, (role, _, _)) in cases.iter().enumerate() {
        let response = app
            .post_generic(
                &format!("msg_roles_{n}"),
                chrono::Utc::now().timestamp(),
                &generic_close(&format!("R-{n}"), &[("role", role.as_str())]),
            )
            .await;
        assert_eq!(response.status().as_u16(), 202);
    }
    let decided = closegate::workers::try_decide_batch(&app.ctx, cases.len())
        .await
        .unwrap();
    assert_eq!(decided, closegate::workers::ExecutionOutcome::TaskCompleted);
    assert_eq!(app.stats().await.deliveries_pending, 0, "one batch decided them all");
    let mut exists = Vec::new();
    for (n, (role, verdict, held)) in cases.iter().enumerate() {
        let records = app
            .store
            .evidence_for_ticket("generic", &format!("R-{n}"))
            .await
            .unwrap();
        let record = records.last().expect("a record");
        let (seen, checks_seen) = summary(record);
        assert_eq!(
            (seen.as_str(), &checks_seen[0].2),
            (*verdict, held),
            "{role}: {checks_seen:?}"
        );
        exists.push(checks(record)[0].observation.as_ref().map(|o| o.exists));
    }
    assert_eq!(exists, [true, true, true, false, true].map(Some));
}
