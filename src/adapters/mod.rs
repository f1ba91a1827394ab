//! Helpdesk adapters: one file per helpdesk, each both ways — authenticate and
//! parse its webhooks, and carry decisions back through its API. All of them
//! are built here from the `sources` config.

mod effect;
mod generic;
mod github;
mod http;
pub mod issue_form;

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;

pub use effect::{Effect, EffectError};

use crate::{config::SourceConfig, domain::TicketEvent, signature::SignatureError};

/// Read access to request headers, whatever the HTTP framework.
pub trait HeaderLookup {
    /// The header's value, if present and valid text. Names are case-insensitive.
    fn header(&self, name: &str) -> Option<&str>;
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

/// One kind of helpdesk.
#[async_trait]
pub trait Adapter: Send + Sync {
    /// `github`, `standard-webhooks`, ...
    fn kind(&self) -> &'static str;

    /// Authenticates the raw bytes, then parses them. Must not panic on any input.
    fn accept(&self, inbound: &Inbound<'_>) -> Result<Accepted, InboundError>;

    /// Whether decisions can be carried back to this helpdesk.
    fn delivers_effects(&self) -> bool;

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
    pub fn from_config(
        sources: &std::collections::BTreeMap<String, SourceConfig>,
    ) -> Result<Self, String> {
        let mut adapters: HashMap<String, Arc<dyn Adapter>> = HashMap::new();
        for (name, config) in sources {
            let adapter: Arc<dyn Adapter> = match config {
                SourceConfig::Github(cfg) => Arc::new(github::GithubAdapter::build(name, cfg)?),
                SourceConfig::StandardWebhooks(cfg) => {
                    Arc::new(generic::GenericAdapter::build(name, cfg)?)
                }
            };
            adapters.insert(name.clone(), adapter);
        }
        Ok(Self { adapters })
    }

    pub fn get(&self, source: &str) -> Option<&Arc<dyn Adapter>> {
        self.adapters.get(source)
    }
}

/// Reads a string at a JSON pointer.
pub(crate) fn json_str<'a>(value: &'a serde_json::Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(serde_json::Value::as_str)
}
