//! Building the application from settings: store, policies, verifiers,
//! adapters, the HTTP server and the workers.

use std::{net::TcpListener, sync::Arc};

use actix_web::{App, HttpServer, dev::Server, web};
use anyhow::Context as _;
use tracing_actix_web::TracingLogger;

use crate::{
    adapters::SourceRegistry,
    clock::{SharedClock, SystemClock},
    config::Settings,
    context::Context,
    evidence::{
        heads::{DirSink, HeadSigner},
        log::EvidenceLog,
    },
    gate::Gate,
    policy,
    render::Renderer,
    routes::{self, AppState},
    store::Store,
    telemetry::RequestSpan,
    verifiers::{self, VerifierRegistry},
    workers,
};

pub struct Application {
    port: u16,
    server: Server,
    context: Arc<Context>,
    run_workers: bool,
}

/// Loads policies, verifiers, sources and templates into the context every
/// trigger shares; a broken policy or template stops the start.
pub fn build_context(settings: &Settings, store: Store, clock: SharedClock) -> anyhow::Result<Context> {
    let catalog = verifiers::catalog(settings);
    let policies = policy::load_dir(&settings.policies_dir, &catalog).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("invalid policies:\n  {}", lines.join("\n  "))
    })?;
    let too_long = settles_past_the_lease(&policies, settings.worker.lease_seconds);
    if !too_long.is_empty() {
        anyhow::bail!("invalid policies:\n  {}", too_long.join("\n  "));
    }
    tracing::info!(count = policies.policies.len(), dir = %settings.policies_dir.display(), "policies loaded");
    let verifiers = VerifierRegistry::from_config(&settings.systems).map_err(anyhow::Error::msg)?;
    let sources = SourceRegistry::from_config(&settings.sources).map_err(anyhow::Error::msg)?;
    let renderer = Renderer::new(settings.templates_dir.as_deref()).map_err(anyhow::Error::msg)?;
    Ok(Context {
        log: Arc::new(evidence_log(settings, store.clone())?),
        head_interval: std::time::Duration::from_secs(settings.evidence.head_interval_seconds.max(1)),
        store,
        gate: Gate::new(Arc::new(policies), verifiers, clock.clone(), settings.unmatched.clone()),
        sources,
        renderer,
        settings: settings.worker.clone(),
        clock,
        outbox_lanes: Default::default(),
        intake_notes: settings.intake_notes,
        reconcile: settings.reconcile.clone(),
        sinks: crate::export::Sinks::from_config(&settings.sinks).map_err(anyhow::Error::msg)?,
    })
}

/// Every problem the server would stop on, without starting it or opening the
/// store: each setting's secret resolvable, each source, system and template
/// buildable, each policy valid against the configured systems. The messages
/// are the server's own.
pub fn check(settings: &Settings, secrets: &[(String, crate::config::SecretRef)]) -> Vec<String> {
    let mut problems: Vec<String> = secrets
        .iter()
        .filter_map(|(key, secret)| secret.resolve(key).err())
        .collect();
    if let Err(e) = settings.database_url.resolve("database_url") {
        problems.push(e);
    }
    for (name, config) in &settings.sources {
        let one = std::collections::BTreeMap::from([(name.clone(), config.clone())]);
        if let Err(e) = SourceRegistry::from_config(&one) {
            problems.push(e);
        }
    }
    for (name, config) in &settings.systems {
        let one = std::collections::BTreeMap::from([(name.clone(), config.clone())]);
        if let Err(e) = VerifierRegistry::from_config(&one) {
            problems.push(e);
        }
    }
    match policy::load_dir(&settings.policies_dir, &verifiers::catalog(settings)) {
        Ok(policies) => problems.extend(settles_past_the_lease(&policies, settings.worker.lease_seconds)),
        Err(errors) => problems.extend(errors.iter().map(|e| format!("policy {e}"))),
    }
    if let Err(e) = Renderer::new(settings.templates_dir.as_deref()) {
        problems.push(e);
    }
    if let Err(e) = crate::export::Sinks::from_config(&settings.sinks) {
        problems.push(e);
    }
    if let Err(e) = routes::GateAccess::from_config(&settings.gate) {
        problems.push(e);
    }
    if let Err(e) = metrics_token(settings) {
        problems.push(e);
    }
    if let Some(key) = &settings.evidence.signing_key {
        match key.resolve("evidence.signing_key") {
            Ok(seed) => {
                if let Err(e) = HeadSigner::from_seed(seed.expose()) {
                    problems.push(format!("evidence.signing_key: {e}"));
                }
            }
            Err(e) => problems.push(e),
        }
    }
    let mut seen = std::collections::HashSet::new();
    problems.retain(|p| seen.insert(p.clone()));
    problems
}

