//! Helpdesk adapters: one file per helpdesk, each both ways — authenticate and
//! parse its webhooks, and carry decisions back through its API. All of them
//! are built here from the `sources` config.

mod django_helpdesk;
mod effect;
mod forge;
mod forge_approvals;
mod generic;
mod gitea;
mod github;
mod gitlab;
mod http;
pub mod issue_form;
mod jira;
mod linear;
mod servicenow;
mod zendesk;

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;

pub use effect::{Effect, EffectError};
pub(crate) use forge::same_instant;
pub(crate) use http::send;

use crate::{
    config::SourceConfig,
    domain::{Approval, ApprovalMarks, Observation, TicketEvent},
    signature::SignatureError,
};

/// Read access to request headers, whatever the HTTP framework.
pub trait HeaderLookup {
    /// The header's value, if present and valid text. Names are case-insensitive.
    fn header(&self, name: &str) -> Option<&str>;

    /// The token of an `Authorization: Bearer` header, the scheme in any case.
    fn bearer(&self) -> Option<&str> {
        let (scheme, token) = self.header("authorization")?.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }
}

impl HeaderLookup for actix_web::http::header::HeaderMap {
    fn header(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| v.to_str().ok())
    }
}

impl HeaderLookup for std::collections::BTreeMap<String, String> {
    fn header(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A raw webhook request.
pub struct Inbound<'a> {
    pub source: &'a str,
    pub headers: &'a dyn HeaderLookup,
    pub body: &'a [u8],
    /// Unix seconds, for timestamp tolerance.
    pub now: i64,
    /// The secret path segment of `/hooks/{source}/{token}`, for helpdesks that sign nothing.
    pub path_token: Option<&'a str>,
}

/// Why a webhook was refused.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    #[error("authentication failed: {0}")]
    Unauthenticated(#[from] SignatureError),
    #[error("malformed payload: {0}")]
    Malformed(String),
}

/// An authenticated and parsed webhook.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The helpdesk's delivery identity (same across its retries).
    pub delivery_id: String,
    pub event: TicketEvent,
}

/// A close the helpdesk lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedClose {
    pub key: String,
    pub closed_at: chrono::DateTime<chrono::Utc>,
}

/// Reads a ticket afresh through the adapter's own re-read, as a close
/// event whose closer is not known.
pub(crate) async fn reread_close(
    adapter: &dyn Adapter,
    ticket: &crate::domain::TicketRef,
) -> Result<TicketEvent, EffectError> {
    let mut event = adapter.refresh(TicketEvent::probe(ticket.clone(), "reconcile")).await?;
    event.synchronous = false;
    event.caused_by_gate = false;
    Ok(event)
}

/// One kind of helpdesk.
#[async_trait]
pub trait Adapter: Send + Sync {
    /// `github`, `standard-webhooks`, ...
    fn kind(&self) -> &'static str;

