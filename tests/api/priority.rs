//! Acks come first: the workers run on threads of their own at
//! `worker.nice`, the ack path and the store's writer at the process's own
//! priority.

use crate::helpers::*;

/// The nice value in a `/proc/.../stat` line: field 19, the 17th after the
/// name in parentheses.
fn nice_in(stat: &str) -> i32 {
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    after_name.split(' ').nth(16).unwrap().parse().unwrap()
}

/// Every thread of this process: its name and its nice value.
fn threads() -> Vec<(String, i32)> {
    let mut found = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let (Ok(name), Ok(stat)) = (
            std::fs::read_to_string(task.path().join("comm")),
            std::fs::read_to_string(task.path().join("stat")),
        ) else {
            continue; // the thread ended meanwhile
        };
        found.push((name.trim().to_string(), nice_in(&stat)));
    }
    found
}

#[tokio::test]
async fn the_workers_run_at_the_configured_nice_and_the_ack_path_at_the_process_priority() {
    let app = spawn_app_with(Options {
        worker: Some(serde_json::json!({ "enabled": true, "nice": 7 })),
        ..Options::default()
    })
    .await;

    // The workers decide a close and deliver its messages on their own.
    mock_github(&app, 1, 1).await;
    let response = app
        .post_github(
            "issues",
            "d-priority",
            &grant_event("nobody_here", "public.none", "SELECT"),
        )
        .await;
    assert_eq!(response.status().as_u16(), 202);
    let started = std::time::Instant::now();
    while !{
        let stats = app.stats().await;
        stats.evidence == 1 && stats.outbox_done > 0 && stats.outbox_pending == 0
    } {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the workers did not decide and deliver"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // The test runs at the process's priority, whatever it was started with;
    // workers asked to run at 7 run there, or where the process already is.
    let process = nice_in(&std::fs::read_to_string("/proc/thread-self/stat").unwrap());
    let workers = 7.max(process);
    let threads = threads();
    let named = |prefix: &str| -> Vec<i32> {
        threads
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(_, nice)| *nice)
            .collect()
    };
    // Thread names are cut at 15 bytes. Other tests' apps may run workers at
    // the default nice (10); none runs them at 7 but this one.
    assert!(named("closegate-worke").contains(&workers), "{threads:?}");
    // The ack path, the store's writer and the store's connections stay at
    // the process's priority, though the workers used the store meanwhile.
    for ack_path in ["actix-server wo", "closegate-store", "sqlx-sqlite-wor"] {
        if ack_path == "sqlx-sqlite-wor" && app.store.backend() != "sqlite" {
            continue;
        }
        let nices = named(ack_path);
        assert!(!nices.is_empty(), "no {ack_path} thread in {threads:?}");
        assert!(
            nices.iter().all(|n| *n == process),
            "{ack_path} runs below the process: {threads:?}"
        );
    }
}
