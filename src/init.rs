//! `closegate init`: a starter config and policy for one helpdesk and one
//! target system, every secret read from an environment variable it names.

use std::path::{Path, PathBuf};

/// The helpdesks a starter config can be written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Helpdesk {
    Github,
    Gitea,
    Gitlab,
    Jira,
    Servicenow,
    Zendesk,
    Linear,
    DjangoHelpdesk,
    StandardWebhooks,
}

/// The target systems a starter policy can be written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    Postgres,
    Mysql,
    Redis,
    Ldap,
    Scim,
}

/// What `init` wrote, and the variables to set before starting.
#[derive(Debug)]
pub struct Written {
    pub files: Vec<PathBuf>,
    pub env: Vec<&'static str>,
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{0} exists; pass --force to overwrite it")]
    Exists(PathBuf),
    #[error("Failed to write {0}")]
    Write(PathBuf, #[source] std::io::Error),
}

impl Helpdesk {
    /// The source's name in the config (its `POST /hooks/{name}`).
    fn source_name(self) -> &'static str {
        match self {
            Helpdesk::Github => "github",
            Helpdesk::Gitea => "gitea",
            Helpdesk::Gitlab => "gitlab",
            Helpdesk::Jira => "jira",
            Helpdesk::Servicenow => "servicenow",
            Helpdesk::Zendesk => "zendesk",
            Helpdesk::Linear => "linear",
            Helpdesk::DjangoHelpdesk => "helpdesk",
            Helpdesk::StandardWebhooks => "servicedesk",
        }
    }

    /// The source block (indented under its name) and the variables it reads.
    fn source(self) -> (&'static str, &'static [&'static str]) {
        match self {
            Helpdesk::Github => (
                "type: github
    secret: { env: CLOSEGATE_GITHUB_WEBHOOK_SECRET }   # the hook's secret
    token: { env: CLOSEGATE_GITHUB_TOKEN }             # Issues: read and write on the request repository
    bot_login: closegate-bot                           # the account the token belongs to",
                &["CLOSEGATE_GITHUB_WEBHOOK_SECRET", "CLOSEGATE_GITHUB_TOKEN"],
            ),
            Helpdesk::Gitea => (
                "type: gitea
    secret: { env: CLOSEGATE_GITEA_WEBHOOK_SECRET }
    api_url: https://gitea.example.com
    token: { env: CLOSEGATE_GITEA_TOKEN }              # write:issue
    bot_login: closegate-bot",
                &["CLOSEGATE_GITEA_WEBHOOK_SECRET", "CLOSEGATE_GITEA_TOKEN"],
            ),
            Helpdesk::Gitlab => (
                "type: gitlab
    secret_token: { env: CLOSEGATE_GITLAB_WEBHOOK_TOKEN }
    api_url: https://gitlab.example.com
    token: { env: CLOSEGATE_GITLAB_TOKEN }             # api scope, Reporter role
    bot_username: closegate-bot",
                &["CLOSEGATE_GITLAB_WEBHOOK_TOKEN", "CLOSEGATE_GITLAB_TOKEN"],
            ),
            Helpdesk::Jira => (
                "type: jira
    secret: { env: CLOSEGATE_JIRA_WEBHOOK_SECRET }
    api_url: https://example.atlassian.net
    email: closegate@example.com
    token: { env: CLOSEGATE_JIRA_TOKEN }
    reopen_status: In Progress",
                &["CLOSEGATE_JIRA_WEBHOOK_SECRET", "CLOSEGATE_JIRA_TOKEN"],
            ),
            Helpdesk::Servicenow => (
                "type: servicenow
    secret: { env: CLOSEGATE_SERVICENOW_SECRET }      # base64, shared with the business rule
    api_url: https://example.service-now.com
    table: sc_req_item
    user: closegate
    password: { env: CLOSEGATE_SERVICENOW_PASSWORD }
    bot_user: closegate",
                &["CLOSEGATE_SERVICENOW_SECRET", "CLOSEGATE_SERVICENOW_PASSWORD"],
            ),
            Helpdesk::Zendesk => (
                "type: zendesk
    secret: { env: CLOSEGATE_ZENDESK_SIGNING_SECRET }
    api_url: https://example.zendesk.com
    email: closegate@example.com
    token: { env: CLOSEGATE_ZENDESK_TOKEN }",
                &["CLOSEGATE_ZENDESK_SIGNING_SECRET", "CLOSEGATE_ZENDESK_TOKEN"],
            ),
            Helpdesk::Linear => (
                "type: linear
    secret: { env: CLOSEGATE_LINEAR_WEBHOOK_SECRET }
    token: { env: CLOSEGATE_LINEAR_API_KEY }",
                &["CLOSEGATE_LINEAR_WEBHOOK_SECRET", "CLOSEGATE_LINEAR_API_KEY"],
            ),
            Helpdesk::DjangoHelpdesk => (
                "type: django-helpdesk
    path_token: { env: CLOSEGATE_HELPDESK_PATH_TOKEN } # the webhook URL is /hooks/helpdesk/TOKEN
    api_url: https://helpdesk.example.com
    user: closegate
    password: { env: CLOSEGATE_HELPDESK_PASSWORD }",
                &["CLOSEGATE_HELPDESK_PATH_TOKEN", "CLOSEGATE_HELPDESK_PASSWORD"],
            ),
            Helpdesk::StandardWebhooks => (
                "type: standard-webhooks
    secret: { env: CLOSEGATE_SERVICEDESK_SECRET }      # whsec_...
    callback_url: https://servicedesk.example.com/closegate/decisions",
                &["CLOSEGATE_SERVICEDESK_SECRET"],
            ),
        }
    }
}

impl Target {
    fn system_name(self) -> &'static str {
        match self {
            Target::Postgres => "app-db",
            Target::Mysql => "app-mysql",
            Target::Redis => "cache",
            Target::Ldap => "directory",
            Target::Scim => "idp",
        }
    }