    /// Authenticates the raw bytes, then parses them. Must not panic on any input.
    fn accept(&self, inbound: &Inbound<'_>) -> Result<Accepted, InboundError>;

    /// Whether decisions can be carried back to this helpdesk.
    fn delivers_effects(&self) -> bool;

    /// Whether the delivery id is covered by the signature. When it is not
    /// (GitHub, for one), a replay could change it, so the same body under a
    /// new id is a duplicate too; when it is, only the id identifies a delivery.
    fn signs_delivery_id(&self) -> bool {
        false
    }

    /// Whether the body is authenticated (signed). When it is not (a path
    /// token only), nothing in it is used before the ticket is re-read, and a
    /// delivery id is a duplicate only together with the same body.
    fn trusts_body(&self) -> bool {
        true
    }

    /// Whether it takes intake notes (a comment on a newly governed request).
    /// A callback source that expects only decisions does not.
    fn takes_intake_notes(&self) -> bool {
        true
    }

    /// The markup its comments take.
    fn comment_format(&self) -> crate::render::CommentFormat {
        crate::render::CommentFormat::Markdown
    }

    /// Re-reads the ticket from the helpdesk API with closegate's own
    /// credentials, for helpdesks whose webhooks cannot be trusted on their
    /// own. Others return the event unchanged.
    async fn refresh(&self, event: TicketEvent) -> Result<TicketEvent, EffectError> {
        Ok(event)
    }

    /// The ticket's approvals as the helpdesk records them, read through its
    /// API with closegate's own credentials (never from a webhook body).
    async fn approvals(&self, event: &TicketEvent, marks: &ApprovalMarks) -> Result<Vec<Approval>, EffectError> {
        let _ = (event, marks);
        Err(EffectError::permanent(format!(
            "{} sources cannot report approvals",
            self.kind()
        )))
    }

    /// Whether `login` is an active member of `team` (a GitHub team, a GitLab
    /// group), observed through the helpdesk's API.
    async fn team_membership(&self, team: &str, login: &str) -> Result<Observation, EffectError> {
        let _ = (team, login);
        Err(EffectError::permanent(format!(
            "{} sources have no teams to check approvers against",
            self.kind()
        )))
    }

    /// Whether its API can list closed tickets (for the reconciler).
    fn lists_closes(&self) -> bool {
        false
    }

    /// The tickets closed since `since`, listed through the helpdesk's API
    /// with closegate's own credentials. `scopes` names the repositories or
    /// projects to list, for helpdesks that list per repository.
    async fn closed_since(
        &self,
        since: chrono::DateTime<chrono::Utc>,
        scopes: &[String],
    ) -> Result<Vec<ListedClose>, EffectError> {
        let _ = (since, scopes);
        Err(EffectError::permanent(format!(
            "{} sources cannot list closed tickets",
            self.kind()
        )))
    }

    /// Asks the helpdesk to send again the deliveries it failed to make since
    /// `since` (GitHub's hook deliveries); returns their ids. `known` says
    /// whether a delivery id was received after all.
    async fn redeliver_failed(
        &self,
        since: chrono::DateTime<chrono::Utc>,
        known: &(dyn Fn(String) -> futures_util::future::BoxFuture<'static, bool> + Send + Sync),
    ) -> Result<Vec<String>, EffectError> {
        let _ = (since, known);
        Ok(Vec::new())
    }

    /// The ticket as it is now, read through the API, as a close event: for a
    /// close whose webhook never arrived. The closer is the helpdesk's where
    /// its API names one.
    async fn read_close(&self, ticket: &crate::domain::TicketRef) -> Result<TicketEvent, EffectError> {
        let _ = ticket;
        Err(EffectError::permanent(format!(
            "{} sources cannot read tickets",
            self.kind()
        )))
    }

    /// Carries one decision back (comment, reopen, callback). Safe to repeat:
    /// a retried effect must not post twice or reopen a ticket that moved on.
    async fn apply(&self, effect: &Effect) -> Result<(), EffectError>;
}

/// Every configured source, by name.
#[derive(Clone, Default)]
pub struct SourceRegistry {
    adapters: HashMap<String, Arc<dyn Adapter>>,
}

impl SourceRegistry {
    /// Builds every adapter; a bad secret or URL stops the start, naming the key.
    pub fn from_config(sources: &std::collections::BTreeMap<String, SourceConfig>) -> Result<Self, String> {
        let mut adapters: HashMap<String, Arc<dyn Adapter>> = HashMap::new();
        for (name, config) in sources {
            let adapter: Arc<dyn Adapter> = match config {
                SourceConfig::Github(cfg) => Arc::new(github::GithubAdapter::build(name, cfg)?),
                SourceConfig::StandardWebhooks(cfg) => Arc::new(generic::GenericAdapter::build(name, cfg)?),
                SourceConfig::Gitea(cfg) => Arc::new(gitea::GiteaAdapter::build(name, cfg)?),
                SourceConfig::Gitlab(cfg) => Arc::new(gitlab::GitlabAdapter::build(name, cfg)?),
                SourceConfig::Zendesk(cfg) => Arc::new(zendesk::ZendeskAdapter::build(name, cfg)?),
                SourceConfig::Linear(cfg) => Arc::new(linear::LinearAdapter::build(name, cfg)?),
                SourceConfig::Jira(cfg) => Arc::new(jira::JiraAdapter::build(name, cfg)?),
                SourceConfig::Servicenow(cfg) => Arc::new(servicenow::ServicenowAdapter::build(name, cfg)?),
                SourceConfig::DjangoHelpdesk(cfg) => {
                    Arc::new(django_helpdesk::DjangoHelpdeskAdapter::build(name, cfg)?)
                }
            };
            adapters.insert(name.clone(), adapter);
        }
        Ok(Self { adapters })
    }

    pub fn get(&self, source: &str) -> Option<&Arc<dyn Adapter>> {
        self.adapters.get(source)
    }

    /// Every configured source name, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.adapters.keys().cloned().collect();
        names.sort();
        names
    }
}

/// How a source that may lack a signing secret is authenticated: by its
/// signature when it has a secret, else by the `/hooks/{source}/{token}` path.
pub(crate) enum SourceAuth {
    Signed(crate::config::Secrets),
    PathToken(crate::config::Secret),
}

impl SourceAuth {
    pub fn from_config(
        source: &str,
        secret: Option<&crate::config::SecretRefs>,
        path_token: Option<&crate::config::SecretRef>,
    ) -> Result<Self, String> {
        match (secret, path_token) {
            (Some(s), _) => Ok(SourceAuth::Signed(s.resolve(&format!("sources.{source}.secret"))?)),
            (None, Some(t)) => Ok(SourceAuth::PathToken(
                t.resolve(&format!("sources.{source}.path_token"))?,
            )),
            (None, None) => Err(format!("sources.{source}: set secret (preferred) or path_token")),
        }
    }

