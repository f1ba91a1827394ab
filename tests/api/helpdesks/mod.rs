//! One module per helpdesk: its own signature scheme, payload shape (fixtures
//! under tests/fixtures, shaped as the vendor documents them), comment format
//! and way of reverting a close, against a faked API.

mod django_helpdesk;
mod gitea;
mod gitlab;
mod jira;
mod linear;
mod servicenow;
mod sync_gate;
mod zendesk;

use serde_json::Value;
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{method, path},
};

use crate::helpers::TestApp;

/// Mounts a fake helpdesk endpoint; `times` is the exact number of calls expected, when given.
pub async fn mock(app: &TestApp, verb: &str, at: &str, status: u16, body: Value, times: Option<u64>) {
    let mut m = Mock::given(method(verb))
        .and(path(at))
        .respond_with(ResponseTemplate::new(status).set_body_json(body));
    if let Some(n) = times {
        m = m.expect(n);
    }
    m.mount(&app.helpdesk).await;
}

/// JSON bodies the fake helpdesk received for `verb path`.
pub async fn received(app: &TestApp, verb: &str, at: &str) -> Vec<Value> {
    app.helpdesk
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.method.as_str() == verb && r.url.path() == at)
        .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
        .collect()
}
