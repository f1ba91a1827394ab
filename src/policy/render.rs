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
    let (env, ctx) = environment(event);
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

/// A strict template environment and the ticket as templates see it.
fn environment(event: &TicketEvent) -> (Environment<'static>, minijinja::Value) {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    let ctx = context! {
        fields => &event.fields,
        ticket => context! { key => &event.ticket.key, source => &event.ticket.source, title => &event.title, labels => &event.labels },
        actor => &event.actor,
        requester => &event.requester,
    };
    (env, ctx)
}

/// How a policy's expiry reads for one ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpiryValue {
    /// The policy sets no expiry, or the ticket leaves it empty.
    None,
    /// The expiry as written on the ticket.
    Given(String),
}

/// Renders `policy`'s expiry template for `event`; an undefined field reads as
/// no expiry (the policy decides whether one is required).
pub fn render_expiry(policy: &Policy, event: &TicketEvent) -> ExpiryValue {
    let Some(src) = &policy.expiry.template else {
        return ExpiryValue::None;
    };
    let (env, ctx) = environment(event);
    match env.render_str(src, &ctx) {
        Ok(text) if !text.trim().is_empty() => ExpiryValue::Given(text.trim().to_string()),
        _ => ExpiryValue::None,
    }
}

/// The ticket fields a template reads (`{{ fields.expires_at }}` → `expires_at`),
/// to name them in a rejection.
pub fn fields_named(template: &str) -> Vec<String> {
    template
        .split("fields.")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|f| !f.is_empty())
        .collect()
}

/// Splits `"SELECT, insert ,"` into `{"SELECT", "insert"}`: commas or new lines.
pub fn split_list(text: &str) -> BTreeSet<String> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// The directory identity of an approver, from the policy's `identity`
/// template (`{{ approver.email }}`). An attribute the helpdesk did not give
/// is an error, never an empty identity.
pub fn render_identity(template: &str, approver: &crate::domain::Person) -> Result<String, String> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    let mut person = std::collections::BTreeMap::new();
    person.insert("id", approver.id.as_str());
    if let Some(email) = &approver.email {
        person.insert("email", email.as_str());
    }
    if let Some(name) = &approver.name {
        person.insert("name", name.as_str());
    }
    let rendered = env
        .render_str(template, context! { approver => person })
        .map_err(|e| e.detail().unwrap_or("template error").to_string())?;
    let identity = rendered.trim().to_string();
    if identity.is_empty() {
        Err("the identity template gave an empty value".into())
    } else {
        Ok(identity)
    }
}
