use serde::{Deserialize, Serialize};

use crate::domain::{Mode, TicketRef, Verdict};

/// What a decision asks of the helpdesk. Stored in the outbox as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    /// Stable idempotency key; also hidden in the posted comment.
    pub key: String,
    pub ticket: TicketRef,
    pub verdict: Verdict,
    pub mode: Mode,
    /// Reopen (revert the close) before commenting.
    pub reopen: bool,
    /// When the close being judged happened, as the helpdesk reported it. A
    /// reopen is sent only while the ticket is still in that close.
    pub closed_at: Option<String>,
    /// The comment, rendered for this helpdesk.
    pub comment: String,
    pub policy: Option<String>,
    pub reasons: Vec<String>,
    pub evidence_id: String,
    pub evidence_hash: String,
    /// A verification ahead of the close: record the result where the
    /// helpdesk's own validator reads it, instead of commenting.
    #[serde(default)]
    pub pre_verification: bool,
    /// The ticket fields the decision verified (policy field names).
    #[serde(default)]
    pub fields: std::collections::BTreeMap<String, String>,
    /// When the decision was made (RFC 3339).
    #[serde(default)]
    pub decided_at: Option<String>,
    /// A note that replaces the earlier comment carrying this marker, where the
    /// helpdesk can edit comments (intake notes); elsewhere a new comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
}

impl Effect {
    /// The reference written into every comment (hidden where the markup
    /// allows), looked for before posting so that nothing is posted twice.
    pub fn marker(&self) -> String {
        format!("closegate:{}", self.key)
    }
}

/// A failed effect. Retryable ones are tried again with backoff.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct EffectError {
    pub message: String,
    pub retryable: bool,
    /// How long the helpdesk asked to wait (`Retry-After` on a 429 or 503).
    pub retry_after: Option<std::time::Duration>,
}

impl EffectError {
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
            retry_after: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
            retry_after: None,
        }
    }
}
