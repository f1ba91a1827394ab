//! Policy tests (`closegate policy test`): suites kept beside the policies, in
//! `tests/` under the policies directory. Each case is a ticket, what each
//! check would observe, and the verdict (and reasons) expected. No target
//! system is asked: observations are stubbed, by check name.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;
use serde::Deserialize;

use crate::{
    clock::SharedClock,
    domain::{
        Actor, Approval, ApprovalMarks, CheckSpec, EventKind, Observation, TicketEvent, TicketRef, Verdict, field_key,
    },
    gate::{ApprovalReader, ApprovalsRead, ApprovalsUnreadable, Gate},
    policy::PolicySet,
    verifiers::{Verifier, VerifierRegistry, VerifyError},
};

/// One suite file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    #[serde(default)]
    pub description: String,
    pub cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    pub ticket: TicketSpec,
    /// What each check (by its name in the policy) observes.
    #[serde(default)]
    pub observe: BTreeMap<String, Stub>,
    /// The approvals the helpdesk reports; absent means they cannot be read.
    pub approvals: Option<Vec<Approval>>,
    /// When the request's fields last changed (RFC 3339).
    pub request_changed_at: Option<String>,
    /// The active members of the helpdesk team approvers must belong to.
    pub team_members: Option<Vec<String>>,
    pub expect: Expectation,
}

/// Answers with the case's approvals.
struct StubApprovals<'a>(&'a Case);

#[async_trait]
impl ApprovalReader for StubApprovals<'_> {
    async fn read(&self, _: &TicketEvent, _: &ApprovalMarks) -> Result<ApprovalsRead, ApprovalsUnreadable> {
        let approvals = self.0.approvals.clone().ok_or_else(|| ApprovalsUnreadable {
            message: "the case stubs no approvals".into(),
        })?;
        Ok(ApprovalsRead {
            approvals,
            request_changed_at: self.0.request_changed_at.clone(),
        })
    }

    async fn team_membership(
        &self,
        _: &TicketEvent,
        team: &str,
        login: &str,
    ) -> Result<Observation, ApprovalsUnreadable> {
        let members = self.0.team_members.as_ref().ok_or_else(|| ApprovalsUnreadable {
            message: "the case stubs no team members".into(),
        })?;
        let member = members.iter().any(|m| m.eq_ignore_ascii_case(login));
        Ok(Observation {
            subject: login.to_string(),
            object: format!("team {team}"),
            exists: true,
            held: if member {
                [team.to_lowercase()].into()
            } else {
                Default::default()
            },
            location: "policy test".into(),
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketSpec {
    #[serde(default = "default_source")]
    pub source: String,
    #[serde(default = "default_key")]
    pub key: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    #[serde(default)]
    pub actor: Option<Actor>,
    #[serde(default)]
    pub requester: Option<Actor>,
}

fn default_source() -> String {
    "test".into()
}

fn default_key() -> String {
    "TEST-1".into()
}

/// A stubbed observation: what the subject holds, or that the system failed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stub {
    #[serde(default = "yes")]
    pub exists: bool,
    #[serde(default)]
    pub held: Vec<String>,
    /// The system could not be asked (the check is "could not verify").
    pub error: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    pub verdict: Verdict,
    /// The governing policy, when it matters.
    pub policy: Option<String>,
    /// Each must appear in one of the decision's reasons.
    #[serde(default)]
    pub reasons: Vec<String>,
}

/// How one case went: `None` when it passed, else what differed.
#[derive(Debug)]
pub struct CaseResult {
    pub suite: String,
    pub case: String,
    pub failure: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("{path}: {message}")]
    Read { path: String, message: String },
}

/// Stands in for every target system: answers each check from the case's stubs
/// and normalises items the way the real system's verifier does.
struct StubVerifier {
    real: Option<Arc<dyn Verifier>>,
    stubs: BTreeMap<String, Stub>,
}

#[async_trait]
impl Verifier for StubVerifier {
    fn kinds(&self) -> &'static [&'static str] {
        &[]
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(5)
    }

    fn normalize(&self, kind: &str, item: &str) -> String {
        match &self.real {
            Some(real) => real.normalize(kind, item),
            None => item.to_string(),
        }
    }

    async fn observe(&self, check: &CheckSpec) -> Result<Observation, VerifyError> {
        let stub = self.stubs.get(&check.name).ok_or_else(|| VerifyError::Query {
            system: check.system.clone(),
            message: format!("the case stubs no observation for check {:?}", check.name),
        })?;
        if let Some(message) = &stub.error {
            return Err(VerifyError::Query {
                system: check.system.clone(),
                message: message.clone(),
            });
        }
        let subject = ["role", "user"]
            .iter()
            .find_map(|k| check.params.get(*k).cloned())
            .unwrap_or_default();
        Ok(Observation {
            subject,
            object: String::new(),
            exists: stub.exists,
            held: stub
                .held
                .iter()
                .map(|i| self.normalize(&check.kind, i))
                .collect::<BTreeSet<_>>(),
            location: "policy test".into(),
        })
    }

    async fn healthcheck(&self) -> Result<String, VerifyError> {
        Ok("policy test".into())
    }
}

