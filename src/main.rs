use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use ed25519_dalek::VerifyingKey;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Arc;

use closegate::{
    clock::SystemClock,
    config::{LogFormat, Settings},
    context::Context,
    decide::{self, Decided, decide},
    domain::{EventKind, Trigger, TriggerKind, Verdict},
    evidence::{self, heads, log::EvidenceLog},
    policy,
    render::{CommentFormat, Renderer},
    startup::{Application, build_context, evidence_log},
    store::{ClaimFilter, Store},
    telemetry, verifiers,
};

/// closegate: a ticket closes only when the target system really matches it.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Config file (YAML); embedded defaults and CLOSEGATE__* variables apply too.
    #[arg(long, short, global = true, env = "CLOSEGATE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the webhook receiver and the workers.
    Serve,
    /// Apply the store's migrations and exit.
    Migrate,
    /// Work with the config file.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Write a starter config and policy for one helpdesk and one target system.
    Init {
        #[arg(long, value_enum)]
        helpdesk: closegate::init::Helpdesk,
        #[arg(long, value_enum)]
        target: closegate::init::Target,
        /// Directory to write `closegate.yaml` and `policies/` into.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Overwrite files that exist.
        #[arg(long)]
        force: bool,
    },
    /// Work with policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Work with target systems.
    Verifiers {
        #[command(subcommand)]
        command: VerifiersCommand,
    },
    /// Read the evidence log.
    Evidence {
        #[command(subcommand)]
        command: EvidenceCommand,
    },
    /// What allowed decisions verified, and until when.
    Claims {
        #[command(subcommand)]
        command: ClaimsCommand,
    },
    /// Re-verify active claims now.
    Drift {
        #[command(subcommand)]
        command: DriftCommand,
    },
    /// List each source's closes through its helpdesk's API and decide every
    /// close whose webhook never arrived (trigger `reconcile`).
    Reconcile {
        /// Only this source (default: every source whose API can list closes).
        #[arg(long)]
        source: Option<String>,
        /// Look back this far (`2h`, `7d`) instead of from the watermark.
        #[arg(long)]
        since: Option<String>,
    },
    /// Decide a ticket again now, as it was last seen, re-read from its helpdesk
    /// (recorded with a `manual` trigger; nothing is posted to the helpdesk).
    Decide { source: String, ticket: String },
    /// Write a static HTML page and its JSON for an auditor: per ticket the
    /// timeline request → approval → close → expiry and drift checks, each
    /// step with its evidence record and inclusion proof, plus figures and charts.
    AuditPack {
        #[command(flatten)]
        scope: PackScope,
        /// Directory to write `index.html` and `audit-pack.json` into.
        #[arg(long)]
        out: PathBuf,
    },
    /// What the gate did over a period: closes allowed and blocked, top block
    /// reasons, could-not-verify rates, approval latency, time to verified
    /// close, break-glass, drift, ungated closes of marked tickets.
    Report {
        /// How far back (`30d`, `12h`).
        #[arg(long, default_value = "30d")]
        since: String,
        #[arg(long, value_enum, default_value = "table")]
        format: ReportFormat,
    },
}

