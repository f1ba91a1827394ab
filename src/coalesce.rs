//! Asks made at the same time travel together: the asks of concurrent callers
//! (decisions side by side, a sweep, a gate check) are merged into one call,
//! so a burst of decisions costs one round trip instead of one per decision.
//! The checks asked of one system ([`crate::verifiers`]) and the ticket pasts
//! read by decisions ([`crate::store`]) go through one each.
//!
//! Nothing changes for a caller: each gets its own answers, in its order. A
//! merged call that answers another number of items than it was asked fails
//! every merged ask; so does one that is dropped.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use futures_util::future::BoxFuture;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Most asks merged into one call.
pub(crate) const MAX_ASKS: usize = 64;
/// Merged calls in flight at once; asks arriving meanwhile wait together for
/// the next one.
const IN_FLIGHT: usize = 2;

/// The merged call: one answer per item, in order.
type Call<A, R> = Box<dyn Fn(Vec<A>) -> BoxFuture<'static, Vec<R>> + Send + Sync>;

struct Ask<A, R> {
    items: Vec<A>,
    reply: oneshot::Sender<Vec<R>>,
}

/// What a coalescer merges, as its metric names it
/// (`closegate_merged_call_asks`): `kind`, and the target system for checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merging {
    pub kind: &'static str,
    pub system: Option<String>,
}

impl Merging {
    /// The checks asked of one target system.
    pub fn checks(system: &str) -> Self {
        Self {
            kind: "checks",
            system: Some(system.to_string()),
        }
    }

    /// Decisions' reads of their tickets' pasts.
    pub fn ticket_pasts() -> Self {
        Self {
            kind: "ticket_pasts",
            system: None,
        }
    }
}

/// How much was merged: the calls made, and the asks and items they carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Merges {
    pub calls: u64,
    pub asks: u64,
    pub items: u64,
}

/// The counts behind [`Merges`], kept by one coalescer and its serving tasks.
#[derive(Default)]
struct Counts {
    calls: AtomicU64,
    asks: AtomicU64,
    items: AtomicU64,
}

impl Counts {
    fn record(&self, merging: &Merging, asks: usize, items: usize) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.asks.fetch_add(asks as u64, Ordering::Relaxed);
        self.items.fetch_add(items as u64, Ordering::Relaxed);
        crate::metrics::merged_call(merging.kind, merging.system.as_deref(), asks);
    }
}

/// A merged call and what it is counted as.
struct Caller<A, R> {
    call: Call<A, R>,
    merging: Merging,
    counts: Counts,
}

/// Merges the concurrent asks of one kind into calls of `call`.
pub struct Coalescer<A, R> {
    caller: Arc<Caller<A, R>>,
    /// One queue per runtime that asks, served on that runtime: the workers'
    /// asks are merged on the workers' runtime, at its priority
    /// (`worker.nice`), a gate check's on the runtime serving its request. A
    /// queue whose runtime has stopped is dropped and started afresh.
    queues: Mutex<HashMap<tokio::runtime::Id, mpsc::Sender<Ask<A, R>>>>,
}

/// The merged call an ask was part of was dropped, or answered another number
/// of items than it was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the merged call was dropped")]
pub struct Dropped;

impl<A: Send + 'static, R: Send + 'static> Coalescer<A, R> {
    pub fn new(merging: Merging, call: impl Fn(Vec<A>) -> BoxFuture<'static, Vec<R>> + Send + Sync + 'static) -> Self {
        Self {
            caller: Arc::new(Caller {
                call: Box::new(call),
                merging,
                counts: Counts::default(),
            }),
            queues: Mutex::default(),
        }
    }

    /// How much was merged so far.
    pub fn merges(&self) -> Merges {
        let counts = &self.caller.counts;
        Merges {
            calls: counts.calls.load(Ordering::Relaxed),
            asks: counts.asks.load(Ordering::Relaxed),
            items: counts.items.load(Ordering::Relaxed),
        }
    }

    /// The answers to `items`, from a call merged with whatever other asks are
    /// waiting. When the runtime that served this runtime's queue has gone,
    /// the call is made directly.
    pub async fn ask(&self, items: Vec<A>) -> Result<Vec<R>, Dropped> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        if let Err(mpsc::error::SendError(ask)) = self.queue().send(Ask { items, reply }).await {
            let n = ask.items.len();
            self.caller.counts.record(&self.caller.merging, 1, n);
            let answers = (self.caller.call)(ask.items).await;
            return (answers.len() == n).then_some(answers).ok_or(Dropped);
        }
        answer.await.map_err(|_| Dropped)
    }

    /// The calling runtime's queue, started on first use.
    fn queue(&self) -> mpsc::Sender<Ask<A, R>> {
        let runtime = tokio::runtime::Handle::current().id();
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        queues.retain(|_, queue| !queue.is_closed());
        queues
            .entry(runtime)
            .or_insert_with(|| {
                let (tx, rx) = mpsc::channel(4 * MAX_ASKS);
                tokio::spawn(serve(self.caller.clone(), rx));
                tx
            })
            .clone()
    }
}

