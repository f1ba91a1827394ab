//! Checks of policies against the live systems they name: that every
//! approver group exists in its directory.

use super::{Approvers, PolicyError, PolicySet};
use crate::verifiers::VerifierRegistry;

/// One problem per approver group that does not exist or cannot be looked up.
pub async fn check_groups(set: &PolicySet, verifiers: &VerifierRegistry) -> Vec<PolicyError> {
    let mut problems = Vec::new();
    for policy in &set.policies {
        let Some(Approvers::Group { directory, group, line }) = policy.approval.as_ref().map(|a| &a.approvers) else {
            continue;
        };
        let problem = match verifiers.get(&directory.system) {
            None => Some(format!("system {:?} is not configured", directory.system)),
            Some(verifier) => match verifier.group_exists(group).await {
                Ok(true) => None,
                Ok(false) => Some(format!("no group {group:?} in {}", directory.system)),
                Err(e) => Some(format!(
                    "could not look up group {group:?} in {}: {e}",
                    directory.system
                )),
            },
        };
        if let Some(problem) = problem {
            problems.push(PolicyError {
                file: policy.file.clone(),
                line: *line,
                problem: format!("approval.approvers.group: {problem}"),
            });
        }
    }
    problems
}
