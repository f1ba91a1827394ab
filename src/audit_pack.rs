//! `closegate audit-pack`: a self-contained static page (and the JSON it is
//! built from) an auditor reads without closegate: per ticket the timeline
//! request → approval → fulfilment → verification → expiry and drift checks,
//! each step with its evidence record and, where a signed tree head covers
//! it, its inclusion proof; plus the period's figures and a few charts.

use std::{collections::BTreeMap, path::Path};

use serde::Serialize;

use crate::{
    domain::{ApprovalStanding, Verdict},
    evidence::{EvidenceContent, Finding, heads::SignedHead, merkle},
    report::{self, Report},
    store::{EvidenceRecord, Store, StoreError},
};

const PAGE: &str = include_str!("audit_pack/page.html");

/// Which records the pack covers.
#[derive(Debug, Clone)]
pub enum Scope {
    /// Every ticket with a record at or after this time (unix ms).
    Since(i64),
    /// One ticket (`source`, `key`), all of its records.
    Ticket(String, String),
}

#[derive(Debug, thiserror::Error)]
pub enum AuditPackError {
    #[error("Failed to read the evidence log")]
    Store(#[from] StoreError),
    #[error("Failed to write the audit pack to {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Failed to encode the audit pack")]
    Encode(#[from] serde_json::Error),
}

/// An inclusion proof of one record under the pack's signed head.
#[derive(Debug, Clone, Serialize)]
pub struct InclusionProof {
    pub leaf_index: u64,
    pub tree_size: u64,
    pub audit_path: Vec<String>,
}

/// One step of a ticket's timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub at: String,
    /// `request`, `intake`, `edit`, `approval`, `close`, `expiry`, `drift`…
    pub kind: &'static str,
    pub summary: String,
    pub verdict: Option<Verdict>,
    pub evidence_id: Option<String>,
    pub hash: Option<String>,
    pub leaf_hash: Option<String>,
    pub proof: Option<InclusionProof>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TicketTimeline {
    pub source: String,
    pub ticket: String,
    pub title: String,
    pub url: Option<String>,
    pub policy: Option<String>,
    /// The verdict of the ticket's last close decision.
    pub outcome: Option<Verdict>,
    pub steps: Vec<Step>,
}

/// Per day: closes allowed and blocked.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Day {
    pub day: String,
    pub allowed: u64,
    pub blocked: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Pack {
    pub generated_at: String,
    pub scope: String,
    pub report: Report,
    pub signed_head: Option<SignedHead>,
    pub days: Vec<Day>,
    pub tickets: Vec<TicketTimeline>,
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn kind_of(finding: Finding) -> &'static str {
    match finding {
        Finding::Close => "close",
        Finding::Removed | Finding::Unverified => "expiry",
        Finding::Drift | Finding::DriftResolved => "drift",
        Finding::BreakGlassVerified => "break-glass",
        Finding::Edit => "edit",
        Finding::Intake => "intake",
    }
}

fn summary(content: &EvidenceContent) -> String {
    let d = &content.decision;
    let mut text = match content.finding {
        Finding::Close => format!("close {}", d.verdict),
        Finding::Removed => "expired access verified removed".into(),
        Finding::Unverified => "could not verify the removal at expiry".into(),
        Finding::Drift => "drift: the access no longer matches".into(),
        Finding::DriftResolved => "drift resolved".into(),
        Finding::BreakGlassVerified => "break-glass change verified".into(),
        Finding::Edit => "request edited".into(),
        Finding::Intake => "intake note".into(),
    };
    let details: Vec<&String> = d.reasons.iter().chain(d.notes.iter()).collect();
    if !details.is_empty() {
        text.push_str(": ");
        text.push_str(&details.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("; "));
    }
    text
}

/// Builds the pack from the store (and the latest signed head, if any).
pub async fn build(
    store: &Store,
    scope: &Scope,
    head: Option<SignedHead>,
    now_ms: i64,
    marker: Option<&str>,
) -> Result<Pack, AuditPackError> {
    let records = store.evidence_all().await?;
    let covered = head
        .as_ref()
        .and_then(|h| h.verified(None).ok())
        .map(|t| t.tree_size as usize)
        .unwrap_or(0)
        .min(records.len());
    let leaves: Vec<merkle::Hash> = records[..covered]
        .iter()
        .map(|r| merkle::leaf_hash(r.record.as_bytes()))
        .collect();
    let first_seen = store.governed_first_seen().await?;
    let (since_ms, scope_text) = match scope {
        Scope::Since(ms) => (*ms, format!("records since {}", rfc3339(*ms))),
        Scope::Ticket(source, key) => (0, format!("ticket {source}:{key}")),
    };
    let selected = |r: &EvidenceRecord| match scope {
        Scope::Since(ms) => r.created_at >= *ms,
        Scope::Ticket(source, key) => &r.source == source && &r.ticket == key,
    };
    let mut tickets: BTreeMap<(String, String), TicketTimeline> = BTreeMap::new();
    let mut days: BTreeMap<String, Day> = BTreeMap::new();
    for (i, record) in records.iter().enumerate() {
        if !selected(record) {
            continue;
        }
        let Ok(content) = record.content() else { continue };
        let timeline = tickets
            .entry((record.source.clone(), record.ticket.clone()))
            .or_insert_with(|| TicketTimeline {
                source: record.source.clone(),
                ticket: record.ticket.clone(),
                title: String::new(),
                url: None,
                policy: None,
                outcome: None,
                steps: Vec::new(),
            });
        timeline.title = content.event.title.clone();
        timeline.url = content.event.url.clone().or(timeline.url.take());
        timeline.policy = content.decision.policy.clone().or(timeline.policy.take());
        let proof = (i < covered).then(|| InclusionProof {
            leaf_index: i as u64,
            tree_size: covered as u64,
            audit_path: merkle::inclusion_path(i, &leaves).iter().map(hex::encode).collect(),
        });
        let evidence = |kind, at: String, summary: String, verdict| Step {
            at,
            kind,
            summary,
            verdict,
            evidence_id: Some(record.id.clone()),
            hash: Some(record.hash.clone()),
            leaf_hash: Some(hex::encode(merkle::leaf_hash(record.record.as_bytes()))),
            proof: proof.clone(),
        };
        if let Some(report) = &content.decision.governance.approval {
            for a in report
                .approvals
                .iter()
                .filter(|a| a.standing == ApprovalStanding::Counted)
            {
                let text = format!(
                    "approved by {} ({}) under \"{}\"",
                    a.identity, a.approval.via, report.rule
                );
                if !timeline.steps.iter().any(|s| s.kind == "approval" && s.summary == text) {
                    timeline
                        .steps
                        .push(evidence("approval", a.approval.at.clone(), text, None));
                }
            }
        }
        let verdict = (content.finding == Finding::Close).then_some(content.decision.verdict);
        timeline.steps.push(evidence(
            kind_of(content.finding),
            rfc3339(record.created_at),
            summary(&content),
            verdict,
        ));
        if content.finding == Finding::Close && content.decision.verdict != Verdict::Ungated {
            timeline.outcome = Some(content.decision.verdict);
            let day = days.entry(rfc3339(record.created_at)[..10].to_string()).or_default();
            day.day = rfc3339(record.created_at)[..10].to_string();
            match content.decision.verdict {
                Verdict::Allowed => day.allowed += 1,
                _ => day.blocked += 1,
            }
        }
    }
    for timeline in tickets.values_mut() {
        if let Some(seen) = first_seen.get(&format!("{}:{}", timeline.source, timeline.ticket)) {
            timeline.steps.push(Step {
                at: rfc3339(*seen),
                kind: "request",
                summary: format!(
                    "first seen as an access request governed by {}",
                    timeline.policy.as_deref().unwrap_or("a policy")
                ),
                verdict: None,
                evidence_id: None,
                hash: None,
                leaf_hash: None,
                proof: None,
            });
        }
        timeline.steps.sort_by(|a, b| {
            let t = |s: &Step| {
                chrono::DateTime::parse_from_rfc3339(&s.at)
                    .map(|t| t.timestamp_millis())
                    .ok()
            };
            t(a).cmp(&t(b))
                .then_with(|| (a.kind == "request").cmp(&(b.kind == "request")).reverse())
        });
    }
    Ok(Pack {
        generated_at: rfc3339(now_ms),
        scope: scope_text,
        report: report::compute(&records, since_ms, &first_seen, marker),
        signed_head: head.filter(|_| covered > 0),
        days: days.into_values().collect(),
        tickets: tickets.into_values().collect(),
    })
}

/// Writes `index.html` (data embedded, no network, no server) and
/// `audit-pack.json` into `out`.
pub fn write(pack: &Pack, out: &Path) -> Result<(), AuditPackError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| AuditPackError::Write { path, source }
    };
    std::fs::create_dir_all(out).map_err(io(out))?;
    let json = serde_json::to_string_pretty(pack)?;
    let json_path = out.join("audit-pack.json");
    std::fs::write(&json_path, &json).map_err(io(&json_path))?;
    // `<`, `>` and `&` only occur inside JSON strings: as \u escapes they
    // cannot end the <script> data block or open a comment in it.
    let embedded = serde_json::to_string(pack)?
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");
    let html = PAGE.replace("__PACK_JSON__", &embedded);
    let html_path = out.join("index.html");
    std::fs::write(&html_path, html).map_err(io(&html_path))?;
    Ok(())
}
