//! GitHub Issues as an access-request queue.
//! In: `issues` events signed with `X-Hub-Signature-256`, deduplicated on
//! `X-GitHub-Delivery`. Out: REST comments and `PATCH state=open`.

use async_trait::async_trait;

use super::{
    Accepted, Adapter, Effect, EffectError, Inbound, InboundError,
    forge::{Dialect, ForgeApi, parse_issues_event},
};
use crate::{
    config::GithubSource,
    domain::{Approval, ApprovalMarks, Observation, TicketEvent},
    signature::{SignatureError, verify_hub_signature},
};

pub struct GithubAdapter {
    source: String,
    secret: crate::config::Secrets,
    bot_login: Option<String>,
    hooks: Vec<crate::config::GithubHook>,
    api: ForgeApi,
}

impl GithubAdapter {
    pub fn build(source: &str, config: &GithubSource) -> Result<Self, String> {
        let key = |k: &str| format!("sources.{source}.{k}");
        let token = config.token.as_ref().map(|t| t.resolve(&key("token"))).transpose()?;
        Ok(Self {
            source: source.to_string(),
            secret: config.secret.resolve(&key("secret"))?,
            bot_login: config.bot_login.clone(),
            hooks: config.hooks.clone(),
            api: ForgeApi::new(Dialect::Github, &config.api_url, token)?,
        })
    }
}

#[async_trait]
impl Adapter for GithubAdapter {
    fn kind(&self) -> &'static str {
        "github"
    }

    fn accept(&self, inbound: &Inbound<'_>) -> Result<Accepted, InboundError> {
        let h = inbound.headers;
        crate::signature::verify_any(&self.secret, |key| {
            verify_hub_signature(
                key,
                "x-hub-signature-256",
                h.header("x-hub-signature-256"),
                inbound.body,
            )
        })?;
        let delivery_id = h
            .header("x-github-delivery")
            .filter(|d| !d.is_empty() && d.len() <= 128)
            .ok_or(SignatureError::MissingHeader("x-github-delivery"))?;
        let event_name = h
            .header("x-github-event")
            .ok_or(SignatureError::MissingHeader("x-github-event"))?;
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

    async fn team_membership(&self, team: &str, login: &str) -> Result<Observation, EffectError> {
        self.api.team_membership(team, login).await
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

    async fn redeliver_failed(
        &self,
        since: chrono::DateTime<chrono::Utc>,
        known: &(dyn Fn(String) -> futures_util::future::BoxFuture<'static, bool> + Send + Sync),
    ) -> Result<Vec<String>, EffectError> {
        let mut asked = Vec::new();
        for hook in &self.hooks {
            asked.extend(
                self.api
                    .redeliver_failed(&hook.repository, hook.id, since, known)
                    .await?,
            );
        }
        Ok(asked)
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