    /// Checks the request: `verify` with the secret, or the path token.
    pub fn check(
        &self,
        inbound: &Inbound<'_>,
        verify: impl Fn(&[u8]) -> Result<(), SignatureError>,
    ) -> Result<(), SignatureError> {
        match self {
            SourceAuth::Signed(secrets) => crate::signature::verify_any(secrets, verify),
            SourceAuth::PathToken(token) => check_path_token(token, inbound.path_token),
        }
    }

    pub fn is_signed(&self) -> bool {
        matches!(self, SourceAuth::Signed(_))
    }
}

/// Compares the path token presented with the configured one, in constant time.
pub(crate) fn check_path_token(
    expected: &crate::config::Secret,
    presented: Option<&str>,
) -> Result<(), SignatureError> {
    let presented = presented.ok_or(SignatureError::MissingHeader("path token"))?;
    if crate::signature::secret_matches(expected.expose(), presented) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Parses a body that must be a JSON object.
pub(crate) fn json_object(body: &[u8]) -> Result<serde_json::Value, InboundError> {
    let payload: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| InboundError::Malformed(e.to_string()))?;
    if payload.is_object() {
        Ok(payload)
    } else {
        Err(InboundError::Malformed("the payload is not a JSON object".into()))
    }
}

/// The content key a delivery is deduplicated on besides its id: the body's
/// hash, bound to the id when the id itself is trustworthy.
pub fn content_key(delivery_id: &str, body: &[u8], id_is_signed: bool) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    if id_is_signed {
        h.update(delivery_id.as_bytes());
        h.update(b"\n");
    }
    h.update(body);
    hex::encode(h.finalize())
}

/// Reads a string at a JSON pointer.
pub(crate) fn json_str<'a>(value: &'a serde_json::Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(serde_json::Value::as_str)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::{
        config::{GenericSource, GithubSource, SecretRef},
        signature::{StandardWebhooksKey, hmac_tag},
    };

    const GENERIC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn registry() -> SourceRegistry {
        let mut sources = BTreeMap::new();
        sources.insert(
            "gh".to_string(),
            SourceConfig::Github(GithubSource {
                secret: crate::config::SecretRefs::One(SecretRef::Value { value: "s".into() }),
                token: None,
                api_url: "http://127.0.0.1:9".into(),
                bot_login: None,
                hooks: Vec::new(),
            }),
        );
        sources.insert(
            "sw".to_string(),
            SourceConfig::StandardWebhooks(GenericSource {
                secret: SecretRef::Value {
                    value: GENERIC_SECRET.into(),
                },
                callback_url: None,
                callback_secret: None,
                closed_states: vec!["closed".into()],
                bot_actor: None,
            }),
        );
        SourceRegistry::from_config(&sources).unwrap()
    }

    fn accept(source: &str, headers: BTreeMap<String, String>, body: &[u8]) -> Result<Accepted, InboundError> {
        let registry = registry();
        let inbound = Inbound {
            source,
            headers: &headers,
            body,
            now: 1_700_000_000,
            path_token: None,
        };
        registry.get(source).unwrap().accept(&inbound)
    }

    fn github_headers(body: &[u8]) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                "x-hub-signature-256".into(),
                format!("sha256={}", hex::encode(hmac_tag(b"s", &[body]))),
            ),
            ("x-github-delivery".into(), "d".into()),
            ("x-github-event".into(), "issues".into()),
        ])
    }

    fn generic_headers(body: &[u8]) -> BTreeMap<String, String> {
        let sig = StandardWebhooksKey::parse(GENERIC_SECRET)
            .unwrap()
            .sign("m", 1_700_000_000, body);
        BTreeMap::from([
            ("webhook-id".into(), "m".into()),
            ("webhook-timestamp".into(), "1700000000".into()),
            ("webhook-signature".into(), sig),
        ])
    }

    /// JSON-ish bytes: valid JSON of every shape, plus arbitrary noise.
    fn bodies() -> impl Strategy<Value = Vec<u8>> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            ".{0,20}".prop_map(serde_json::Value::from),
        ];
        let json = leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("action".to_string()),
                        Just("issue".to_string()),
                        Just("number".to_string()),
                        Just("repository".to_string()),
                        Just("full_name".to_string()),
                        Just("data".to_string()),
                        Just("ticket".to_string()),
                        Just("state".to_string()),
                        Just("actor".to_string()),
                        Just("labels".to_string()),
                        Just("body".to_string()),
                        Just("changelog".to_string()),
                        Just("items".to_string()),
                        Just("field".to_string()),
                        Just("toString".to_string()),
                        Just("detail".to_string()),
                        Just("event".to_string()),
                        Just("current".to_string()),
                        Just("object_attributes".to_string()),
                        Just("object_kind".to_string()),
                        Just("iid".to_string()),
                        Just("project".to_string()),
                        Just("followup_id".to_string()),
                        Just("followup_set".to_string()),
                        Just("delivery_id".to_string()),
                        Just("type".to_string()),
                        Just("id".to_string()),
                        Just("fields".to_string()),
                        "[a-z]{1,6}"
                    ],
                    inner,
                    0..5
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        });
        prop_oneof![
            json.prop_map(|v| serde_json::to_vec(&v).unwrap()),
            prop::collection::vec(any::<u8>(), 0..200),
        ]
    }

    const ALL: &str = r#"
