//! Settings: embedded defaults, then an optional YAML file, then `CLOSEGATE__`
//! environment variables (`__` separates levels: `CLOSEGATE__WORKER__ENABLED=false`).
//! Invalid settings stop the start with a message naming the key.

mod secret;
mod sources;
mod systems;

use std::{collections::BTreeMap, path::PathBuf};

use figment::{
    Figment,
    providers::{Env, Format, Yaml},
};
use serde::Deserialize;

pub use secret::{Secret, SecretRef, SecretRefs, Secrets};
pub use sources::*;
pub use systems::{HttpSystem, LdapSystem, RedisSystem, ScimSystem, SqlSystem, SystemConfig};

const DEFAULTS: &str = include_str!("default.yaml");
const EXAMPLE: &str = include_str!("example.yaml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on; port 0 picks a free one.
    pub listen: String,
    /// `sqlite://path` (embedded default) or `postgres://...`.
    pub database_url: SecretRef,
    pub policies_dir: PathBuf,
    /// Largest webhook body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// Directory of comment templates overriding the shipped ones.
    #[serde(default)]
    pub templates_dir: Option<PathBuf>,
    pub log: LogSettings,
    pub worker: WorkerSettings,
    #[serde(default)]
    pub sources: BTreeMap<String, SourceConfig>,
    #[serde(default)]
    pub systems: BTreeMap<String, SystemConfig>,
    /// Named groups of systems a policy check may name instead of one system
    /// (`production: [db-eu, db-us]`): the check must hold in each.
    #[serde(default)]
    pub system_groups: BTreeMap<String, Vec<String>>,
    /// The synchronous gate (`POST /v1/gate/check`).
    pub gate: GateSettings,
    /// Closes of tickets carrying the access-request marker that no policy matches.
    #[serde(default)]
    pub unmatched: Option<UnmatchedSettings>,
    /// Signed tree heads of the evidence log.
    #[serde(default)]
    pub evidence: EvidenceSettings,
    /// Answer a governed request when it is opened or changed: what it lacks,
    /// who may approve it (one note per ticket, updated rather than repeated).
    pub intake_notes: bool,
    /// `GET /metrics`.
    #[serde(default)]
    pub metrics: MetricsSettings,
    /// Finding closes whose webhook never arrived.
    #[serde(default)]
    pub reconcile: ReconcileSettings,
    /// Where every evidence record is sent as a CloudEvent (SIEM, GRC).
    #[serde(default)]
    pub sinks: BTreeMap<String, SinkConfig>,
}

/// A receiver of evidence events: each record is POSTed as a CloudEvents 1.0
/// JSON event, signed the Standard Webhooks way, through the outbox.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    pub url: String,
    /// The `whsec_…` key events are signed with.
    pub secret: SecretRef,
}

/// The Prometheus endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// Serve `GET /metrics` (Prometheus text format).
    pub enabled: bool,
    /// When set, a scrape must send it as `Authorization: Bearer`: the
    /// endpoint shares the port the helpdesks reach, and each scrape reads
    /// the store.
    pub token: Option<SecretRef>,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            token: None,
        }
    }
}

/// The missed-delivery reconciler: per source, lists the tickets closed since
/// its watermark through the helpdesk's API and decides any close whose
/// webhook never arrived.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcileSettings {
    pub enabled: bool,
    /// How often each source is listed.
    pub interval_seconds: u64,
    /// How far back the first run of a source looks.
    pub initial_lookback_seconds: i64,
    /// Closes younger than this are left to their webhook (in flight or queued
    /// at the helpdesk) and looked at on a later run.
    pub grace_seconds: i64,
    /// Per source, repositories (GitHub, Gitea: `owner/repo`) or projects
    /// (GitLab: `group/project`) to list, beside those closegate has seen.
    pub repositories: BTreeMap<String, Vec<String>>,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_seconds: 600,
            initial_lookback_seconds: 86_400,
            grace_seconds: 120,
            repositories: BTreeMap::new(),
        }
    }
}

