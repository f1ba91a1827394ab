//! The intake note: a short answer on a newly governed request, in the
//! helpdesk's markup. Built in code: it has no table and no user template.

use serde_json::json;

use super::CommentFormat;
use crate::evidence::EvidenceContent;

/// The note for an intake record.
pub fn note(format: CommentFormat, content: &EvidenceContent, evidence_id: &str) -> String {
    let decision = &content.decision;
    let policy = decision.policy.as_deref().unwrap_or("none");
    let title = format!("closegate: this access request is governed by policy {policy}");
    let (todo, ok) = ("Before it can close:", "Nothing is missing so far.");
    let needs = "The close will need:";
    let footer = format!("This note is updated as the request changes · evidence record {evidence_id}");
    if format == CommentFormat::Adf {
        let para = |t: &str, strong: bool| {
            let marks = if strong {
                json!([{ "type": "strong" }])
            } else {
                json!([])
            };
            json!({ "type": "paragraph", "content": [{ "type": "text", "text": t, "marks": marks }] })
        };
        let list = |items: &[String]| {
            let items: Vec<_> = items
                .iter()
                .map(|i| json!({ "type": "listItem", "content": [para(i, false)] }))
                .collect();
            json!({ "type": "bulletList", "content": items })
        };
        let mut content =
            vec![json!({ "type": "heading", "attrs": { "level": 3 }, "content": [{ "type": "text", "text": title }] })];
        if decision.reasons.is_empty() {
            content.push(para(ok, true));
        } else {
            content.extend([para(todo, true), list(&decision.reasons)]);
        }
        if !decision.notes.is_empty() {
            content.extend([para(needs, true), list(&decision.notes)]);
        }
        content.push(para(&footer, false));
        return json!({ "type": "doc", "version": 1, "content": content }).to_string();
    }
    let (heading, bold, bullet): (&str, fn(&str) -> String, &str) = match format {
        CommentFormat::Markdown | CommentFormat::Adf => ("### ", |t| format!("**{t}**"), "- "),
        CommentFormat::JiraWiki => ("h3. ", |t| format!("*{t}*"), "* "),
        CommentFormat::Text => ("", |t| t.to_string(), "- "),
    };
    let mut out = format!("{heading}{title}\n\n");
    if decision.reasons.is_empty() {
        out.push_str(&format!("{}\n", bold(ok)));
    } else {
        out.push_str(&format!("{}\n", bold(todo)));
        for r in &decision.reasons {
            out.push_str(&format!("{bullet}{r}\n"));
        }
    }
    if !decision.notes.is_empty() {
        out.push_str(&format!("\n{}\n", bold(needs)));
        for n in &decision.notes {
            out.push_str(&format!("{bullet}{n}\n"));
        }
    }
    out.push_str(&format!("\n{footer}\n"));
    out
}
