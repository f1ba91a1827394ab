//! The audit block of an allowed decision: the five answers an access review
//! asks for (approval, entitlement, duration, removal, evidence), one line
//! each, short enough to read on a phone. The detail stays in the record.

use serde::Serialize;

use crate::domain::{ActorKind, ApprovalStanding, Decision, Verdict};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditLine {
    pub label: &'static str,
    pub text: String,
}

fn kind_name(kind: ActorKind) -> &'static str {
    match kind {
        ActorKind::Human => "person",
        ActorKind::Service => "service account",
        ActorKind::Agent => "agent",
        ActorKind::Unknown => "kind unknown",
    }
}

/// The audit lines of `decision` (none unless it allowed a close).
pub fn lines(decision: &Decision, evidence_id: &str) -> Vec<AuditLine> {
    if decision.verdict != Verdict::Allowed || decision.policy.is_none() {
        return Vec::new();
    }
    let line = |label, text: String| AuditLine { label, text };
    let mut out = Vec::new();
    out.push(line(
        "Approval",
        match &decision.governance.approval {
            None => "not required by the policy".into(),
            Some(report) => {
                let who: Vec<String> = report
                    .approvals
                    .iter()
                    .filter(|a| a.standing == ApprovalStanding::Counted)
                    .map(|a| {
                        let observed = if a.authority.is_empty() {
                            "listed in the policy".to_string()
                        } else {
                            format!("authority observed on {}", a.authority[0].spec.system)
                        };
                        format!("{} at {} ({}; {observed})", a.identity, a.approval.at, a.approval.via)
                    })
                    .collect();
                format!("{} under rule \"{}\"", who.join(", "), report.rule)
            }
        },
    ));
    if let Some(r) = &decision.governance.requester {
        let owner = r.owner.as_deref().map(|o| format!(", owner {o}")).unwrap_or_default();
        out.push(line("Requester", format!("{} ({}){owner}", r.id, kind_name(r.kind))));
    }
    let entitlement: Vec<String> = decision
        .checks
        .iter()
        .map(|c| {
            let subject = c.observation.as_ref().map(|o| o.subject.as_str()).unwrap_or_default();
            let object = c
                .observation
                .as_ref()
                .map(|o| o.object.as_str())
                .filter(|o| !o.is_empty())
                .map(|o| format!(" on {o}"))
                .unwrap_or_default();
            let items: Vec<&str> = c.spec.requested.iter().map(String::as_str).collect();
            format!(
                "{}: {subject}{object} {} {}",
                c.spec.system,
                c.spec.expect,
                if items.is_empty() {
                    "(the account)".into()
                } else {
                    items.join(", ")
                }
            )
        })
        .collect();
    out.push(line("Entitlement", entitlement.join("; ")));
    out.push(line(
        "Duration",
        match &decision.valid_until {
            Some(until) => format!("until {until}"),
            None => "no expiry: the policy allows it".into(),
        },
    ));
    let sweep = decision
        .next_check
        .as_deref()
        .map(|at| format!(", next at {at}"))
        .unwrap_or_default();
    let removal = match (&decision.valid_until, &decision.exception) {
        (_, Some(e)) => format!("break-glass: verified by {}", e.verify_by),
        (Some(until), None) => {
            format!("verified removed at {until} by the expiry check; drift sweeps until then{sweep}")
        }
        (None, None) => format!("re-verified by the periodic drift sweep{sweep}"),
    };
    out.push(line("Removal", removal));
    out.push(line("Evidence", format!("record {evidence_id}")));
    out
}
