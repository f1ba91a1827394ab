//! Reading and validating policy files. Every problem names file, line and what is wrong.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use marked_yaml::Spanned;
use sha2::{Digest, Sha256};

use super::{BreakGlass, CheckTemplate, ExpiryRule, OnDrift, Policy, PolicySet, governance, model::PolicyFile};
use crate::domain::{Expect, Mode, field_key};

/// What policies may name: each system with the check kinds its verifier
/// offers, and named groups of systems ("every production tenant").
#[derive(Debug, Clone, Default)]
pub struct SystemCatalog {
    pub systems: BTreeMap<String, &'static [&'static str]>,
    pub groups: BTreeMap<String, Vec<String>>,
}

impl SystemCatalog {
    /// The systems a name stands for: itself, or a group's members.
    fn expand(&self, name: &str) -> Option<Vec<String>> {
        if self.systems.contains_key(name) {
            Some(vec![name.to_string()])
        } else {
            self.groups.get(name).cloned()
        }
    }
}

/// One problem in one policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub file: String,
    pub line: Option<usize>,
    pub problem: String,
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.problem),
            None => write!(f, "{}: {}", self.file, self.problem),
        }
    }
}

/// Loads every `*.yaml` / `*.yml` file under `dir`, in name order. All problems
/// of all files are returned together, so one run of the checker shows them all.
pub fn load_dir(dir: &Path, systems: &SystemCatalog) -> Result<PolicySet, Vec<PolicyError>> {
    let dir_err = |problem: String| {
        vec![PolicyError {
            file: dir.display().to_string(),
            line: None,
            problem,
        }]
    };
    let entries = std::fs::read_dir(dir).map_err(|e| dir_err(format!("cannot read policy directory: {e}")))?;
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    paths.sort();

    let mut set = PolicySet::default();
    let mut errors = Vec::new();
    for path in paths {
        let file = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Err(e) => errors.push(PolicyError {
                file,
                line: None,
                problem: format!("cannot read: {e}"),
            }),
            Ok(text) => match parse_policy(&file, &path, &text, systems) {
                Ok(policy) => set.policies.push(policy),
                Err(mut errs) => errors.append(&mut errs),
            },
        }
    }
    let mut seen = BTreeMap::new();
    for policy in &set.policies {
        if let Some(other) = seen.insert(policy.name.clone(), policy.file.clone()) {
            errors.push(PolicyError {
                file: policy.file.clone(),
                line: None,
                problem: format!("policy name {:?} is also used by {other}", policy.name),
            });
        }
    }
    if errors.is_empty() { Ok(set) } else { Err(errors) }
}

fn line_of<T>(value: &Spanned<T>) -> Option<usize> {
    value.span().start().map(|m| m.line())
}