/// The bearer token `GET /metrics` asks for, when one is configured.
fn metrics_token(settings: &Settings) -> Result<Option<crate::config::Secret>, String> {
    settings
        .metrics
        .token
        .as_ref()
        .map(|token| token.resolve("metrics.token"))
        .transpose()
}

/// Policies whose settle window does not end within a worker's lease: their
/// decisions would outlive the claim on what they decide, and another worker
/// would decide it again meanwhile.
pub fn settles_past_the_lease(policies: &policy::PolicySet, lease_seconds: i64) -> Vec<String> {
    let lease = std::time::Duration::from_secs(lease_seconds.max(0) as u64);
    policies
        .policies
        .iter()
        .filter_map(|p| p.settle.filter(|settle| *settle >= lease).map(|settle| (p, settle)))
        .map(|(p, settle)| {
            format!(
                "policy {}: settle ({settle:?}) must be shorter than worker.lease_seconds ({lease_seconds}s); \
                 shorten the window or raise the lease",
                p.name
            )
        })
        .collect()
}

/// The evidence log with its head signer (when a key is configured) and sink.
pub fn evidence_log(settings: &Settings, store: Store) -> anyhow::Result<EvidenceLog> {
    let signer = settings
        .evidence
        .signing_key
        .as_ref()
        .map(|key| {
            let seed = key.resolve("evidence.signing_key").map_err(anyhow::Error::msg)?;
            HeadSigner::from_seed(seed.expose()).map_err(anyhow::Error::from)
        })
        .transpose()?;
    let sink = Arc::new(DirSink::new(settings.evidence.heads_dir.clone()));
    Ok(EvidenceLog::new(store, signer, sink))
}

impl Application {
    /// Opens the store named in the settings, then builds everything else.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let url = settings
            .database_url
            .resolve("database_url")
            .map_err(anyhow::Error::msg)?;
        let store = Store::connect(url.expose()).await.context("Failed to open the store")?;
        Self::build_with_store(settings, store).await
    }

    /// Builds on an open store with the system clock.
    pub async fn build_with_store(settings: Settings, store: Store) -> anyhow::Result<Self> {
        Self::build_with(settings, store, Arc::new(SystemClock)).await
    }

    /// Builds on an open store and a clock; binds the listener (port 0 picks a
    /// free port).
    pub async fn build_with(settings: Settings, store: Store, clock: SharedClock) -> anyhow::Result<Self> {
        let context = Arc::new(build_context(&settings, store.clone(), clock)?);
        let sources = context.sources.clone();

        let listener =
            TcpListener::bind(&settings.listen).with_context(|| format!("Failed to listen on {}", settings.listen))?;
        let port = listener.local_addr()?.port();
        let gate = routes::GateAccess::from_config(&settings.gate).map_err(anyhow::Error::msg)?;
        let metrics_token = metrics_token(&settings).map_err(anyhow::Error::msg)?;
        let state = web::Data::new(AppState {
            context: context.clone(),
            gate,
            store,
            verifiers: context.gate.verifiers().clone(),
            sources,
            max_body_bytes: settings.max_body_bytes,
            probe: Default::default(),
            metrics: settings.metrics.enabled.then(crate::metrics::install).flatten(),
            metrics_token,
        });
        let server = HttpServer::new(move || {
            App::new()
                .wrap(TracingLogger::<RequestSpan>::new())
                .app_data(state.clone())
                .configure(routes::configure)
        })
        .listen(listener)?
        .run();
        tracing::info!(port, "listening");
        Ok(Self {
            port,
            server,
            context,
            run_workers: settings.worker.enabled,
        })
    }

    /// Stops the HTTP server (for tests and embedding).
    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The workers' context, for driving them step by step (tests, tools).
    pub fn context(&self) -> Arc<Context> {
        self.context.clone()
    }

    /// Serves until the server stops (SIGINT/SIGTERM), running the workers
    /// alongside when they are enabled.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let store = self.context.store.clone();
        let served = if self.run_workers {
            tokio::select! {
                result = self.server => result,
                _ = workers::run_until_stopped(self.context) => Ok(()),
            }
        } else {
            self.server.await
        };
        // Once stopped, the SQLite file alone is the whole store; a store
        // still in use is left as it is rather than holding the stop up.
        match tokio::time::timeout(std::time::Duration::from_secs(5), store.checkpoint()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error.message = %e, "could not checkpoint the store's WAL on the way out"),
            Err(_) => tracing::warn!("the store's WAL checkpoint on the way out took too long; left to the next start"),
        }
        served
    }
}