/// Takes whatever asks are waiting whenever a call may start, and answers
/// each from one merged call.
async fn serve<A: Send + 'static, R: Send + 'static>(caller: Arc<Caller<A, R>>, mut rx: mpsc::Receiver<Ask<A, R>>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut asks = Vec::with_capacity(MAX_ASKS);
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        if rx.recv_many(&mut asks, MAX_ASKS).await == 0 {
            return;
        }
        let merged = std::mem::replace(&mut asks, Vec::with_capacity(MAX_ASKS));
        let caller = caller.clone();
        tokio::spawn(async move {
            answer(&caller, merged).await;
            drop(slot);
        });
    }
}

async fn answer<A, R>(caller: &Caller<A, R>, asks: Vec<Ask<A, R>>) {
    let mut replies = Vec::with_capacity(asks.len());
    let mut items = Vec::new();
    for ask in asks {
        replies.push((ask.items.len(), ask.reply));
        items.extend(ask.items);
    }
    let n = items.len();
    caller.counts.record(&caller.merging, replies.len(), n);
    let answers = (caller.call)(items).await;
    if answers.len() != n {
        // Every merged ask fails: its reply is dropped.
        return;
    }
    let mut answers = answers.into_iter();
    for (len, reply) in replies {
        // A caller that gave up (its own timeout) no longer listens.
        let _ = reply.send(answers.by_ref().take(len).collect());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Doubles each number after 20 ms; answers one item too few when asked
    /// for 13; counts its calls and names the thread each ran on.
    #[derive(Default)]
    struct Doubling {
        calls: AtomicUsize,
        largest: AtomicUsize,
        threads: Mutex<Vec<String>>,
    }

    fn doubling() -> (Arc<Doubling>, Arc<Coalescer<u32, u32>>) {
        let seen = Arc::new(Doubling::default());
        let counted = seen.clone();
        let merging = Merging {
            kind: "doubling",
            system: None,
        };
        let coalescer = Coalescer::new(merging, move |items: Vec<u32>| {
            let seen = counted.clone();
            Box::pin(async move {
                seen.calls.fetch_add(1, Ordering::SeqCst);
                seen.largest.fetch_max(items.len(), Ordering::SeqCst);
                let thread = std::thread::current().name().unwrap_or_default().to_string();
                seen.threads.lock().unwrap().push(thread);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                let short = items.contains(&13);
                let mut answers: Vec<u32> = items.into_iter().map(|i| 2 * i).collect();
                if short {
                    answers.pop();
                }
                answers
            }) as BoxFuture<'static, Vec<u32>>
        });
        (seen, Arc::new(coalescer))
    }

    #[tokio::test]
    async fn concurrent_asks_share_calls_and_each_gets_its_own_answers() {
        let (seen, coalescer) = doubling();
        let asks = (0..40u32).map(|i| {
            let coalescer = coalescer.clone();
            async move { (i, coalescer.ask(vec![100 + i, 200 + i]).await) }
        });
        for (i, answers) in futures_util::future::join_all(asks).await {
            assert_eq!(answers.unwrap(), [200 + 2 * i, 400 + 2 * i]);
        }
        let calls = seen.calls.load(Ordering::SeqCst);
        assert!(calls < 40, "40 asks took {calls} calls");
        let counted = Merges {
            calls: calls as u64,
            asks: 40,
            items: 80,
        };
        assert_eq!(coalescer.merges(), counted);
        assert!(
            seen.largest.load(Ordering::SeqCst) > 2,
            "no call carried more than one ask"
        );
    }

    #[tokio::test]
    async fn a_call_answering_another_number_of_items_fails_every_ask_merged_into_it() {
        let (_, coalescer) = doubling();
        let (short, other) = tokio::join!(coalescer.ask(vec![13]), coalescer.ask(vec![1]));
        assert_eq!(short, Err(Dropped));
        // Merged into the short call or the other slot.
        assert!(matches!(other.as_deref(), Err(Dropped) | Ok([2])), "{other:?}");
        assert_eq!(coalescer.ask(vec![4]).await.unwrap(), [8]);
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
    fn each_runtime_has_its_asks_merged_on_its_own_threads_and_a_stopped_ones_queue_is_dropped() {
        let (seen, coalescer) = doubling();
        let ask = |rt: &tokio::runtime::Runtime, n: u32| {
            let coalescer = coalescer.clone();
            rt.block_on(rt.spawn(async move { coalescer.ask(vec![n]).await }))
                .unwrap()
                .unwrap()
        };
        let (workers, requests) = (runtime("workers"), runtime("requests"));
        assert_eq!(ask(&workers, 1), [2]);
        assert_eq!(ask(&requests, 2), [4]);
        assert_eq!(ask(&workers, 3), [6]);
        assert_eq!(*seen.threads.lock().unwrap(), ["workers", "requests", "workers"]);
        assert_eq!(coalescer.queues.lock().unwrap().len(), 2);

        // The workers' runtime stops: its queue goes with it, and the next
        // runtime to ask is served on its own threads.
        drop(workers);
        let restarted = runtime("restarted");
        assert_eq!(ask(&restarted, 4), [8]);
        assert_eq!(seen.threads.lock().unwrap().last().unwrap(), "restarted");
        assert_eq!(
            coalescer.queues.lock().unwrap().len(),
            2,
            "the stopped runtime's queue is kept"
        );
        assert_eq!(ask(&requests, 5), [10]);
        assert_eq!(seen.threads.lock().unwrap().last().unwrap(), "requests");
    }
}
