//! The decision table: pure functions from observations to verdicts. No IO.

use std::collections::BTreeSet;

use crate::domain::{CheckOutcome, CheckResult, Decision, Expect, Mode, Observation, Verdict, error_summary};

fn list(items: &BTreeSet<String>) -> String {
    items.iter().cloned().collect::<Vec<_>>().join(", ")
}

/// Judges one check: what was expected against what was observed.
pub fn judge(expect: Expect, requested: &BTreeSet<String>, observed: &Result<Observation, String>) -> CheckOutcome {
    let obs = match observed {
        Err(error) => {
            return CheckOutcome::CouldNotVerify { error: error.clone() };
        }
        Ok(obs) => obs,
    };
    let who = if obs.object.is_empty() {
        obs.subject.clone()
    } else {
        format!("{} on {}", obs.subject, obs.object)
    };
    let missing: BTreeSet<String> = requested.difference(&obs.held).cloned().collect();
    let extra: BTreeSet<String> = obs.held.difference(requested).cloned().collect();
    let mismatch = |reason: String| CheckOutcome::Mismatch { reason };
    match expect {
        Expect::Present | Expect::Exact if !obs.exists => mismatch(format!("{} does not exist", obs.subject)),
        Expect::Present if !missing.is_empty() => mismatch(format!("{who}: missing {}", list(&missing))),
        Expect::Present => CheckOutcome::Holds,
        Expect::Exact if !missing.is_empty() || !extra.is_empty() => {
            let mut parts = Vec::new();
            if !missing.is_empty() {
                parts.push(format!("missing {}", list(&missing)));
            }
            if !extra.is_empty() {
                parts.push(format!("holds more than requested: {}", list(&extra)));
            }
            mismatch(format!("{who}: {}", parts.join("; ")))
        }
        Expect::Exact => CheckOutcome::Holds,
        Expect::Absent if !obs.exists => CheckOutcome::Holds,
        Expect::Absent if requested.is_empty() => mismatch(format!("{} still exists", obs.subject)),
        Expect::Absent => {
            let still: BTreeSet<String> = requested.intersection(&obs.held).cloned().collect();
            if still.is_empty() {
                CheckOutcome::Holds
            } else {
                mismatch(format!("{who}: still holds {}", list(&still)))
            }
        }
    }
}

/// Concludes a policy's decision from its check results: every check must hold.
pub fn conclude(policy: &str, policy_hash: &str, mode: Mode, checks: Vec<CheckResult>) -> Decision {
    let reasons: Vec<String> = checks
        .iter()
        .filter_map(|c| match &c.outcome {
            CheckOutcome::Holds => None,
            CheckOutcome::Mismatch { reason } => Some(format!("{}: {reason}", c.spec.name)),
            CheckOutcome::CouldNotVerify { error } => Some(format!(
                "{}: could not verify on {}: {}",
                c.spec.name,
                c.spec.system,
                error_summary(error)
            )),
        })
        .collect();
    let verdict = if reasons.is_empty() && !checks.is_empty() {
        Verdict::Allowed
    } else {
        Verdict::Blocked
    };
    Decision {
        checks,
        ..Decision::new(verdict, Some((policy, policy_hash)), mode, reasons)
    }
}

/// A decision blocked before any check ran (missing fields, ambiguous policies...).
pub fn blocked_without_checks(policy: Option<(&str, &str)>, mode: Mode, reason: String) -> Decision {
    Decision::new(Verdict::Blocked, policy, mode, vec![reason])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn seen(exists: bool, held: &[&str]) -> Result<Observation, String> {
        Ok(Observation {
            subject: "app_reader".into(),
            object: "table public.orders".into(),
            exists,
            held: set(held),
            location: "postgresql://db:5432/app".into(),
        })
    }

    fn holds(o: &CheckOutcome) -> bool {
        matches!(o, CheckOutcome::Holds)
    }

    #[test]
    fn present_needs_every_requested_item() {
        let req = set(&["SELECT"]);
        assert!(holds(&judge(Expect::Present, &req, &seen(true, &["SELECT", "INSERT"]))));
        assert!(!holds(&judge(Expect::Present, &req, &seen(true, &[]))));
        assert!(!holds(&judge(Expect::Present, &req, &seen(false, &[]))));
        assert!(holds(&judge(Expect::Present, &set(&[]), &seen(true, &[]))));
    }

    #[test]
    fn exact_rejects_broader_grants() {
        let req = set(&["SELECT"]);
        assert!(holds(&judge(Expect::Exact, &req, &seen(true, &["SELECT"]))));
        let broader = judge(Expect::Exact, &req, &seen(true, &["SELECT", "INSERT"]));
        assert_eq!(
            broader,
            CheckOutcome::Mismatch {
                reason: "app_reader on table public.orders: holds more than requested: INSERT".into()
            }
        );
        assert!(!holds(&judge(Expect::Exact, &req, &seen(true, &[]))));
        assert!(!holds(&judge(Expect::Exact, &req, &seen(false, &[]))));
    }

    #[test]
    fn absent_holds_when_revoked_or_gone() {
        let req = set(&["SELECT"]);
        assert!(holds(&judge(Expect::Absent, &req, &seen(true, &["INSERT"]))));
        assert!(holds(&judge(Expect::Absent, &req, &seen(false, &[]))));
        assert!(!holds(&judge(Expect::Absent, &req, &seen(true, &["SELECT"]))));
        assert!(!holds(&judge(Expect::Absent, &set(&[]), &seen(true, &[]))));
        assert!(holds(&judge(Expect::Absent, &set(&[]), &seen(false, &[]))));
    }

    #[test]
    fn errors_are_never_read_as_absent() {
        for expect in [Expect::Present, Expect::Absent, Expect::Exact] {
            let outcome = judge(expect, &set(&["SELECT"]), &Err("connection refused".into()));
            assert_eq!(
                outcome,
                CheckOutcome::CouldNotVerify {
                    error: "connection refused".into()
                }
            );
        }
    }

    #[test]
    fn a_policy_allows_only_when_every_check_holds() {
        let result = |outcome| CheckResult {
            spec: crate::domain::CheckSpec {
                name: "c".into(),
                system: "db".into(),
                kind: "role".into(),
                params: Default::default(),
                expect: Expect::Present,
                requested: set(&[]),
            },
            observation: None,
            outcome,
            checked_at: "2026-01-01T00:00:00Z".into(),
        };
        let ok = conclude("p", "h", Mode::Enforce, vec![result(CheckOutcome::Holds)]);
        assert_eq!(ok.verdict, Verdict::Allowed);
        let bad = conclude(
            "p",
            "h",
            Mode::Enforce,
            vec![
                result(CheckOutcome::Holds),
                result(CheckOutcome::CouldNotVerify {
                    error: "timeout".into(),
                }),
            ],
        );
        assert_eq!(bad.verdict, Verdict::Blocked);
        assert_eq!(
            bad.reasons,
            vec!["c: could not verify on db: the query failed".to_string()]
        );
        assert_eq!(conclude("p", "h", Mode::Enforce, vec![]).verdict, Verdict::Blocked);
    }
}
