use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// The state a policy expects a target system to be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// The subject exists and holds at least the requested items.
    Present,
    /// The subject holds none of the requested items (or, with none requested,
    /// does not exist at all).
    Absent,
    /// The subject holds exactly the requested items and nothing more.
    Exact,
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Expect::Present => "present",
            Expect::Absent => "absent",
            Expect::Exact => "exact",
        })
    }
}

/// One check, with its parameters already rendered from the ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckSpec {
    /// A human label from the policy.
    pub name: String,
    /// The configured target system's name.
    pub system: String,
    /// The verifier's check kind (`table_privileges`, `role`, ...).
    pub kind: String,
    pub params: BTreeMap<String, String>,
    pub expect: Expect,
    /// The items asked for (privileges, groups, attributes), upper-cased by the
    /// verifier's own rules when it reports what it saw.
    pub requested: BTreeSet<String>,
}

/// What a verifier saw in the target system. Facts only: no judgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// The identity checked (role, user, account).
    pub subject: String,
    /// What it was checked on (table, schema, group); empty for the identity itself.
    pub object: String,
    /// Whether the subject exists at all.
    pub exists: bool,
    /// The items the subject actually holds on the object.
    pub held: BTreeSet<String>,
    /// Where the facts were read (host/database, never credentials).
    pub location: String,
}

/// The verdict on one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CheckOutcome {
    Holds,
    Mismatch {
        reason: String,
    },
    /// The target system could not be asked: never read as "absent".
    CouldNotVerify {
        error: String,
    },
}

/// A "could not verify" error as a ticket comment may show it: the kind of
/// failure only. Hosts, driver messages and the rest stay in the log and the
/// evidence record.
pub fn error_summary(error: &str) -> &'static str {
    if error.starts_with("timed out") {
        "timed out"
    } else if error.starts_with("cannot reach") {
        "could not connect"
    } else if error.starts_with("bad check parameters") {
        "the ticket's values do not fit the check"
    } else if error.contains("is not configured") {
        "the system is not configured"
    } else {
        "the query failed"
    }
}

impl CheckOutcome {
    /// `holds`, `mismatch` or `could_not_verify`, as stored.
    pub fn status(&self) -> &'static str {
        match self {
            CheckOutcome::Holds => "holds",
            CheckOutcome::Mismatch { .. } => "mismatch",
            CheckOutcome::CouldNotVerify { .. } => "could_not_verify",
        }
    }
}

/// A check with what was observed and the verdict: what the evidence records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub spec: CheckSpec,
    pub observation: Option<Observation>,
    pub outcome: CheckOutcome,
    /// When the target was asked (RFC 3339).
    pub checked_at: String,
}