/// The suite files under `dir/tests`, in name order.
pub fn suite_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("tests"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
}

/// Runs every case of every suite against `policies`; `real` supplies each
/// configured system's item normalisation.
pub async fn run(
    policies: Arc<PolicySet>,
    real: &VerifierRegistry,
    clock: SharedClock,
    files: &[PathBuf],
) -> Result<Vec<CaseResult>, SuiteError> {
    let systems: BTreeSet<String> = policies
        .policies
        .iter()
        .flat_map(|p| p.checks.iter().flat_map(|c| c.systems.iter().cloned()))
        .collect();
    let mut results = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(path).map_err(|e| SuiteError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let suite: Suite = serde_yaml::from_str(&text).map_err(|e| SuiteError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        for case in suite.cases {
            let verifiers: HashMap<String, Arc<dyn Verifier>> = systems
                .iter()
                .map(|s| {
                    let stub: Arc<dyn Verifier> = Arc::new(StubVerifier {
                        real: real.get(s).cloned(),
                        stubs: case.observe.clone(),
                    });
                    (s.clone(), stub)
                })
                .collect();
            let gate = Gate::new(
                policies.clone(),
                VerifierRegistry::from_verifiers(verifiers),
                clock.clone(),
                None,
            );
            let event = event(&case.ticket);
            let decision = gate.decide(&event, &[], &StubApprovals(&case)).await;
            let mut problems = Vec::new();
            if decision.verdict != case.expect.verdict {
                problems.push(format!(
                    "verdict: expected {}, got {}",
                    case.expect.verdict, decision.verdict
                ));
            }
            if let Some(policy) = &case.expect.policy
                && decision.policy.as_ref() != Some(policy)
            {
                problems.push(format!(
                    "policy: expected {policy}, got {}",
                    decision.policy.as_deref().unwrap_or("none")
                ));
            }
            for wanted in &case.expect.reasons {
                if !decision.reasons.iter().any(|r| r.contains(wanted.as_str())) {
                    problems.push(format!("reasons: none mentions {wanted:?}"));
                }
            }
            let failure = (!problems.is_empty()).then(|| {
                let got = if decision.reasons.is_empty() {
                    "  got no reasons".to_string()
                } else {
                    decision
                        .reasons
                        .iter()
                        .map(|r| format!("  got reason: {r}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                format!(
                    "{}\n{got}",
                    problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n")
                )
            });
            results.push(CaseResult {
                suite: name.clone(),
                case: case.name,
                failure,
            });
        }
    }
    Ok(results)
}

fn event(ticket: &TicketSpec) -> TicketEvent {
    TicketEvent {
        ticket: TicketRef {
            source: ticket.source.clone(),
            key: ticket.key.clone(),
        },
        kind: EventKind::Closed,
        event: "policy.test".into(),
        old_state: None,
        new_state: Some("closed".into()),
        actor: ticket.actor.clone().unwrap_or_default(),
        requester: ticket.requester.clone(),
        title: ticket.title.clone(),
        labels: ticket.labels.clone(),
        fields: ticket.fields.iter().map(|(k, v)| (field_key(k), v.clone())).collect(),
        url: None,
        occurred_at: None,
        caused_by_gate: false,
        state_closed: Some(true),
        synchronous: false,
        approvals: Vec::new(),
    }
}
