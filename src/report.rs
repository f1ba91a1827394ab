//! `closegate report`: what the gate did over a period, computed from the
//! evidence log alone. Pure: the records are read by the caller.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::{
    domain::{ApprovalStanding, CheckOutcome, Mode, Verdict},
    evidence::{EvidenceContent, Finding},
    store::{EvidenceRecord, Store, StoreResult},
};

/// Median and 90th percentile of a set of durations, in seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Spread {
    pub count: usize,
    pub median_seconds: Option<i64>,
    pub p90_seconds: Option<i64>,
}

impl Spread {
    fn of(mut values: Vec<i64>) -> Self {
        values.sort_unstable();
        // Nearest rank: the smallest value with at least p% of them at or below it.
        let rank = |p: usize| (!values.is_empty()).then(|| values[(values.len() * p).div_ceil(100).saturating_sub(1)]);
        Self {
            count: values.len(),
            median_seconds: rank(50),
            p90_seconds: rank(90),
        }
    }
}

/// How often a system could not be asked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SystemFigures {
    pub checks: u64,
    pub could_not_verify: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// Records created at or after this time (RFC 3339).
    pub since: String,
    /// Decisions on closes that a policy governs.
    pub gated_closes: u64,
    /// Tickets with a gated close in the period.
    pub tickets: u64,
    /// Tickets whose first gated close in the period was allowed.
    pub allowed_first_time: u64,
    pub allowed: u64,
    pub blocked: u64,
    /// Blocked closes in enforce mode: the ticket was sent back.
    pub reopened: u64,
    /// The most frequent block reasons (by the check or rule they name).
    pub top_block_reasons: Vec<(String, u64)>,
    pub systems: BTreeMap<String, SystemFigures>,
    /// From the ticket's first appearance to its first counted approval.
    pub approval_latency: Spread,
    /// From the ticket's first appearance to its first allowed close.
    pub time_to_verified_close: Spread,
    pub break_glass: u64,
    pub drift_found: u64,
    pub drift_resolved: u64,
    /// Closes of tickets carrying the marker label that no policy governed.
    pub ungated_marked_closes: u64,
}

/// What a reason is about: the check or rule it names (`table privileges`,
/// `approval`, `requester`), so that reasons for different tickets group.
fn reason_topic(reason: &str) -> String {
    reason.split(':').next().unwrap_or(reason).trim().to_string()
}

