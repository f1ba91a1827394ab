//! Checks asked of one system at the same time travel together: the checks of
//! concurrent callers (decisions side by side, a sweep, a gate check) are
//! merged into one `observe_many`, so a burst of decisions costs one round
//! trip per system instead of one per decision.
//!
//! Nothing changes for a caller: each gets its own answers, in its order, and
//! every failure of a merged call (an error, a wrong number of answers, the
//! system's timeout) is every merged check's failure: could not verify.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{Verifier, VerifyError};
use crate::domain::{CheckSpec, Observation};

type Answers = Vec<Result<Observation, VerifyError>>;

/// Most callers merged into one call.
const MAX_CALLERS: usize = 64;
/// Merged calls in flight at once on one system; callers arriving meanwhile
/// wait together for the next one.
const IN_FLIGHT: usize = 2;

struct Ask {
    checks: Vec<CheckSpec>,
    reply: oneshot::Sender<Answers>,
}

/// A verifier whose concurrent calls are merged.
pub struct Coalescing {
    system: String,
    inner: Arc<dyn Verifier>,
    /// One queue per runtime that asks, served on that runtime: the workers'
    /// checks are merged on the workers' runtime, at its priority
    /// (`worker.nice`), a gate check's on the runtime serving its request. A
    /// queue whose runtime has stopped is dropped and started afresh.
    queues: Mutex<HashMap<tokio::runtime::Id, mpsc::Sender<Ask>>>,
}

impl Coalescing {
    pub fn new(system: &str, inner: Arc<dyn Verifier>) -> Self {
        Self {
            system: system.to_string(),
            inner,
            queues: Mutex::default(),
        }
    }

    /// The calling runtime's queue, started on first use.
    fn queue(&self) -> mpsc::Sender<Ask> {
        let runtime = tokio::runtime::Handle::current().id();
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        queues.retain(|_, queue| !queue.is_closed());
        queues
            .entry(runtime)
            .or_insert_with(|| {
                let (tx, rx) = mpsc::channel(4 * MAX_CALLERS);
                tokio::spawn(serve(self.system.clone(), self.inner.clone(), rx));
                tx
            })
            .clone()
    }
}

/// Takes whatever callers are waiting whenever a call may start, and answers
/// each from one merged call.
async fn serve(system: String, inner: Arc<dyn Verifier>, mut rx: mpsc::Receiver<Ask>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut asks = Vec::with_capacity(MAX_CALLERS);
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        if rx.recv_many(&mut asks, MAX_CALLERS).await == 0 {
            return;
        }
        let merged = std::mem::replace(&mut asks, Vec::with_capacity(MAX_CALLERS));
        let (system, inner) = (system.clone(), inner.clone());
        tokio::spawn(async move {
            answer(&system, inner.as_ref(), merged).await;
            drop(slot);
        });
    }
}

async fn answer(system: &str, inner: &dyn Verifier, asks: Vec<Ask>) {
    let checks: Vec<CheckSpec> = asks.iter().flat_map(|a| a.checks.iter().cloned()).collect();
    let mut answers = bounded(system, inner, &checks).await.into_iter();
    for ask in asks {
        let own: Answers = answers.by_ref().take(ask.checks.len()).collect();
        // A caller that gave up (its own timeout) no longer listens.
        let _ = ask.reply.send(own);
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
        if checks.is_empty() {
            return Vec::new();
        }
        let (reply, answer) = oneshot::channel();
        let ask = Ask {
            checks: checks.to_vec(),
            reply,
        };
        if self.queue().send(ask).await.is_err() {
            // The runtime that served the queue has gone: ask directly.
            return bounded(&self.system, self.inner.as_ref(), checks).await;
        }
        answer.await.unwrap_or_else(|_| {
            checks
                .iter()
                .map(|_| {
                    Err(VerifyError::Query {
                        system: self.system.clone(),
                        message: "the merged call was dropped".into(),
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

    /// Answers each check with its subject; counts calls and names the
    /// thread each ran on; fails a check whose role is `broken`; hangs on
    /// `hang`.
    #[derive(Default)]
    struct Counting {
        calls: AtomicUsize,
        largest: AtomicUsize,
        threads: std::sync::Mutex<Vec<String>>,
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
            let thread = std::thread::current().name().unwrap_or_default().to_string();
            self.threads.lock().unwrap().push(thread);
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
    async fn concurrent_callers_share_round_trips_and_each_gets_its_own_answers() {
        let (inner, verifier) = coalescing();
        let callers = (0..40).map(|i| {
            let verifier = verifier.clone();
            async move {
                let checks = vec![check(&format!("r{i}-a")), check(&format!("r{i}-b"))];
                (i, verifier.observe_many(&checks).await)
            }
        });
        for (i, answers) in futures_util::future::join_all(callers).await {
            let subjects: Vec<String> = answers.into_iter().map(|a| a.unwrap().subject).collect();
            assert_eq!(subjects, [format!("r{i}-a"), format!("r{i}-b")]);
        }
        let calls = inner.calls.load(Ordering::SeqCst);
        assert!(calls < 40, "40 callers took {calls} round trips");
        assert!(
            inner.largest.load(Ordering::SeqCst) > 2,
            "no call carried more than one caller's checks"
        );
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

    /// A runtime of one thread named `name`.
    fn runtime(name: &str) -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(name)
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn each_runtime_has_its_checks_merged_on_its_own_threads_and_a_stopped_ones_queue_is_dropped() {
        let (inner, verifier) = coalescing();
        let ask = |rt: &tokio::runtime::Runtime, role: &str| {
            let (verifier, check) = (verifier.clone(), check(role));
            rt.block_on(rt.spawn(async move { verifier.observe(&check).await }))
                .unwrap()
                .unwrap()
                .subject
        };
        let (workers, requests) = (runtime("workers"), runtime("requests"));
        assert_eq!(ask(&workers, "a"), "a");
        assert_eq!(ask(&requests, "b"), "b");
        assert_eq!(ask(&workers, "c"), "c");
        assert_eq!(*inner.threads.lock().unwrap(), ["workers", "requests", "workers"]);
        assert_eq!(verifier.queues.lock().unwrap().len(), 2);

        // The workers' runtime stops: its queue goes with it, and the next
        // runtime to ask is served on its own threads.
        drop(workers);
        let restarted = runtime("restarted");
        assert_eq!(ask(&restarted, "d"), "d");
        assert_eq!(inner.threads.lock().unwrap().last().unwrap(), "restarted");
        assert_eq!(
            verifier.queues.lock().unwrap().len(),
            2,
            "the stopped runtime's queue is kept"
        );
        assert_eq!(ask(&requests, "e"), "e");
        assert_eq!(inner.threads.lock().unwrap().last().unwrap(), "requests");
    }
}
