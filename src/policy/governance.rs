//! A policy's approval and requester rules, compiled from the policy file.

use marked_yaml::Spanned;

use super::load::SystemCatalog;
use crate::domain::{ApprovalMarks, CheckSpec, Expect};

/// A directory entry to observe: an LDAP or SCIM system, and the check kinds
/// its verifier uses for group membership and for an active account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directory {
    pub system: String,
    membership_kind: &'static str,
    active_kind: &'static str,
    active_value: &'static str,
}

impl Directory {
    /// Resolves `system` in the catalog; `None` when it is no directory.
    fn resolve(system: &str, catalog: &SystemCatalog) -> Option<Self> {
        let kinds = catalog.systems.get(system)?;
        let (membership_kind, active_kind, active_value) = if kinds.contains(&"group_membership") {
            ("group_membership", "entry", "ACTIVE")
        } else if kinds.contains(&"groups") && kinds.contains(&"user") {
            ("groups", "user", "active")
        } else {
            return None;
        };
        Some(Self {
            system: system.to_string(),
            membership_kind,
            active_kind,
            active_value,
        })
    }

    /// A check that `identity` is an active entry.
    pub fn active_check(&self, name: String, identity: &str) -> CheckSpec {
        self.spec(name, self.active_kind, identity, self.active_value)
    }

    /// A check that `identity` exists, observing every group it is in.
    pub fn groups_check(&self, name: String, identity: &str) -> CheckSpec {
        CheckSpec {
            requested: Default::default(),
            ..self.spec(name, self.membership_kind, identity, "")
        }
    }

    /// A check that `identity` is a member of `group`.
    pub fn member_check(&self, name: String, identity: &str, group: &str) -> CheckSpec {
        self.spec(name, self.membership_kind, identity, group)
    }

    fn spec(&self, name: String, kind: &str, identity: &str, item: &str) -> CheckSpec {
        CheckSpec {
            name,
            system: self.system.clone(),
            kind: kind.to_string(),
            params: [("user".to_string(), identity.to_string())].into(),
            expect: Expect::Present,
            requested: [item.to_string()].into(),
        }
    }
}

/// Who may approve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approvers {
    /// Active members of a group, observed in the directory at decision time.
    /// `line` is where the policy names the group.
    Group {
        directory: Directory,
        group: String,
        line: Option<usize>,
    },
    /// Active members of a team in the ticket's own helpdesk (GitHub team,
    /// GitLab group), observed through its API at decision time.
    Team(String),
    /// A fixed list of identities (compared case-insensitively).
    Users(Vec<String>),
}

/// Roles that must be held by different people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Separation {
    pub requester_approver: bool,
    pub approver_closer: bool,
    pub requester_closer: bool,
}

/// A policy's approval rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRule {
    pub required: u32,
    pub approvers: Approvers,
    /// Template from `approver.*` to the directory identity.
    pub identity: String,
    pub separate: Separation,
    pub marks: ApprovalMarks,
}

impl ApprovalRule {
    /// The rule in words, for comments and evidence.
    pub fn describe(&self) -> String {
        let who = match &self.approvers {
            Approvers::Group { directory, group, .. } => {
                format!("an active member of {group} on {}", directory.system)
            }
            Approvers::Team(team) => format!("an active member of the helpdesk team {team}"),
            Approvers::Users(users) => format!("one of {}", users.join(", ")),
        };
        let n = self.required;
        format!("{n} approval{} by {who}", if n == 1 { "" } else { "s" })
    }
}

/// A policy's rules for requesters that are machines.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequesterRule {
    /// Glob patterns (`*` only) on the requester id that mark a machine.
    pub non_human: Vec<String>,
    pub owner_field: Option<String>,
    pub owner_directory: Option<Directory>,
    pub owner_approves: bool,
    pub approver_in_owner_group: bool,
}

impl RequesterRule {
    /// Whether `id` matches one of the non-human patterns.
    pub fn names_machine(&self, id: &str) -> bool {
        self.non_human.iter().any(|p| glob(p, id))
    }
}

