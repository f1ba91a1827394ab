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
