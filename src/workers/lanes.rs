//! Waking an outbox lane's claimer when messages are enqueued for it: only
//! that lane's, and a signal given while it is busy is kept until it next
//! waits. A lane then claims for its own messages only, instead of every lane
//! claiming (mostly nothing) on every decision.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::Notify;

/// One signal per outbox lane (a source, or an export sink's lane).
#[derive(Default)]
pub struct LaneSignals {
    lanes: Mutex<HashMap<String, Arc<Notify>>>,
}

impl LaneSignals {
    /// The lane's signal, for its claimer to wait on.
    pub fn signal(&self, lane: &str) -> Arc<Notify> {
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        lanes.entry(lane.to_string()).or_default().clone()
    }

    /// Messages were enqueued for `lane`: its claimer wakes (or, when busy,
    /// does not wait the next time).
    pub fn wake(&self, lane: &str) {
        self.signal(lane).notify_one();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::LaneSignals;

    #[tokio::test]
    async fn a_signal_wakes_one_worker_of_its_own_lane_and_is_kept_until_one_waits() {
        let signals = LaneSignals::default();
        let waiting = |lane: &str| {
            let signal = signals.signal(lane);
            async move {
                tokio::time::timeout(Duration::from_millis(50), signal.notified())
                    .await
                    .is_ok()
            }
        };
        // Given before anyone waits: the next to wait does not.
        signals.wake("github");
        assert!(waiting("github").await);
        assert!(!waiting("github").await, "one signal woke two workers");
        // Another lane's messages wake none of this lane's workers.
        signals.wake("jira");
        assert!(!waiting("github").await, "a github worker woke for jira's messages");
        assert!(waiting("jira").await);
    }
}
