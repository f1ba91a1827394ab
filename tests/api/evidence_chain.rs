//! The evidence log is a hash chain: every record links to the one before.

use closegate::store::EvidenceRecord;

use crate::helpers::*;

#[tokio::test]
async fn every_evidence_record_links_to_the_previous_one_and_tampering_is_detected() {
    let app = spawn_app().await;
    mock_github(&app, 0, 0).await;
    for i in 0..3 {
        let mut event: serde_json::Value =
            serde_json::from_slice(&grant_event("nobody", "public.none", "SELECT")).unwrap();
        event["issue"]["updated_at"] = format!("2026-11-22T12:00:0{i}Z").into();
        app.post_github("issues", &format!("d-{i}"), &serde_json::to_vec(&event).unwrap())
            .await;
    }
    app.decide_all().await;

    let records: Vec<EvidenceRecord> = app.store.evidence_page(0, 100).await.unwrap();
    assert_eq!(records.len(), 3);
    assert_eq!(records[0].prev_hash, "0".repeat(64));
    for pair in records.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
        assert_eq!(pair[1].seq, pair[0].seq + 1);
    }
    let report = app.store.verify_chain().await.unwrap();
    assert_eq!((report.records, report.broken.clone()), (3, None));
    assert_eq!(report.head_hash, records[2].hash);

    // Rewrite history behind the store's back.
    let url = std::fs::read_to_string(app.dir().join("closegate.yaml")).unwrap();
    let url = url
        .lines()
        .find_map(|l| l.strip_prefix("database_url: "))
        .unwrap()
        .trim_matches('\'')
        .to_string();
    let tampered = records[1].record.replace("blocked", "allowed");
    let sql = "UPDATE evidence SET record = $1 WHERE seq = 2";
    if url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query(sql).bind(&tampered).execute(&pool).await.unwrap();
    } else {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::query(sql).bind(&tampered).execute(&pool).await.unwrap();
    }
    let report = app.store.verify_chain().await.unwrap();
    assert_eq!(report.broken.map(|b| b.0), Some(2));
}
