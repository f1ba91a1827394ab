//! The gate: from a closed ticket to a decision. Finds the governing policy,
//! runs its checks through the verifiers (each with a timeout, all at once) and
//! applies the decision table. Knows nothing of HTTP or of the store.

pub mod eval;
pub mod expiry;
pub mod governance;
pub mod intake;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use futures_util::future::join_all;
pub use governance::ApprovalsRead;

use crate::{
    clock::SharedClock,
    config::{UnmatchedAction, UnmatchedSettings},
    domain::{
        ApprovalMarks, Attempt, CheckOutcome, CheckResult, CheckSpec, Decision, Exception, Mode, Observation,
        TicketEvent, Verdict,
    },
    policy::{Approvers, Policy, PolicySet, Rendered, render_checks, render_expiry, render_identity},
    verifiers::{VerifierRegistry, VerifyError},
};

/// Why a ticket's approvals could not be read: never read as "no approvals".
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApprovalsUnreadable {
    pub message: String,
}

/// Reads a ticket's approvals where they are recorded (the helpdesk's API,
/// a signed payload, a test suite's stubs).
#[async_trait]
pub trait ApprovalReader: Send + Sync {
    async fn read(&self, event: &TicketEvent, marks: &ApprovalMarks) -> Result<ApprovalsRead, ApprovalsUnreadable>;

    /// Whether `login` is an active member of `team` in the ticket's helpdesk.
    async fn team_membership(
        &self,
        event: &TicketEvent,
        team: &str,
        login: &str,
    ) -> Result<Observation, ApprovalsUnreadable> {
        let _ = (event, team, login);
        Err(ApprovalsUnreadable {
            message: "team membership cannot be read here".into(),
        })
    }
}

#[derive(Clone)]
pub struct Gate {
    policies: Arc<PolicySet>,
    verifiers: VerifierRegistry,
    clock: SharedClock,
    unmatched: Option<UnmatchedSettings>,
}

impl Gate {
    pub fn new(
        policies: Arc<PolicySet>,
        verifiers: VerifierRegistry,
        clock: SharedClock,
        unmatched: Option<UnmatchedSettings>,
    ) -> Self {
        Self {
            policies,
            verifiers,
            clock,
            unmatched,
        }
    }

    pub fn policies(&self) -> &PolicySet {
        &self.policies
    }

    pub fn verifiers(&self) -> &VerifierRegistry {
        &self.verifiers
    }

    /// Decides a closed ticket. `remembered` names the policies that governed
    /// it before: a ticket once gated stays gated when its labels or fields are
    /// edited away. Never fails: anything that goes wrong blocks.
    #[tracing::instrument(name = "decide", skip_all, fields(ticket = %event.ticket))]
    pub async fn decide(&self, event: &TicketEvent, remembered: &[String], approvals: &dyn ApprovalReader) -> Decision {
        let mut decision = self.decide_inner(event, remembered, approvals).await;
        if decision.policy.is_some() && self.policies.governing(event).is_empty() && !remembered.is_empty() {
            decision.notes.push(format!(
                "this ticket no longer matches the selector of policy {} (its labels or fields were changed \
                 after it was governed); it is judged against that policy anyway",
                decision.policy.as_deref().unwrap_or_default()
            ));
        }
        decision
    }

