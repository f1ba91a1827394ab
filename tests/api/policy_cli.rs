//! `closegate policy check` names file, line and problem.

use std::process::Command;

fn check(dir: &std::path::Path) -> (i32, String) {
    policy("check", dir)
}

/// `closegate policy COMMAND DIR`: exit code and standard output.
fn policy(command: &str, dir: &std::path::Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_closegate"))
        .args(["policy", command])
        .arg(dir)
        .env("CLOSEGATE_DEMO_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn the_shipped_policies_pass_the_checker() {
    let (code, out) = check(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("db-table-grant") && out.contains("db-access-revoke"),
        "{out}"
    );
}

#[test]
fn broken_policies_are_reported_with_file_line_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a-unknown-system.yaml"),
        "match:\n  labels: [x]\nchecks:\n  - system: no-such-db\n    kind: role\n    expect: present\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b-bad-expect.yaml"),
        "match: {}\nchecks:\n  - system: app-db\n    kind: role\n    params: { role: \"{{ fields.x }}\" }\n    expect: maybe\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("c-unknown-key.yaml"), "match: {}\nchekcs: []\n").unwrap();
    std::fs::write(dir.path().join("d-not-yaml.yaml"), "match: [\n").unwrap();
    std::fs::write(
        dir.path().join("e-bad-template.yaml"),
        "match: {}\nchecks:\n  - system: app-db\n    kind: role\n    params:\n      role: \"{{ fields.x \"\n    expect: present\n",
    )
    .unwrap();

    let (code, out) = check(dir.path());

    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("a-unknown-system.yaml:4: unknown system \"no-such-db\""),
        "{out}"
    );
    assert!(out.contains("b-bad-expect.yaml:6: expect \"maybe\""), "{out}");
    assert!(out.contains("c-unknown-key.yaml:2:") && out.contains("chekcs"), "{out}");
    assert!(out.contains("d-not-yaml.yaml:"), "{out}");
    assert!(out.contains("e-bad-template.yaml:6: template does not parse"), "{out}");
}

#[test]
fn broken_expiry_and_drift_blocks_are_reported_with_file_line_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let head = "match: {}\nchecks:\n  - system: app-db\n    kind: role\n    params: { role: x }\n    expect: present\n";
    std::fs::write(
        dir.path().join("a-bad-duration.yaml"),
        format!("{head}expires: \"{{{{ fields.until }}}}\"\nmax_duration: forever\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b-bad-drift.yaml"),
        format!("{head}on_drift: shout\ndrift:\n  interval: often\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("c-no-expires.yaml"),
        format!("{head}require_expiry: true\n"),
    )
    .unwrap();

    let (code, out) = check(dir.path());

    assert_eq!(code, 1, "{out}");
    assert!(out.contains("a-bad-duration.yaml:8: max_duration \"forever\""), "{out}");
    assert!(out.contains("b-bad-drift.yaml:7: on_drift \"shout\""), "{out}");
    assert!(out.contains("b-bad-drift.yaml:9: drift.interval \"often\""), "{out}");
    assert!(
        out.contains("c-no-expires.yaml: require_expiry and max_duration need `expires`"),
        "{out}"
    );
}

#[test]
fn broken_approval_and_requester_blocks_are_reported_with_file_line_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let head = "match: {}\nchecks:\n  - system: app-db\n    kind: role\n    params: { role: x }\n    expect: present\n";
    std::fs::write(
        dir.path().join("a-unknown-directory.yaml"),
        format!("{head}approval:\n  approvers:\n    system: corp-ldap\n    group: db-owners\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b-not-a-directory.yaml"),
        format!("{head}approval:\n  approvers: {{ system: app-db, group: g }}\n  separate: [requester, boss]\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("c-no-approvers.yaml"),
        format!("{head}approval:\n  approvers: {{ group: db-owners }}\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("d-owner-without-field.yaml"),
        format!("{head}requester:\n  owner_system: app-db\n"),
    )
    .unwrap();

    let (code, out) = check(dir.path());

    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("a-unknown-directory.yaml:9: approval.approvers.system: unknown system \"corp-ldap\""),
        "{out}"
    );
    assert!(
        out.contains("b-not-a-directory.yaml:8: approval.approvers.system: system \"app-db\" is not a directory"),
        "{out}"
    );
    assert!(
        out.contains("b-not-a-directory.yaml:9: approval.separate: \"boss\" is not one of"),
        "{out}"
    );
    assert!(
        out.contains("c-no-approvers.yaml:8: approval.approvers: give `system` and `group`"),
        "{out}"
    );
    assert!(
        out.contains("d-owner-without-field.yaml:8: requester.owner_system needs requester.owner_field"),
        "{out}"
    );
}