/// `*` matches any run of characters; everything else literally, case-insensitively.
fn glob(pattern: &str, text: &str) -> bool {
    let (pattern, text) = (pattern.to_lowercase(), text.to_lowercase());
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

type Err<'a> = &'a mut dyn FnMut(Option<usize>, String);

fn line<T>(value: &Spanned<T>) -> Option<usize> {
    value.span().start().map(|m| m.line())
}

fn directory(system: &Spanned<String>, key: &str, catalog: &SystemCatalog, err: Err<'_>) -> Option<Directory> {
    let name = system.trim();
    if !catalog.systems.contains_key(name) {
        let known: Vec<&String> = catalog.systems.keys().collect();
        err(
            line(system),
            format!(
                "{key}: unknown system {name:?} (configured: {})",
                known.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ),
        );
        return None;
    }
    let found = Directory::resolve(name, catalog);
    if found.is_none() {
        err(
            line(system),
            format!("{key}: system {name:?} is not a directory (LDAP or SCIM) that reports group membership"),
        );
    }
    found
}

fn template(src: &Spanned<String>, key: &str, err: Err<'_>) {
    if let Err(e) = minijinja::Environment::new().template_from_str(src) {
        err(
            line(src),
            format!(
                "{key}: template does not parse: {}",
                e.detail().unwrap_or("syntax error")
            ),
        );
    }
}

/// Compiles an `approval:` block; problems go to `err`.
pub(super) fn approval(def: &super::model::ApprovalDef, catalog: &SystemCatalog, err: Err<'_>) -> Option<ApprovalRule> {
    let approvers = match (&def.approvers.system, &def.approvers.group, &def.approvers.users) {
        _ if def.approvers.team.is_some() => match &def.approvers.team {
            Some(team) if def.approvers.system.is_none() && def.approvers.users.is_none() && team.contains('/') => {
                Some(Approvers::Team(team.trim().to_string()))
            }
            Some(team) => {
                err(
                    line(team),
                    "approval.approvers.team: give it alone, as `org/team-slug` (GitHub) or `group/path` (GitLab)"
                        .into(),
                );
                None
            }
            None => None,
        },
        (Some(system), Some(group), None) if !group.trim().is_empty() => {
            directory(system, "approval.approvers.system", catalog, err).map(|directory| Approvers::Group {
                directory,
                group: group.trim().to_string(),
                line: line(group),
            })
        }
        (None, None, Some(users)) if !users.is_empty() => Some(Approvers::Users(
            users.iter().map(|u| u.trim().to_lowercase()).collect(),
        )),
        (system, group, _) => {
            err(
                system.as_ref().or(group.as_ref()).and_then(line),
                "approval.approvers: give `system` and `group` (a directory group), `team` (a helpdesk team) \
                 or `users` (a list)"
                    .into(),
            );
            None
        }
    };
    let required = def.required.as_ref().map(|r| **r).unwrap_or(1);
    if required == 0 {
        err(
            def.required.as_ref().and_then(line),
            "approval.required must be at least 1".into(),
        );
    }
    let mut separate = Separation::default();
    let roles: Vec<&str> = def.separate.iter().map(|r| r.as_str()).collect();
    for role in &def.separate {
        if !["requester", "approver", "closer"].contains(&role.as_str()) {
            err(
                line(role),
                format!(
                    "approval.separate: {:?} is not one of requester, approver, closer",
                    role.as_str()
                ),
            );
        }
    }
    let has = |r: &str| roles.contains(&r);
    separate.requester_approver = has("requester") && has("approver");
    separate.approver_closer = has("approver") && has("closer");
    separate.requester_closer = has("requester") && has("closer");
    if let Some(identity) = &def.identity {
        template(identity, "approval.identity", err);
    }
    let text = |v: &Option<Spanned<String>>| v.as_ref().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    Some(ApprovalRule {
        required,
        approvers: approvers?,
        identity: text(&def.identity).unwrap_or_else(|| "{{ approver.id }}".into()),
        separate,
        marks: ApprovalMarks {
            command: text(&def.command).unwrap_or_else(|| "/approve".into()),
            label: text(&def.label),
            field: text(&def.field),
        },
    })
}

/// Compiles a `requester:` block; problems go to `err`.
pub(super) fn requester(def: &super::model::RequesterDef, catalog: &SystemCatalog, err: Err<'_>) -> RequesterRule {
    if def.approver_in_owner_group && def.owner_system.is_none() {
        err(
            None,
            "requester.approver_in_owner_group needs requester.owner_system (where groups are observed)".into(),
        );
    }
    if def.owner_system.is_some() && def.owner_field.is_none() {
        err(
            def.owner_system.as_ref().and_then(line),
            "requester.owner_system needs requester.owner_field (where the owner is named)".into(),
        );
    }
    RequesterRule {
        non_human: def.non_human.iter().map(|p| p.trim().to_string()).collect(),
        owner_field: def.owner_field.as_ref().map(|f| crate::domain::field_key(f)),
        owner_directory: def
            .owner_system
            .as_ref()
            .and_then(|s| directory(s, "requester.owner_system", catalog, err)),
        owner_approves: def.owner_approves,
        approver_in_owner_group: def.approver_in_owner_group,
    }
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs_match_machine_names() {
        assert!(glob("svc-*", "svc-billing"));
        assert!(glob("*[bot]", "dependabot[bot]"));
        assert!(glob("ci-*-runner", "CI-build-runner"));
        assert!(!glob("svc-*", "alice"));
        assert!(!glob("a*a", "a"));
        assert!(glob("exact", "EXACT"));
    }
}
