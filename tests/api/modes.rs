//! Policy modes: `warn` comments without reopening, `dry-run` records only.

use std::path::{Path, PathBuf};

use crate::helpers::*;

/// The shipped policies with their mode changed, in a fresh directory.
fn policies_in_mode(dir: &Path, mode: &str) -> PathBuf {
    let out = dir.join(format!("policies-{mode}"));
    std::fs::create_dir_all(&out).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    for entry in std::fs::read_dir(shipped).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("mode: enforce", &format!("mode: {mode}"));
        std::fs::write(out.join(path.file_name().unwrap()), text).unwrap();
    }
    out
}

/// Closes an ungranted ticket under policies in `mode`, with the given number
/// of comments and reopens expected, and returns the app.
async fn blocked_close_in_mode(mode: &str, comments: u64, reopens: u64) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let policies = Some(policies_in_mode(dir.path(), mode));
    let app = spawn_app_with(Options {
        policies,
        ..Default::default()
    })
    .await;
    mock_github(&app, comments, reopens).await;
    close_ungranted_ticket(&app).await;
    app.deliver_all().await;
    let evidence = app.evidence(REPO_ISSUE).await;
    assert_eq!(
        (evidence[0].verdict.as_str(), evidence[0].mode.as_str()),
        ("blocked", mode)
    );
    (app, dir)
}

#[tokio::test]
async fn warn_mode_comments_on_a_failed_check_but_does_not_reopen() {
    let (app, _dir) = blocked_close_in_mode("warn", 1, 0).await;

    let comment = &posted_comments(&app).await[0];
    assert!(comment.contains("warn mode, ticket left closed"), "{comment}");
}

#[tokio::test]
async fn dry_run_mode_records_the_decision_and_says_nothing() {
    let (app, _dir) = blocked_close_in_mode("dry-run", 0, 0).await;

    let stats = app.stats().await;
    assert_eq!(stats.outbox_pending + stats.outbox_done + stats.outbox_dead, 0);
    assert_eq!(stats.evidence, 1);
}
