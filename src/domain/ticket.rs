use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where a ticket lives: the configured source name plus the helpdesk's own key
/// (`owner/repo#12` for GitHub, the issue key for Jira, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TicketRef {
    pub source: String,
    pub key: String,
}

impl std::fmt::Display for TicketRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.source, self.key)
    }
}

/// Whether an identity is a person or a machine. Many requesters of access are
/// service accounts, CI jobs or agents, and auditors need to see which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    Human,
    Service,
    /// An automated agent acting on someone's behalf.
    Agent,
    #[default]
    Unknown,
}

/// An identity as the helpdesk reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
pub struct Actor {
    pub id: String,
    #[serde(default)]
    pub kind: ActorKind,
}

/// What happened to the ticket, as far as the gate is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The ticket moved into a closed state: this is what gets gated.
    Closed,
    /// The ticket was reopened.
    Reopened,
    /// The ticket entered a "ready to close" state: verify ahead of the close
    /// so a helpdesk-side validator can read the result (Jira).
    ReadyToClose,
    /// Anything else (opened, labelled, commented, ping...): recorded, not gated.
    Other,
}

/// One helpdesk event, normalised. Adapters build it from the raw payload; the
/// gate never sees helpdesk JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketEvent {
    pub ticket: TicketRef,
    pub kind: EventKind,
    /// The helpdesk's own event name (`issues.closed`, `ticket.closed`, ...).
    pub event: String,
    pub old_state: Option<String>,
    pub new_state: Option<String>,
    /// Who caused the event (closed the ticket).
    pub actor: Actor,
    /// Who asked for the access (the ticket's author), when known.
    pub requester: Option<Actor>,
    pub title: String,
    pub labels: Vec<String>,
    /// Ticket fields, keyed by a normalised name (`database_role`).
    pub fields: BTreeMap<String, String>,
    pub url: Option<String>,
    /// When the helpdesk says the event happened (RFC 3339), if it says.
    pub occurred_at: Option<String>,
    /// True when the event was caused by closegate's own helpdesk identity.
    #[serde(default)]
    pub caused_by_gate: bool,
    /// Whether `new_state` counts as closed, when the adapter knows. Helpdesks
    /// that send only the new state rely on the last state closegate saw.
    #[serde(default)]
    pub state_closed: Option<bool>,
    /// A synchronous gate check: the caller acts on the answer, nothing is posted.
    #[serde(default)]
    pub synchronous: bool,
    /// Approvals carried in a signed payload (Standard Webhooks sources only;
    /// every other source's approvals are read from its API, never from here).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<super::Approval>,
}

impl TicketEvent {
    /// A close of `ticket` that only names it: what a re-read through the
    /// helpdesk's API fills in (asked as a synchronous check, so that every
    /// adapter reads the ticket afresh).
    pub fn probe(ticket: TicketRef, event: &str) -> Self {
        TicketEvent {
            ticket,
            kind: EventKind::Closed,
            event: event.to_string(),
            old_state: None,
            new_state: None,
            actor: Actor::default(),
            requester: None,
            title: String::new(),
            labels: Vec::new(),
            fields: BTreeMap::new(),
            url: None,
            occurred_at: None,
            caused_by_gate: false,
            state_closed: None,
            synchronous: true,
            approvals: Vec::new(),
        }
    }
}

/// Normalises a field name the way policies refer to it: lower case, words
/// joined by `_`, punctuation dropped. `"Database role"` → `database_role`.
pub fn field_key(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.trim().chars() {
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::field_key;

    #[test]
    fn field_names_are_normalised() {
        assert_eq!(field_key("Database role"), "database_role");
        assert_eq!(
            field_key("  Privileges (comma-separated) "),
            "privileges_comma_separated"
        );
        assert_eq!(field_key("schema"), "schema");
        assert_eq!(field_key("???"), "");
    }
}
