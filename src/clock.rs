//! Where time comes from. Production reads the system clock; tests hold a
//! [`ManualClock`] and move it forward instead of sleeping.

use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};

/// A source of "now", in unix milliseconds.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;

    /// Now, as RFC 3339 with the given precision.
    fn rfc3339(&self, precision: chrono::SecondsFormat) -> String {
        chrono::DateTime::from_timestamp_millis(self.now_ms())
            .unwrap_or_default()
            .to_rfc3339_opts(precision, true)
    }
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}

/// The system clock moved forward by whatever a test says: time still flows,
/// and a test can jump to an expiry or past a backoff without sleeping.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    offset_ms: Arc<AtomicI64>,
}

impl ManualClock {
    /// Moves the clock forward by `ms`.
    pub fn advance_ms(&self, ms: i64) {
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        SystemClock.now_ms() + self.offset_ms.load(Ordering::SeqCst)
    }
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;
