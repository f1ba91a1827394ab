//! Atlassian Document Format for Jira Cloud comments: a heading, the decision
//! with code marks, the reasons as a list, a table of checks, and the evidence.

use serde_json::{Value, json};

use super::DecisionView;

fn text(t: &str) -> Value {
    json!({ "type": "text", "text": t })
}

fn code(t: &str) -> Value {
    json!({ "type": "text", "text": t, "marks": [{ "type": "code" }] })
}

fn strong(t: &str) -> Value {
    json!({ "type": "text", "text": t, "marks": [{ "type": "strong" }] })
}

fn paragraph(content: Vec<Value>) -> Value {
    json!({ "type": "paragraph", "content": content })
}

fn cell(kind: &str, t: &str) -> Value {
    json!({ "type": kind, "content": [paragraph(vec![text(if t.is_empty() { "-" } else { t })])] })
}

pub(super) fn document(view: &DecisionView<'_>) -> Value {
    let title = view.headline;
    let requester = view
        .requester
        .map(|r| format!("{} ({:?})", r.id, r.kind).to_lowercase())
        .unwrap_or("unknown".into());
    let mut content = vec![
        json!({ "type": "heading", "attrs": { "level": 3 }, "content": [text(title)] }),
        paragraph(vec![
            strong("Decision: "),
            text(view.verdict),
            text(" · "),
            strong("Policy: "),
            code(view.policy),
            text(&format!(" (mode {}, sha256 ", view.mode)),
            code(&view.policy_hash.chars().take(12).collect::<String>()),
            text(")"),
        ]),
        paragraph(vec![
            strong("Requested by: "),
            text(&requester),
            text(" · "),
            strong("Closed by: "),
            text(&format!("{} ({:?})", view.actor.id, view.actor.kind).to_lowercase()),
        ]),
    ];
    if let Some(until) = view.valid_until {
        content.push(paragraph(vec![
            strong("Access ends: "),
            text(&format!("{until}: closegate verifies then that it is gone")),
        ]));
    }
    if let Some(e) = view.exception {
        content.push(paragraph(vec![
            strong("Break-glass: "),
            text(&format!(
                "closed by {} with label \"{}\" ({}). The access must match this ticket by {}; closegate verifies it then.",
                e.closer.id, e.label, e.reason, e.verify_by
            )),
        ]));
    }
    if view.attempts > 0 {
        content.push(paragraph(vec![text(&format!(
            "Checked {} times within the settle window.",
            view.attempts + 1
        ))]));
    }
    for note in view.notes {
        content.push(paragraph(vec![strong("Note: "), text(note)]));
    }
    if !view.reasons.is_empty() {
        content.push(paragraph(vec![strong("What is missing:")]));
        let items: Vec<Value> = view
            .reasons
            .iter()
            .map(|r| json!({ "type": "listItem", "content": [paragraph(vec![text(r)])] }))
            .collect();
        content.push(json!({ "type": "bulletList", "content": items }));
    }
    if !view.checks.is_empty() {
        let header = ["Check", "System", "Subject", "Object", "Expected", "Observed", "Result"];
        let mut rows = vec![
            json!({ "type": "tableRow", "content": header.iter().map(|h| cell("tableHeader", h)).collect::<Vec<_>>() }),
        ];
        for c in &view.checks {
            let expected = if c.requested.is_empty() {
                c.expect.clone()
            } else {
                format!("{}: {}", c.expect, c.requested.join(", "))
            };
            let observed = match &c.observed {
                None => "could not verify".to_string(),
                Some(_) if !c.exists => "does not exist".to_string(),
                Some(items) if items.is_empty() => "nothing".to_string(),
                Some(items) => items.join(", "),
            };
            let cells = [
                &c.name,
                &c.system,
                &c.subject,
                &c.object,
                &expected,
                &observed,
                &c.result.to_string(),
            ];
            rows.push(json!({ "type": "tableRow", "content": cells.iter().map(|t| cell("tableCell", t)).collect::<Vec<_>>() }));
        }
        content.push(json!({ "type": "table", "attrs": { "isNumberColumnEnabled": false, "layout": "default" }, "content": rows }));
    }
    if !view.audit.is_empty() {
        content.push(paragraph(vec![strong("Audit:")]));
        let items: Vec<Value> = view
            .audit
            .iter()
            .map(|a| json!({ "type": "listItem", "content": [paragraph(vec![strong(&format!("{}: ", a.label)), text(&a.text)])] }))
            .collect();
        content.push(json!({ "type": "bulletList", "content": items }));
    }
    content.push(paragraph(vec![
        text(&format!("Verified at {} · evidence record ", view.decided_at)),
        code(view.evidence_id),
        text(" · hash "),
        code(view.evidence_hash),
        text(
            &view
                .log_head
                .map(|h| format!(" · signed log head {h}"))
                .unwrap_or_default(),
        ),
    ]));
    json!({ "type": "doc", "version": 1, "content": content })
}