    async fn decide_inner(
        &self,
        event: &TicketEvent,
        remembered: &[String],
        approvals: &dyn ApprovalReader,
    ) -> Decision {
        let mut governing = self.policies.governing(event);
        if governing.is_empty() {
            governing = remembered
                .iter()
                .filter_map(|name| self.policies.by_name(name))
                .collect();
        }
        let policy = match governing.as_slice() {
            [] => {
                if let Some(decision) = self.unmatched(event) {
                    return decision;
                }
                return Decision::new(Verdict::Ungated, None, Mode::DryRun, Vec::new());
            }
            [one] => *one,
            many => {
                let names: Vec<&str> = many.iter().map(|p| p.name.as_str()).collect();
                return eval::blocked_without_checks(
                    None,
                    Mode::Enforce,
                    format!(
                        "more than one policy governs this ticket ({}); fix the policies' selectors",
                        names.join(", ")
                    ),
                );
            }
        };
        let id = Some((policy.name.as_str(), policy.hash.as_str()));
        let specs = match render_checks(policy, event) {
            Rendered::Checks(specs) => specs,
            Rendered::MissingFields(fields) => {
                return eval::blocked_without_checks(
                    id,
                    policy.mode,
                    format!("the ticket is missing required fields: {}", fields.join(", ")),
                );
            }
            Rendered::Invalid(problem) => {
                return eval::blocked_without_checks(
                    id,
                    policy.mode,
                    format!("the policy could not be applied: {problem}"),
                );
            }
        };
        let closed_at = event
            .occurred_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_else(|| chrono::DateTime::from_timestamp_millis(self.clock.now_ms()).unwrap_or_default());
        let valid_until = match expiry::valid_until(&policy.expiry, &render_expiry(policy, event), closed_at) {
            Ok(until) => until,
            Err(reason) => return eval::blocked_without_checks(id, policy.mode, reason),
        };
        let mut decision = self.verify(policy, specs).await;
        decision.valid_until = valid_until.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        if let Some(glass) = &policy.break_glass {
            let asked = event.labels.iter().any(|l| l.eq_ignore_ascii_case(&glass.label));
            if asked && decision.verdict == Verdict::Blocked {
                let verify_by = closed_at + chrono::Duration::from_std(glass.verify_within).unwrap_or_default();
                decision.verdict = Verdict::Allowed;
                decision.exception = Some(Exception {
                    label: glass.label.clone(),
                    closer: event.actor.clone(),
                    reason: event
                        .fields
                        .get("reason")
                        .cloned()
                        .unwrap_or_else(|| event.title.clone()),
                    verify_by: verify_by.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                });
            }
        }
        // Break-glass covers the entitlement, never a missing approval or a
        // separation-of-duties breach: those are judged after it.
        self.govern(policy, event, approvals, &mut decision).await;
        decision
    }

    /// Judges the policy's approval and requester rules, observing approver
    /// authority and owner status in the directory.
    async fn govern(&self, policy: &Policy, event: &TicketEvent, reader: &dyn ApprovalReader, decision: &mut Decision) {
        let mut reasons = Vec::new();
        if let Some(rule) = &policy.approval {
            let read = reader.read(event, &rule.marks).await.map_err(|e| e.to_string());
            let screened = match &read {
                Ok(read) => governance::screen(rule, event, read, |a| render_identity(&rule.identity, &a.approver)),
                Err(_) => Vec::new(),
            };
            let (at, specs): (Vec<usize>, Vec<CheckSpec>) =
                governance::authority_checks(rule, &screened).into_iter().unzip();
            let mut authority: Vec<(usize, CheckResult)> = at.into_iter().zip(self.run_checks(specs).await).collect();
            if let Approvers::Team(team) = &rule.approvers {
                let checked_at = self.clock.rfc3339(chrono::SecondsFormat::Millis);
                for (i, s) in screened.iter().enumerate().filter(|(_, s)| s.standing.is_none()) {
                    let login = &s.approval.approver.id;
                    let observed = reader
                        .team_membership(event, team, login)
                        .await
                        .map_err(|e| e.to_string());
                    let check = governance::team_check(&event.ticket.source, team, login, observed, &checked_at);
                    authority.push((i, check));
                }
            }
            let (report, why) = governance::judge_approvals(rule, event, read, screened, authority);
            decision.governance.approval = Some(report);
            reasons.extend(why);
        }
        if let Some(rule) = &policy.requester {
            let approval = decision.governance.approval.as_ref();
            let mut specs: Vec<CheckSpec> = governance::owner_check(rule, event).into_iter().collect();
            let owned = specs.len();
            specs.extend(governance::shared_group_checks(rule, event, approval));
            let mut checks = self.run_checks(specs).await;
            let groups = checks.split_off(owned.min(checks.len()));
            let (report, why) = governance::judge_requester(rule, event, checks, groups, approval);
            decision.governance.requester = report;
            reasons.extend(why);
        }
        if !reasons.is_empty() {
            decision.reasons.extend(reasons);
            decision.verdict = Verdict::Blocked;
            decision.exception = None;
        }
    }

    /// A close of a marked ticket that no policy governs, per `unmatched`.
    fn unmatched(&self, event: &TicketEvent) -> Option<Decision> {
        let rule = self.unmatched.as_ref()?;
        if !event.labels.iter().any(|l| l.eq_ignore_ascii_case(&rule.label)) {
            return None;
        }
        let reason = format!(
            "the ticket carries the {:?} label but no policy matches it (request type {:?}): an unknown kind of \
             access request is not closed unverified",
            rule.label,
            event.fields.get("request_type").map(String::as_str).unwrap_or("none")
        );
        match rule.action {
            UnmatchedAction::Pass => None,
            UnmatchedAction::Block => Some(eval::blocked_without_checks(None, Mode::Enforce, reason)),
            UnmatchedAction::Flag => Some(eval::blocked_without_checks(None, Mode::Warn, reason)),
        }
    }

