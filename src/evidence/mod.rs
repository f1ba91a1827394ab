//! The evidence document: what every decision record holds, typed, and the
//! exact text that is hashed into the log.

pub mod heads;
pub mod log;
pub mod merkle;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::{Decision, Mode, TicketEvent, Trigger, TriggerKind, Verdict};

/// The decision details: the ticket as it was judged and the decision with
/// every check, observation and reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceContent {
    pub event: TicketEvent,
    pub decision: Decision,
    /// What the record found; a close unless a re-verification says otherwise.
    #[serde(default)]
    pub finding: Finding,
}

/// What a decision record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finding {
    /// A close judged (webhook, gate check, manual re-check).
    #[default]
    Close,
    /// At expiry the access was verified gone.
    Removed,
    /// The access no longer matches the ticket (widened, removed, still held after expiry).
    Drift,
    /// A reported drift no longer holds.
    DriftResolved,
    /// The target could not be asked at expiry; retried, never read as removed.
    Unverified,
    /// A break-glass close verified by its deadline.
    BreakGlassVerified,
    /// The labels or fields of a governed ticket were edited.
    Edit,
    /// A governed request was opened or changed: what it still lacks.
    Intake,
}

/// The hashed document. Every column the store keeps beside it is a copy of
/// one of these fields, and `evidence verify` checks each copy against it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SealedDocument {
    pub id: String,
    pub seq: i64,
    pub created_at: i64,
    pub prev_hash: String,
    /// Absent from records written before triggers existed; see [`Self::trigger`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
    /// Records written before triggers existed name their delivery here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
    pub source: String,
    pub ticket: String,
    pub verdict: Verdict,
    pub policy: Option<String>,
    pub mode: Mode,
    pub content: EvidenceContent,
}

impl SealedDocument {
    /// The trigger, reading an older record's delivery as a webhook trigger.
    pub fn trigger(&self) -> Option<Trigger> {
        self.trigger.clone().or_else(|| {
            self.delivery
                .as_ref()
                .map(|d| Trigger::new(TriggerKind::Webhook, d.clone()))
        })
    }
}

/// `hash = SHA-256(prev_hash || record)`, hex.
pub fn chain_hash(prev_hash: &str, record: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(record.as_bytes());
    hex::encode(h.finalize())
}
