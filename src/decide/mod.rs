//! The decision service: every trigger (a webhook delivery, a synchronous gate
//! check, an expiry, a drift sweep, a break-glass deadline, an operator) goes
//! through [`decide`], which refreshes the ticket where the source requires it,
//! runs the gate and records the evidence and the outbox intents together.

mod approvals;
mod intent;
mod recheck;
mod reconcile;
mod scan;
mod service;
mod sync_check;

pub use intent::{Action, Intent, StoredMessage};
pub use recheck::{RecheckSummary, expected_now, recheck};
pub use reconcile::{ReconcileError, Reconciled, reconcile_source};
pub use scan::drift_scan;
pub use service::{DecideError, Decided, Freshness, decide, decide_as, record_edit, unverifiable};
pub use sync_check::{SyncAnswer, SyncCheckError, check_synchronously};
