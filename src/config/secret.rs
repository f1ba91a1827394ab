use std::path::PathBuf;

use serde::Deserialize;

/// A secret value that never prints. `Debug` and `Display` show `<redacted>`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where a secret comes from. Environment variables and files are the normal
/// places; an inline `value` exists for local experiments only.
#[derive(Clone, Deserialize)]
#[serde(untagged)]
pub enum SecretRef {
    Env { env: String },
    File { file: PathBuf },
    Value { value: String },
    Plain(String),
}

impl std::fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretRef::Env { env } => write!(f, "env:{env}"),
            SecretRef::File { file } => write!(f, "file:{}", file.display()),
            SecretRef::Value { .. } | SecretRef::Plain(_) => f.write_str("<redacted>"),
        }
    }
}

impl SecretRef {
    /// Reads the secret. `key` names the setting in the error, which never
    /// contains the secret itself.
    pub fn resolve(&self, key: &str) -> Result<Secret, String> {
        let value = match self {
            SecretRef::Env { env } => {
                std::env::var(env).map_err(|_| format!("{key}: environment variable {env} is not set"))?
            }
            SecretRef::File { file } => std::fs::read_to_string(file)
                .map_err(|e| format!("{key}: cannot read {}: {e}", file.display()))?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
            SecretRef::Value { value } | SecretRef::Plain(value) => value.clone(),
        };
        if value.is_empty() {
            return Err(format!("{key}: the secret is empty"));
        }
        Ok(Secret(value))
    }
}

/// One secret, or several accepted side by side while a helpdesk's webhook
/// secret is rotated (`secret: [{ env: NEW }, { env: OLD }]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum SecretRefs {
    One(SecretRef),
    Many(Vec<SecretRef>),
}

/// Resolved secrets, never empty; the first is the one closegate signs with.
#[derive(Clone, Debug)]
pub struct Secrets(Vec<Secret>);

impl SecretRefs {
    /// Reads every secret; `key` names the setting (`key[1]` for the second).
    pub fn resolve(&self, key: &str) -> Result<Secrets, String> {
        match self {
            SecretRefs::One(one) => Ok(Secrets(vec![one.resolve(key)?])),
            SecretRefs::Many(many) if many.is_empty() => Err(format!("{key}: the list of secrets is empty")),
            SecretRefs::Many(many) => many
                .iter()
                .enumerate()
                .map(|(i, s)| s.resolve(&format!("{key}[{i}]")))
                .collect::<Result<Vec<_>, _>>()
                .map(Secrets),
        }
    }
}

impl Secrets {
    pub fn iter(&self) -> impl Iterator<Item = &Secret> {
        self.0.iter()
    }

    /// The secret closegate signs with, the first listed.
    pub fn primary(&self) -> &Secret {
        &self.0[0]
    }
}

impl From<Secret> for Secrets {
    fn from(secret: Secret) -> Self {
        Secrets(vec![secret])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = SecretRef::Value {
            value: "hunter2".into(),
        };
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{:?}", s.resolve("k").unwrap()).contains("hunter2"));
    }

    #[test]
    fn several_secrets_resolve_in_order_and_name_the_one_missing() {
        let refs: SecretRefs =
            serde_json::from_value(serde_json::json!([{ "value": "new" }, { "value": "old" }])).unwrap();
        let secrets = refs.resolve("sources.gh.secret").unwrap();
        assert_eq!(secrets.iter().map(Secret::expose).collect::<Vec<_>>(), ["new", "old"]);
        assert_eq!(secrets.primary().expose(), "new");
        let refs: SecretRefs =
            serde_json::from_value(serde_json::json!([{ "value": "new" }, { "env": "CLOSEGATE_TEST_UNSET_VAR" }]))
                .unwrap();
        assert!(
            refs.resolve("sources.gh.secret")
                .unwrap_err()
                .starts_with("sources.gh.secret[1]:")
        );
        let empty: SecretRefs = serde_json::from_value(serde_json::json!([])).unwrap();
        assert!(empty.resolve("k").is_err());
    }

    #[test]
    fn a_missing_env_var_names_the_key() {
        let s = SecretRef::Env {
            env: "CLOSEGATE_TEST_UNSET_VAR".into(),
        };
        let err = s.resolve("sources.demo.secret").unwrap_err();
        assert!(err.contains("sources.demo.secret") && err.contains("CLOSEGATE_TEST_UNSET_VAR"));
    }
}
