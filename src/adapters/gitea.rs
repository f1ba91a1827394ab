//! Gitea and Forgejo issues. In: the GitHub-shaped `issues` event, signed with
//! a bare hex HMAC in `X-Gitea-Signature` (Forgejo: `X-Forgejo-Signature`),
//! deduplicated on `X-Gitea-Delivery`. Out: REST comments and `PATCH state=open`.

use async_trait::async_trait;

use super::{
    Accepted, Adapter, Effect, EffectError, Inbound, InboundError,
    forge::{Dialect, ForgeApi, parse_issues_event},
};
use crate::{
    config::GiteaSource,
    domain::{Approval, ApprovalMarks, TicketEvent},
    signature::{SignatureError, TagEncoding, verify_body_hmac},
};

pub struct GiteaAdapter {
    source: String,
    secret: crate::config::Secrets,
    bot_login: Option<String>,
    api: ForgeApi,
}

impl GiteaAdapter {
    pub fn build(source: &str, config: &GiteaSource) -> Result<Self, String> {
        let key = |k: &str| format!("sources.{source}.{k}");
        let token = config.token.as_ref().map(|t| t.resolve(&key("token"))).transpose()?;
        let base = format!("{}/api/v1", config.api_url.trim_end_matches('/'));
        Ok(Self {
            source: source.to_string(),
            secret: config.secret.resolve(&key("secret"))?,
            bot_login: config.bot_login.clone(),
            api: ForgeApi::new(Dialect::Gitea, &base, token)?,
        })
    }
}

#[async_trait]
impl Adapter for GiteaAdapter {
    fn kind(&self) -> &'static str {
        "gitea"
    }

    fn accept(&self, inbound: &Inbound<'_>) -> Result<Accepted, InboundError> {
        let h = inbound.headers;
        // Forgejo sends both families; either is checked, never neither.
        let (header, value) = match h.header("x-forgejo-signature") {
            Some(v) => ("x-forgejo-signature", Some(v)),
            None => ("x-gitea-signature", h.header("x-gitea-signature")),
        };
        crate::signature::verify_any(&self.secret, |key| {
            verify_body_hmac(key, header, value, "", TagEncoding::Hex, &[inbound.body])
        })?;
        let delivery_id = h
            .header("x-forgejo-delivery")
            .or_else(|| h.header("x-gitea-delivery"))
            .filter(|d| !d.is_empty() && d.len() <= 128)
            .ok_or(SignatureError::MissingHeader("x-gitea-delivery"))?;
        let event_name = h
            .header("x-forgejo-event")
            .or_else(|| h.header("x-gitea-event"))
            .ok_or(SignatureError::MissingHeader("x-gitea-event"))?;
        let event = parse_issues_event(&self.source, event_name, inbound.body, self.bot_login.as_deref())?;
        Ok(Accepted {
            delivery_id: delivery_id.to_string(),
            event,
        })
    }

    fn delivers_effects(&self) -> bool {
        self.api.has_token()
    }

    async fn approvals(&self, event: &TicketEvent, marks: &ApprovalMarks) -> Result<Vec<Approval>, EffectError> {
        self.api.approvals(&event.ticket.key, marks).await
    }

    fn lists_closes(&self) -> bool {
        self.api.has_token()
    }

    async fn closed_since(
        &self,
        since: chrono::DateTime<chrono::Utc>,
        scopes: &[String],
    ) -> Result<Vec<super::ListedClose>, EffectError> {
        self.api.closed_since(since, scopes).await
    }

    async fn read_close(&self, ticket: &crate::domain::TicketRef) -> Result<TicketEvent, EffectError> {
        self.api
            .read_close(&self.source, &ticket.key, self.bot_login.as_deref())
            .await
    }

    async fn apply(&self, effect: &Effect) -> Result<(), EffectError> {
        self.api.apply(effect).await
    }
}
