//! Approvals and requester ownership, judged. Pure: the approvals are read
//! and the directory observed by the caller; this decides what they mean.

use std::collections::BTreeSet;

use crate::{
    domain::{
        Actor, ActorKind, Approval, ApprovalReport, ApprovalStanding, CheckOutcome, CheckResult, CheckSpec, Expect,
        JudgedApproval, Observation, RequesterReport, TicketEvent, error_summary,
    },
    policy::{ApprovalRule, Approvers, RequesterRule},
};

/// What the helpdesk says about a ticket's approvals.
#[derive(Debug, Clone, Default)]
pub struct ApprovalsRead {
    pub approvals: Vec<Approval>,
    /// When the request's fields last changed (RFC 3339), as far as known.
    pub request_changed_at: Option<String>,
}

fn same(a: &str, b: &str) -> bool {
    !a.is_empty() && a.trim().eq_ignore_ascii_case(b.trim())
}

fn instant(t: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// An approval after the cheap rules (duplicates, staleness, self-approval):
/// `standing` is `None` when its authority still has to be observed.
pub struct Screened {
    pub approval: Approval,
    pub identity: Result<String, String>,
    pub standing: Option<ApprovalStanding>,
}

/// Applies the rules that need no directory.
pub fn screen(
    rule: &ApprovalRule,
    event: &TicketEvent,
    read: &ApprovalsRead,
    identity: impl Fn(&Approval) -> Result<String, String>,
) -> Vec<Screened> {
    let mut approvals = read.approvals.clone();
    approvals.sort_by_key(|a| instant(&a.at));
    let changed = read.request_changed_at.as_deref().and_then(instant);
    // Approval comes before the work: one given after the close judged does not count.
    let closed = event.occurred_at.as_deref().and_then(instant);
    let requester = event.requester.as_ref().map(|r| r.id.as_str()).unwrap_or_default();
    let closer = event.actor.id.as_str();
    let is = |who: &str, approval: &Approval, identity: &Result<String, String>| {
        same(who, &approval.approver.id) || identity.as_deref().is_ok_and(|i| same(who, i))
    };
    let mut seen = BTreeSet::new();
    approvals
        .into_iter()
        .map(|approval| {
            let identity = identity(&approval);
            let id = approval.approver.id.to_lowercase();
            let standing = if !seen.insert(id) {
                Some(ApprovalStanding::Duplicate)
            } else if rule.separate.requester_approver && is(requester, &approval, &identity) {
                Some(ApprovalStanding::SelfApproval(format!(
                    "{} requested the access and approved it (separation of duties)",
                    approval.approver.id
                )))
            } else if rule.separate.approver_closer && is(closer, &approval, &identity) {
                Some(ApprovalStanding::SelfApproval(format!(
                    "{} approved the request and closed it (separation of duties)",
                    approval.approver.id
                )))
            } else if let Some(changed) = changed.filter(|c| instant(&approval.at).is_none_or(|at| at < *c)) {
                Some(ApprovalStanding::Stale(format!(
                    "given at {}, before the request last changed at {}",
                    approval.at,
                    changed.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )))
            } else if let Some(closed) = closed.filter(|c| instant(&approval.at).is_some_and(|at| at > *c)) {
                Some(ApprovalStanding::Stale(format!(
                    "given at {}, after the close at {}",
                    approval.at,
                    closed.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )))
            } else if let Err(problem) = &identity {
                Some(ApprovalStanding::Unverified(format!(
                    "no directory identity: {problem}"
                )))
            } else if let Approvers::Users(users) = &rule.approvers {
                let listed = |s: &str| users.iter().any(|u| same(u, s));
                if listed(identity.as_deref().unwrap_or_default()) || listed(&approval.approver.id) {
                    Some(ApprovalStanding::Counted)
                } else {
                    Some(ApprovalStanding::NoAuthority(
                        "not in the policy's list of approvers".into(),
                    ))
                }
            } else {
                None
            };
            Screened {
                approval,
                identity,
                standing,
            }
        })
        .collect()
}

/// The directory checks that establish each unscreened approver's authority:
/// an active entry, and a member of the group. Tagged with the approval's index.
pub fn authority_checks(rule: &ApprovalRule, screened: &[Screened]) -> Vec<(usize, CheckSpec)> {
    let Approvers::Group { directory, group, .. } = &rule.approvers else {
        return Vec::new();
    };
    let mut specs = Vec::new();
    for (i, s) in screened.iter().enumerate() {
        if let (None, Ok(identity)) = (&s.standing, &s.identity) {
            specs.push((
                i,
                directory.active_check(format!("approver {identity} is active"), identity),
            ));
            specs.push((
                i,
                directory.member_check(format!("approver {identity} is in {group}"), identity, group),
            ));
        }
    }
    specs
}

/// The authority check of an approver in a helpdesk team, from what the
/// helpdesk said (or why it could not be asked).
pub fn team_check(
    source: &str,
    team: &str,
    login: &str,
    observed: Result<Observation, String>,
    checked_at: &str,
) -> CheckResult {
    let spec = CheckSpec {
        name: format!("approver {login} is in {team}"),
        system: source.to_string(),
        kind: "team_membership".into(),
        params: [("user".to_string(), login.to_string())].into(),
        expect: Expect::Present,
        requested: [team.to_lowercase()].into(),
    };
    let outcome = super::eval::judge(spec.expect, &spec.requested, &observed);
    CheckResult {
        spec,
        observation: observed.ok(),
        outcome,
        checked_at: checked_at.to_string(),
    }
}

/// What a set of check results says: every one holds, or why not.
fn standing_of(results: &[CheckResult]) -> ApprovalStanding {
    for r in results {
        match &r.outcome {
            CheckOutcome::Holds => {}
            CheckOutcome::CouldNotVerify { error } => {
                return ApprovalStanding::Unverified(format!(
                    "could not verify on {}: {}",
                    r.spec.system,
                    error_summary(error)
                ));
            }
            CheckOutcome::Mismatch { reason } => return ApprovalStanding::NoAuthority(reason.clone()),
        }
    }
    ApprovalStanding::Counted
}

/// Concludes the approval part: the report, and why it blocks (if it does).
pub fn judge_approvals(
    rule: &ApprovalRule,
    event: &TicketEvent,
    read: Result<ApprovalsRead, String>,
    screened: Vec<Screened>,
    mut authority: Vec<(usize, CheckResult)>,
) -> (ApprovalReport, Vec<String>) {
    let mut report = ApprovalReport {
        rule: rule.describe(),
        required: rule.required,
        approvals: Vec::new(),
        request_changed_at: None,
        error: None,
    };
    let read = match read {
        Ok(read) => read,
        Err(error) => {
            let reason = format!("approval: could not verify: the approvals could not be read ({error})");
            report.error = Some(error);
            return (report, vec![reason]);
        }
    };
    report.request_changed_at = read.request_changed_at;
    for (i, s) in screened.into_iter().enumerate() {
        let checks: Vec<CheckResult> = authority
            .iter()
            .filter(|(at, _)| *at == i)
            .map(|(_, r)| r.clone())
            .collect();
        authority.retain(|(at, _)| *at != i);
        let standing = s.standing.unwrap_or_else(|| standing_of(&checks));
        report.approvals.push(JudgedApproval {
            identity: s.identity.unwrap_or_default(),
            approval: s.approval,
            standing,
            authority: checks,
        });
    }
    let mut reasons = Vec::new();
    let counted: Vec<&JudgedApproval> = report.counted().collect();
    if counted.len() < rule.required as usize {
        let mut reason = format!(
            "approval: {} of {} needed ({})",
            counted.len(),
            rule.required,
            report.rule
        );
        let refused: Vec<String> = report
            .approvals
            .iter()
            .filter_map(|a| {
                let why = match &a.standing {
                    ApprovalStanding::Counted | ApprovalStanding::Duplicate => return None,
                    ApprovalStanding::Stale(w)
                    | ApprovalStanding::NoAuthority(w)
                    | ApprovalStanding::Unverified(w)
                    | ApprovalStanding::SelfApproval(w) => w,
                };
                Some(format!("{}: {why}", a.approval.approver.id))
            })
            .collect();
        if !refused.is_empty() {
            reason.push_str(&format!("; not counted: {}", refused.join("; ")));
        }
        reasons.push(reason);
    }
    let closer = &event.actor.id;
    if (rule.separate.requester_closer || rule.separate.approver_closer) && closer.trim().is_empty() {
        // A close found by listing the helpdesk, whose API does not say who
        // closed it: the closer cannot be told apart from anyone.
        reasons.push(
            "separation of duties: who closed the ticket is not known, so the closer cannot be told apart \
             from the requester and the approvers"
                .into(),
        );
    }
    if rule.separate.requester_closer
        && let Some(requester) = event.requester.as_ref().filter(|r| same(&r.id, closer))
    {
        reasons.push(format!(
            "separation of duties: {} requested the access and closed the ticket",
            requester.id
        ));
    }
    (report, reasons)
}

/// The requester's kind: what the helpdesk says, or a machine when the
/// policy's patterns name it so. A person is never inferred from a pattern.
pub fn requester_kind(rule: &RequesterRule, requester: &Actor) -> ActorKind {
    match requester.kind {
        ActorKind::Service | ActorKind::Agent => requester.kind,
        _ if rule.names_machine(&requester.id) => ActorKind::Service,
        other => other,
    }
}

/// The owner check a machine requester needs, if any: `(owner, spec)`.
pub fn owner_check(rule: &RequesterRule, event: &TicketEvent) -> Option<CheckSpec> {
    let requester = event.requester.as_ref()?;
    if !matches!(requester_kind(rule, requester), ActorKind::Service | ActorKind::Agent) {
        return None;
    }
    let owner = event
        .fields
        .get(rule.owner_field.as_ref()?)
        .map(|o| o.trim())
        .filter(|o| !o.is_empty())?;
    Some(
        rule.owner_directory
            .as_ref()?
            .active_check(format!("owner {owner} is active"), owner),
    )
}

/// The directory checks that show whether an approver shares a group with a
/// machine requester's owner: the owner's groups first, then each counted
/// approver's.
pub fn shared_group_checks(
    rule: &RequesterRule,
    event: &TicketEvent,
    approvals: Option<&ApprovalReport>,
) -> Vec<CheckSpec> {
    let (true, Some(directory), Some(owner_check)) = (
        rule.approver_in_owner_group,
        rule.owner_directory.as_ref(),
        owner_check(rule, event),
    ) else {
        return Vec::new();
    };
    let owner = owner_check.params.get("user").cloned().unwrap_or_default();
    let mut specs = vec![directory.groups_check(format!("groups of owner {owner}"), &owner)];
    for a in approvals.into_iter().flat_map(|r| r.counted()) {
        specs.push(directory.groups_check(format!("groups of approver {}", a.identity), &a.identity));
    }
    specs
}

/// Whether a counted approver shares a group with the owner, from
/// [`shared_group_checks`]' results; the reason when not.
fn shares_owner_group(owner: &str, results: &[CheckResult]) -> Option<String> {
    if let ApprovalStanding::Unverified(why) = standing_of(results) {
        return Some(format!(
            "requester: the groups of owner {owner} and the approvers: {why}"
        ));
    }
    let groups = |r: &CheckResult| r.observation.as_ref().map(|o| o.held.clone()).unwrap_or_default();
    let (owner_groups, approvers) = results.split_first()?;
    let owner_groups = groups(owner_groups);
    let shared = approvers.iter().any(|a| !groups(a).is_disjoint(&owner_groups));
    (!shared).then(|| format!("requester: no counted approver shares a directory group with the owner {owner}"))
}

/// Concludes the requester part: the report, and why it blocks (if it does).
pub fn judge_requester(
    rule: &RequesterRule,
    event: &TicketEvent,
    mut owner_checks: Vec<CheckResult>,
    group_checks: Vec<CheckResult>,
    approvals: Option<&ApprovalReport>,
) -> (Option<RequesterReport>, Vec<String>) {
    let Some(requester) = &event.requester else {
        return (None, Vec::new());
    };
    let kind = requester_kind(rule, requester);
    let owner = rule
        .owner_field
        .as_ref()
        .and_then(|f| event.fields.get(f))
        .map(|o| o.trim().to_string())
        .filter(|o| !o.is_empty());
    let mut reasons = Vec::new();
    if matches!(kind, ActorKind::Service | ActorKind::Agent) {
        let what = if kind == ActorKind::Agent {
            "an agent"
        } else {
            "a service account"
        };
        match (&rule.owner_field, &owner) {
            (Some(field), None) => reasons.push(format!(
                "requester: {} is {what}; field {field} must name its accountable human owner",
                requester.id
            )),
            (_, Some(owner)) => {
                if let ApprovalStanding::NoAuthority(why) | ApprovalStanding::Unverified(why) =
                    standing_of(&owner_checks)
                {
                    reasons.push(format!("requester: owner {owner} of {}: {why}", requester.id));
                }
                let approved = approvals.is_some_and(|r| {
                    r.counted()
                        .any(|a| same(owner, &a.identity) || same(owner, &a.approval.approver.id))
                });
                if rule.owner_approves && !approved {
                    reasons.push(format!(
                        "requester: the owner {owner} of {} has not approved the request",
                        requester.id
                    ));
                }
                if rule.approver_in_owner_group {
                    reasons.extend(shares_owner_group(owner, &group_checks));
                }
            }
            (None, None) => {}
        }
    }
    owner_checks.extend(group_checks);
    let report = RequesterReport {
        id: requester.id.clone(),
        kind,
        owner,
        owner_checks,
    };
    (Some(report), reasons)
}