fn instant_ms(t: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Computes the report from every record in chain order. `first_seen` gives,
/// per ticket (`source:key`), when closegate first saw it governed; records
/// before `since_ms` only tell when tickets appeared. `marker` is the label
/// of access requests (`unmatched.label`), if configured.
pub fn compute(
    records: &[EvidenceRecord],
    since_ms: i64,
    first_seen: &HashMap<String, i64>,
    marker: Option<&str>,
) -> Report {
    let mut report = Report {
        since: chrono::DateTime::from_timestamp_millis(since_ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default(),
        ..Report::default()
    };
    let mut appeared: HashMap<String, i64> = first_seen.clone();
    let mut first_close: HashMap<String, Verdict> = HashMap::new();
    let mut verified_close: HashMap<String, i64> = HashMap::new();
    let mut approved: HashMap<String, i64> = HashMap::new();
    let mut reasons: HashMap<String, u64> = HashMap::new();
    for record in records {
        let ticket = format!("{}:{}", record.source, record.ticket);
        let start = *appeared
            .entry(ticket.clone())
            .and_modify(|t| *t = (*t).min(record.created_at))
            .or_insert(record.created_at);
        if record.created_at < since_ms {
            continue;
        }
        let Ok(EvidenceContent {
            event,
            decision,
            finding,
        }) = record.content()
        else {
            continue;
        };
        match finding {
            Finding::Drift => report.drift_found += 1,
            Finding::DriftResolved => report.drift_resolved += 1,
            Finding::Close => {}
            _ => continue,
        }
        if finding != Finding::Close {
            continue;
        }
        if decision.verdict == Verdict::Ungated {
            let marked = marker.is_some_and(|m| event.labels.iter().any(|l| l.eq_ignore_ascii_case(m)));
            report.ungated_marked_closes += u64::from(marked);
            continue;
        }
        report.gated_closes += 1;
        first_close.entry(ticket.clone()).or_insert(decision.verdict);
        for check in &decision.checks {
            let system = report.systems.entry(check.spec.system.clone()).or_default();
            system.checks += 1;
            if matches!(check.outcome, CheckOutcome::CouldNotVerify { .. }) {
                system.could_not_verify += 1;
            }
        }
        match decision.verdict {
            Verdict::Allowed => {
                report.allowed += 1;
                report.break_glass += u64::from(decision.exception.is_some());
                verified_close
                    .entry(ticket.clone())
                    .or_insert(record.created_at - start);
                let first_approval = decision.governance.approval.iter().flat_map(|a| {
                    a.approvals
                        .iter()
                        .filter(|j| j.standing == ApprovalStanding::Counted)
                        .filter_map(|j| instant_ms(&j.approval.at))
                });
                if let Some(at) = first_approval.min() {
                    approved.entry(ticket.clone()).or_insert(at - start);
                }
            }
            _ => {
                report.blocked += 1;
                report.reopened += u64::from(decision.mode == Mode::Enforce);
                for reason in &decision.reasons {
                    *reasons.entry(reason_topic(reason)).or_default() += 1;
                }
            }
        }
    }
    report.tickets = first_close.len() as u64;
    report.allowed_first_time = first_close.values().filter(|v| **v == Verdict::Allowed).count() as u64;
    let mut top: Vec<(String, u64)> = reasons.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(5);
    report.top_block_reasons = top;
    let seconds = |m: HashMap<String, i64>| m.into_values().map(|ms| ms.max(0) / 1000).collect();
    report.approval_latency = Spread::of(seconds(approved));
    report.time_to_verified_close = Spread::of(seconds(verified_close));
    report
}

/// Reads the whole evidence log and computes the report of records since `since_ms`.
pub async fn from_store(store: &Store, since_ms: i64, marker: Option<&str>) -> StoreResult<Report> {
    let first_seen = store.governed_first_seen().await?;
    let records = store.evidence_all().await?;
    Ok(compute(&records, since_ms, &first_seen, marker))
}

fn duration(seconds: Option<i64>) -> String {
    seconds
        .map(|s| humantime::format_duration(std::time::Duration::from_secs(s.max(0) as u64)).to_string())
        .unwrap_or_else(|| "-".into())
}

impl Report {
    /// `(figure, value)` rows, the same for the table and the CSV.
    pub fn rows(&self) -> Vec<(String, String)> {
        let mut rows = vec![
            ("since".to_string(), self.since.clone()),
            ("gated closes".into(), self.gated_closes.to_string()),
            ("tickets".into(), self.tickets.to_string()),
            ("allowed first time".into(), self.allowed_first_time.to_string()),
            ("allowed".into(), self.allowed.to_string()),
            ("blocked".into(), self.blocked.to_string()),
            ("reopened".into(), self.reopened.to_string()),
        ];
        for (reason, n) in &self.top_block_reasons {
            rows.push((format!("blocked because: {reason}"), n.to_string()));
        }
        for (system, f) in &self.systems {
            let rate = if f.checks == 0 {
                0.0
            } else {
                f.could_not_verify as f64 * 100.0 / f.checks as f64
            };
            rows.push((
                format!("could not verify on {system}"),
                format!("{rate:.1}% ({} of {})", f.could_not_verify, f.checks),
            ));
        }
        for (name, spread) in [
            ("approval latency", &self.approval_latency),
            ("time to verified close", &self.time_to_verified_close),
        ] {
            rows.push((format!("{name} median"), duration(spread.median_seconds)));
            rows.push((format!("{name} p90"), duration(spread.p90_seconds)));
        }
        rows.extend([
            ("break-glass exceptions".to_string(), self.break_glass.to_string()),
            ("drift found".into(), self.drift_found.to_string()),
            ("drift resolved".into(), self.drift_resolved.to_string()),
            (
                "ungated closes of marked tickets".into(),
                self.ungated_marked_closes.to_string(),
            ),
        ]);
        rows
    }

    pub fn table(&self) -> String {
        let rows = self.rows();
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        rows.iter().map(|(k, v)| format!("{k:<width$}  {v}\n")).collect()
    }

    pub fn csv(&self) -> String {
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let mut out = String::from("figure,value\n");
        for (k, v) in self.rows() {
            out.push_str(&format!("{},{}\n", quote(&k), quote(&v)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Spread;

    #[test]
    fn percentiles_are_nearest_rank() {
        let s = Spread::of(vec![10, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!((s.median_seconds, s.p90_seconds), (Some(5), Some(9)));
        assert_eq!(Spread::of(vec![]).median_seconds, None);
        assert_eq!(Spread::of(vec![7]).p90_seconds, Some(7));
    }
}