    /// Runs the checks and concludes; with a settle window, a mismatch (never a
    /// "could not verify") is re-checked with backoff until the window ends, and
    /// each attempt that did not hold is kept in the decision.
    async fn verify(&self, policy: &Policy, specs: Vec<CheckSpec>) -> Decision {
        let conclude = |results| eval::conclude(&policy.name, &policy.hash, policy.mode, results);
        let mut decision = conclude(self.run_checks(specs.clone()).await);
        let Some(window) = policy.settle else {
            return decision;
        };
        let deadline = self.clock.now_ms() + window.as_millis() as i64;
        let mut delay = Duration::from_millis(500);
        let mut attempts = Vec::new();
        while decision.verdict == Verdict::Blocked
            && !decision.checks.is_empty()
            && decision
                .checks
                .iter()
                .all(|c| !matches!(c.outcome, CheckOutcome::CouldNotVerify { .. }))
            && self.clock.now_ms() + delay.as_millis() as i64 <= deadline
        {
            attempts.push(Attempt {
                at: decision.checks[0].checked_at.clone(),
                reasons: decision.reasons.clone(),
            });
            self.clock.sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(8));
            decision = conclude(self.run_checks(specs.clone()).await);
        }
        decision.attempts = attempts;
        decision
    }

    /// Runs the checks, one batch per system (a verifier may answer a batch in
    /// one round trip), all systems at once, each batch under its system's
    /// timeout. Results come back in the order of `specs`.
    pub async fn run_checks(&self, specs: Vec<CheckSpec>) -> Vec<CheckResult> {
        let total = specs.len();
        let mut by_system: BTreeMap<String, (Vec<usize>, Vec<CheckSpec>)> = BTreeMap::new();
        for (i, spec) in specs.into_iter().enumerate() {
            let entry = by_system.entry(spec.system.clone()).or_default();
            entry.0.push(i);
            entry.1.push(spec);
        }
        let batches = by_system.into_iter().map(|(system, (positions, specs))| async move {
            positions.into_iter().zip(self.run_batch(system, specs).await)
        });
        let mut placed: Vec<Option<CheckResult>> = (0..total).map(|_| None).collect();
        for (i, result) in join_all(batches).await.into_iter().flatten() {
            placed[i] = Some(result);
        }
        placed.into_iter().flatten().collect()
    }

    async fn run_batch(&self, system: String, mut specs: Vec<CheckSpec>) -> Vec<CheckResult> {
        let checked_at = self.clock.rfc3339(chrono::SecondsFormat::Millis);
        let observed: Vec<Result<Observation, String>> = match self.verifiers.get(&system) {
            None => vec![Err(format!("system {system} is not configured")); specs.len()],
            Some(verifier) => {
                for spec in &mut specs {
                    spec.requested = spec
                        .requested
                        .iter()
                        .map(|i| verifier.normalize(&spec.kind, i))
                        .collect();
                }
                let timeout = verifier.timeout();
                let started = std::time::Instant::now();
                let answered = match tokio::time::timeout(timeout, verifier.observe_many(&specs)).await {
                    Ok(results) if results.len() == specs.len() => results,
                    Ok(_) => vec![
                        Err(VerifyError::Query {
                            system: system.clone(),
                            message: "answered a different number of checks".into()
                        });
                        specs.len()
                    ],
                    Err(_) => vec![Err(VerifyError::Timeout(timeout)); specs.len()],
                };
                crate::metrics::verifier(
                    &system,
                    specs.len(),
                    started.elapsed(),
                    answered.iter().filter_map(|r| r.as_ref().err().map(VerifyError::kind)),
                );
                answered.into_iter().map(|r| r.map_err(|e| e.to_string())).collect()
            }
        };
        specs
            .into_iter()
            .zip(observed)
            .map(|(spec, observed)| {
                if let Err(error) = &observed {
                    tracing::warn!(check = %spec.name, system = %spec.system, %error, "could not verify");
                }
                let outcome = eval::judge(spec.expect, &spec.requested, &observed);
                CheckResult {
                    spec,
                    observation: observed.ok(),
                    outcome,
                    checked_at: checked_at.clone(),
                }
            })
            .collect()
    }
}
