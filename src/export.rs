//! Evidence for SIEM and GRC tools: every record as a CloudEvents 1.0 event,
//! a JSON line or a CSV row, and the sinks that receive each record as it is
//! written, through the persistent outbox (retried, never dropped; the event
//! id is the record id, so a receiver deduplicates on it).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{
    adapters::EffectError, config::SinkConfig, evidence::merkle, signature::StandardWebhooksKey, store::EvidenceRecord,
};

/// The CloudEvents `type` prefix; the record's finding completes it
/// (`dev.closegate.evidence.close`, `.drift`, `.removed`, …).
pub const EVENT_TYPE: &str = "dev.closegate.evidence";

/// A record as a CloudEvents 1.0 event (JSON format). `data` carries the
/// hashed text byte for byte, so a receiver can check it on its own.
pub fn cloud_event(record: &EvidenceRecord) -> Value {
    let finding = record
        .content()
        .ok()
        .and_then(|c| serde_json::to_value(c.finding).ok())
        .and_then(|f| f.as_str().map(String::from))
        .unwrap_or_else(|| "unknown".into());
    let time = chrono::DateTime::from_timestamp_millis(record.created_at)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    json!({
        "specversion": "1.0",
        "id": record.id,
        "source": format!("/closegate/{}", record.source),
        "type": format!("{EVENT_TYPE}.{finding}"),
        "subject": format!("{}:{}", record.source, record.ticket),
        "time": time,
        "datacontenttype": "application/json",
        "data": {
            "seq": record.seq,
            "ticket": record.ticket,
            "trigger": record.trigger.kind.as_str(),
            "trigger_id": record.trigger.id,
            "verdict": record.verdict.as_str(),
            "policy": record.policy,
            "mode": record.mode.as_str(),
            "hash": record.hash,
            "prev_hash": record.prev_hash,
            "leaf_hash": hex::encode(merkle::leaf_hash(record.record.as_bytes())),
            "record": record.record,
        },
    })
}

/// A record as one JSON line: the hashed text with its hash, link and leaf hash.
pub fn json_line(record: &EvidenceRecord) -> Value {
    json!({
        "seq": record.seq, "id": record.id, "hash": record.hash, "prev_hash": record.prev_hash,
        "leaf_hash": hex::encode(merkle::leaf_hash(record.record.as_bytes())),
        "record": record.record,
    })
}

/// The CSV columns, in order.
pub const CSV_HEADER: &str = "seq,id,created_at,source,ticket,trigger,trigger_id,verdict,policy,mode,hash,prev_hash";

/// A record as one CSV row (RFC 4180 quoting; a leading `=+-@` is
/// neutralised so a spreadsheet never runs ticket text as a formula).
pub fn csv_row(record: &EvidenceRecord) -> String {
    let created = chrono::DateTime::from_timestamp_millis(record.created_at)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default();
    [
        record.seq.to_string(),
        record.id.clone(),
        created,
        record.source.clone(),
        record.ticket.clone(),
        record.trigger.kind.as_str().to_string(),
        record.trigger.id.clone(),
        record.verdict.as_str().to_string(),
        record.policy.clone().unwrap_or_default(),
        record.mode.as_str().to_string(),
        record.hash.clone(),
        record.prev_hash.clone(),
    ]
    .iter()
    .map(|field| csv_field(field))
    .collect::<Vec<_>>()
    .join(",")
}

fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// An outbox message that sends one evidence record to one sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportIntent {
    pub export_to: String,
    pub evidence_id: String,
}

/// The outbox lane of a sink: apart from every helpdesk's.
pub fn lane(sink: &str) -> String {
    format!("sink:{sink}")
}

/// One configured sink.
struct Sink {
    url: String,
    key: StandardWebhooksKey,
}

/// Every configured sink, by name.
#[derive(Default)]
pub struct Sinks {
    sinks: BTreeMap<String, Sink>,
    client: Option<reqwest::Client>,
}

impl Sinks {
    pub fn from_config(config: &BTreeMap<String, SinkConfig>) -> Result<Self, String> {
        let mut sinks = BTreeMap::new();
        for (name, sink) in config {
            let key = format!("sinks.{name}.secret");
            let secret = sink.secret.resolve(&key)?;
            let signing = StandardWebhooksKey::parse(secret.expose()).map_err(|e| format!("{key}: {e}"))?;
            sinks.insert(
                name.clone(),
                Sink {
                    url: sink.url.clone(),
                    key: signing,
                },
            );
        }
        let client = match sinks.is_empty() {
            true => None,
            false => Some(crate::outbound::client(std::time::Duration::from_secs(15))?),
        };
        Ok(Self { sinks, client })
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.sinks.keys()
    }

    /// Whether `lane` is a sink's lane.
    pub fn is_lane(lane: &str) -> bool {
        lane.starts_with("sink:")
    }

    /// Posts a record as a CloudEvent (`application/cloudevents+json`),
    /// signed the Standard Webhooks way with `webhook-id` = the event id.
    pub async fn send(&self, sink: &str, record: &EvidenceRecord, now: i64) -> Result<(), EffectError> {
        let (Some(target), Some(client)) = (self.sinks.get(sink), &self.client) else {
            return Err(EffectError::retryable(format!("sink {sink} is not configured")));
        };
        let body = serde_json::to_vec(&cloud_event(record)).map_err(|e| EffectError::permanent(e.to_string()))?;
        let seconds = now / 1000;
        let signature = target.key.sign(&record.id, seconds, &body);
        let request = client
            .post(&target.url)
            .header("content-type", "application/cloudevents+json")
            .header("webhook-id", &record.id)
            .header("webhook-timestamp", seconds.to_string())
            .header("webhook-signature", signature)
            .body(body);
        crate::adapters::send("send evidence event", request).await.map(|_| ())
    }
}
