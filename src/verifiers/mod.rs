//! Verifiers: read-only probes of target systems. One file per kind of system,
//! all behind one trait, all built here from the `systems` config.

mod postgres;

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
            };
            verifiers.insert(name.clone(), verifier);
        }
        Ok(Self { verifiers })
    }

    pub fn get(&self, system: &str) -> Option<&Arc<dyn Verifier>> {
        self.verifiers.get(system)
    }

    /// Names of all systems, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.verifiers.keys().map(String::as_str).collect();
        names.sort();
        names
    }
}
