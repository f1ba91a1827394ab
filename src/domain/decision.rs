use serde::{Deserialize, Serialize};

use super::CheckResult;

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
}
