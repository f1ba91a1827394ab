//! Where time comes from. Production reads the system clock; tests hold a
//! [`ManualClock`] and move it forward instead of sleeping.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

/// A future that a clock's `sleep` returns.
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// A source of "now", in unix milliseconds.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;

    /// Waits until the clock has moved on by `d`.
    fn sleep(&self, d: Duration) -> Sleep<'_>;

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

    fn sleep(&self, d: Duration) -> Sleep<'_> {
        Box::pin(tokio::time::sleep(d))
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

    /// How far the clock has been moved forward in all, by tests and sleeps.
    pub fn advanced_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::SeqCst)
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        SystemClock.now_ms() + self.offset_ms.load(Ordering::SeqCst)
    }

    /// Jumps forward by `d`, then lets other tasks run for a moment.
    fn sleep(&self, d: Duration) -> Sleep<'_> {
        self.advance_ms(d.as_millis() as i64);
        Box::pin(tokio::time::sleep(Duration::from_millis(20)))
    }
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;
