use serde::{Deserialize, Serialize};

/// What asked for a decision. Every decision names its trigger; only webhook
/// triggers come from a stored delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TriggerKind {
    /// A helpdesk webhook delivery (the id is the stored delivery's id).
    Webhook,
    /// `POST /v1/gate/check` (the id is `caller/request-id`).
    SyncCheck,
    /// A claim reached its `valid_until`.
    Expiry,
    /// The periodic or on-demand drift sweep.
    Sweep,
    /// A break-glass close reached its verification deadline.
    BreakGlassDeadline,
    /// An operator, from the CLI.
    Manual,
    /// A close found by listing the helpdesk, whose webhook never arrived (the
    /// id is `SOURCE:TICKET@CLOSED_AT`).
    Reconcile,
}

impl TriggerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::Webhook => "webhook",
            TriggerKind::SyncCheck => "sync-check",
            TriggerKind::Expiry => "expiry",
            TriggerKind::Sweep => "sweep",
            TriggerKind::BreakGlassDeadline => "break-glass-deadline",
            TriggerKind::Manual => "manual",
            TriggerKind::Reconcile => "reconcile",
        }
    }

    /// Whether decisions of this kind are carried back to the helpdesk. A
    /// synchronous check is answered to its caller; a manual re-check is
    /// printed to the operator.
    pub fn speaks_to_helpdesk(self) -> bool {
        !matches!(self, TriggerKind::SyncCheck | TriggerKind::Manual)
    }

    /// Whether a trigger of this kind names one question, answered by at most
    /// one evidence record whoever decides it: a close found by the reconciler
    /// (two passes may find it at once) and a gate check (a retry may take
    /// over an id whose decider stopped). The store writes a second record of
    /// the same trigger as nothing.
    pub fn recorded_once(self) -> bool {
        matches!(self, TriggerKind::Reconcile | TriggerKind::SyncCheck)
    }
}

impl std::str::FromStr for TriggerKind {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        by_name(
            &[
                TriggerKind::Webhook,
                TriggerKind::SyncCheck,
                TriggerKind::Expiry,
                TriggerKind::Sweep,
                TriggerKind::BreakGlassDeadline,
                TriggerKind::Manual,
                TriggerKind::Reconcile,
            ],
            TriggerKind::as_str,
            s,
        )
    }
}

/// A trigger: its kind and the id of the unit that caused it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Trigger {
    pub kind: TriggerKind,
    pub id: String,
}

impl Trigger {
    pub fn new(kind: TriggerKind, id: impl Into<String>) -> Self {
        Self { kind, id: id.into() }
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind.as_str(), self.id)
    }
}

/// A stored name that is not one of an enum's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown value {0:?}")]
pub struct UnknownName(pub String);

/// The value among `all` whose `name` is `s`: how stored enum names are read back.
pub fn by_name<T: Copy>(all: &[T], name: impl Fn(T) -> &'static str, s: &str) -> Result<T, UnknownName> {
    all.iter()
        .copied()
        .find(|v| name(*v) == s)
        .ok_or_else(|| UnknownName(s.to_string()))
}
