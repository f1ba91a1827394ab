//! Target-system settings: one variant per kind of system, chosen by `type`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::SecretRef;

/// One target system where access really lives.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SystemConfig {
    Postgres(SqlSystem),
    /// MariaDB or MySQL.
    Mysql(SqlSystem),
    Redis(RedisSystem),
    Ldap(LdapSystem),
    Scim(ScimSystem),
    Http(HttpSystem),
}

/// PostgreSQL, MariaDB or MySQL, reached with a read-only monitoring login.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlSystem {
    /// Connection URL; keep passwords in env or files.
    pub url: SecretRef,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_pool_size")]
    pub max_connections: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSystem {
    /// `redis://[user:password@]host:port`; the user needs `+acl|getuser +acl|whoami +ping`.
    pub url: SecretRef,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapSystem {
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    /// Bind identity; anonymous when absent.
    pub bind_dn: Option<String>,
    pub bind_password: Option<SecretRef>,
    /// Where users are searched.
    pub user_base: String,
    /// Where groups are searched.
    pub group_base: String,
    /// The attribute a ticket's user name is matched against.
    #[serde(default = "default_user_attribute")]
    pub user_attribute: String,
    /// Follow groups that are members of groups.
    #[serde(default)]
    pub nested_groups: bool,
    /// A user the bind must always see. Looked up before each batch: when it is
    /// not found, nothing the bind does not see is read as absent.
    pub canary: Option<String>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScimSystem {
    /// The SCIM service root, e.g. `https://idp.example.com/scim/v2`.
    pub base_url: String,
    /// Bearer token.
    pub token: Option<SecretRef>,
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// A userName the token must always see, looked up before each batch.
    pub canary: Option<String>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSystem {
    /// Scheme, host and base path; tickets never change these.
    pub base_url: String,
    #[serde(default = "default_method")]
    pub method: String,
    /// Extra request headers (values may be secrets).
    #[serde(default)]
    pub headers: BTreeMap<String, SecretRef>,
    /// Bearer token.
    pub token: Option<SecretRef>,
    /// Statuses meaning "the subject exists" (default 200).
    #[serde(default = "default_ok_statuses")]
    pub ok_statuses: Vec<u16>,
    /// Statuses meaning "the subject does not exist". No default: many APIs
    /// answer 404 for "you may not see it", so absence is configured per system.
    #[serde(default)]
    pub absent_statuses: Vec<u16>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    5_000
}

fn default_pool_size() -> u32 {
    4
}

fn default_page_size() -> u32 {
    100
}

fn default_user_attribute() -> String {
    "uid".into()
}

fn default_method() -> String {
    "GET".into()
}

fn default_ok_statuses() -> Vec<u16> {
    vec![200]
}
