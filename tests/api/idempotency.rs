//! Redeliveries are answered the same and cause nothing new.

use crate::helpers::*;

#[tokio::test]
async fn the_same_delivery_sent_twice_gives_one_decision_and_one_comment() {
    let app = spawn_app().await;
    let mut target = Target::new().await;
    let (role, table) = target.role_with_grant("SELECT").await;
    mock_github(&app, 1, 0).await;
    let body = grant_event(&role, &table, "SELECT");

    let first = app.post_github("issues", "d-1", &body).await;
    let first_status = first.status().as_u16();
    let first_body: serde_json::Value = first.json().await.unwrap();
    app.decide_all().await;
    app.deliver_all().await;
    let second = app.post_github("issues", "d-1", &body).await;
    assert_eq!(second.headers().get("closegate-duplicate").unwrap(), "true");
    let second_status = second.status().as_u16();
    let second_body: serde_json::Value = second.json().await.unwrap();
    app.decide_all().await;
    app.deliver_all().await;

    assert_eq!((first_status, second_status), (202, 202));
    assert_eq!(first_body, second_body, "a redelivery gets the same answer");
    let stats = app.stats().await;
    assert_eq!((stats.deliveries, stats.evidence, stats.outbox_done), (1, 1, 1));
}

#[tokio::test]
async fn the_same_event_under_a_new_delivery_id_is_a_duplicate() {
    // GitHub's delivery id is not covered by the signature, so a replay may change it.
    let app = spawn_app().await;
    mock_github(&app, 0, 0).await;
    let body = grant_event("r", "public.t", "SELECT");

    let first: serde_json::Value = app.post_github("issues", "d-1", &body).await.json().await.unwrap();
    let replay = app.post_github("issues", "d-replayed", &body).await;
    assert_eq!(replay.headers().get("closegate-duplicate").unwrap(), "true");
    let replay: serde_json::Value = replay.json().await.unwrap();

    assert_eq!(first, replay);
    assert_eq!(app.stats().await.deliveries, 1);
}

#[tokio::test]
async fn concurrent_deliveries_are_all_stored_once() {
    let app = spawn_app().await;
    let mut sends = Vec::new();
    for i in 0..40 {
        let mut event: serde_json::Value = serde_json::from_slice(&grant_event("r", "public.t", "SELECT")).unwrap();
        event["issue"]["number"] = (1000 + i).into();
        let body = serde_json::to_vec(&event).unwrap();
        let delivery = format!("d-{i}");
        let app = &app;
        sends.push(async move {
            // Every delivery twice, at the same time.
            let (a, b) = tokio::join!(
                app.post_github("issues", &delivery, &body),
                app.post_github("issues", &delivery, &body)
            );
            (a.status().as_u16(), b.status().as_u16())
        });
    }
    let statuses = futures_util::future::join_all(sends).await;

    assert!(statuses.iter().all(|s| *s == (202, 202)), "{statuses:?}");
    assert_eq!(app.stats().await.deliveries, 40);
}
