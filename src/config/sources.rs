//! Webhook source settings: one variant per kind of helpdesk, chosen by `type`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{SecretRef, SecretRefs};

/// One webhook source: `POST /hooks/{name}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SourceConfig {
    Github(GithubSource),
    StandardWebhooks(GenericSource),
    Gitea(GiteaSource),
    Gitlab(GitlabSource),
    Zendesk(ZendeskSource),
    Linear(LinearSource),
    Jira(JiraSource),
    Servicenow(ServicenowSource),
    DjangoHelpdesk(DjangoHelpdeskSource),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubSource {
    /// The webhook secret set on the GitHub hook (a list while rotating it).
    pub secret: SecretRefs,
    /// Token with Issues: write on the repositories (PAT or App installation token).
    pub token: Option<SecretRef>,
    #[serde(default = "default_github_api")]
    pub api_url: String,
    /// The login closegate acts as; its own events are ignored.
    pub bot_login: Option<String>,
    /// Repository hooks whose failed deliveries the reconciler asks GitHub to
    /// send again (the token needs the repository's Webhooks: write).
    #[serde(default)]
    pub hooks: Vec<GithubHook>,
}

/// A repository webhook: `{ repository: owner/repo, id: 12345 }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubHook {
    pub repository: String,
    pub id: u64,
}

fn default_github_api() -> String {
    "https://api.github.com".into()
}

/// A generic source speaking Standard Webhooks both ways.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericSource {
    pub secret: SecretRef,
    /// Where decisions are sent back, as signed Standard Webhooks callbacks.
    pub callback_url: Option<String>,
    /// Key for signing callbacks; defaults to the inbound secret.
    pub callback_secret: Option<SecretRef>,
    /// States that count as closed (compared case-insensitively).
    #[serde(default = "default_closed_states")]
    pub closed_states: Vec<String>,
    /// The actor id closegate's own changes arrive under; ignored as input.
    pub bot_actor: Option<String>,
}

fn default_closed_states() -> Vec<String> {
    ["closed", "resolved", "done"].map(String::from).to_vec()
}

/// Gitea or Forgejo issues (`X-Gitea-Signature` / `X-Forgejo-Signature`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GiteaSource {
    pub secret: SecretRefs,
    /// `https://gitea.example.com` (the API is under `/api/v1`).
    pub api_url: String,
    /// Access token with `write:issue`.
    pub token: Option<SecretRef>,
    pub bot_login: Option<String>,
}

/// GitLab issues: the plain `X-Gitlab-Token`, a Standard Webhooks signing token, or both.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitlabSource {
    /// The hook's secret token, compared in constant time.
    pub secret_token: Option<SecretRefs>,
    /// The hook's signing token (`whsec_…`), verified the Standard Webhooks way.
    pub signing_token: Option<SecretRef>,
    /// `https://gitlab.example.com` (the API is under `/api/v4`).
    pub api_url: String,
    /// Access token with the `api` scope (Reporter role suffices to comment and reopen).
    pub token: Option<SecretRef>,
    pub bot_username: Option<String>,
}

/// Zendesk ticket events (`zen:event-type:ticket.status_changed`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZendeskSource {
    /// The webhook's signing secret.
    pub secret: SecretRefs,
    /// `https://SUBDOMAIN.zendesk.com`.
    pub api_url: String,
    /// Agent email for API-token auth (`EMAIL/token:TOKEN`).
    pub email: Option<String>,
    pub token: Option<SecretRef>,
    /// Closegate's agent user id; its own updates are ignored.
    pub bot_user_id: Option<String>,
    /// Statuses that count as closed (lower case). A `closed` ticket can no
    /// longer be reopened, so the default gates `solved`.
    #[serde(default = "default_zendesk_closed")]
    pub closed_states: Vec<String>,
    /// Custom field id → field name used by policies.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    #[serde(default = "default_tolerance")]
    pub tolerance_seconds: i64,
}

/// Linear issues.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearSource {
    pub secret: SecretRefs,
    /// The GraphQL endpoint.
    #[serde(default = "default_linear_api")]
    pub api_url: String,
    /// A personal API key or OAuth token.
    pub token: Option<SecretRef>,
    /// Closegate's actor id; its own updates are ignored.
    pub bot_actor_id: Option<String>,
    /// Workflow state types that count as closed.
    #[serde(default = "default_linear_closed")]
    pub closed_state_types: Vec<String>,
    /// Name of the state a blocked issue goes back to.
    #[serde(default = "default_linear_reopen")]
    pub reopen_state: String,
    #[serde(default = "default_linear_tolerance")]
    pub tolerance_seconds: i64,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum JiraFlavor {
    /// REST v3, comments in Atlassian Document Format.
    #[default]
    Cloud,
    /// REST v2, comments in wiki markup.
    DataCenter,
}

