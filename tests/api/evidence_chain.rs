//! The evidence log is a hash chain: every record links to the one before.

use closegate::store::EvidenceRecord;

use crate::helpers::*;

/// An app whose log holds three decisions.
async fn three_blocked_closes() -> TestApp {
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
    app
}

#[tokio::test]
async fn every_evidence_record_links_to_the_previous_one_and_tampering_is_detected() {
    let app = three_blocked_closes().await;

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
    let tampered = records[1].record.replace("blocked", "allowed").replace('\'', "''");
    Db::open(&app)
        .await
        .exec(&format!("UPDATE evidence SET record = '{tampered}' WHERE seq = 2"), &[])
        .await;
    let report = app.store.verify_chain().await.unwrap();
    assert_eq!(report.broken.map(|b| b.0), Some(2));
}

/// Every column the store keeps beside the hashed record, with a forged value.
const FORGERIES: &[(&str, &str)] = &[
    ("id", "'forged-id'"),
    ("seq", "seq + 100"),
    ("trigger_kind", "'manual'"),
    ("trigger_id", "'forged'"),
    ("source", "'other'"),
    ("ticket", "'acme/other#1'"),
    ("verdict", "'allowed'"),
    ("policy", "'lenient'"),
    ("mode", "'dry-run'"),
    ("record", "replace(record, 'blocked', 'allowed')"),
    ("created_at", "created_at + 1"),
    (
        "prev_hash",
        "'1111111111111111111111111111111111111111111111111111111111111111'",
    ),
    (
        "hash",
        "'2222222222222222222222222222222222222222222222222222222222222222'",
    ),
];

#[tokio::test]
async fn editing_any_column_of_any_evidence_record_is_detected_by_verify() {
    let app = three_blocked_closes().await;
    let db = Db::open(&app).await;
    db.exec("DELETE FROM outbox", &[]).await;
    for seq in 1..=3 {
        for (column, forged) in FORGERIES {
            // Arrange: remember the row, then forge one column of it.
            db.exec(
                &format!("CREATE TABLE kept AS SELECT * FROM evidence WHERE seq = {seq}"),
                &[],
            )
            .await;
            db.exec(
                &format!("UPDATE evidence SET {column} = {forged} WHERE seq = {seq}"),
                &[],
            )
            .await;

            let report = app.store.verify_chain().await;

            let detected = match &report {
                Ok(report) => report.broken.is_some(),
                Err(_) => true,
            };
            assert!(detected, "{column} of #{seq} forged and not detected: {report:?}");
            db.exec(
                &format!("DELETE FROM evidence WHERE id = 'forged-id' OR seq IN ({seq}, {seq} + 100)"),
                &[],
            )
            .await;
            db.exec("INSERT INTO evidence SELECT * FROM kept", &[]).await;
            db.exec("DROP TABLE kept", &[]).await;
        }
    }
    assert_eq!(app.store.verify_chain().await.unwrap().broken, None, "restored");
}
