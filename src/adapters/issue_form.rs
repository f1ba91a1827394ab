//! GitHub issue forms render each field as a `### Label` heading followed by
//! the answer. This turns such a body back into fields.

use std::collections::BTreeMap;

use crate::domain::field_key;

/// Parses `### Field` sections into `{field_key: value}`. An unanswered field
/// (`_No response_`) is an empty string. Text before the first heading is ignored.
pub fn parse_fields(body: &str) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    let mut current: Option<(String, Vec<&str>)> = None;
    let finish = |section: Option<(String, Vec<&str>)>, fields: &mut BTreeMap<String, String>| {
        if let Some((key, lines)) = section {
            let value = lines.join("\n").trim().to_string();
            let value = if value == "_No response_" { String::new() } else { value };
            if !key.is_empty() {
                fields.entry(key).or_insert(value);
            }
        }
    };
    for line in body.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(heading) = line.strip_prefix("### ") {
            finish(current.take(), &mut fields);
            current = Some((field_key(heading), Vec::new()));
        } else if let Some((_, lines)) = current.as_mut() {
            lines.push(line);
        }
    }
    finish(current, &mut fields);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_form_sections_become_fields() {
        let body = "Intro text\r\n### Database role\r\n\r\napp_reader\r\n\r\n### Privileges\n\nSELECT, INSERT\n\n### Justification\n\n_No response_\n";
        let fields = parse_fields(body);
        assert_eq!(fields["database_role"], "app_reader");
        assert_eq!(fields["privileges"], "SELECT, INSERT");
        assert_eq!(fields["justification"], "");
        assert_eq!(fields.len(), 3);
    }

    #[test]
    fn the_first_of_two_same_named_fields_wins() {
        let fields = parse_fields("### Role\n\na\n\n### role\n\nb\n");
        assert_eq!(fields["role"], "a");
    }

    proptest::proptest! {
        #[test]
        fn any_body_parses_without_panic(body in ".*") {
            let _ = parse_fields(&body);
        }
    }
}
