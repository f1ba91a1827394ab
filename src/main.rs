use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use closegate::{
    config::{LogFormat, Settings},
    policy,
    render::{CommentFormat, Renderer},
    startup::Application,
    store::Store,
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
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate every policy; prints file:line: problem and exits 1 on any error.
    Check {
        /// Policy directory (defaults to the configured policies_dir).
        dir: Option<PathBuf>,
    },
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
    /// Recompute the hash chain and report the first broken link.
    Verify,
    /// Print records as JSON lines (for SIEM and audit), after a sequence number.
    Export {
        #[arg(long, default_value_t = 0)]
        after: i64,
    },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
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
            telemetry::init(settings.log.format, &settings.log.filter, std::io::stdout);
            let app = Application::build(settings).await?;
            app.run_until_stopped().await?;
            Ok(0)
        }
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
            match policy::load_dir(&dir, &verifiers::catalog(&settings)) {
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
            evidence(command, &store, &renderer).await
        }
    }
}

async fn evidence(command: EvidenceCommand, store: &Store, renderer: &Renderer) -> anyhow::Result<i32> {
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
                if let Ok(comment) = renderer.decision(
                    CommentFormat::Markdown,
                    &content.event,
                    &content.decision,
                    &at,
                    &r.id,
                    &r.hash,
                ) {
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
            match report.broken {
                None => {
                    println!("chain intact: {} records, head {}", report.records, report.head_hash);
                    Ok(0)
                }
                Some((seq, problem)) => {
                    println!("chain broken at record #{seq}: {problem}");
                    Ok(1)
                }
            }
        }
        EvidenceCommand::Export { after } => {
            let mut after = after;
            loop {
                let page = store.evidence_page(after, 1000).await?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                for r in &page {
                    // The record is the exact hashed text, so each line can be
                    // checked on its own: hash = SHA-256(prev_hash || record).
                    println!(
                        "{}",
                        serde_json::json!({
                            "seq": r.seq, "id": r.id, "hash": r.hash, "prev_hash": r.prev_hash, "record": r.record,
                        })
                    );
                }
            }
            Ok(0)
        }
    }
}