fn policy_test(dir: &std::path::Path) -> (i32, String) {
    policy("test", dir)
}

#[test]
fn the_shipped_policy_tests_pass_without_any_target_system() {
    let (code, out) = policy_test(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"));

    assert_eq!(code, 0, "{out}");
    assert!(out.contains("14 cases, 0 failed"), "{out}");
}

#[test]
fn a_wrong_expectation_fails_with_a_readable_difference() {
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tests")).unwrap();
    for name in ["db-table-grant.yaml", "db-access-revoke.yaml"] {
        std::fs::copy(shipped.join(name), dir.path().join(name)).unwrap();
    }
    std::fs::write(
        dir.path().join("tests/wrong.yaml"),
        "cases:\n  - name: write given is wrongly expected to pass\n    ticket:\n      labels: [access-request]\n      \
         fields: { request_type: grant, database_role: r, table: s.t, privileges: SELECT }\n    observe:\n      \
         role can log in: { held: [LOGIN] }\n      table privileges: { held: [SELECT, INSERT] }\n    \
         expect: { verdict: allowed }\n",
    )
    .unwrap();

    let (code, out) = policy_test(dir.path());

    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL  wrong: write given is wrongly expected to pass"),
        "{out}"
    );
    assert!(out.contains("verdict: expected allowed, got blocked"), "{out}");
    assert!(
        out.contains("got reason: table privileges: r: holds more than requested: INSERT"),
        "{out}"
    );
    assert!(out.contains("1 cases, 1 failed"), "{out}");
}

#[test]
fn the_shipped_policy_schema_is_the_one_the_types_generate() {
    let out = Command::new(env!("CARGO_BIN_EXE_closegate"))
        .args(["policy", "schema"])
        .output()
        .unwrap();
    let generated: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/policy.schema.json");
    let shipped: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(
        generated, shipped,
        "regenerate with: closegate policy schema > policies/policy.schema.json"
    );
    // Unknown keys are refused by editors as by the loader, and the newer
    // blocks are described.
    assert_eq!(generated["additionalProperties"], false);
    assert_eq!(generated["$defs"]["ApprovalDef"]["additionalProperties"], false);
    assert!(generated["properties"]["match"].is_object() && generated["properties"]["requester"].is_object());
}

#[tokio::test]
async fn an_approver_group_missing_from_the_live_directory_is_reported_with_file_and_line() {
    let mut directory = crate::directory::Directory::open().await;
    let member = directory.person("cg_member").await;
    let group = directory.group("cg_approvers", &[&member]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("closegate.yaml");
    let systems = crate::directory::ldap_system("corp-ldap");
    std::fs::write(
        &config,
        serde_yaml::to_string(&serde_json::json!({ "systems": systems })).unwrap(),
    )
    .unwrap();
    let head =
        "match: {}\nchecks:\n  - system: corp-ldap\n    kind: entry\n    params: { user: x }\n    expect: present\n";
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    let write = |name: &str, group: &str| {
        let text = format!("{head}approval:\n  approvers:\n    system: corp-ldap\n    group: {group}\n");
        std::fs::write(policies.join(name), text).unwrap();
    };
    let run = || {
        let out = Command::new(env!("CARGO_BIN_EXE_closegate"))
            .arg("--config")
            .arg(&config)
            .args(["policy", "check"])
            .arg(&policies)
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };

    write("a.yaml", &group);
    let (present, present_out) = run();
    write("b.yaml", "cg_no_such_group");
    let (missing, missing_out) = run();
    directory.clean().await;

    assert_eq!(present, 0, "{present_out}");
    assert_eq!(missing, 1, "{missing_out}");
    assert!(
        missing_out.contains("b.yaml:10: approval.approvers.group: no group \"cg_no_such_group\" in corp-ldap"),
        "{missing_out}"
    );
}
