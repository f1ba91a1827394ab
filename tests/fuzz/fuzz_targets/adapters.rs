//! Every adapter's parser on arbitrary bodies that pass its authentication
//! (signed here with the configured secret, or sent with the path token): a
//! body can be refused, never panic.
#![no_main]

use std::{collections::BTreeMap, sync::LazyLock};

use base64::Engine as _;
use closegate::{
    adapters::{Inbound, SourceRegistry},
    config::SourceConfig,
    signature::StandardWebhooksKey,
};
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use sha2::Sha256;

const SECRET: &str = "fuzz-secret";
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const TOKEN: &str = "fuzz-path-token";
const NOW: i64 = 1_700_000_000;

static SOURCES: LazyLock<SourceRegistry> = LazyLock::new(|| {
    let secret = json!({ "value": SECRET });
    let token = json!({ "value": TOKEN });
    let api = "http://127.0.0.1:9";
    let config: BTreeMap<String, SourceConfig> = serde_json::from_value(json!({
        "github": { "type": "github", "secret": secret, "api_url": api },
        "gitea": { "type": "gitea", "secret": secret, "api_url": api },
        "gitlab": { "type": "gitlab", "secret_token": secret, "api_url": api },
        "zendesk": { "type": "zendesk", "secret": secret, "api_url": api },
        "linear": { "type": "linear", "secret": secret },
        "jira": { "type": "jira", "flavor": "cloud", "secret": secret, "api_url": api },
        "jira-token": { "type": "jira", "flavor": "data-center", "path_token": token, "api_url": api },
        "servicenow": { "type": "servicenow", "secret": secret, "api_url": api },
        "servicenow-token": { "type": "servicenow", "path_token": token, "api_url": api },
        "django": { "type": "django-helpdesk", "path_token": token, "api_url": api, "user": "u",
                    "password": { "value": "p" } },
        "generic": { "type": "standard-webhooks", "secret": { "value": WHSEC } },
    }))
    .expect("the fuzz configuration parses");
    SourceRegistry::from_config(&config).expect("the fuzz sources build")
});

fn tag(parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

fuzz_target!(|body: &[u8]| {
    let hex_tag = hex::encode(tag(&[body]));
    let b64 = |t: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(t);
    let ts = NOW.to_string();
    let standard = StandardWebhooksKey::parse(WHSEC).unwrap().sign("msg", NOW, body);
    let cases: Vec<(&str, Vec<(&str, String)>, Option<&str>)> = vec![
        (
            "github",
            vec![
                ("x-hub-signature-256", format!("sha256={hex_tag}")),
                ("x-github-event", "issues".into()),
                ("x-github-delivery", "d".into()),
            ],
            None,
        ),
        (
            "gitea",
            vec![
                ("x-gitea-signature", hex_tag.clone()),
                ("x-gitea-event", "issues".into()),
                ("x-gitea-delivery", "d".into()),
            ],
            None,
        ),
        (
            "gitlab",
            vec![
                ("x-gitlab-token", SECRET.into()),
                ("x-gitlab-event", "Issue Hook".into()),
            ],
            None,
        ),
        (
            "zendesk",
            vec![
                ("x-zendesk-webhook-signature", b64(tag(&[ts.as_bytes(), body]))),
                ("x-zendesk-webhook-signature-timestamp", ts.clone()),
            ],
            None,
        ),
        (
            "linear",
            vec![("linear-signature", hex_tag.clone()), ("linear-delivery", "d".into())],
            None,
        ),
        ("jira", vec![("x-hub-signature", format!("sha256={hex_tag}"))], None),
        ("jira-token", vec![], Some(TOKEN)),
        ("servicenow", vec![("x-closegate-signature", b64(tag(&[body])))], None),
        ("servicenow-token", vec![], Some(TOKEN)),
        ("django", vec![], Some(TOKEN)),
        (
            "generic",
            vec![
                ("webhook-id", "msg".into()),
                ("webhook-timestamp", ts.clone()),
                ("webhook-signature", standard),
            ],
            None,
        ),
    ];
    for (source, headers, path_token) in cases {
        let headers: BTreeMap<String, String> = headers.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let inbound = Inbound {
            source,
            headers: &headers,
            body,
            now: NOW,
            path_token,
        };
        let _ = SOURCES.get(source).unwrap().accept(&inbound);
    }
});