    /// The system block (indented under its name), its variables, the policy
    /// template and the policy's file name.
    fn system(self) -> (&'static str, &'static [&'static str], &'static str, &'static str) {
        match self {
            Target::Postgres => (
                "type: postgres
    url: { env: CLOSEGATE_APP_DB_URL }                 # a read-only login: CONNECT is all it needs",
                &["CLOSEGATE_APP_DB_URL"],
                include_str!("init/postgres.yaml"),
                "postgres-table-grant.yaml",
            ),
            Target::Mysql => (
                "type: mysql
    url: { env: CLOSEGATE_APP_MYSQL_URL }              # SELECT on mysql.* suffices",
                &["CLOSEGATE_APP_MYSQL_URL"],
                include_str!("init/mysql.yaml"),
                "mysql-table-grant.yaml",
            ),
            Target::Redis => (
                "type: redis
    url: { env: CLOSEGATE_CACHE_URL }                  # an ACL user allowed ACL GETUSER",
                &["CLOSEGATE_CACHE_URL"],
                include_str!("init/redis.yaml"),
                "redis-key-revoke.yaml",
            ),
            Target::Ldap => (
                "type: ldap
    url: ldaps://ldap.example.com
    bind_dn: cn=closegate,ou=services,dc=example,dc=com
    bind_password: { env: CLOSEGATE_LDAP_PASSWORD }
    user_base: ou=people,dc=example,dc=com
    group_base: ou=groups,dc=example,dc=com",
                &["CLOSEGATE_LDAP_PASSWORD"],
                include_str!("init/ldap.yaml"),
                "ldap-group-grant.yaml",
            ),
            Target::Scim => (
                "type: scim
    base_url: https://idp.example.com/scim/v2
    token: { env: CLOSEGATE_SCIM_TOKEN }",
                &["CLOSEGATE_SCIM_TOKEN"],
                include_str!("init/scim.yaml"),
                "scim-group-grant.yaml",
            ),
        }
    }
}

/// The starter config's text.
pub fn config_text(helpdesk: Helpdesk, target: Target) -> String {
    let (source, _) = helpdesk.source();
    let (system, _, _, _) = target.system();
    format!(
        "# A starter config. Check it with `closegate config check closegate.yaml`,
# then run `closegate --config closegate.yaml serve`. Secrets are read from the
# environment variables named below ({{ file: /path }} reads one from a file).
listen: \"127.0.0.1:8080\"
database_url: \"sqlite://closegate.db\"          # postgres://... for several replicas
policies_dir: policies
log:
  format: pretty                                # json in production
  filter: \"info,sqlx=warn\"
sources:
  {name}:                                        # POST /hooks/{name}
    {source}
systems:
  {system_name}:
    {system}
",
        name = helpdesk.source_name(),
        system_name = target.system_name(),
    )
}

/// Writes `closegate.yaml`, the starter policy and the policy schema into `dir`.
pub fn write(dir: &Path, helpdesk: Helpdesk, target: Target, force: bool) -> Result<Written, InitError> {
    let (_, source_env) = helpdesk.source();
    let (_, system_env, policy, policy_file) = target.system();
    let policies = dir.join("policies");
    let files = [
        (dir.join("closegate.yaml"), config_text(helpdesk, target)),
        (
            policies.join(policy_file),
            policy.replace("{{system}}", target.system_name()),
        ),
        (policies.join("policy.schema.json"), crate::policy::json_schema()),
    ];
    if !force && let Some((path, _)) = files.iter().find(|(path, _)| path.exists()) {
        return Err(InitError::Exists(path.clone()));
    }
    std::fs::create_dir_all(&policies).map_err(|e| InitError::Write(policies.clone(), e))?;
    for (path, text) in &files {
        std::fs::write(path, text).map_err(|e| InitError::Write(path.clone(), e))?;
    }
    Ok(Written {
        files: files.into_iter().map(|(path, _)| path).collect(),
        env: source_env.iter().chain(system_env).copied().collect(),
    })
}
