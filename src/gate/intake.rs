//! What a governed request still lacks, answered when it is opened or its
//! fields change, long before anyone closes it. Pure: no IO.

use chrono::{DateTime, Utc};

use super::{expiry, governance};
use crate::{
    domain::{ActorKind, TicketEvent},
    policy::{Approvers, Policy, Rendered, render_checks, render_expiry},
};

/// The intake answer: what to fix, and what the close will need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intake {
    /// Missing or malformed fields, in words.
    pub problems: Vec<String>,
    /// What the close will need (who may approve, how long access may last).
    pub needs: Vec<String>,
}

/// The intake answer for `event` under `policy`, as of `now`.
pub fn intake(policy: &Policy, event: &TicketEvent, now: DateTime<Utc>) -> Intake {
    let mut problems = Vec::new();
    let mut needs = Vec::new();
    match render_checks(policy, event) {
        Rendered::Checks(_) => {}
        Rendered::MissingFields(fields) => problems.push(format!("missing fields: {}", fields.join(", "))),
        Rendered::Invalid(problem) => problems.push(format!("the request cannot be checked yet: {problem}")),
    }
    if let Err(reason) = expiry::valid_until(&policy.expiry, &render_expiry(policy, event), now) {
        problems.push(reason);
    }
    if let Some(max) = policy.expiry.max_duration {
        needs.push(format!(
            "Duration: at most {} from the close",
            humantime::format_duration(max)
        ));
    }
    if let Some(rule) = &policy.approval {
        let who = match &rule.approvers {
            Approvers::Group { directory, group, .. } => {
                format!("active members of the group {group} (in {})", directory.system)
            }
            Approvers::Team(team) => format!("active members of the helpdesk team {team}"),
            Approvers::Users(users) => format!("the {} approvers listed in policy {}", users.len(), policy.name),
        };
        let command = match &rule.marks.label {
            Some(label) => format!("`{}` comment or the `{label}` label", rule.marks.command),
            None => format!("`{}` comment", rule.marks.command),
        };
        needs.push(format!(
            "Approval: {} by {who}, given after the request's last change (the helpdesk's own approval, or a {command})",
            rule.required
        ));
        if rule.separate.requester_approver || rule.separate.approver_closer {
            needs.push("Separation of duties: the requester and the closer cannot approve".into());
        }
    }
    if let (Some(rule), Some(requester)) = (&policy.requester, &event.requester) {
        let kind = governance::requester_kind(rule, requester);
        let machine = matches!(kind, ActorKind::Service | ActorKind::Agent);
        if let Some(field) = rule.owner_field.as_ref().filter(|_| machine) {
            match event.fields.get(field).map(|o| o.trim()).filter(|o| !o.is_empty()) {
                None => problems.push(format!(
                    "{} is not a person: field {field} must name its accountable human owner",
                    requester.id
                )),
                Some(owner) => needs.push(format!("Owner: {owner}, who must be an active person at the close")),
            }
        }
    }
    Intake { problems, needs }
}
