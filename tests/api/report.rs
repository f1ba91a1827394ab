//! `closegate report`: figures computed from a store seeded by real closes
//! match the values counted by hand.

use closegate::report;

use crate::helpers::*;

#[tokio::test]
async fn report_figures_match_the_closes_that_were_decided() {
    let app = spawn_app().await;
    let mut target = Target::new().await;
    let (granted, table) = target.role_with_grant("SELECT").await;
    let (late, late_table) = target.role_with_grant("").await;
    let grant = |role: &str, table: &str| {
        vec![
            ("request_type", "grant"),
            ("database_role", role),
            ("table", table),
            ("privileges", "SELECT"),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect::<Vec<_>>()
    };
    let fields = |f: &[(&'static str, String)]| f.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>();
    let close = |ticket: &'static str, f: Vec<(&'static str, String)>| {
        let app = &app;
        async move {
            let borrowed: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
            app.close_generic(ticket, &borrowed).await
        }
    };
    let since = app.ctx.now_ms();

    // R-1 allowed at once; R-2 blocked, granted two hours later, allowed;
    // R-3 carries the marker label but no policy governs it.
    assert_eq!(
        close("R-1", fields(&grant(&granted, &table))).await.verdict.as_str(),
        "allowed"
    );
    assert_eq!(
        close("R-2", fields(&grant(&late, &late_table))).await.verdict.as_str(),
        "blocked"
    );
    app.advance(std::time::Duration::from_secs(7200));
    target.exec(&format!("GRANT SELECT ON {late_table} TO {late}")).await;
    assert_eq!(
        close("R-2", fields(&grant(&late, &late_table))).await.verdict.as_str(),
        "allowed"
    );
    assert_eq!(
        close("R-3", vec![("request_type", "question".into())])
            .await
            .verdict
            .as_str(),
        "ungated"
    );

    let r = report::from_store(&app.store, since, Some("access-request"))
        .await
        .unwrap();

    assert_eq!(
        (
            r.gated_closes,
            r.tickets,
            r.allowed_first_time,
            r.allowed,
            r.blocked,
            r.reopened
        ),
        (3, 2, 1, 2, 1, 1)
    );
    assert_eq!(r.top_block_reasons, [("table privileges".to_string(), 1)]);
    let db = &r.systems["app-db"];
    assert_eq!((db.checks, db.could_not_verify), (6, 0));
    // R-1 took no time, R-2 two hours: nearest-rank median 0, p90 7200 s.
    assert_eq!(
        (
            r.time_to_verified_close.count,
            r.time_to_verified_close.median_seconds,
            r.time_to_verified_close.p90_seconds
        ),
        (2, Some(0), Some(7200))
    );
    assert_eq!(
        (r.break_glass, r.drift_found, r.drift_resolved, r.ungated_marked_closes),
        (0, 0, 0, 1)
    );
    // Records before `since` count only as the time a ticket appeared.
    let later = report::from_store(&app.store, app.ctx.now_ms() + 1, None)
        .await
        .unwrap();
    assert_eq!(later.gated_closes, 0);
    let csv = r.csv();
    assert!(
        csv.starts_with("figure,value\n") && csv.contains("\"blocked because: table privileges\",\"1\""),
        "{csv}"
    );
}
