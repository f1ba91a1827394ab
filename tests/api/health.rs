use crate::helpers::*;

#[tokio::test]
async fn healthz_and_readyz_answer_ok_on_a_migrated_store() {
    let app = spawn_app().await;
    let health = app.http.get(format!("{}/healthz", app.address)).send().await.unwrap();
    let ready = app.http.get(format!("{}/readyz", app.address)).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    assert_eq!(ready.status().as_u16(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["systems"]["app-db"], "ok", "{body}");
    assert!(
        !body.to_string().contains("127.0.0.1"),
        "no hosts or identities: {body}"
    );
}

/// SQLite only (PostgreSQL has no file to copy): after a clean stop the WAL
/// has been copied into the database file, so the file alone is the store.
#[tokio::test]
async fn a_clean_stop_leaves_the_whole_sqlite_store_in_its_file() {
    let app = spawn_app().await;
    if app.store.backend() != "sqlite" {
        return;
    }
    close_ungranted_ticket(&app).await;
    let wal = app.dir().join("closegate.db-wal");
    let wal_bytes = || std::fs::metadata(&wal).map_or(0, |m| m.len());
    assert!(wal_bytes() > 0, "the decision is in the WAL while the server runs");

    // Stopped (and started again beside, as an upgrade would): the store
    // this test and the new instance hold open does not stop the copy.
    let app = app.restart().await;
    let started = std::time::Instant::now();
    while wal_bytes() > 0 && started.elapsed() < std::time::Duration::from_secs(10) {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    assert_eq!(wal_bytes(), 0, "the WAL was copied into the database file and emptied");
    assert_eq!(app.stats().await.evidence, 1);
}
