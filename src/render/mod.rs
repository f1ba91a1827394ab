//! Comments, rendered from templates that ship with closegate; a
//! `templates_dir` in the config may override any of them by file name.

use std::path::Path;

use minijinja::Environment;
use serde::Serialize;

use crate::{
    domain::{Actor, CheckOutcome, Decision, Exception, Mode, Verdict, error_summary},
    evidence::{EvidenceContent, Finding},
};

mod adf;
pub mod audit;
mod intake;

const DECISION: &str = "decision.md.j2";
const SHIPPED: &[(&str, &str)] = &[
    (DECISION, include_str!("templates/decision.md.j2")),
    ("decision.txt.j2", include_str!("templates/decision.txt.j2")),
    ("decision.wiki.j2", include_str!("templates/decision.wiki.j2")),
];

/// The markup a helpdesk's comments take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommentFormat {
    /// GitHub, GitLab, Gitea, Linear, generic callbacks.
    Markdown,
    /// Zendesk and Freshservice notes, ServiceNow work notes, django-helpdesk.
    Text,
    /// Jira Data Center (REST v2).
    JiraWiki,
    /// Jira Cloud (REST v3): Atlassian Document Format, as JSON text.
    Adf,
}

impl CommentFormat {
    fn template(self) -> &'static str {
        match self {
            CommentFormat::Markdown | CommentFormat::Adf => DECISION,
            CommentFormat::Text => "decision.txt.j2",
            CommentFormat::JiraWiki => "decision.wiki.j2",
        }
    }
}

pub struct Renderer {
    env: Environment<'static>,
}

/// One check as the comment shows it.
#[derive(Serialize)]
pub(crate) struct CheckView {
    name: String,
    system: String,
    subject: String,
    object: String,
    expect: String,
    requested: Vec<String>,
    observed: Option<Vec<String>>,
    exists: bool,
    result: &'static str,
    error: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct DecisionView<'a> {
    /// The first line, without markup: what happened.
    headline: &'static str,
    /// `ok`, `warn` or `stop`: how the headline is marked.
    tone: &'static str,
    /// `close`, `removed`, `drift`, `drift_resolved`, `unverified`.
    finding: &'static str,
    valid_until: Option<&'a str>,
    exception: Option<&'a Exception>,
    attempts: usize,
    notes: &'a [String],
    verdict: &'a str,
    mode: &'a str,
    policy: &'a str,
    policy_hash: &'a str,
    reasons: &'a [String],
    checks: Vec<CheckView>,
    actor: &'a Actor,
    requester: Option<&'a Actor>,
    ticket: &'a str,
    decided_at: &'a str,
    evidence_id: &'a str,
    evidence_hash: &'a str,
    /// The signed tree head that covers the record: `size N, root R`.
    log_head: Option<&'a str>,
    /// The audit block of an allowed close.
    audit: Vec<audit::AuditLine>,
}

impl Renderer {
    /// Loads the shipped templates, then any overrides; a template that does not
    /// parse stops the start.
    pub fn new(overrides: Option<&Path>) -> Result<Self, String> {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        for (name, source) in SHIPPED {
            let source = match overrides.map(|dir| dir.join(name)).filter(|p| p.exists()) {
                Some(path) => std::fs::read_to_string(&path)
                    .map_err(|e| format!("templates_dir: cannot read {}: {e}", path.display()))?,
                None => source.to_string(),
            };
            env.add_template_owned(*name, source)
                .map_err(|e| format!("templates_dir: {name} does not parse: {e}"))?;
        }
        Ok(Self { env })
    }

    /// The intake note of a governed request, in the helpdesk's markup.
    pub fn intake(
        &self,
        format: CommentFormat,
        content: &EvidenceContent,
        evidence_id: &str,
    ) -> Result<String, String> {
        Ok(intake::note(format, content, evidence_id))
    }

    /// The comment for an evidence record, in the helpdesk's markup.
    pub fn decision(
        &self,
        format: CommentFormat,
        content: &EvidenceContent,
        decided_at: &str,
        evidence_id: &str,
        evidence_hash: &str,
        log_head: Option<&str>,
    ) -> Result<String, String> {
        let (event, decision) = (&content.event, &content.decision);
        let (tone, headline) = headline(content.finding, decision);
        let checks = decision
            .checks
            .iter()
            .map(|c| CheckView {
                name: c.spec.name.clone(),
                system: c.spec.system.clone(),
                subject: c
                    .observation
                    .as_ref()
                    .map(|o| o.subject.clone())
                    .or_else(|| ["role", "user"].iter().find_map(|k| c.spec.params.get(*k).cloned()))
                    .unwrap_or_default(),
                object: c.observation.as_ref().map(|o| o.object.clone()).unwrap_or_default(),
                expect: c.spec.expect.to_string(),
                requested: c.spec.requested.iter().cloned().collect(),
                observed: c.observation.as_ref().map(|o| o.held.iter().cloned().collect()),
                exists: c.observation.as_ref().is_some_and(|o| o.exists),
                result: match c.outcome {
                    CheckOutcome::Holds => "holds",
                    CheckOutcome::Mismatch { .. } => "mismatch",
                    CheckOutcome::CouldNotVerify { .. } => "could not verify",
                },
                error: match &c.outcome {
                    CheckOutcome::CouldNotVerify { error } => Some(error_summary(error).to_string()),
                    _ => None,
                },
            })
            .collect();
        let view = DecisionView {
            headline,
            tone,
            finding: finding_name(content.finding),
            valid_until: decision.valid_until.as_deref(),
            exception: decision.exception.as_ref(),
            attempts: decision.attempts.len(),
            notes: &decision.notes,
            verdict: decision.verdict.as_str(),
            mode: decision.mode.as_str(),
            policy: decision.policy.as_deref().unwrap_or("none"),
            policy_hash: decision.policy_hash.as_deref().unwrap_or(""),
            reasons: &decision.reasons,
            checks,
            actor: &event.actor,
            requester: event.requester.as_ref(),
            ticket: &event.ticket.key,
            decided_at,
            evidence_id,
            evidence_hash,
            log_head,
            audit: audit::lines(decision, evidence_id),
        };
        if format == CommentFormat::Adf {
            return Ok(adf::document(&view).to_string());
        }
        self.env
            .get_template(format.template())
            .and_then(|t| t.render(&view))
            .map_err(|e| format!("cannot render the decision comment: {e}"))
    }
}

