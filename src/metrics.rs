//! Prometheus metrics. Every label has a bounded set of values: configured
//! sources and systems, loaded policies, verdicts, triggers and error codes.
//! No label ever carries ticket text, a delivery id or a secret.
//!
//! Counters and histograms are recorded where things happen; the store's
//! gauges (outbox lanes, claims, due expiries) are read at scrape time.

use std::{sync::OnceLock, time::Duration};

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::{
    domain::{TriggerKind, Verdict},
    store::StoreGauges,
};

/// Latency buckets, in seconds: from a fast ack to a verifier's timeout.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Every metric closegate exports (histograms also as `_bucket`, `_sum`,
/// `_count`), for what is built on them: alerts and dashboards.
pub const NAMES: &[&str] = &[
    "closegate_build_info",
    "closegate_deliveries_total",
    "closegate_ack_duration_seconds",
    "closegate_decisions_total",
    "closegate_decision_duration_seconds",
    "closegate_verifier_duration_seconds",
    "closegate_verifier_checks_total",
    "closegate_verifier_errors_total",
    "closegate_merged_call_asks",
    "closegate_outbox_backlog",
    "closegate_outbox_oldest_age_seconds",
    "closegate_outbox_dead",
    "closegate_outbox_sent_total",
    "closegate_drift_found_total",
    "closegate_drift_resolved_total",
    "closegate_claims_active",
    "closegate_expiries_due",
    "closegate_reconcile_missed_total",
    "closegate_reconcile_errors_total",
    "closegate_reconcile_last_success_timestamp_seconds",
];

/// Asks per merged call: 1 to 64, the most one call takes
/// ([`crate::coalesce::MAX_ASKS`]).
const ASK_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

/// How often histogram buffers are drained.
const UPKEEP: Duration = Duration::from_secs(1);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once; `None` when another recorder was
/// installed first (then nothing is exported).
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
                .ok()?
                .set_buckets_for_metric(Matcher::Full("closegate_merged_call_asks".into()), ASK_BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            // Histogram samples wait in buffers until drained: drain them on
            // a schedule, not only when scraped, so memory stays flat when
            // nobody scrapes.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP);
                        upkeep.run_upkeep();
                    }
                })
                .ok()?;
            describe();
            gauge!("closegate_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            Some(handle)
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "closegate_deliveries_total",
        "Webhook deliveries by source and outcome (accepted, duplicate, refused with a reason)."
    );
    describe_histogram!(
        "closegate_ack_duration_seconds",
        "Time from request to acknowledgement of a webhook, by source."
    );
    describe_counter!(
        "closegate_decisions_total",
        "Decisions recorded, by policy, verdict and trigger."
    );
    describe_histogram!(
        "closegate_decision_duration_seconds",
        "Time to decide and record one decision, by trigger."
    );
    describe_histogram!(
        "closegate_verifier_duration_seconds",
        "Time a target system took to answer one batch of checks."
    );
    describe_counter!(
        "closegate_verifier_checks_total",
        "Checks asked of a target system, answered or not: what the error rate is a share of."
    );
    describe_counter!(
        "closegate_verifier_errors_total",
        "Checks a target system could not answer, by kind of error."
    );
    describe_histogram!(
        "closegate_merged_call_asks",
        "Asks carried by one merged call: checks of one target system (kind checks), or decisions' reads of their \
         tickets' pasts (kind ticket_pasts)."
    );
    describe_gauge!(
        "closegate_outbox_backlog",
        "Outbox messages waiting to be delivered, by source."
    );
    describe_gauge!(
        "closegate_outbox_oldest_age_seconds",
        "Age of the oldest waiting outbox message, by source."
    );
    describe_gauge!(
        "closegate_outbox_dead",
        "Outbox messages parked after too many failures, by source."
    );
    describe_counter!(
        "closegate_outbox_sent_total",
        "Outbox delivery attempts by source and outcome (delivered, retry, dead)."
    );
    describe_counter!(
        "closegate_drift_found_total",
        "Re-verifications that found access drifted from what was verified, by policy."
    );
    describe_counter!(
        "closegate_drift_resolved_total",
        "Re-verifications that found earlier drift resolved, by policy."
    );
    describe_gauge!(
        "closegate_claims_active",
        "Verified claims still watched for drift and expiry."
    );
    describe_gauge!("closegate_expiries_due", "Active claims whose expiry check is due.");
    describe_counter!(
        "closegate_reconcile_missed_total",
        "Closes whose webhook never arrived, found and decided by the reconciler."
    );
    describe_counter!(
        "closegate_reconcile_errors_total",
        "Reconciler runs that failed, by source."
    );
    describe_gauge!(
        "closegate_reconcile_last_success_timestamp_seconds",
        "When the reconciler last listed a source to the end."
    );
}

