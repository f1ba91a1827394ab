//! Verifiers: read-only probes of target systems. One file per kind of system,
//! all behind one trait, all built here from the `systems` config.

mod coalesce;
mod http;
mod ldap;
mod mysql;
mod postgres;
mod redis;
mod scim;

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_trait::async_trait;

use crate::{
    config::SystemConfig,
    domain::{CheckSpec, Observation},
    policy::SystemCatalog,
};

/// Why a verifier could not observe. Never contains credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("cannot reach {system}: {message}")]
    Unreachable { system: String, message: String },
    #[error("query on {system} failed: {message}")]
    Query { system: String, message: String },
    #[error("bad check parameters: {0}")]
    BadParams(String),
}

impl VerifyError {
    /// The kind of failure, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            VerifyError::Timeout(_) => "timeout",
            VerifyError::Unreachable { .. } => "unreachable",
            VerifyError::Query { .. } => "query",
            VerifyError::BadParams(_) => "bad_params",
        }
    }
}

/// The answers of a batch whose canary entry could not be seen: the bind or
/// token may not see what it is asked about, so nothing reads as absent.
pub(crate) fn canary_unseen(system: &str, canary: &str, n: usize) -> Vec<Result<Observation, VerifyError>> {
    let error = VerifyError::Query {
        system: system.to_string(),
        message: format!(
            "the canary entry {canary:?} is not visible: the credentials may not see what they are asked about"
        ),
    };
    vec![Err(error); n]
}

/// A target system that can be asked what access exists.
#[async_trait]
pub trait Verifier: Send + Sync {
    /// The check kinds this verifier answers.
    fn kinds(&self) -> &'static [&'static str];

    /// How long one check may take before it counts as "could not verify".
    fn timeout(&self) -> Duration;

    /// Puts a requested item in the form the verifier reports (`select` → `SELECT`).
    fn normalize(&self, _kind: &str, item: &str) -> String {
        item.to_string()
    }

    /// Observes one check's subject in the target system.
    async fn observe(&self, check: &CheckSpec) -> Result<Observation, VerifyError>;

    /// Observes many checks on this system, in the same order; verifiers that
    /// can answer a batch in one round trip override this.
    async fn observe_many(&self, checks: &[CheckSpec]) -> Vec<Result<Observation, VerifyError>> {
        futures_util::future::join_all(checks.iter().map(|c| self.observe(c))).await
    }

    /// Connects and says as whom, for `/readyz` and operators.
    async fn healthcheck(&self) -> Result<String, VerifyError>;

    /// Whether a group of that name exists (directories only), so that a
    /// policy naming a group that is not there is refused before it is used.
    async fn group_exists(&self, group: &str) -> Result<bool, VerifyError> {
        let _ = group;
        Err(VerifyError::BadParams("this system has no groups".into()))
    }
}

/// Every configured target system, by name.
#[derive(Clone, Default)]
pub struct VerifierRegistry {
    verifiers: HashMap<String, Arc<dyn Verifier>>,
}

/// The check kinds of a kind of system, known without connecting.
pub fn kinds_of(config: &SystemConfig) -> &'static [&'static str] {
    match config {
        SystemConfig::Postgres(_) => postgres::KINDS,
        SystemConfig::Mysql(_) => mysql::KINDS,
        SystemConfig::Redis(_) => redis::KINDS,
        SystemConfig::Ldap(_) => ldap::KINDS,
        SystemConfig::Scim(_) => scim::KINDS,
        SystemConfig::Http(_) => http::KINDS,
    }
}

/// The catalog policies are validated against, from config alone.
pub fn catalog(settings: &crate::config::Settings) -> SystemCatalog {
    SystemCatalog {
        systems: settings
            .systems
            .iter()
            .map(|(name, cfg)| (name.clone(), kinds_of(cfg)))
            .collect(),
        groups: settings.system_groups.clone(),
    }
}

impl VerifierRegistry {
    /// Builds every verifier. Connections are opened lazily, so an unreachable
    /// system does not stop the start; it fails its checks closed instead.
    pub fn from_config(systems: &std::collections::BTreeMap<String, SystemConfig>) -> Result<Self, String> {
        let mut verifiers: HashMap<String, Arc<dyn Verifier>> = HashMap::new();
        for (name, config) in systems {
            let verifier: Arc<dyn Verifier> = match config {
                SystemConfig::Postgres(cfg) => Arc::new(postgres::PostgresVerifier::build(name, cfg)?),
                SystemConfig::Mysql(cfg) => Arc::new(mysql::MysqlVerifier::build(name, cfg)?),
                SystemConfig::Redis(cfg) => Arc::new(redis::RedisVerifier::build(name, cfg)?),
                SystemConfig::Ldap(cfg) => Arc::new(ldap::LdapVerifier::build(name, cfg)?),
                SystemConfig::Scim(cfg) => Arc::new(scim::ScimVerifier::build(name, cfg)?),
                SystemConfig::Http(cfg) => Arc::new(http::HttpVerifier::build(name, cfg)?),
            };
            // Concurrent checks on one system are merged into one call.
            verifiers.insert(name.clone(), Arc::new(coalesce::Coalescing::new(name, verifier)));
        }
        Ok(Self { verifiers })
    }

    /// A registry of the given verifiers (stubs for policy tests, fakes).
    pub fn from_verifiers(verifiers: HashMap<String, Arc<dyn Verifier>>) -> Self {
        Self { verifiers }
    }

    pub fn get(&self, system: &str) -> Option<&Arc<dyn Verifier>> {
        self.verifiers.get(system)
    }

    /// Every system's healthcheck, each under its timeout, in name order.
    pub async fn healthchecks(&self) -> Vec<(String, Result<String, VerifyError>)> {
        let checks = self.names().into_iter().map(|name| async move {
            let verifier = &self.verifiers[name];
            let timeout = verifier.timeout();
            let result = match tokio::time::timeout(timeout, verifier.healthcheck()).await {
                Ok(result) => result,
                Err(_) => Err(VerifyError::Timeout(timeout)),
            };
            (name.to_string(), result)
        });
        futures_util::future::join_all(checks).await
    }

    /// Names of all systems, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.verifiers.keys().map(String::as_str).collect();
        names.sort();
        names
    }
}

/// A required, non-empty check parameter.
pub(crate) fn param<'a>(check: &'a CheckSpec, name: &str) -> Result<&'a str, VerifyError> {
    check
        .params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| VerifyError::BadParams(format!("{} needs parameter `{name}`", check.kind)))
}

/// An observation of `subject` on `object` at `location`.
pub(crate) fn observed(
    location: &str,
    subject: &str,
    object: impl Into<String>,
    exists: bool,
    held: impl IntoIterator<Item = String>,
) -> Observation {
    Observation {
        subject: subject.to_string(),
        object: object.into(),
        exists,
        held: held.into_iter().collect(),
        location: location.to_string(),
    }
}

/// Resolves a secret setting of system `system`.
pub(crate) fn secret(
    system: &str,
    key: &str,
    value: &crate::config::SecretRef,
) -> Result<crate::config::Secret, String> {
    value.resolve(&format!("systems.{system}.{key}"))
}

/// Maps a SQL driver error: connection trouble is "unreachable", the rest a failed query.
pub(crate) fn sql_error(system: &str, e: sqlx::Error) -> VerifyError {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) | sqlx::Error::PoolClosed => {
            VerifyError::Unreachable {
                system: system.to_string(),
                message: e.to_string(),
            }
        }
        other => VerifyError::Query {
            system: system.to_string(),
            message: other.to_string(),
        },
    }
}
