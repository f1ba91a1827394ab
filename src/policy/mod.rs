//! Policies: which tickets are gated, and what must be true in which system.

mod load;
mod model;
mod render;

use std::collections::BTreeMap;

pub use load::{PolicyError, SystemCatalog, load_dir};
pub use render::{Rendered, render_checks};

use crate::domain::{Expect, Mode, TicketEvent};

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
    /// The policies that govern this ticket (normally zero or one).
    pub fn governing(&self, event: &TicketEvent) -> Vec<&Policy> {
        self.policies.iter().filter(|p| p.selects(event)).collect()
    }
}