/// Where and how the evidence log's tree heads are signed and kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvidenceSettings {
    /// The ed25519 seed (32 bytes, hex or base64) heads are signed with;
    /// without one, heads are not signed.
    pub signing_key: Option<SecretRef>,
    /// The public key to check heads with where the signing key is not held
    /// (an auditor's copy), hex or base64.
    pub public_key: Option<String>,
    /// Where signed heads are written: outside the database.
    pub heads_dir: PathBuf,
    /// How often a new head is signed when records were added.
    pub head_interval_seconds: u64,
}

impl Default for EvidenceSettings {
    fn default() -> Self {
        Self {
            signing_key: None,
            public_key: None,
            heads_dir: PathBuf::from("evidence-heads"),
            head_interval_seconds: 300,
        }
    }
}

/// What happens to a close of a marked ticket (an access request) that no
/// policy governs: an unknown `request_type` must not pass silently.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnmatchedSettings {
    /// The label that marks access requests (case-insensitive).
    pub label: String,
    pub action: UnmatchedAction,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UnmatchedAction {
    /// Blocked and reopened, naming the marker.
    Block,
    /// Commented, left closed.
    Flag,
    /// Recorded as ungated.
    Pass,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateSettings {
    /// Answer within this long; past it the answer is "not allowed: still running".
    pub deadline_ms: u64,
    /// Who may call it, by name.
    #[serde(default)]
    pub callers: BTreeMap<String, GateCaller>,
}

/// A caller of the synchronous gate: signs its requests (Standard Webhooks
/// `whsec_` secret) or sends a bearer token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateCaller {
    pub secret: Option<SecretRef>,
    pub token: Option<SecretRef>,
    /// Sources it may ask about; empty means any.
    #[serde(default)]
    pub sources: Vec<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A `tracing` filter (`info`, `closegate=debug,sqlx=warn`).
    pub filter: String,
    /// Where spans are exported over OTLP/HTTP (JSON), the whole URL
    /// (`http://collector:4318/v1/traces`); without it, spans are only logged.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
}

/// The background roles. A replica may run the API only, the workers only, or both.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    pub enabled: bool,
    /// Decision workers; each claims a batch and decides it (each decision may
    /// wait on slow target systems).
    pub decision_concurrency: usize,
    /// Deliveries one decision worker claims at once and decides side by side:
    /// one claim commit per batch, their checks on one system in one round trip.
    #[serde(default = "default_decision_batch")]
    pub decision_batch: usize,
    pub poll_interval_ms: u64,
    /// How long a claimed delivery or outbox message stays claimed by a replica.
    pub lease_seconds: i64,
    /// First retry delay of a failed helpdesk call; doubles each attempt, with jitter.
    pub retry_base_ms: i64,
    pub retry_max_ms: i64,
    /// After this many failed attempts a message is parked as `dead` (never deleted).
    pub max_attempts: i64,
    /// How often active claims are re-verified (a policy's `drift.interval` overrides it).
    #[serde(default = "default_drift_interval")]
    pub drift_interval_seconds: i64,
    /// Claims re-verified per batch: one round trip per system per batch.
    #[serde(default = "default_sweep_batch")]
    pub sweep_batch: i64,
    /// With `outbox_batch`, the messages a lane (a source, or an export sink)
    /// delivers at once: up to `outbox_concurrency × outbox_batch`.
    #[serde(default = "default_outbox_concurrency")]
    pub outbox_concurrency: usize,
    /// See `outbox_concurrency`. A lane claims in one statement, and claims
    /// again once half of its messages in flight are done.
    #[serde(default = "default_outbox_batch")]
    pub outbox_batch: usize,
    /// Finished deliveries are deleted this many days after their decision
    /// (a redelivery after that is decided afresh).
    #[serde(default = "default_deliveries_retention")]
    pub deliveries_retention_days: i64,
    /// Delivered outbox messages are deleted this many days after delivery
    /// (dead ones are kept).
    #[serde(default = "default_outbox_retention")]
    pub outbox_retention_days: i64,
    /// The workers' threads run at this nice value (0 to 19; Linux), so that
    /// acks come first when the processors are busy; 0 runs them as the rest.
    #[serde(default = "default_worker_nice")]
    pub nice: i32,
}

