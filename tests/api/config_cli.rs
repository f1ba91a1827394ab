//! `closegate init` and `closegate config check`: a starter config for every
//! helpdesk and target passes the check once its variables are set, and the
//! check names what is wrong with the server's own messages.

use std::process::Command;

/// Runs the binary in `dir`: exit code and standard output.
fn closegate(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_closegate"));
    command.current_dir(dir).args(args).env_remove("CLOSEGATE_CONFIG");
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap(), text)
}

const HELPDESKS: &[&str] = &[
    "github",
    "gitea",
    "gitlab",
    "jira",
    "servicenow",
    "zendesk",
    "linear",
    "django-helpdesk",
    "standard-webhooks",
];
const TARGETS: &[&str] = &["postgres", "mysql", "redis", "ldap", "scim"];

/// A value for each variable `init` asked for.
fn values(out: &str) -> Vec<(String, String)> {
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("set    "))
        .expect("init names its variables");
    line.split_whitespace()
        .map(|name| {
            let value = if name.ends_with("_MYSQL_URL") {
                "mysql://u@127.0.0.1:3306/mysql".to_string()
            } else if name == "CLOSEGATE_CACHE_URL" {
                "redis://u@127.0.0.1:6379".to_string()
            } else if name.ends_with("_URL") {
                "postgres://u@127.0.0.1:5432/db".to_string()
            } else if name == "CLOSEGATE_SERVICEDESK_SECRET" {
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string()
            } else if name == "CLOSEGATE_SERVICENOW_SECRET" {
                "c2VjcmV0LXNlY3JldC1zZWNyZXQ=".to_string()
            } else {
                format!("value-of-{name}")
            };
            (name.to_string(), value)
        })
        .collect()
}

#[test]
fn every_starter_config_passes_the_check_once_its_variables_are_set() {
    for helpdesk in HELPDESKS {
        for target in TARGETS {
            let dir = tempfile::tempdir().unwrap();
            let (code, out) = closegate(dir.path(), &["init", "--helpdesk", helpdesk, "--target", target], &[]);
            assert_eq!(code, 0, "{helpdesk}/{target}: {out}");
            let env = values(&out);
            assert!(!env.is_empty());

            // Without the variables: each one is named, and nothing starts.
            let (code, unset) = closegate(dir.path(), &["config", "check", "closegate.yaml"], &[]);
            assert_eq!(code, 1, "{helpdesk}/{target}: {unset}");
            for (name, _) in &env {
                assert!(
                    unset.contains(&format!("environment variable {name} is not set")),
                    "{name}: {unset}"
                );
            }

            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let (code, ok) = closegate(dir.path(), &["config", "check", "closegate.yaml"], &env);
            assert_eq!(code, 0, "{helpdesk}/{target}: {ok}");
            assert!(ok.starts_with("ok  1 sources, 1 systems"), "{ok}");
            let (code, policies) = closegate(dir.path(), &["--config", "closegate.yaml", "policy", "check"], &env);
            assert_eq!(code, 0, "{helpdesk}/{target}: {policies}");
        }
    }
}

#[test]
fn init_does_not_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("closegate.yaml"), "mine").unwrap();
    let (code, out) = closegate(
        dir.path(),
        &["init", "--helpdesk", "github", "--target", "postgres"],
        &[],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("exists; pass --force"), "{out}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("closegate.yaml")).unwrap(),
        "mine"
    );
    let (code, out) = closegate(
        dir.path(),
        &["init", "--helpdesk", "github", "--target", "postgres", "--force"],
        &[],
    );
    assert_eq!(code, 0, "{out}");
}

#[test]
fn config_check_reports_every_problem_with_the_servers_messages() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(
        dir.path().join("policies/p.yaml"),
        "match: {}\nchecks:\n  - system: no-such-db\n    kind: role\n    expect: present\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("closegate.yaml"),
        "policies_dir: policies
sources:
  gh: { type: github, secret: { env: CLOSEGATE_TEST_UNSET_SECRET } }
  sw: { type: standard-webhooks, secret: { value: not-a-whsec-key } }
systems:
  db: { type: postgres, url: { file: /nonexistent/closegate-url } }
gate:
  deadline_ms: 1000
  callers:
    nobody: {}
evidence:
  signing_key: { value: too-short }
",
    )
    .unwrap();
    let (code, out) = closegate(dir.path(), &["config", "check", "closegate.yaml"], &[]);
    assert_eq!(code, 1, "{out}");
    for expected in [
        "sources.gh.secret: environment variable CLOSEGATE_TEST_UNSET_SECRET is not set",
        "sources.sw.secret",
        "systems.db.url: cannot read /nonexistent/closegate-url",
        "p.yaml:3: unknown system \"no-such-db\"",
        "gate.callers.nobody: needs a secret or a token",
        "evidence.signing_key",
    ] {
        assert!(out.contains(expected), "{expected:?} in:\n{out}");
    }
    assert_eq!(out.lines().filter(|l| l.starts_with("error  ")).count(), 6, "{out}");

    // An unknown key is refused by name, as the server refuses it.
    std::fs::write(dir.path().join("typo.yaml"), "worker:\n  enabeld: true\n").unwrap();
    let (code, out) = closegate(dir.path(), &["config", "check", "typo.yaml"], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("enabeld"), "{out}");
    let (code, served) = closegate(dir.path(), &["--config", "typo.yaml", "serve"], &[]);
    assert_eq!(code, 2);
    assert!(served.contains("enabeld"), "{served}");

    // A priority the kernel does not have.
    std::fs::write(dir.path().join("nice.yaml"), "worker:\n  nice: 20\n").unwrap();
    let (code, out) = closegate(dir.path(), &["config", "check", "nice.yaml"], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("worker.nice: must be from 0"), "{out}");
}

#[test]
fn a_settle_window_that_outlasts_the_lease_is_refused_by_the_check_and_the_server() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(
        dir.path().join("policies/slow.yaml"),
        "name: slow-provisioning\nmatch: { labels: [access-request] }\nsettle: 300s\nchecks:\n  - system: db\n    kind: role\n    params: { role: app_reader }\n    expect: present\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("closegate.yaml"),
        "policies_dir: policies
systems:
  db: { type: postgres, url: { value: 'postgres://nobody@127.0.0.1:1/none' } }
worker:
  lease_seconds: 120
",
    )
    .unwrap();
    let refusal = "policy slow-provisioning: settle (300s) must be shorter than worker.lease_seconds (120s)";

    let (code, checked) = closegate(dir.path(), &["config", "check", "closegate.yaml"], &[]);
    let (served_code, served) = closegate(dir.path(), &["--config", "closegate.yaml", "serve"], &[]);
    let (policy_code, policies) = closegate(dir.path(), &["--config", "closegate.yaml", "policy", "check"], &[]);

    assert_eq!(code, 1, "{checked}");
    assert!(checked.contains(refusal), "{checked}");
    assert_ne!(served_code, 0, "{served}");
    assert!(served.contains(refusal), "{served}");
    assert_eq!(policy_code, 1, "{policies}");
    assert!(policies.contains(refusal), "{policies}");
}
