use serde::{Deserialize, Serialize};

use super::{
    CheckResult,
    trigger::{UnknownName, by_name},
};

/// How hard a policy bites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// A failed check reopens the ticket and says why.
    #[default]
    Enforce,
    /// A failed check only comments; the ticket stays closed.
    Warn,
    /// Everything is recorded; nothing is said to the helpdesk.
    DryRun,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Warn => "warn",
            Mode::DryRun => "dry-run",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        by_name(&[Mode::Enforce, Mode::Warn, Mode::DryRun], Mode::as_str, s)
    }
}

/// The gate's answer for one closure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every check holds: the closure stands.
    Allowed,
    /// Something is missing, too broad, still present or could not be verified.
    Blocked,
    /// No policy governs this ticket.
    Ungated,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Blocked => "blocked",
            Verdict::Ungated => "ungated",
        }
    }
}

impl std::str::FromStr for Verdict {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        by_name(
            &[Verdict::Allowed, Verdict::Blocked, Verdict::Ungated],
            Verdict::as_str,
            s,
        )
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decision with everything that led to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub verdict: Verdict,
    pub policy: Option<String>,
    pub policy_hash: Option<String>,
    pub mode: Mode,
    /// Why the ticket was blocked, in words fit for the ticket.
    pub reasons: Vec<String>,
    pub checks: Vec<CheckResult>,
    /// When the access this decision allowed must end (RFC 3339), if it must.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<String>,
    /// A close allowed as an exception (break-glass), to be verified later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception: Option<Exception>,
    /// Earlier checks of a settle window that did not yet hold, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
    /// What the reader should know besides the verdict (a selector edited away).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// When the claims an allowed decision verified are next re-verified
    /// (RFC 3339): the drift sweep, or a break-glass deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_check: Option<String>,
    /// Who approved, with what authority, and who owns a non-human requester.
    #[serde(default, skip_serializing_if = "super::Governance::is_empty")]
    pub governance: super::Governance,
}

impl Decision {
    /// A decision with only its verdict, policy (name and hash), mode and
    /// reasons; nothing checked yet.
    pub fn new(verdict: Verdict, policy: Option<(&str, &str)>, mode: Mode, reasons: Vec<String>) -> Self {
        Decision {
            verdict,
            policy: policy.map(|p| p.0.to_string()),
            policy_hash: policy.map(|p| p.1.to_string()),
            mode,
            reasons,
            checks: Vec::new(),
            valid_until: None,
            exception: None,
            attempts: Vec::new(),
            notes: Vec::new(),
            next_check: None,
            governance: Default::default(),
        }
    }

    /// A record about a governed ticket that judges nothing (an edit, an
    /// intake note): ungated, dry-run, under `policy`.
    pub fn note(policy: &str, policy_hash: Option<String>) -> Self {
        Decision {
            policy_hash,
            ..Decision::new(Verdict::Ungated, Some((policy, "")), Mode::DryRun, Vec::new())
        }
    }
}

/// A break-glass close: allowed now, verified by `verify_by`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exception {
    /// The label that asked for it.
    pub label: String,
    pub closer: super::Actor,
    /// Why, as the ticket says (its `reason` field, or its title).
    pub reason: String,
    /// RFC 3339: by then the access must match the ticket.
    pub verify_by: String,
}

/// One check of a settle window that did not yet hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// RFC 3339.
    pub at: String,
    pub reasons: Vec<String>,
}