fn collect_secret_refs(value: &serde_json::Value, path: &mut Vec<String>, found: &mut Vec<(String, SecretRef)>) {
    let map = match value {
        serde_json::Value::Object(map) => map,
        serde_json::Value::Array(items) => {
            // A list of secrets (a rotation): `key[0]`, `key[1]`, as resolving names them.
            for (i, item) in items.iter().enumerate() {
                let mut indexed = path.clone();
                if let Some(last) = indexed.last_mut() {
                    last.push_str(&format!("[{i}]"));
                }
                collect_secret_refs(item, &mut indexed, found);
            }
            return;
        }
        _ => return,
    };
    if map.len() == 1
        && map.values().all(serde_json::Value::is_string)
        && (map.contains_key("env") || map.contains_key("file"))
        && let Ok(secret) = serde_json::from_value::<SecretRef>(value.clone())
    {
        found.push((path.join("."), secret));
        return;
    }
    for (key, child) in map {
        path.push(key.clone());
        collect_secret_refs(child, path, found);
        path.pop();
    }
}

fn default_deliveries_retention() -> i64 {
    30
}

fn default_outbox_retention() -> i64 {
    7
}

fn default_worker_nice() -> i32 {
    10
}

fn default_decision_batch() -> usize {
    16
}

fn default_outbox_batch() -> usize {
    8
}

fn default_outbox_concurrency() -> usize {
    2
}

fn default_drift_interval() -> i64 {
    3600
}

fn default_sweep_batch() -> i64 {
    500
}

impl Settings {
    /// Loads defaults, then `file` if given (without one, the built-in example
    /// sources and systems), then the environment.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, String> {
        let settings: Settings = Self::figment(file)?.extract().map_err(|e| {
            e.into_iter()
                .map(|e| match e.path.is_empty() {
                    true => e.to_string(),
                    false => format!("{}: {}", e.path.join("."), e.kind),
                })
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        settings.validate()?;
        Ok(settings)
    }

    /// Defaults, then the file (or the built-in example), then the environment.
    fn figment(file: Option<&std::path::Path>) -> Result<Figment, String> {
        let mut figment = Figment::from(Yaml::string(DEFAULTS));
        match file {
            Some(file) if !file.exists() => {
                return Err(format!("config file {} does not exist", file.display()));
            }
            Some(file) => figment = figment.merge(Yaml::file(file)),
            None => figment = figment.merge(Yaml::string(EXAMPLE)),
        }
        Ok(figment.merge(Env::prefixed("CLOSEGATE__").split("__")))
    }

    /// Every secret read from the environment or a file, by setting
    /// (`sources.github.token`), wherever it sits in the merged config.
    pub fn secret_refs(file: Option<&std::path::Path>) -> Result<Vec<(String, SecretRef)>, String> {
        let value: serde_json::Value = Self::figment(file)?.extract().map_err(|e| e.to_string())?;
        let mut found = Vec::new();
        collect_secret_refs(&value, &mut Vec::new(), &mut found);
        Ok(found)
    }

    fn validate(&self) -> Result<(), String> {
        if self.max_body_bytes == 0 {
            return Err("max_body_bytes: must be above 0".into());
        }
        if self.worker.decision_concurrency == 0 {
            return Err("worker.decision_concurrency: must be above 0".into());
        }
        if self.worker.outbox_batch == 0 {
            return Err("worker.outbox_batch: must be above 0".into());
        }
        if self.worker.decision_batch == 0 {
            return Err("worker.decision_batch: must be above 0".into());
        }
        if !(0..=19).contains(&self.worker.nice) {
            return Err("worker.nice: must be from 0 (as the rest) to 19 (last)".into());
        }
        for (group, members) in &self.system_groups {
            if self.systems.contains_key(group) {
                return Err(format!("system_groups.{group}: a system has the same name"));
            }
            if members.is_empty() {
                return Err(format!("system_groups.{group}: the group is empty"));
            }
            if let Some(unknown) = members.iter().find(|m| !self.systems.contains_key(*m)) {
                return Err(format!("system_groups.{group}: {unknown:?} is not a configured system"));
            }
        }
        for name in self
            .sources
            .keys()
            .chain(self.sinks.keys())
            .chain(self.systems.keys())
            .chain(self.system_groups.keys())
        {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(format!(
                    "{name:?}: source and system names use letters, digits, - and _"
                ));
            }
        }
        Ok(())
    }
}
