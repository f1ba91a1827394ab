//! A generic source speaking Standard Webhooks both ways: any helpdesk with a
//! scripting hook can send ticket changes in and receive decisions back as
//! signed callbacks.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use super::{Accepted, Adapter, Effect, EffectError, Inbound, InboundError, http};
use crate::{
    config::GenericSource,
    domain::{Actor, Approval, ApprovalMarks, EventKind, TicketEvent, TicketRef, field_key},
    signature::StandardWebhooksKey,
};

pub struct GenericAdapter {
    source: String,
    key: StandardWebhooksKey,
    callback: Option<(String, StandardWebhooksKey)>,
    closed_states: Vec<String>,
    bot_actor: Option<String>,
    client: reqwest::Client,
}

/// The inbound payload: `{type, timestamp, data}` as Standard Webhooks recommends.
#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "type")]
    kind: String,
    data: Data,
}

#[derive(Deserialize)]
struct Data {
    ticket: String,
    state: String,
    previous_state: Option<String>,
    #[serde(default)]
    title: String,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    fields: std::collections::BTreeMap<String, String>,
    actor: Actor,
    requester: Option<Actor>,
    /// Approvals, covered by the signature like everything else here.
    #[serde(default)]
    approvals: Vec<Approval>,
    url: Option<String>,
    closed_at: Option<String>,
}

impl GenericAdapter {
    pub fn build(source: &str, config: &GenericSource) -> Result<Self, String> {
        let key = |k: &str| format!("sources.{source}.{k}");
        let parse = |secret: crate::config::Secret, k: &str| {
            StandardWebhooksKey::parse(secret.expose()).map_err(|e| format!("{}: {e}", key(k)))
        };
        let inbound = parse(config.secret.resolve(&key("secret"))?, "secret")?;
        let callback = match &config.callback_url {
            None => None,
            Some(url) => {
                reqwest::Url::parse(url).map_err(|e| format!("{}: {e}", key("callback_url")))?;
                let signing = match &config.callback_secret {
                    Some(s) => parse(s.resolve(&key("callback_secret"))?, "callback_secret")?,
                    None => inbound.clone(),
                };
                Some((url.clone(), signing))
            }
        };
        Ok(Self {
            source: source.to_string(),
            key: inbound,
            callback,
            closed_states: config.closed_states.iter().map(|s| s.to_lowercase()).collect(),
            bot_actor: config.bot_actor.clone(),
            client: http::client()?,
        })
    }

    fn is_closed(&self, state: &str) -> bool {
        self.closed_states.iter().any(|s| s.eq_ignore_ascii_case(state.trim()))
    }
}

#[async_trait]
impl Adapter for GenericAdapter {
    fn kind(&self) -> &'static str {
        "standard-webhooks"
    }

    fn accept(&self, inbound: &Inbound<'_>) -> Result<Accepted, InboundError> {
        let h = inbound.headers;
        let id = h.header("webhook-id");
        self.key.verify(
            id,
            h.header("webhook-timestamp"),
            h.header("webhook-signature"),
            inbound.body,
            inbound.now,
        )?;
        let payload: Payload =
            serde_json::from_slice(inbound.body).map_err(|e| InboundError::Malformed(e.to_string()))?;
        let d = payload.data;
        if d.ticket.trim().is_empty() {
            return Err(InboundError::Malformed("data.ticket is empty".into()));
        }
        let was_closed = d.previous_state.as_deref().is_some_and(|s| self.is_closed(s));
        let kind = match (was_closed, self.is_closed(&d.state)) {
            (false, true) => EventKind::Closed,
            (true, false) => EventKind::Reopened,
            _ => EventKind::Other,
        };
        let caused_by_gate = self.bot_actor.as_deref().is_some_and(|bot| bot == d.actor.id);
        let event = TicketEvent {
            ticket: TicketRef {
                source: self.source.clone(),
                key: d.ticket.trim().to_string(),
            },
            kind,
            event: payload.kind,
            old_state: d.previous_state,
            new_state: Some(d.state),
            actor: d.actor,
            requester: d.requester,
            title: d.title,
            labels: d.labels,
            fields: d.fields.into_iter().map(|(k, v)| (field_key(&k), v)).collect(),
            url: d.url,
            occurred_at: d.closed_at,
            caused_by_gate,
            state_closed: None,
            synchronous: false,
            approvals: d.approvals,
        };
        // `verify` has already refused a missing id.
        Ok(Accepted {
            delivery_id: id.unwrap_or_default().to_string(),
            event,
        })
    }

    fn delivers_effects(&self) -> bool {
        self.callback.is_some()
    }

    fn takes_intake_notes(&self) -> bool {
        false
    }

    fn signs_delivery_id(&self) -> bool {
        true
    }

    /// The approvals in the signed payload.
    async fn approvals(&self, event: &TicketEvent, _: &ApprovalMarks) -> Result<Vec<Approval>, EffectError> {
        Ok(event.approvals.clone())
    }

    async fn apply(&self, effect: &Effect) -> Result<(), EffectError> {
        let Some((url, key)) = &self.callback else {
            return Ok(());
        };
        let now = chrono::Utc::now();
        let body = serde_json::to_vec(&json!({
            "type": "closegate.decision",
            "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "data": effect,
        }))
        .map_err(|e| EffectError::permanent(e.to_string()))?;
        let ts = now.timestamp();
        let request = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &effect.key)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", key.sign(&effect.key, ts, &body))
            .body(body);
        http::send("decision callback", request).await.map(|_| ())
    }
}
