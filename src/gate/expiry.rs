//! Time-bound access: when a close's access must end, from the policy's rule
//! and what the ticket says. Pure: the close time is given.

use chrono::{DateTime, Utc};

use crate::policy::{ExpiryRule, ExpiryValue, fields_named};

/// Reads the expiry of a close at `closed_at`: `Ok(None)` when there is none and
/// none is required, or the reason the close is blocked.
pub fn valid_until(
    rule: &ExpiryRule,
    value: &ExpiryValue,
    closed_at: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, String> {
    let field = rule
        .template
        .as_deref()
        .map(fields_named)
        .and_then(|f| f.into_iter().next())
        .map(|f| format!("field `{f}`"))
        .unwrap_or_else(|| "the expiry".into());
    let given = match value {
        ExpiryValue::None if rule.required => {
            return Err(format!(
                "the ticket has no expiry ({field}) and the policy requires one"
            ));
        }
        ExpiryValue::None => return Ok(None),
        ExpiryValue::Given(text) => text,
    };
    let until = match DateTime::parse_from_rfc3339(given) {
        Ok(at) => at.with_timezone(&Utc),
        Err(_) => match humantime::parse_duration(given) {
            Ok(d) => {
                closed_at + chrono::Duration::from_std(d).map_err(|_| format!("{field}: {given:?} is too long"))?
            }
            Err(_) => {
                return Err(format!(
                    "{field}: {given:?} is neither an RFC 3339 time nor a duration such as 2h"
                ));
            }
        },
    };
    if until <= closed_at {
        return Err(format!(
            "{field}: {given:?} is not after the close ({})",
            closed_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    }
    if let Some(max) = rule.max_duration {
        let asked = (until - closed_at).to_std().unwrap_or_default();
        if asked > max {
            return Err(format!(
                "{field}: {given:?} asks for {} of access; the policy allows at most {}",
                humantime::format_duration(round_to_seconds(asked)),
                humantime::format_duration(max)
            ));
        }
    }
    Ok(Some(until))
}

fn round_to_seconds(d: std::time::Duration) -> std::time::Duration {
    std::time::Duration::from_secs(d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(required: bool, max_h: Option<u64>) -> ExpiryRule {
        ExpiryRule {
            template: Some("{{ fields.expires_at }}".into()),
            required,
            max_duration: max_h.map(|h| std::time::Duration::from_secs(h * 3600)),
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn given(s: &str) -> ExpiryValue {
        ExpiryValue::Given(s.into())
    }

    #[test]
    fn durations_count_from_the_close_and_times_are_taken_as_written() {
        let close = at("2026-11-28T10:00:00Z");
        assert_eq!(
            valid_until(&rule(false, None), &given("2h"), close),
            Ok(Some(at("2026-11-28T12:00:00Z")))
        );
        assert_eq!(
            valid_until(&rule(false, None), &given("2026-11-29T00:00:00+01:00"), close),
            Ok(Some(at("2026-11-28T23:00:00Z")))
        );
        assert_eq!(valid_until(&rule(false, None), &ExpiryValue::None, close), Ok(None));
    }

    #[test]
    fn missing_unparseable_past_and_too_long_expiries_are_refused_naming_the_field() {
        let close = at("2026-11-28T10:00:00Z");
        for (rule, value) in [
            (rule(true, None), ExpiryValue::None),
            (rule(false, None), given("next tuesday")),
            (rule(false, None), given("2026-11-27T10:00:00Z")),
            (rule(false, Some(72)), given("4d")),
        ] {
            let err = valid_until(&rule, &value, close).unwrap_err();
            assert!(err.contains("`expires_at`"), "{err}");
        }
        assert!(valid_until(&rule(false, Some(72)), &given("72h"), close).is_ok());
    }
}