gitea: { type: gitea, secret: { value: s }, api_url: "http://127.0.0.1:9" }
gitlab: { type: gitlab, secret_token: { value: s }, api_url: "http://127.0.0.1:9" }
zendesk: { type: zendesk, secret: { value: s }, api_url: "http://127.0.0.1:9" }
linear: { type: linear, secret: { value: s } }
jira: { type: jira, secret: { value: s }, api_url: "http://127.0.0.1:9", ready_statuses: [Ready], fields: { customfield_1: role } }
servicenow: { type: servicenow, secret: { value: s }, api_url: "http://127.0.0.1:9" }
dh: { type: django-helpdesk, path_token: { value: tok }, api_url: "http://127.0.0.1:9", user: u, password: { value: p } }
"#;

    /// Headers that authenticate `body` for each helpdesk in `ALL` (secret `s`).
    fn headers_for(source: &str, body: &[u8]) -> BTreeMap<String, String> {
        let hex_tag = hex::encode(hmac_tag(b"s", &[body]));
        let h = |pairs: &[(&str, String)]| pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        match source {
            "gitea" => h(&[
                ("x-gitea-signature", hex_tag),
                ("x-gitea-delivery", "d".into()),
                ("x-gitea-event", "issues".into()),
            ]),
            "gitlab" => h(&[("x-gitlab-token", "s".into()), ("idempotency-key", "k".into())]),
            "zendesk" => {
                let ts = "2023-11-14T22:13:20Z";
                let tag = base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    hmac_tag(b"s", &[ts.as_bytes(), body]),
                );
                h(&[
                    ("x-zendesk-webhook-signature", tag),
                    ("x-zendesk-webhook-signature-timestamp", ts.into()),
                ])
            }
            "linear" => h(&[("linear-signature", hex_tag), ("linear-delivery", "d".into())]),
            "jira" => h(&[("x-hub-signature", format!("sha256={hex_tag}"))]),
            "servicenow" => {
                let tag = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, hmac_tag(b"s", &[body]));
                h(&[("x-closegate-signature", tag)])
            }
            _ => BTreeMap::new(),
        }
    }

    proptest! {
        #[test]
        fn signed_arbitrary_bodies_never_panic_any_adapter(body in bodies()) {
            let _ = accept("gh", github_headers(&body), &body);
            let _ = accept("sw", generic_headers(&body), &body);
            let configs: BTreeMap<String, SourceConfig> = serde_yaml::from_str(ALL).unwrap();
            let registry = SourceRegistry::from_config(&configs).unwrap();
            for source in configs.keys() {
                let headers = headers_for(source, &body);
                let inbound = Inbound { source, headers: &headers, body: &body, now: 1_700_000_000, path_token: Some("tok") };
                let _ = registry.get(source).unwrap().accept(&inbound);
            }
        }
    }

    #[test]
    fn a_github_issues_event_without_an_issue_is_malformed() {
        let body = br#"{"action":"closed","repository":{"full_name":"a/b"}}"#;
        assert!(matches!(
            accept("gh", github_headers(body), body),
            Err(InboundError::Malformed(_))
        ));
    }

    #[test]
    fn a_generic_close_is_recognised_from_the_previous_state() {
        let body = br#"{"type":"t","data":{"ticket":"A-1","state":"CLOSED","previous_state":"open","actor":{"id":"u"},"fields":{"Database role":"r"}}}"#;
        let accepted = accept("sw", generic_headers(body), body).unwrap();
        assert_eq!(accepted.event.kind, crate::domain::EventKind::Closed);
        assert_eq!(accepted.event.fields["database_role"], "r");
        assert_eq!(accepted.delivery_id, "m");
    }
}
