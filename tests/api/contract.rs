//! `GET /openapi.json`: the contract names every route the server serves
//! (schemathesis, run by `tests/contract/run.sh`, checks the answers).

use crate::helpers::*;

#[tokio::test]
async fn the_openapi_document_is_3_1_and_covers_every_route() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let doc: serde_json::Value = response.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/hooks/{source}", "post"),
        ("/hooks/{source}/{token}", "post"),
        ("/v1/gate/check", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} is documented"
        );
        // The route exists: anything but the router's own 404 (an error body of ours, or a success).
        let url = format!(
            "{}{}",
            app.address,
            path.replace("{source}", "github").replace("{token}", "t")
        );
        let answer = match method {
            "get" => app.http.get(&url).send().await.unwrap(),
            _ => app.http.post(&url).body("{}").send().await.unwrap(),
        };
        let body = answer.bytes().await.unwrap();
        assert!(!body.is_empty(), "{path} is served");
    }
    let hook_headers: Vec<&str> = doc["paths"]["/hooks/{source}"]["post"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["in"] == "header")
        .filter_map(|p| p["name"].as_str())
        .collect();
    for header in [
        "X-Hub-Signature-256",
        "webhook-signature",
        "X-Gitlab-Token",
        "Linear-Signature",
    ] {
        assert!(hook_headers.contains(&header), "{header} described: {hook_headers:?}");
    }
    let errors = &doc["components"]["schemas"]["ErrorBody"];
    assert_eq!(errors["required"], serde_json::json!(["code", "message"]), "{errors}");
}
