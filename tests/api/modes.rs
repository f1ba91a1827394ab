//! Policy modes: `warn` comments without reopening, `dry-run` records only.

use std::path::Path;

use crate::helpers::*;

fn policies_in_mode(dir: &Path, mode: &str) -> std::path::PathBuf {
    let out = dir.join(format!("policies-{mode}"));
    std::fs::create_dir_all(&out).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    for entry in std::fs::read_dir(shipped).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("mode: enforce", &format!("mode: {mode}"));
        std::fs::write(out.join(path.file_name().unwrap()), text).unwrap();
    }
    out
}

#[tokio::test]
async fn warn_mode_comments_on_a_failed_check_but_does_not_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(Options {
        policies: Some(policies_in_mode(dir.path(), "warn")),
        ..Default::default()
    })
    .await;
    mock_github(&app, 1, 0).await;

    app.post_github(
        "issues",
        "d-1",
        &grant_event("nobody_here", "public.none", "SELECT"),
    )
    .await;
    app.decide_all().await;
    app.deliver_all().await;

    let evidence = app.evidence(REPO_ISSUE).await;
    assert_eq!(
        (evidence[0].verdict.as_str(), evidence[0].mode.as_str()),
        ("blocked", "warn")
    );
    let comment = &posted_comments(&app).await[0];
    assert!(
        comment.contains("warn mode, ticket left closed"),
        "{comment}"
    );
}

#[tokio::test]
async fn dry_run_mode_records_the_decision_and_says_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(Options {
        policies: Some(policies_in_mode(dir.path(), "dry-run")),
        ..Default::default()
    })
    .await;
    mock_github(&app, 0, 0).await;

    app.post_github(
        "issues",
        "d-1",
        &grant_event("nobody_here", "public.none", "SELECT"),
    )
    .await;
    app.decide_all().await;
    app.deliver_all().await;

    let evidence = app.evidence(REPO_ISSUE).await;
    assert_eq!(
        (evidence[0].verdict.as_str(), evidence[0].mode.as_str()),
        ("blocked", "dry-run")
    );
    let stats = app.stats().await;
    assert_eq!(
        stats.outbox_pending + stats.outbox_done + stats.outbox_dead,
        0
    );
}