/// What became of one webhook delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Accepted,
    Duplicate,
    /// Refused, with the error code of the answer.
    Refused(&'static str),
}

/// One webhook delivery answered. `source` must be a configured source name.
pub fn delivery(source: &str, outcome: DeliveryOutcome, took: Duration) {
    let (outcome, reason) = match outcome {
        DeliveryOutcome::Accepted => ("accepted", ""),
        DeliveryOutcome::Duplicate => ("duplicate", ""),
        DeliveryOutcome::Refused(code) => ("refused", code),
    };
    counter!("closegate_deliveries_total", "source" => source.to_string(), "outcome" => outcome, "reason" => reason)
        .increment(1);
    histogram!("closegate_ack_duration_seconds", "source" => source.to_string()).record(took.as_secs_f64());
}

/// One decision recorded.
pub fn decision(policy: Option<&str>, verdict: Verdict, trigger: TriggerKind, took: Duration) {
    counter!("closegate_decisions_total",
        "policy" => policy.unwrap_or("none").to_string(), "verdict" => verdict.as_str(), "trigger" => trigger.as_str())
    .increment(1);
    histogram!("closegate_decision_duration_seconds", "trigger" => trigger.as_str()).record(took.as_secs_f64());
}

/// One batch of `checks` checks answered (or not) by a target system;
/// `errors` lists the kind of each check it could not answer.
pub fn verifier(system: &str, checks: usize, took: Duration, errors: impl IntoIterator<Item = &'static str>) {
    histogram!("closegate_verifier_duration_seconds", "system" => system.to_string()).record(took.as_secs_f64());
    counter!("closegate_verifier_checks_total", "system" => system.to_string()).increment(checks as u64);
    for kind in errors {
        counter!("closegate_verifier_errors_total", "system" => system.to_string(), "kind" => kind).increment(1);
    }
}

/// One merged call of `kind` (for checks, to `system`) carrying `asks` asks.
pub fn merged_call(kind: &'static str, system: Option<&str>, asks: usize) {
    match system {
        Some(system) => {
            histogram!("closegate_merged_call_asks", "kind" => kind, "system" => system.to_string()).record(asks as f64)
        }
        None => histogram!("closegate_merged_call_asks", "kind" => kind).record(asks as f64),
    }
}

/// One outbox delivery attempt: `delivered`, `retry` or `dead`.
pub fn outbox_sent(source: &str, outcome: &'static str) {
    counter!("closegate_outbox_sent_total", "source" => source.to_string(), "outcome" => outcome).increment(1);
}

/// A re-verification found new drift (`resolved` false) or drift resolved.
pub fn drift(policy: &str, resolved: bool) {
    let name = if resolved {
        "closegate_drift_resolved_total"
    } else {
        "closegate_drift_found_total"
    };
    counter!(name, "policy" => policy.to_string()).increment(1);
}

/// The reconciler listed `source`: how many missed closes it found, or that it failed.
pub fn reconciled(source: &str, result: Result<u64, ()>, at_unix: i64) {
    match result {
        Ok(missed) => {
            counter!("closegate_reconcile_missed_total", "source" => source.to_string()).increment(missed);
            gauge!("closegate_reconcile_last_success_timestamp_seconds", "source" => source.to_string())
                .set(at_unix as f64);
        }
        Err(()) => counter!("closegate_reconcile_errors_total", "source" => source.to_string()).increment(1),
    }
}

/// Sets the store's gauges from a fresh reading at `now_ms`. Lanes that
/// emptied are reported as zero rather than left at their last value.
pub fn store_gauges(gauges: &StoreGauges, sources: impl IntoIterator<Item = String>, now_ms: i64) {
    let mut lanes: std::collections::BTreeMap<String, (i64, f64, i64)> =
        sources.into_iter().map(|s| (s, (0, 0.0, 0))).collect();
    for lane in &gauges.lanes {
        let age = lane
            .oldest_created_at
            .map_or(0.0, |at| ((now_ms - at).max(0) as f64) / 1000.0);
        lanes.insert(lane.source.clone(), (lane.backlog, age, lane.dead));
    }
    for (source, (backlog, age, dead)) in lanes {
        gauge!("closegate_outbox_backlog", "source" => source.clone()).set(backlog as f64);
        gauge!("closegate_outbox_oldest_age_seconds", "source" => source.clone()).set(age);
        gauge!("closegate_outbox_dead", "source" => source).set(dead as f64);
    }
    gauge!("closegate_claims_active").set(gauges.claims_active as f64);
    gauge!("closegate_expiries_due").set(gauges.expiries_due as f64);
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_asks_buckets_end_at_the_most_asks_one_call_takes() {
        assert_eq!(
            super::ASK_BUCKETS.last().copied(),
            Some(crate::coalesce::MAX_ASKS as f64)
        );
    }
}
