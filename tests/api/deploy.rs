//! The deployment files name only what this build has: subcommands and flags,
//! config keys and secret files, ports, probe paths, metric names.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_yaml::Value;

use crate::helpers::*;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Value {
    serde_yaml::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Whether the binary accepts these arguments (checked with `--help` appended,
/// so nothing runs).
fn accepts(args: &[String]) {
    let out = Command::new(env!("CARGO_BIN_EXE_closegate"))
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `closegate config check` on `text` after moving the secret directory
/// `secrets` and `/etc/closegate/policies` into a scratch directory holding a
/// file for each of `names`. Returns the secret file names the config reads.
fn config_passes_check(text: &str, secrets: &str, names: &[String]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path().join("secrets");
    std::fs::create_dir(&scratch).unwrap();
    for name in names {
        let value = match name.as_str() {
            n if n.ends_with("url") => "postgres://u@127.0.0.1:5432/db",
            "evidence_signing_key" => "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            _ => "a-secret-value",
        };
        std::fs::write(scratch.join(name), value).unwrap();
    }
    let referenced: Vec<String> = text
        .split(secrets)
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect();
    let text = text
        .replace(secrets, &format!("{}/", scratch.display()))
        .replace("/etc/closegate/policies", &repo("policies").display().to_string())
        .replace("/var/lib/closegate", &dir.path().display().to_string());
    let config = dir.path().join("closegate.yaml");
    std::fs::write(&config, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_closegate"))
        .args(["config", "check"])
        .arg(&config)
        .env_remove("CLOSEGATE_CONFIG")
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{printed}");
    referenced
}

fn port_of(listen: &str) -> u64 {
    listen.rsplit_once(':').unwrap().1.parse().unwrap()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// Probe and scrape paths answer 200 on a running server.
async fn served(paths: &[&str]) {
    let app = spawn_app().await;
    for path in paths {
        let status = app
            .http
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status.as_u16(), 200, "{path}");
    }
}

#[tokio::test]
async fn the_kubernetes_manifests_match_this_build() {
    let deployment = yaml("deploy/kubernetes/deployment.yaml");
    assert_eq!(deployment["spec"]["replicas"].as_u64(), Some(2));
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    accepts(&strings(&container["args"]));
    let port = &container["ports"][0];
    assert_eq!(port["name"].as_str(), Some("http"));
    let mut paths = Vec::new();
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        assert_eq!(container[probe]["httpGet"]["port"].as_str(), Some("http"), "{probe}");
        paths.push(container[probe]["httpGet"]["path"].as_str().unwrap().to_string());
    }
    assert_eq!(&paths[..2], ["/healthz", "/readyz"]);
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    assert!(container["resources"]["limits"]["memory"].as_str().is_some());

    // The config the pods read: every key known, every secret a file of the Secret.
    let configmap = yaml("deploy/kubernetes/configmap.yaml");
    let text = configmap["data"]["closegate.yaml"].as_str().unwrap();
    let settings: Value = serde_yaml::from_str(text).unwrap();
    assert_eq!(
        port_of(settings["listen"].as_str().unwrap()),
        port["containerPort"].as_u64().unwrap()
    );
    let example = yaml("deploy/kubernetes/secret.example.yaml");
    let secret_files: Vec<String> = example["stringData"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    let referenced = config_passes_check(text, "/run/secrets/closegate/", &secret_files);
    assert!(!referenced.is_empty());
    for file in &referenced {
        assert!(secret_files.contains(file), "{file} is in secret.example.yaml");
    }
    let mounts = container["volumeMounts"].as_sequence().unwrap();
    let mounted = |path: &str| mounts.iter().any(|m| m["mountPath"].as_str() == Some(path));
    assert!(mounted("/run/secrets/closegate") && mounted("/etc/closegate/policies"));
    assert!(
        mounted(settings["evidence"]["heads_dir"].as_str().unwrap()),
        "heads dir is writable"
    );

    let service = yaml("deploy/kubernetes/service.yaml");
    assert_eq!(service["spec"]["ports"][0]["targetPort"].as_str(), Some("http"));
    let monitor = yaml("deploy/kubernetes/servicemonitor.yaml");
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"].as_str(), Some("http"));
    paths.push(endpoint["path"].as_str().unwrap().to_string());
    let pdb = yaml("deploy/kubernetes/poddisruptionbudget.yaml");
    assert_eq!(pdb["spec"]["minAvailable"].as_u64(), Some(1));
    let policy = yaml("deploy/kubernetes/networkpolicy.yaml");
    assert!(
        policy["spec"]["policyTypes"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|t| t.as_str() == Some("Egress"))
    );

    let kustomization = yaml("deploy/kubernetes/kustomization.yaml");
    for file in strings(&kustomization["resources"]) {
        assert!(repo("deploy/kubernetes").join(&file).exists(), "{file}");
    }
    let rule = yaml("deploy/kubernetes/prometheusrule.yaml");
    assert_eq!(
        rule["spec"]["groups"],
        yaml("deploy/prometheus/alerts.yaml")["groups"],
        "one set of alerts"
    );

    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    served(&paths).await;
}

#[test]
fn the_systemd_unit_matches_this_build_and_is_hardened() {
    let unit = read("deploy/systemd/closegate.service");
    let directive = |name: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(String::from)
            .collect()
    };
    let exec = directive("ExecStart");
    let args: Vec<String> = exec[0].split_whitespace().skip(1).map(String::from).collect();
    accepts(&args);
    for (name, value) in [
        ("DynamicUser", "yes"),
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("StateDirectory", "closegate"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", ""),
    ] {
        assert_eq!(directive(name), [value], "{name}");
    }
    let credentials: Vec<String> = directive("LoadCredential")
        .iter()
        .map(|c| c.split_once(':').unwrap().0.to_string())
        .collect();
    let config_path = args.iter().skip_while(|a| *a != "--config").nth(1).unwrap();
    assert_eq!(config_path, "/etc/closegate/closegate.yaml");
    let text = read("deploy/systemd/closegate.yaml");
    let settings: Value = serde_yaml::from_str(&text).unwrap();
    let store = settings["database_url"].as_str().unwrap();
    assert!(
        store.starts_with("sqlite:///var/lib/closegate/"),
        "SQLite lives in the state directory: {store}"
    );
    let referenced = config_passes_check(&text, "/run/credentials/closegate.service/", &credentials);
    for name in &referenced {
        assert!(credentials.contains(name), "{name} is loaded with LoadCredential=");
    }
}

#[test]
fn the_dockerfile_runs_this_build_as_a_non_root_user() {
    let dockerfile = read("deploy/Dockerfile");
    let instruction = |name: &str| -> String {
        dockerfile
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name}"))
            .to_string()
    };
    let cmd: Vec<String> = serde_json::from_str(&instruction("CMD")).unwrap();
    accepts(&cmd);
    let entrypoint: Vec<String> = serde_json::from_str(&instruction("ENTRYPOINT")).unwrap();
    assert_eq!(entrypoint, ["/usr/local/bin/closegate"]);
    let user = instruction("USER");
    assert!(!user.starts_with("root") && !user.starts_with("0"), "{user}");
    let shipped: Value = yaml("deploy/closegate.yaml");
    assert_eq!(
        instruction("EXPOSE").parse::<u64>().unwrap(),
        port_of(shipped["listen"].as_str().unwrap())
    );
}

/// The `closegate_…` metric names in a PromQL expression, without histogram suffixes.
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("closegate_"))
        .map(|w| {
            ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| w.strip_suffix(s))
                .unwrap_or(w)
                .to_string()
        })
        .collect()
}

