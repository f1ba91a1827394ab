//! Policies: which tickets are gated, and what must be true in which system.

mod governance;
pub mod live;
mod load;
mod model;
mod render;
pub mod suite;

use std::{collections::BTreeMap, time::Duration};

pub use governance::{ApprovalRule, Approvers, Directory, RequesterRule, Separation};
pub use load::{PolicyError, SystemCatalog, load_dir};
pub use render::{ExpiryValue, Rendered, fields_named, render_checks, render_expiry, render_identity};

use crate::domain::{Expect, Mode, TicketEvent};

/// The JSON Schema of a policy file, generated from the types that read it.
/// `policies/policy.schema.json` is this text; a test keeps the two equal.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(model::PolicyFile);
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}

/// A validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub description: String,
    pub mode: Mode,
    pub file: String,
    /// SHA-256 of the file's bytes, recorded with every decision it makes.
    pub hash: String,
    pub sources: Vec<String>,
    pub labels: Vec<String>,
    pub fields: BTreeMap<String, String>,
    pub require_fields: Vec<String>,
    pub checks: Vec<CheckTemplate>,
    /// How long access granted under this policy may last.
    pub expiry: ExpiryRule,
    pub on_drift: OnDrift,
    /// How often claims are re-verified; the configured default when `None`.
    pub drift_interval: Option<Duration>,
    pub break_glass: Option<BreakGlass>,
    /// How long a mismatch is re-checked before the close is blocked.
    pub settle: Option<Duration>,
    pub approval: Option<ApprovalRule>,
    pub requester: Option<RequesterRule>,
}

/// A policy's emergency path.
#[derive(Debug, Clone)]
pub struct BreakGlass {
    pub label: String,
    pub verify_within: Duration,
}

/// A policy's rules on time-bound access.
#[derive(Debug, Clone, Default)]
pub struct ExpiryRule {
    /// Template for the expiry: an RFC 3339 time or a duration from the close.
    pub template: Option<String>,
    /// A close without an expiry is blocked.
    pub required: bool,
    /// The longest access allowed.
    pub max_duration: Option<Duration>,
}

/// What a drift does to the ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDrift {
    /// Reopen the ticket (while it is still in the close judged) and comment.
    #[default]
    Reopen,
    /// Comment only.
    Comment,
}

/// A check as written in the policy, before the ticket fills it in.
#[derive(Debug, Clone)]
pub struct CheckTemplate {
    pub name: String,
    /// Every system the check runs on (groups already expanded).
    pub systems: Vec<String>,
    pub kind: String,
    pub params: BTreeMap<String, String>,
    pub requested: Option<String>,
    pub expect: Expect,
}

/// Every policy loaded from the policies directory.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    pub policies: Vec<Policy>,
}

impl Policy {
    /// Whether this policy governs the ticket in `event`.
    pub fn selects(&self, event: &TicketEvent) -> bool {
        let source_ok = self.sources.is_empty() || self.sources.iter().any(|s| s == &event.ticket.source);
        let labels_ok = self
            .labels
            .iter()
            .all(|want| event.labels.iter().any(|have| have.eq_ignore_ascii_case(want)));
        let fields_ok = self.fields.iter().all(|(key, want)| {
            event
                .fields
                .get(key)
                .is_some_and(|have| have.trim().eq_ignore_ascii_case(want.trim()))
        });
        source_ok && labels_ok && fields_ok
    }
}

impl PolicySet {
    /// The policy of that name.
    pub fn by_name(&self, name: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.name == name)
    }

    /// The policies that govern this ticket (normally zero or one).
    pub fn governing(&self, event: &TicketEvent) -> Vec<&Policy> {
        self.policies.iter().filter(|p| p.selects(event)).collect()
    }
}