/// Which tickets an audit pack covers.
#[derive(clap::Args)]
#[group(required = false, multiple = false)]
struct PackScope {
    /// Tickets with records in this period (`90d`); the default is 30d.
    #[arg(long)]
    since: Option<String>,
    /// One ticket, as `SOURCE:KEY` (`github:acme/access#42`).
    #[arg(long)]
    ticket: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ExportFormat {
    Jsonl,
    Csv,
    Cloudevents,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReportFormat {
    Table,
    Csv,
    Json,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a config without starting: every key, every secret reference
    /// resolvable, every source, system and policy buildable. Exit code 1 and
    /// the server's own messages when something is wrong.
    Check {
        /// The config file; defaults to --config.
        file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ClaimsCommand {
    /// List claims, in the order they were verified.
    List {
        #[arg(long)]
        ticket: Option<String>,
        #[arg(long)]
        system: Option<String>,
        /// Only claims whose drift has been reported and not resolved.
        #[arg(long)]
        drifted: bool,
    },
}

#[derive(Subcommand)]
enum DriftCommand {
    /// Re-verify every active claim (or those of a system or policy) in batches.
    Scan {
        #[arg(long)]
        system: Option<String>,
        #[arg(long)]
        policy: Option<String>,
        /// Report only: record nothing, post nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate every policy; prints file:line: problem and exits 1 on any error.
    Check {
        /// Policy directory (defaults to the configured policies_dir).
        dir: Option<PathBuf>,
    },
    /// Run the policy test suites in DIR/tests against stubbed observations
    /// (no target system is asked); exits 1 on any failure.
    Test {
        /// Policy directory (defaults to the configured policies_dir).
        dir: Option<PathBuf>,
    },
    /// Print the JSON Schema of policy files (for editors: completion and checks).
    Schema,
}

#[derive(Subcommand)]
enum VerifiersCommand {
    /// Connect to every configured system and say as whom; exits 1 if any fails.
    Check,
}

#[derive(Subcommand)]
enum EvidenceCommand {
    /// The evidence records of one ticket, oldest first.
    Show { source: String, ticket: String },
    /// Recompute the hash chain and every column, and check the records against
    /// the signed tree heads kept outside the database.
    Verify,
    /// Sign a tree head over every record now and write it to the heads directory.
    SignHead,
    /// Print an inclusion proof of one record against the latest signed head.
    Prove { id: String },
    /// Print the public key that checks the tree heads.
    PublicKey,
    /// Print records for SIEM and GRC tools: JSON lines (each with its hash,
    /// link and leaf hash, then the signed heads), CSV, or CloudEvents 1.0.
    Export {
        /// Only records after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// Only records written in this period (`30d`, `12h`).
        #[arg(long)]
        since: Option<String>,
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
    },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    match &cli.command {
        Command::Config {
            command: ConfigCommand::Check { file },
        } => std::process::exit(config_check(file.as_deref().or(cli.config.as_deref()))),
        Command::Init {
            helpdesk,
            target,
            dir,
            force,
        } => std::process::exit(init(dir, *helpdesk, *target, *force)),
        _ => {}
    }
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("closegate: invalid configuration: {e}");
            std::process::exit(2);
        }
    };
    let code = match run(cli.command, settings).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("closegate: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

/// `closegate config check`: 0 when the server would start on this config.
fn config_check(file: Option<&std::path::Path>) -> i32 {
    let settings = match Settings::load(file) {
        Ok(settings) => settings,
        Err(e) => {
            println!("invalid configuration: {e}");
            return 1;
        }
    };
    let secrets = Settings::secret_refs(file).unwrap_or_default();
    let problems = closegate::startup::check(&settings, &secrets);
    if problems.is_empty() {
        println!(
            "ok  {} sources, {} systems, policies in {}",
            settings.sources.len(),
            settings.systems.len(),
            settings.policies_dir.display()
        );
        0
    } else {
        for problem in &problems {
            println!("error  {problem}");
        }
        1
    }
}

/// `closegate init`.
fn init(
    dir: &std::path::Path,
    helpdesk: closegate::init::Helpdesk,
    target: closegate::init::Target,
    force: bool,
) -> i32 {
    match closegate::init::write(dir, helpdesk, target, force) {
        Ok(written) => {
            for file in &written.files {
                println!("wrote  {}", file.display());
            }
            println!("set    {}", written.env.join(" "));
            println!("then   closegate config check {}", dir.join("closegate.yaml").display());
            0
        }
        Err(e) => {
            eprintln!("closegate: {:#}", anyhow::Error::from(e));
            1
        }
    }
}

async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let url = settings
        .database_url
        .resolve("database_url")
        .map_err(anyhow::Error::msg)?;
    Store::connect(url.expose()).await.context("Failed to open the store")
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<i32> {
    match command {
        Command::Serve => {
            telemetry::init_exporting(
                settings.log.format,
                &settings.log.filter,
                std::io::stdout,
                settings.log.otlp_endpoint.as_deref(),
            );
            let app = Application::build(settings).await?;
            let served = app.run_until_stopped().await;
            telemetry::flush();
            served?;
            Ok(0)
        }
        Command::Config { .. } | Command::Init { .. } => Ok(0),
        Command::Migrate => {
            telemetry::init(LogFormat::Pretty, "warn", std::io::stderr);
            open_store(&settings).await?;
            println!("migrations applied");
            Ok(0)
        }
        Command::Policy {
            command: PolicyCommand::Check { dir },
        } => {
            let dir = dir.unwrap_or(settings.policies_dir.clone());
            let loaded = match policy::load_dir(&dir, &verifiers::catalog(&settings)) {
                Ok(set) => {
                    let registry =
                        verifiers::VerifierRegistry::from_config(&settings.systems).map_err(anyhow::Error::msg)?;
                    let problems = policy::live::check_groups(&set, &registry).await;
                    if problems.is_empty() { Ok(set) } else { Err(problems) }
                }
                Err(errors) => Err(errors),
            };
            // A settle window the worker lease cannot hold stops the server too.
            let loaded = loaded.map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>());
            let loaded = loaded.and_then(|set| {
                let too_long = closegate::startup::settles_past_the_lease(&set, settings.worker.lease_seconds);
                if too_long.is_empty() { Ok(set) } else { Err(too_long) }
            });
            match loaded {
                Ok(set) => {
                    for p in &set.policies {
                        println!(
                            "ok  {} ({}, mode {}, {} checks)",
                            p.file,
                            p.name,
                            p.mode.as_str(),
                            p.checks.len()
                        );
                    }
                    Ok(0)
                }
                Err(errors) => {
                    for e in &errors {
                        println!("{e}");
                    }
                    println!("{} problem(s) found", errors.len());
                    Ok(1)
                }
            }
        }
        Command::Policy {
            command: PolicyCommand::Schema,
        } => {
            println!("{}", policy::json_schema());
            Ok(0)
        }
        Command::Policy {
            command: PolicyCommand::Test { dir },
        } => {
            let dir = dir.unwrap_or(settings.policies_dir.clone());
            let policies = match policy::load_dir(&dir, &verifiers::catalog(&settings)) {
                Ok(set) => set,
                Err(errors) => {
                    for e in &errors {
                        println!("{e}");
                    }
                    return Ok(1);
                }
            };
            let files = policy::suite::suite_files(&dir);
            if files.is_empty() {
                println!("no policy tests under {}", dir.join("tests").display());
                return Ok(1);
            }
            let real = verifiers::VerifierRegistry::from_config(&settings.systems).map_err(anyhow::Error::msg)?;
            let results = policy::suite::run(Arc::new(policies), &real, Arc::new(SystemClock), &files).await?;
            let failed = results.iter().filter(|r| r.failure.is_some()).count();
            for r in &results {
                match &r.failure {
                    None => println!("ok    {}: {}", r.suite, r.case),
                    Some(diff) => println!("FAIL  {}: {}\n{diff}", r.suite, r.case),
                }
            }
            println!("{} cases, {} failed", results.len(), failed);
            Ok(if failed == 0 { 0 } else { 1 })
        }
        Command::Verifiers {
            command: VerifiersCommand::Check,
        } => {
            telemetry::init(LogFormat::Pretty, "warn", std::io::stderr);
            let registry = verifiers::VerifierRegistry::from_config(&settings.systems).map_err(anyhow::Error::msg)?;
            let mut failed = 0;
            for (name, result) in registry.healthchecks().await {
                match result {
                    Ok(identity) => println!("ok    {name}: {identity}"),
                    Err(e) => {
                        failed += 1;
                        println!("FAIL  {name}: {e}");
                    }
                }
            }
            Ok(if failed == 0 { 0 } else { 1 })
        }
        Command::Evidence { command } => {
            telemetry::init(LogFormat::Pretty, "warn", std::io::stderr);
            let store = open_store(&settings).await?;
            let renderer = Renderer::new(settings.templates_dir.as_deref()).map_err(anyhow::Error::msg)?;
            let log = evidence_log(&settings, store.clone())?;
            let public_key = match (&settings.evidence.public_key, log.verifying_key()) {
                (Some(text), _) => Some(heads::public_key(text)?),
                (None, key) => key,
            };
            evidence(command, &store, &renderer, &log, public_key.as_ref()).await
        }
        Command::Claims {
            command:
                ClaimsCommand::List {
                    ticket,
                    system,
                    drifted,
                },
        } => {
            telemetry::init(LogFormat::Pretty, "warn", std::io::stderr);
            let store = open_store(&settings).await?;
            let filter = ClaimFilter {
                ticket,
                system,
                drifted,
                ..ClaimFilter::default()
            };
            list_claims(&store, &filter).await
        }
        Command::Drift {
            command:
                DriftCommand::Scan {
                    system,
                    policy,
                    dry_run,
                },
        } => {
            telemetry::init(LogFormat::Pretty, "warn", std::io::stderr);
            let ctx = open_context(&settings).await?;
            let filter = ClaimFilter {
                system,
                policy,
                active: true,
                ..ClaimFilter::default()
            };
            drift_scan(&ctx, &filter, dry_run).await
        }
        Command::AuditPack { scope, out } => {
            telemetry::init(LogFormat::Pretty, "warn", std::io::stderr);
            let now = chrono::Utc::now().timestamp_millis();
            let scope = match (scope.ticket, scope.since) {
                (Some(ticket), _) => match ticket.split_once(':') {
                    Some((source, key)) => closegate::audit_pack::Scope::Ticket(source.into(), key.into()),
                    None => {
                        eprintln!("--ticket {ticket:?} is not SOURCE:KEY");
                        return Ok(2);
                    }
                },
                (None, since) => match humantime::parse_duration(since.as_deref().unwrap_or("30d")) {
                    Ok(d) => closegate::audit_pack::Scope::Since(now - d.as_millis() as i64),
                    Err(e) => {
                        eprintln!("--since is not a duration such as 30d or 12h: {e}");
                        return Ok(2);
                    }
                },
            };
            let store = open_store(&settings).await?;
            let log = evidence_log(&settings, store.clone())?;
            let public_key = match (&settings.evidence.public_key, log.verifying_key()) {
                (Some(text), _) => Some(heads::public_key(text)?),
                (None, key) => key,
            };
            let head = latest_head(&log, public_key.as_ref())?;
            let marker = settings.unmatched.as_ref().map(|u| u.label.as_str());
            let pack = closegate::audit_pack::build(&store, &scope, head, now, marker).await?;
            closegate::audit_pack::write(&pack, &out)?;
            println!(
                "{} tickets written to {}",
                pack.tickets.len(),
                out.join("index.html").display()
            );
            Ok(0)
        }
        Command::Report { since, format } => {
            telemetry::init(LogFormat::Pretty, "warn", std::io::stderr);
            let since = match humantime::parse_duration(&since) {
                Ok(d) => chrono::Utc::now().timestamp_millis() - d.as_millis() as i64,
                Err(e) => {
                    eprintln!("--since {since:?} is not a duration such as 30d or 12h: {e}");
                    return Ok(2);
                }
            };
            let store = open_store(&settings).await?;
            let marker = settings.unmatched.as_ref().map(|u| u.label.as_str());
            let report = closegate::report::from_store(&store, since, marker).await?;
            match format {
                ReportFormat::Table => print!("{}", report.table()),
                ReportFormat::Csv => print!("{}", report.csv()),
                ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            }
            Ok(0)
        }
        Command::Decide { source, ticket } => {
            telemetry::init(LogFormat::Pretty, "warn", std::io::stderr);
            let ctx = open_context(&settings).await?;
            decide_again(&ctx, &source, &ticket).await
        }
        Command::Reconcile { source, since } => {
            telemetry::init(LogFormat::Pretty, "warn", std::io::stderr);
            let since = match since.as_deref().map(humantime::parse_duration).transpose() {
                Ok(d) => d.map(|d| chrono::Utc::now() - chrono::Duration::milliseconds(d.as_millis() as i64)),
                Err(e) => {
                    eprintln!("--since is not a duration such as 2h or 7d: {e}");
                    return Ok(2);
                }
            };
            let ctx = open_context(&settings).await?;
            reconcile(&ctx, source, since).await
        }
    }
}

/// `closegate reconcile`: one pass over each source, printed.
async fn reconcile(
    ctx: &Context,
    source: Option<String>,
    since: Option<chrono::DateTime<chrono::Utc>>,
) -> anyhow::Result<i32> {
    let sources: Vec<String> = match source {
        Some(source) => vec![source],
        None => ctx
            .sources
            .names()
            .into_iter()
            .filter(|s| ctx.sources.get(s).is_some_and(|a| a.lists_closes()))
            .collect(),
    };
    let mut code = 0;
    for source in sources {
        match decide::reconcile_source(ctx, &source, since).await {
            Ok(found) => {
                println!(
                    "{source}: {} closed since the watermark, {} missed and decided, {} left for later",
                    found.listed,
                    found.missed.len(),
                    found.deferred
                );
                for ticket in &found.missed {
                    println!("  decided {ticket}");
                }
            }
            Err(e) => {
                println!("{source}: {:#}", anyhow::Error::from(e));
                code = 1;
            }
        }
    }
    Ok(code)
}

/// The kept signed head covering the most records (its signature checked
/// when a key is known).
fn latest_head(log: &EvidenceLog, key: Option<&VerifyingKey>) -> anyhow::Result<Option<heads::SignedHead>> {
    Ok(log
        .sink()
        .heads()?
        .into_iter()
        .filter_map(|h| h.verified(key).ok().map(|t| (t.tree_size, h)))
        .max_by_key(|(size, _)| *size)
        .map(|(_, h)| h))
}

/// Writes one JSON line; false when the reader has gone (`| head`), which is
/// not an error.
fn write_line(out: &mut impl std::io::Write, line: &serde_json::Value) -> anyhow::Result<bool> {
    write_text(out, &line.to_string())
}

/// [`write_line`] for text.
fn write_text(out: &mut impl std::io::Write, line: &str) -> anyhow::Result<bool> {
    match writeln!(out, "{line}") {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e.into()),
    }
}

async fn open_context(settings: &Settings) -> anyhow::Result<Context> {
    let store = open_store(settings).await?;
    build_context(settings, store, Arc::new(SystemClock))
}

fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn list_claims(store: &Store, filter: &ClaimFilter) -> anyhow::Result<i32> {
    let mut after = String::new();
    let mut shown = 0;
    loop {
        let page = store.list_claims(filter, &after, 500).await?;
        let Some(last) = page.last() else { break };
        after = last.id.clone();
        for c in &page {
            shown += 1;
            let requested: Vec<&str> = c.spec.requested.iter().map(String::as_str).collect();
            println!(
                "{} {} {} policy={} system={} {} {} on {:?}: expect {} {:?}; verified {}{}{}",
                c.id,
                c.ticket,
                c.state.as_str(),
                c.policy,
                c.spec.system,
                c.spec.kind,
                c.observation.subject,
                c.observation.object,
                c.spec.expect,
                requested,
                when(c.verified_at),
                c.valid_until
                    .map(|t| format!("; valid until {}", when(t)))
                    .unwrap_or_default(),
                c.drift.as_deref().map(|d| format!("; DRIFT: {d}")).unwrap_or_default(),
            );
        }
    }
    if shown == 0 {
        println!("no claims");
    }
    Ok(0)
}

async fn drift_scan(ctx: &Context, filter: &ClaimFilter, dry_run: bool) -> anyhow::Result<i32> {
    let started = std::time::Instant::now();
    let total = ctx.store.count_claims(filter).await?;
    let bar = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} claims  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let summary = decide::drift_scan(ctx, filter, dry_run, &mut |n| bar.inc(n)).await?;
    bar.finish_and_clear();
    println!(
        "{} claims checked in {:.1} s: {} held, {} drifted (new), {} still drifted, {} resolved, {} could not verify{}",
        summary.checked,
        started.elapsed().as_secs_f64(),
        summary.held,
        summary.drifted,
        summary.still_drifted,
        summary.resolved,
        summary.could_not_verify,
        if dry_run { " (dry run: nothing recorded)" } else { "" }
    );
    Ok(
        if summary.drifted + summary.still_drifted + summary.could_not_verify > 0 {
            1
        } else {
            0
        },
    )
}

async fn decide_again(ctx: &Context, source: &str, ticket: &str) -> anyhow::Result<i32> {
    let records = ctx.store.evidence_for_ticket(source, ticket).await?;
    let Some(last) = records.last() else {
        println!("no evidence for {source}:{ticket}: closegate has not seen this ticket close");
        return Ok(1);
    };
    let mut event = last.content()?.event;
    event.kind = EventKind::Closed;
    let trigger = Trigger::new(TriggerKind::Manual, format!("cli-{}", uuid::Uuid::now_v7()));
    match decide(ctx, trigger, event).await? {
        Decided::Recorded(record) => {
            println!("{} ({}) evidence {}", record.verdict, record.mode, record.id);
            for reason in record.content()?.decision.reasons {
                println!("    reason: {reason}");
            }
            Ok(if record.verdict == Verdict::Blocked { 1 } else { 0 })
        }
        other => {
            println!("not decided: {other:?}");
            Ok(1)
        }
    }
}

async fn evidence(
    command: EvidenceCommand,
    store: &Store,
    renderer: &Renderer,
    log: &EvidenceLog,
    public_key: Option<&VerifyingKey>,
) -> anyhow::Result<i32> {
    match command {
        EvidenceCommand::Show { source, ticket } => {
            let records = store.evidence_for_ticket(&source, &ticket).await?;
            if records.is_empty() {
                println!("no evidence for {source}:{ticket}");
                return Ok(1);
            }
            for r in records {
                let when = chrono::DateTime::from_timestamp_millis(r.created_at).unwrap_or_default();
                println!(
                    "#{} {} {} policy={} mode={} trigger={} at {}",
                    r.seq,
                    r.id,
                    r.verdict.as_str().to_uppercase(),
                    r.policy.as_deref().unwrap_or("-"),
                    r.mode,
                    r.trigger,
                    when.to_rfc3339()
                );
                let content = match r.content() {
                    Ok(content) => content,
                    Err(e) => {
                        println!("    the record does not parse: {e}");
                        continue;
                    }
                };
                for reason in &content.decision.reasons {
                    println!("    reason: {reason}");
                }
                for check in &content.decision.checks {
                    let requested: Vec<&str> = check.spec.requested.iter().map(String::as_str).collect();
                    let observed = match &check.observation {
                        Some(o) => format!("{:?}", o.held.iter().collect::<Vec<_>>()),
                        None => "nothing (not verified)".into(),
                    };
                    println!(
                        "    check {:?} on {}: expect {} {:?}, observed {observed}, {}",
                        check.spec.name,
                        check.spec.system,
                        check.spec.expect,
                        requested,
                        check.outcome.status(),
                    );
                }
                println!("    hash {} (prev {})", r.hash, r.prev_hash);
                let at = when.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                if let Ok(comment) = renderer.decision(CommentFormat::Markdown, &content, &at, &r.id, &r.hash, None) {
                    println!("    comment:");
                    for line in comment.lines() {
                        println!("    | {line}");
                    }
                }
            }
            Ok(0)
        }
        EvidenceCommand::Verify => {
            let report = store.verify_chain().await?;
            let mut failed = false;
            match report.broken {
                None => println!("chain intact: {} records, head {}", report.records, report.head_hash),
                Some((seq, problem)) => {
                    failed = true;
                    println!("chain broken at record #{seq}: {problem}");
                }
            }
            let heads = log.sink().heads()?;
            let checked = evidence::log::verify_against_heads(store, &heads, public_key).await?;
            match (&checked.problem, checked.heads, public_key) {
                (Some(problem), _, _) => {
                    failed = true;
                    println!("signed tree heads: {problem}");
                }
                (None, 0, Some(_)) if checked.records > 0 => {
                    failed = true;
                    println!("signed tree heads: none kept, so nothing proves the log outside the database");
                }
                (None, 0, _) => println!("signed tree heads: none (set evidence.signing_key to sign them)"),
                (None, n, key) => println!(
                    "signed tree heads: {n} match the records; the latest covers {} of {} records{}",
                    checked.covered,
                    checked.records,
                    match key {
                        Some(key) => format!("; signatures checked with key {}", heads::key_id(key)),
                        None => "; signatures NOT checked (no key configured)".into(),
                    }
                ),
            }
            Ok(if failed { 1 } else { 0 })
        }
        EvidenceCommand::SignHead => match log.sign_head(chrono::Utc::now().timestamp_millis()).await? {
            Some(head) => {
                println!("{}", head.head);
                Ok(0)
            }
            None => {
                println!("no evidence.signing_key is configured");
                Ok(1)
            }
        },
        EvidenceCommand::Prove { id } => {
            let Some(head) = latest_head(log, public_key)? else {
                println!("no signed tree head is kept; sign one with `closegate evidence sign-head`");
                return Ok(1);
            };
            let proof = evidence::log::prove(store, &id, &head).await?;
            println!("{}", serde_json::to_string_pretty(&proof)?);
            Ok(0)
        }
        EvidenceCommand::PublicKey => match public_key {
            Some(key) => {
                println!("{} (key id {})", hex::encode(key.as_bytes()), heads::key_id(key));
                Ok(0)
            }
            None => {
                println!("no evidence.signing_key or evidence.public_key is configured");
                Ok(1)
            }
        },
        EvidenceCommand::Export { after, since, format } => {
            let since = match since.as_deref().map(humantime::parse_duration).transpose() {
                Ok(d) => d.map_or(i64::MIN, |d| {
                    chrono::Utc::now().timestamp_millis() - d.as_millis() as i64
                }),
                Err(e) => {
                    eprintln!("--since is not a duration such as 30d or 12h: {e}");
                    return Ok(2);
                }
            };
            let mut out = std::io::stdout().lock();
            if format == ExportFormat::Csv && !write_text(&mut out, closegate::export::CSV_HEADER)? {
                return Ok(0);
            }
            let mut after = after;
            loop {
                let page = store.evidence_page(after, 1000).await?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                for r in page.iter().filter(|r| r.created_at >= since) {
                    // The record is the exact hashed text, so each line can be
                    // checked on its own: hash = SHA-256(prev_hash || record).
                    let written = match format {
                        ExportFormat::Jsonl => write_line(&mut out, &closegate::export::json_line(r))?,
                        ExportFormat::Cloudevents => write_line(&mut out, &closegate::export::cloud_event(r))?,
                        ExportFormat::Csv => write_text(&mut out, &closegate::export::csv_row(r))?,
                    };
                    if !written {
                        return Ok(0);
                    }
                }
            }
            if format != ExportFormat::Jsonl {
                return Ok(0);
            }
            // The signed heads close the export, so it can be checked on its own.
            for head in log.sink().heads()? {
                if !write_line(&mut out, &serde_json::json!({ "signed_head": head }))? {
                    return Ok(0);
                }
            }
            Ok(0)
        }
    }
}