#[test]
fn alerts_and_the_dashboard_use_only_exported_metrics() {
    let known = closegate::metrics::NAMES;
    let alerts = yaml("deploy/prometheus/alerts.yaml");
    let mut count = 0;
    for group in alerts["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let name = rule["alert"].as_str().unwrap();
            for metric in metric_names(rule["expr"].as_str().unwrap()) {
                assert!(known.contains(&metric.as_str()), "{name}: {metric} is not exported");
            }
            assert!(rule["labels"]["severity"].as_str().is_some(), "{name}");
            let runbook = rule["annotations"]["runbook_url"].as_str().unwrap();
            assert!(runbook.ends_with("README.md#runbook"), "{name}: {runbook}");
            count += 1;
        }
    }
    assert!(count >= 8, "{count} alerts");
    assert!(
        read("README.md").lines().any(|l| l == "## Runbook"),
        "the runbook the alerts link to"
    );

    let dashboard: serde_json::Value = serde_json::from_str(&read("deploy/grafana/closegate-dashboard.json")).unwrap();
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 10, "{} queries", exprs.len());
    for expr in exprs {
        for metric in metric_names(&expr) {
            assert!(known.contains(&metric.as_str()), "dashboard: {metric} is not exported");
        }
    }
}

fn collect_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "query", serde_json::Value::String(s)) => out.push(s.clone()),
                    ("query", serde_json::Value::Object(q)) => {
                        if let Some(serde_json::Value::String(s)) = q.get("query") {
                            out.push(s.clone());
                        }
                    }
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}
