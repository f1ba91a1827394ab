//! Outbox intents: what a decision owes the helpdesk, stored as typed data and
//! rendered into a comment only when it is delivered (so a template change
//! never rewrites stored rows).

use serde::{Deserialize, Serialize};

use crate::{
    adapters::{Effect, EffectError},
    domain::{EventKind, TicketRef, Verdict},
    render::{CommentFormat, Renderer},
    store::EvidenceRecord,
};

/// What to do on the ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// Post the decision comment; revert the close first when `reopen`, and
    /// only while the ticket is still in the close judged (`closed_at`).
    Decision { reopen: bool, closed_at: Option<String> },
    /// Record a verification ahead of the close where the helpdesk's own
    /// validator reads it (Jira), instead of commenting.
    PreVerification,
    /// Post the intake note of a governed request, replacing the previous one
    /// where the helpdesk can edit comments.
    Intake,
}

/// One outbox message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// Stable idempotency key; also hidden in the posted comment.
    pub key: String,
    pub ticket: TicketRef,
    /// The evidence record the message carries.
    pub evidence_id: String,
    pub action: Action,
}

/// A stored outbox payload: an intent, or a fully rendered effect written by an
/// earlier version (delivered as it is).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StoredMessage {
    Intent(Intent),
    Rendered(Box<Effect>),
}

impl Intent {
    /// The message a decision owes, for a ticket event that led to `verdict`.
    pub fn for_decision(
        ticket: &TicketRef,
        kind: EventKind,
        occurred_at: Option<&str>,
        reopen: bool,
        evidence_id: &str,
    ) -> Intent {
        let action = if kind == EventKind::ReadyToClose {
            Action::PreVerification
        } else {
            Action::Decision {
                reopen,
                closed_at: occurred_at.map(String::from),
            }
        };
        Intent {
            key: format!("cg-{evidence_id}"),
            ticket: ticket.clone(),
            evidence_id: evidence_id.to_string(),
            action,
        }
    }

    /// The intake note owed to a governed request (evidence record `evidence_id`).
    pub fn for_intake(ticket: &TicketRef, evidence_id: &str) -> Intent {
        Intent {
            key: format!("cg-{evidence_id}"),
            ticket: ticket.clone(),
            evidence_id: evidence_id.to_string(),
            action: Action::Intake,
        }
    }

    /// The marker every intake note of a ticket carries, so that the next one
    /// replaces it: stable per ticket, free of the key's characters.
    fn intake_marker(ticket: &TicketRef) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(ticket.to_string().as_bytes());
        format!("closegate-intake:{}", &hex::encode(digest)[..16])
    }

    /// Renders the effect from the evidence record it carries.
    pub fn render(
        &self,
        record: &EvidenceRecord,
        renderer: &Renderer,
        format: CommentFormat,
        log_head: Option<&str>,
    ) -> Result<Effect, EffectError> {
        let content = record
            .content()
            .map_err(|e| EffectError::permanent(format!("evidence record {} does not parse: {e}", record.id)))?;
        let decided_at = chrono::DateTime::from_timestamp_millis(record.created_at)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let decision = &content.decision;
        let rendered = match self.action {
            Action::Intake => renderer.intake(format, &content, &record.id),
            _ => renderer.decision(format, &content, &decided_at, &record.id, &record.hash, log_head),
        };
        let comment = rendered.unwrap_or_else(|e| {
            tracing::error!(error.message = %e, "comment template failed; posting the plain form");
            format!(
                "closegate: {} under policy {} ({}). {}\nEvidence record {}, hash {}.",
                decision.verdict,
                decision.policy.as_deref().unwrap_or("none"),
                decision.mode,
                decision.reasons.join("; "),
                record.id,
                record.hash
            )
        });
        let (reopen, closed_at, pre_verification) = match &self.action {
            Action::Decision { reopen, closed_at } => (*reopen, closed_at.clone(), false),
            Action::PreVerification => (false, None, true),
            Action::Intake => (false, None, false),
        };
        Ok(Effect {
            replaces: (self.action == Action::Intake).then(|| Self::intake_marker(&self.ticket)),
            pre_verification,
            key: self.key.clone(),
            ticket: self.ticket.clone(),
            verdict: decision.verdict,
            mode: decision.mode,
            reopen: reopen && decision.verdict == Verdict::Blocked,
            closed_at,
            comment,
            policy: decision.policy.clone(),
            reasons: decision.reasons.clone(),
            evidence_id: record.id.clone(),
            evidence_hash: record.hash.clone(),
            fields: content.event.fields.clone(),
            decided_at: Some(decided_at),
        })
    }
}
