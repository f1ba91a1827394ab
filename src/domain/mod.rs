//! The vocabulary of the gate: ticket events in, checks and decisions out.
//! Nothing here does IO or knows about HTTP.

mod check;
mod decision;
mod governance;
mod ticket;
mod trigger;

pub use check::{CheckOutcome, CheckResult, CheckSpec, Expect, Observation, error_summary};
pub use decision::{Attempt, Decision, Exception, Mode, Verdict};
pub use governance::{
    Approval, ApprovalMarks, ApprovalReport, ApprovalStanding, Governance, JudgedApproval, Person, RequesterReport,
};
pub use ticket::{Actor, ActorKind, EventKind, TicketEvent, TicketRef, field_key};
pub use trigger::{Trigger, TriggerKind, UnknownName, by_name};
