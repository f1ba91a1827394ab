//! The gate: from a closed ticket to a decision. Finds the governing policy,
//! runs its checks through the verifiers (each with a timeout, all at once) and
//! applies the decision table. Knows nothing of HTTP or of the store.

pub mod eval;

use std::sync::Arc;

use futures_util::future::join_all;

use crate::{
    domain::{CheckResult, CheckSpec, Decision, Mode, TicketEvent, Verdict},
    policy::{PolicySet, Rendered, render_checks},
    verifiers::{VerifierRegistry, VerifyError},
};

#[derive(Clone)]
pub struct Gate {
    policies: Arc<PolicySet>,
    verifiers: VerifierRegistry,
}

impl Gate {
    pub fn new(policies: Arc<PolicySet>, verifiers: VerifierRegistry) -> Self {
        Self {
            policies,
            verifiers,
        }
    }

    pub fn policies(&self) -> &PolicySet {
        &self.policies
    }

    pub fn verifiers(&self) -> &VerifierRegistry {
        &self.verifiers
    }

    /// Decides a closed ticket. Never fails: anything that goes wrong blocks.
    #[tracing::instrument(name = "decide", skip_all, fields(ticket = %event.ticket))]
    pub async fn decide(&self, event: &TicketEvent) -> Decision {
        let governing = self.policies.governing(event);
        let policy = match governing.as_slice() {
            [] => {
                return Decision {
                    verdict: Verdict::Ungated,
                    policy: None,
                    policy_hash: None,
                    mode: Mode::DryRun,
                    reasons: Vec::new(),
                    checks: Vec::new(),
                };
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
                    format!(
                        "the ticket is missing required fields: {}",
                        fields.join(", ")
                    ),
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
        let results = join_all(specs.into_iter().map(|spec| self.run_check(spec))).await;
        eval::conclude(&policy.name, &policy.hash, policy.mode, results)
    }

    async fn run_check(&self, mut spec: CheckSpec) -> CheckResult {
        let checked_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let observed = match self.verifiers.get(&spec.system) {
            None => Err(format!("system {} is not configured", spec.system)),
            Some(verifier) => {
                spec.requested = spec
                    .requested
                    .iter()
                    .map(|i| verifier.normalize(&spec.kind, i))
                    .collect();
                let timeout = verifier.timeout();
                match tokio::time::timeout(timeout, verifier.observe(&spec)).await {
                    Ok(result) => result.map_err(|e| e.to_string()),
                    Err(_) => Err(VerifyError::Timeout(timeout).to_string()),
                }
            }
        };
        if let Err(error) = &observed {
            tracing::warn!(check = %spec.name, system = %spec.system, %error, "could not verify");
        }
        let outcome = eval::judge(spec.expect, &spec.requested, &observed);
        CheckResult {
            spec,
            observation: observed.ok(),
            outcome,
            checked_at,
        }
    }
}