/// Jira Cloud or Data Center issues.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JiraSource {
    #[serde(default)]
    pub flavor: JiraFlavor,
    /// The webhook secret (`X-Hub-Signature`); without it, a path token.
    pub secret: Option<SecretRefs>,
    pub path_token: Option<SecretRef>,
    /// `https://SITE.atlassian.net` or the Data Center base URL.
    pub api_url: String,
    /// Cloud: account email for basic auth with `token`. Data Center: omit to send `token` as a bearer PAT.
    pub email: Option<String>,
    pub token: Option<SecretRef>,
    /// Closegate's account id (Cloud) or user name (Data Center).
    pub bot_account: Option<String>,
    /// Statuses that count as closed; empty means any status in the Done category.
    #[serde(default)]
    pub closed_statuses: Vec<String>,
    /// The status a blocked issue is transitioned back to.
    #[serde(default = "default_jira_reopen")]
    pub reopen_status: String,
    /// Statuses that trigger verification ahead of the close (written to the
    /// issue property `closegate` for a workflow validator to read).
    #[serde(default)]
    pub ready_statuses: Vec<String>,
    /// Custom field id → field name used by policies (`customfield_10050: database_role`).
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

/// ServiceNow records, sent by the shipped business rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicenowSource {
    /// Base64 HMAC-SHA256 secret for `X-Closegate-Signature`; without it, a path token.
    pub secret: Option<SecretRefs>,
    pub path_token: Option<SecretRef>,
    /// `https://INSTANCE.service-now.com`.
    pub api_url: String,
    #[serde(default = "default_servicenow_table")]
    pub table: String,
    pub user: Option<String>,
    pub password: Option<SecretRef>,
    /// Closegate's user name; its own updates are ignored.
    pub bot_user: Option<String>,
    /// State values that count as closed (Resolved, Closed).
    #[serde(default = "default_servicenow_closed")]
    pub closed_states: Vec<String>,
    /// The state a blocked record goes back to (In Progress).
    #[serde(default = "default_servicenow_reopen")]
    pub reopen_state: String,
}

/// django-helpdesk, which signs nothing: a path token authenticates the call and
/// the ticket is always re-read through its API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DjangoHelpdeskSource {
    pub path_token: SecretRef,
    /// `https://helpdesk.example.com` (the API is under `/api/`).
    pub api_url: String,
    pub user: String,
    pub password: SecretRef,
    /// Closegate's numeric user id; its own follow-ups are ignored.
    pub bot_user_id: Option<i64>,
    /// Status numbers that count as closed (Resolved 3, Closed 4).
    #[serde(default = "default_dh_closed")]
    pub closed_statuses: Vec<i64>,
    /// The status a blocked ticket goes back to (Reopened 2).
    #[serde(default = "default_dh_reopen")]
    pub reopen_status: i64,
    /// Queue id → the label policies match (its slug). When set, a ticket's
    /// queue is read from the API, never from the unsigned webhook body, and
    /// closes whose webhook never arrived can be listed and decided.
    #[serde(default)]
    pub queues: BTreeMap<String, String>,
}

fn default_zendesk_closed() -> Vec<String> {
    vec!["solved".into()]
}
fn default_tolerance() -> i64 {
    300
}
fn default_linear_api() -> String {
    "https://api.linear.app/graphql".into()
}
fn default_linear_closed() -> Vec<String> {
    vec!["completed".into(), "canceled".into()]
}
fn default_linear_reopen() -> String {
    "In Progress".into()
}
fn default_linear_tolerance() -> i64 {
    60
}
fn default_jira_reopen() -> String {
    "In Progress".into()
}
fn default_servicenow_table() -> String {
    "incident".into()
}
fn default_servicenow_closed() -> Vec<String> {
    vec!["6".into(), "7".into()]
}
fn default_servicenow_reopen() -> String {
    "2".into()
}
fn default_dh_closed() -> Vec<i64> {
    vec![3, 4]
}
fn default_dh_reopen() -> i64 {
    2
}
