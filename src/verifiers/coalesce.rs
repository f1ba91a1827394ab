//! Checks asked of one system at the same time travel together: the checks of
//! concurrent callers (decisions side by side, a sweep, a gate check) are
//! merged into one `observe_many`, so a burst of decisions costs one round
//! trip per system instead of one per decision.
//!
//! Nothing changes for a caller: each gets its own answers, in its order, and
//! every failure of a merged call (an error, a wrong number of answers, the
//! system's timeout) is every merged check's failure: could not verify.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;

use super::{Verifier, VerifyError};
use crate::{
    coalesce::{Coalescer, Merging},
    domain::{CheckSpec, Observation},
};

type Answers = Vec<Result<Observation, VerifyError>>;

/// A verifier whose concurrent calls are merged.
pub struct Coalescing {
    system: String,
    inner: Arc<dyn Verifier>,
    merged: Coalescer<CheckSpec, Result<Observation, VerifyError>>,
}

impl Coalescing {
    pub fn new(system: &str, inner: Arc<dyn Verifier>) -> Self {
        let (name, verifier) = (system.to_string(), inner.clone());
        Self {
            system: system.to_string(),
            inner,
            merged: Coalescer::new(Merging::checks(system), move |checks: Vec<CheckSpec>| {
                let (name, verifier) = (name.clone(), verifier.clone());
                Box::pin(async move { bounded(&name, verifier.as_ref(), &checks).await })
                    as futures_util::future::BoxFuture<'static, Answers>
            }),
        }
    }
}

/// One call under the system's timeout; any answer that is not one per check
/// fails every check.
async fn bounded(system: &str, inner: &dyn Verifier, checks: &[CheckSpec]) -> Answers {
    let timeout: Duration = inner.timeout();
    let failed = |error: VerifyError| checks.iter().map(|_| Err(error.clone())).collect();
    match tokio::time::timeout(timeout, inner.observe_many(checks)).await {
        Ok(answers) if answers.len() == checks.len() => answers,
        Ok(_) => failed(VerifyError::Query {
            system: system.to_string(),
            message: "answered a different number of checks".into(),
        }),
        Err(_) => failed(VerifyError::Timeout(timeout)),
    }
}

#[async_trait]
impl Verifier for Coalescing {
    fn kinds(&self) -> &'static [&'static str] {
        self.inner.kinds()
    }

    fn timeout(&self) -> Duration {
        self.inner.timeout()
    }

    fn normalize(&self, kind: &str, item: &str) -> String {
        self.inner.normalize(kind, item)
    }

    async fn observe(&self, check: &CheckSpec) -> Result<Observation, VerifyError> {
        self.observe_many(std::slice::from_ref(check))
            .await
            .pop()
            .unwrap_or_else(|| {
                Err(VerifyError::Query {
                    system: self.system.clone(),
                    message: "no answer".into(),
                })
            })
    }

    async fn observe_many(&self, checks: &[CheckSpec]) -> Answers {
        self.merged.ask(checks.to_vec()).await.unwrap_or_else(|dropped| {
            checks
                .iter()
                .map(|_| {
                    Err(VerifyError::Query {
                        system: self.system.clone(),
                        message: dropped.to_string(),
                    })
                })
                .collect()
        })
    }

    async fn healthcheck(&self) -> Result<String, VerifyError> {
        self.inner.healthcheck().await
    }

    async fn group_exists(&self, group: &str) -> Result<bool, VerifyError> {
        self.inner.group_exists(group).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::domain::Expect;

    /// Answers each check with its subject; counts calls; fails a check
    /// whose role is `broken`; hangs on `hang`.
    #[derive(Default)]
    struct Counting {
        calls: AtomicUsize,
        largest: AtomicUsize,
    }

    #[async_trait]
    impl Verifier for Counting {
        fn kinds(&self) -> &'static [&'static str] {
            &["role"]
        }
        fn timeout(&self) -> Duration {
            Duration::from_millis(200)
        }
        async fn observe(&self, _: &CheckSpec) -> Result<Observation, VerifyError> {
            unreachable!("the coalescer asks for batches")
        }
        async fn observe_many(&self, checks: &[CheckSpec]) -> Answers {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.largest.fetch_max(checks.len(), Ordering::SeqCst);
            if checks.iter().any(|c| c.params["role"] == "hang") {
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            checks
                .iter()
                .map(|c| match c.params["role"].as_str() {
                    "broken" => Err(VerifyError::Query {
                        system: "db".into(),
                        message: "permission denied".into(),
                    }),
                    role => Ok(super::super::observed("db", role, "role", true, [])),
                })
                .collect()
        }
        async fn healthcheck(&self) -> Result<String, VerifyError> {
            Ok("counting".into())
        }
    }

    fn check(role: &str) -> CheckSpec {
        CheckSpec {
            name: format!("role {role}"),
            system: "db".into(),
            kind: "role".into(),
            params: [("role".to_string(), role.to_string())].into(),
            requested: Default::default(),
            expect: Expect::Present,
        }
    }

    fn coalescing() -> (Arc<Counting>, Arc<Coalescing>) {
        let inner = Arc::new(Counting::default());
        (inner.clone(), Arc::new(Coalescing::new("db", inner)))
    }

    #[tokio::test]
    async fn concurrent_observations_of_one_system_are_merged_into_its_calls() {
        let (inner, verifier) = coalescing();
        let checks: Vec<CheckSpec> = (0..10).map(|i| check(&format!("r{i}"))).collect();
        let observed = futures_util::future::join_all(checks.iter().map(|c| verifier.observe(c))).await;
        let subjects: Vec<String> = observed.into_iter().map(|o| o.unwrap().subject).collect();
        assert_eq!(subjects, (0..10).map(|i| format!("r{i}")).collect::<Vec<_>>());
        assert!(
            inner.calls.load(Ordering::SeqCst) < 10,
            "each observation made its own call"
        );
        assert!(inner.largest.load(Ordering::SeqCst) > 1);
    }

    #[tokio::test]
    async fn a_failed_check_fails_only_itself_and_is_never_absent() {
        let (_, verifier) = coalescing();
        let (a, b) = (check("broken"), check("fine"));
        let (broken, fine) = tokio::join!(verifier.observe(&a), verifier.observe(&b));
        assert!(matches!(broken, Err(VerifyError::Query { .. })), "{broken:?}");
        assert_eq!(fine.unwrap().subject, "fine");
    }

    #[tokio::test]
    async fn a_hung_call_times_out_every_merged_check_and_the_system_recovers() {
        let (_, verifier) = coalescing();
        let (a, b) = (check("hang"), check("x"));
        let (hung, merged) = tokio::join!(verifier.observe(&a), verifier.observe(&b));
        assert!(matches!(hung, Err(VerifyError::Timeout(_))), "{hung:?}");
        // Merged into the hung call or the other slot; never read as absent.
        assert!(merged.as_ref().map_or(true, |o| o.exists), "{merged:?}");
        let again = verifier.observe(&check("later")).await;
        assert_eq!(again.unwrap().subject, "later");
    }
}