/// The tone and first line of a comment.
fn headline(finding: Finding, decision: &Decision) -> (&'static str, &'static str) {
    match (finding, decision.verdict, decision.mode) {
        (Finding::Close, Verdict::Allowed, _) if decision.exception.is_some() => (
            "warn",
            "closegate: break-glass close allowed as an exception, to be verified",
        ),
        (Finding::Close, Verdict::Allowed, _) => ("ok", "closegate: closure verified"),
        (Finding::Close, _, Mode::Warn) => (
            "warn",
            "closegate: closure NOT verified (warn mode, ticket left closed)",
        ),
        (Finding::Close, _, _) => ("stop", "closegate: closure blocked, ticket reopened"),
        (Finding::Removed, _, _) => ("ok", "closegate: expired access verified removed"),
        (Finding::Drift, _, _) => ("stop", "closegate: drift, the access no longer matches this ticket"),
        (Finding::DriftResolved, _, _) => ("ok", "closegate: drift resolved, the access matches this ticket again"),
        (Finding::Unverified, _, _) => ("warn", "closegate: could not verify that expired access was removed"),
        (Finding::BreakGlassVerified, _, _) => ("ok", "closegate: break-glass change verified after the fact"),
        (Finding::Edit, _, _) => ("warn", "closegate: the request of a governed ticket was edited"),
        (Finding::Intake, _, _) => ("ok", "closegate: this access request is governed"),
    }
}

fn finding_name(finding: Finding) -> &'static str {
    match finding {
        Finding::Close => "close",
        Finding::Removed => "removed",
        Finding::Drift => "drift",
        Finding::DriftResolved => "drift_resolved",
        Finding::Unverified => "unverified",
        Finding::BreakGlassVerified => "break_glass_verified",
        Finding::Edit => "edit",
        Finding::Intake => "intake",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventKind, TicketEvent, TicketRef};

    fn event() -> TicketEvent {
        TicketEvent {
            ticket: TicketRef {
                source: "gh".into(),
                key: "a/b#1".into(),
            },
            kind: EventKind::Closed,
            event: "issues.closed".into(),
            old_state: None,
            new_state: None,
            actor: Actor {
                id: "bob".into(),
                kind: crate::domain::ActorKind::Human,
            },
            requester: None,
            title: String::new(),
            labels: vec![],
            fields: Default::default(),
            url: None,
            occurred_at: None,
            caused_by_gate: false,
            state_closed: None,
            synchronous: false,
            approvals: Vec::new(),
        }
    }

    fn decision() -> Decision {
        Decision::new(
            Verdict::Blocked,
            Some(("p", "abc")),
            Mode::Enforce,
            vec!["the ticket is missing required fields: table".into()],
        )
    }

    fn content() -> EvidenceContent {
        EvidenceContent {
            event: event(),
            decision: decision(),
            finding: Finding::Close,
        }
    }

    #[test]
    fn the_shipped_template_names_decision_policy_reasons_and_evidence() {
        let text = Renderer::new(None)
            .unwrap()
            .decision(
                CommentFormat::Markdown,
                &content(),
                "T",
                "ev-1",
                "h-1",
                Some("size 1, root r"),
            )
            .unwrap();
        for needle in [
            "blocked",
            "`p`",
            "enforce",
            "missing required fields: table",
            "ev-1",
            "h-1",
            "bob (human)",
            "signed log head size 1, root r",
        ] {
            assert!(text.contains(needle), "{needle} not in {text}");
        }
    }

    #[test]
    fn every_format_shows_the_expiry_the_exception_and_the_notes() {
        let mut content = content();
        content.decision.valid_until = Some("2026-11-29T10:00:00Z".into());
        content.decision.notes = vec!["label \"access-request\" removed".into()];
        content.decision.exception = Some(Exception {
            label: "break-glass".into(),
            closer: content.event.actor.clone(),
            reason: "prod outage".into(),
            verify_by: "2026-11-28T14:00:00Z".into(),
        });
        let renderer = Renderer::new(None).unwrap();
        for format in [
            CommentFormat::Markdown,
            CommentFormat::Text,
            CommentFormat::JiraWiki,
            CommentFormat::Adf,
        ] {
            let text = renderer.decision(format, &content, "T", "ev-1", "h", None).unwrap();
            for needle in ["2026-11-29T10:00:00Z", "prod outage", "access-request"] {
                assert!(text.contains(needle), "{format:?}: {needle} not in {text}");
            }
        }
    }

    #[test]
    fn a_template_in_templates_dir_overrides_the_shipped_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DECISION), "custom {{ verdict }} {{ evidence_id }}").unwrap();
        let text = Renderer::new(Some(dir.path()))
            .unwrap()
            .decision(CommentFormat::Markdown, &content(), "T", "ev-1", "h", None)
            .unwrap();
        assert_eq!(text, "custom blocked ev-1");
    }

    #[test]
    fn a_broken_override_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DECISION), "{% if %}").unwrap();
        assert!(Renderer::new(Some(dir.path())).is_err());
    }
}