fn parse_policy(file: &str, path: &Path, text: &str, systems: &SystemCatalog) -> Result<Policy, Vec<PolicyError>> {
    let raw: PolicyFile = marked_yaml::from_yaml(0, text).map_err(|e| {
        let (line, problem) = describe_yaml_error(&e);
        vec![PolicyError {
            file: file.to_string(),
            line,
            problem,
        }]
    })?;
    let mut errors = Vec::new();
    let mut err = |line: Option<usize>, problem: String| {
        errors.push(PolicyError {
            file: file.to_string(),
            line,
            problem,
        });
    };

    let name = match &raw.name {
        Some(n) if n.trim().is_empty() => {
            err(line_of(n), "name is empty".into());
            String::new()
        }
        Some(n) => n.trim().to_string(),
        None => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let mode = match raw.mode.as_ref().map(|m| (m, m.as_str())) {
        None => Mode::Enforce,
        Some((_, "enforce")) => Mode::Enforce,
        Some((_, "warn")) => Mode::Warn,
        Some((_, "dry-run")) => Mode::DryRun,
        Some((m, other)) => {
            err(
                line_of(m),
                format!("mode {other:?} is not one of enforce, warn, dry-run"),
            );
            Mode::Enforce
        }
    };
    if raw.checks.is_empty() {
        err(None, "a policy needs at least one check".into());
    }
    let require_fields: Vec<String> = raw
        .require_fields
        .iter()
        .map(|f| {
            let key = field_key(f);
            if key.is_empty() {
                err(
                    line_of(f),
                    format!("required field {:?} has no usable name", f.as_str()),
                );
            }
            key
        })
        .collect();

    let templates = minijinja::Environment::new();
    let mut duration = |value: &Spanned<String>, key: &str| match humantime::parse_duration(value.trim()) {
        Ok(d) if !d.is_zero() => Some(d),
        Ok(_) => {
            err(line_of(value), format!("{key} must be longer than zero"));
            None
        }
        Err(e) => {
            err(
                line_of(value),
                format!(
                    "{key} {:?} is not a duration such as 30m, 2h or 3d: {e}",
                    value.as_str()
                ),
            );
            None
        }
    };
    let max_duration = raw.max_duration.as_ref().and_then(|v| duration(v, "max_duration"));
    let drift_interval = raw
        .drift
        .as_ref()
        .and_then(|d| d.interval.as_ref())
        .and_then(|v| duration(v, "drift.interval"));
    let settle = raw.settle.as_ref().and_then(|v| duration(v, "settle"));
    let break_glass = raw.break_glass.as_ref().and_then(|b| {
        let within = duration(&b.verify_within, "break_glass.verify_within")?;
        Some(BreakGlass {
            label: b.label.trim().to_string(),
            verify_within: within,
        })
    });
    if let Some(b) = &raw.break_glass
        && b.label.trim().is_empty()
    {
        err(line_of(&b.label), "break_glass.label is empty".into());
    }
    let on_drift = match raw.on_drift.as_ref().map(|v| (v, v.as_str())) {
        None | Some((_, "reopen")) => OnDrift::Reopen,
        Some((_, "comment")) => OnDrift::Comment,
        Some((v, other)) => {
            err(line_of(v), format!("on_drift {other:?} is not one of reopen, comment"));
            OnDrift::Reopen
        }
    };
    if let Some(src) = &raw.expires {
        if let Err(e) = templates.template_from_str(src) {
            err(
                line_of(src),
                format!(
                    "expires: template does not parse: {}",
                    e.detail().unwrap_or("syntax error")
                ),
            );
        }
    } else if raw.require_expiry || raw.max_duration.is_some() {
        err(
            None,
            "require_expiry and max_duration need `expires` (where the expiry is read)".into(),
        );
    }
    let approval = raw
        .approval
        .as_ref()
        .and_then(|def| governance::approval(def, systems, &mut err));
    let requester = raw
        .requester
        .as_ref()
        .map(|def| governance::requester(def, systems, &mut err));
    let mut checks = Vec::new();
    for (i, def) in raw.checks.iter().enumerate() {
        let names: Vec<&Spanned<String>> = match (&def.system, &def.systems) {
            (Some(one), None) => vec![one],
            (None, Some(many)) if !many.is_empty() => many.iter().collect(),
            _ => {
                err(
                    line_of(&def.kind),
                    "a check names exactly one of `system` or `systems` (a non-empty list)".into(),
                );
                Vec::new()
            }
        };
        let mut check_systems: Vec<String> = Vec::new();
        for name in names {
            let Some(expanded) = systems.expand(name.trim()) else {
                let mut known: Vec<_> = systems.systems.keys().chain(systems.groups.keys()).cloned().collect();
                known.sort();
                err(
                    line_of(name),
                    format!("unknown system {:?} (configured: {})", name.trim(), known.join(", ")),
                );
                continue;
            };
            for system in expanded {
                let kinds = systems.systems.get(&system).copied().unwrap_or_default();
                if !kinds.contains(&def.kind.as_str()) {
                    err(
                        line_of(&def.kind),
                        format!(
                            "system {system:?} has no check kind {:?} (it offers: {})",
                            def.kind.as_str(),
                            kinds.join(", ")
                        ),
                    );
                }
                if !check_systems.contains(&system) {
                    check_systems.push(system);
                }
            }
        }
        let expect = match def.expect.as_str() {
            "present" => Expect::Present,
            "absent" => Expect::Absent,
            "exact" => Expect::Exact,
            other => {
                err(
                    line_of(&def.expect),
                    format!("expect {other:?} is not one of present, absent, exact"),
                );
                Expect::Present
            }
        };
        if expect == Expect::Exact && def.requested.is_none() {
            err(
                line_of(&def.expect),
                "expect: exact needs `requested` (the items asked for)".into(),
            );
        }
        let sources = def.params.values().chain(def.requested.iter());
        for src in sources {
            if let Err(e) = templates.template_from_str(src) {
                err(
                    line_of(src),
                    format!("template does not parse: {}", e.detail().unwrap_or("syntax error")),
                );
            }
        }
        checks.push(CheckTemplate {
            name: def.name.clone().unwrap_or_else(|| format!("check {}", i + 1)),
            systems: check_systems,
            kind: def.kind.to_string(),
            params: def.params.iter().map(|(k, v)| (k.clone(), v.to_string())).collect(),
            requested: def.requested.as_ref().map(|r| r.to_string()),
            expect,
        });
    }
    let mut seen = BTreeSet::new();
    for check in &checks {
        if !seen.insert(&check.name) {
            err(None, format!("two checks are named {:?}", check.name));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Policy {
        name,
        description: raw.description.trim().to_string(),
        mode,
        file: file.to_string(),
        hash: hex::encode(Sha256::digest(text.as_bytes())),
        sources: raw.selector.sources,
        labels: raw.selector.labels,
        fields: raw
            .selector
            .fields
            .into_iter()
            .map(|(k, v)| (field_key(&k), v))
            .collect(),
        require_fields,
        checks,
        expiry: ExpiryRule {
            template: raw.expires.as_ref().map(|t| t.to_string()),
            required: raw.require_expiry,
            max_duration,
        },
        on_drift,
        drift_interval,
        break_glass,
        settle,
        approval,
        requester,
    })
}

fn describe_yaml_error(e: &marked_yaml::FromYamlError) -> (Option<usize>, String) {
    use marked_yaml::{FromYamlError as E, LoadError as L};
    match e {
        E::ParseYaml(load) => {
            let marker = match load {
                L::TopLevelMustBeMapping(m)
                | L::TopLevelMustBeSequence(m)
                | L::UnexpectedAnchor(m)
                | L::MappingKeyMustBeScalar(m)
                | L::UnexpectedTag(m)
                | L::ScanError(m, _) => Some(m.line()),
                _ => None,
            };
            (marker, format!("not valid YAML: {load}"))
        }
        E::FromNode(node) => (node.start_mark().map(|m| m.line()), node.to_string()),
    }
}
