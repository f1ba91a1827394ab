//! Who approved an access request, whether they could, and who owns a
//! non-human requester: the facts an access review asks for besides the
//! entitlement itself.

use serde::{Deserialize, Serialize};

use super::{CheckResult, ticket::ActorKind};

/// A person (or account) as the helpdesk names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Person {
    /// The helpdesk's own id (login, account id, sys_id, user id).
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Person {
    pub fn id(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            ..Self::default()
        }
    }
}

/// One approval, read from the helpdesk with closegate's own credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub approver: Person,
    /// When it was given (RFC 3339).
    pub at: String,
    /// Where it was read: `comment 12345 "/approve"`, `label access-approved`,
    /// `Jira approval 7`, `sysapproval_approver 9d3…`.
    #[serde(default)]
    pub via: String,
}

/// What the helpdesk counts as an approval, besides its own approval records.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApprovalMarks {
    /// A comment whose first line is this command (`/approve`).
    pub command: String,
    /// A label that approves when the approver adds it.
    pub label: Option<String>,
    /// A field that approves when the approver sets it to a true value (Zendesk).
    pub field: Option<String>,
}

impl ApprovalMarks {
    /// Whether a comment approves: the first word of its first non-empty
    /// line is the command (`/approve`), nothing else.
    pub fn approves(&self, body: &str) -> bool {
        let first = body.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default();
        first
            .split_whitespace()
            .next()
            .is_some_and(|word| word.eq_ignore_ascii_case(&self.command))
    }
}

/// Why one approval was or was not counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "reason")]
pub enum ApprovalStanding {
    Counted,
    /// Given before the request's fields last changed.
    Stale(String),
    /// The approver is not allowed to approve (not in the group, inactive...).
    NoAuthority(String),
    /// The approver's authority could not be observed.
    Unverified(String),
    /// Separation of duties: the approver is the requester (or the closer).
    SelfApproval(String),
    /// A second approval by the same person.
    Duplicate,
}

/// One approval as judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgedApproval {
    pub approval: Approval,
    /// The directory identity the approver was checked as.
    pub identity: String,
    pub standing: ApprovalStanding,
    /// What the approver's authority was checked against, with what was observed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authority: Vec<CheckResult>,
}

/// The approval part of a decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalReport {
    /// The rule, in words (`1 approval by a member of db-owners on corp-ldap`).
    pub rule: String,
    pub required: u32,
    pub approvals: Vec<JudgedApproval>,
    /// When the request's fields last changed, as far as closegate saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_changed_at: Option<String>,
    /// Why the approvals could not be read, if they could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ApprovalReport {
    pub fn counted(&self) -> impl Iterator<Item = &JudgedApproval> {
        self.approvals
            .iter()
            .filter(|a| a.standing == ApprovalStanding::Counted)
    }
}

/// The requester part of a decision: its kind and, for a machine, its owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequesterReport {
    pub id: String,
    pub kind: ActorKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Whether the owner was observed active, with what was observed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owner_checks: Vec<CheckResult>,
}

/// Who asked, who approved, who owns: recorded with every governed decision
/// whose policy asks for any of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Governance {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester: Option<RequesterReport>,
}

impl Governance {
    pub fn is_empty(&self) -> bool {
        self.approval.is_none() && self.requester.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::ApprovalMarks;

    #[test]
    fn only_a_leading_command_approves() {
        let marks = ApprovalMarks {
            command: "/approve".into(),
            ..Default::default()
        };
        assert!(marks.approves("/approve"));
        assert!(marks.approves("\n  /APPROVE looks right\nthanks"));
        assert!(!marks.approves("I would /approve this"));
        assert!(!marks.approves("/approved"));
        assert!(!marks.approves(""));
    }
}
