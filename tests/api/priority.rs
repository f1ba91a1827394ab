//! Acks come first: the workers run on threads of their own at
//! `worker.nice`, the ack path and the store's writer at the process's own
//! priority.

use crate::helpers::*;

/// Every thread of this process: its name and its nice value (`/proc`, Linux).
fn threads() -> Vec<(String, i32)> {
    let mut found = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let (Ok(name), Ok(stat)) = (
            std::fs::read_to_string(task.path().join("comm")),
            std::fs::read_to_string(task.path().join("stat")),
        ) else {
            continue; // the thread ended meanwhile
        };
        // After the name in parentheses: state is field 3, nice field 19.
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        let nice: i32 = after_name.split(' ').nth(16).unwrap().parse().unwrap();
        found.push((name.trim().to_string(), nice));
    }
    found
}

#[cfg(target_os = "linux")]
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
    assert!(named("closegate-worke").contains(&7), "{threads:?}");
    assert!(named("closegate-worke").iter().all(|n| *n > 0), "{threads:?}");
    for ack_path in ["actix-server wo", "closegate-store"] {
        let nices = named(ack_path);
        assert!(!nices.is_empty(), "no {ack_path} thread in {threads:?}");
        assert!(
            nices.iter().all(|n| *n == 0),
            "{ack_path} runs below the process: {threads:?}"
        );
    }
}
