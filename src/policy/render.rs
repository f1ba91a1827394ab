//! Filling a policy's check templates from one ticket.

use std::collections::BTreeSet;

use minijinja::{Environment, UndefinedBehavior, context};

use super::Policy;
use crate::domain::{CheckSpec, TicketEvent};

/// The checks to run for a ticket, or the reasons they cannot be built.
#[derive(Debug, PartialEq)]
pub enum Rendered {
    Checks(Vec<CheckSpec>),
    /// Required fields that are absent or empty (normalised names).
    MissingFields(Vec<String>),
    /// A template could not be filled (an undefined field, a filter error).
    Invalid(String),
}

/// Renders `policy`'s checks for `event`. Pure: no IO.
pub fn render_checks(policy: &Policy, event: &TicketEvent) -> Rendered {
    let missing: Vec<String> = policy
        .require_fields
        .iter()
        .filter(|f| event.fields.get(*f).is_none_or(|v| v.trim().is_empty()))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Rendered::MissingFields(missing);
    }
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    let ctx = context! {
        fields => &event.fields,
        ticket => context! { key => &event.ticket.key, source => &event.ticket.source, title => &event.title, labels => &event.labels },
        actor => &event.actor,
        requester => &event.requester,
    };
    let render = |src: &str| env.render_str(src, &ctx).map(|s| s.trim().to_string());

    let mut specs = Vec::with_capacity(policy.checks.len());
    for check in &policy.checks {
        let mut params = std::collections::BTreeMap::new();
        for (key, src) in &check.params {
            match render(src) {
                Ok(value) => {
                    params.insert(key.clone(), value);
                }
                Err(e) => {
                    return Rendered::Invalid(format!("{}: parameter {key}: {e}", check.name));
                }
            }
        }
        let requested = match &check.requested {
            None => BTreeSet::new(),
            Some(src) => match render(src) {
                Ok(list) => split_list(&list),
                Err(e) => return Rendered::Invalid(format!("{}: requested: {e}", check.name)),
            },
        };
        for system in &check.systems {
            specs.push(CheckSpec {
                name: check.name.clone(),
                system: system.clone(),
                kind: check.kind.clone(),
                params: params.clone(),
                expect: check.expect,
                requested: requested.clone(),
            });
        }
    }
    Rendered::Checks(specs)
}

/// Splits `"SELECT, insert ,"` into `{"SELECT", "insert"}`: commas or new lines.
pub fn split_list(text: &str) -> BTreeSet<String> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}
