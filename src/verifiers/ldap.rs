//! LDAP as a target system: entries, whether they are locked or disabled, and
//! group membership (`member`, `uniqueMember`, `memberOf`, nested groups when
//! configured). Ticket values only ever enter searches through RFC 4515 filter
//! escaping; no DN is built from ticket text.

use std::{
    collections::{BTreeSet, HashMap},
    time::Duration,
};

use async_trait::async_trait;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry, ldap_escape};
use tokio::sync::Mutex;

use super::{Verifier, VerifyError, canary_unseen, observed, param, secret};
use crate::{
    config::{LdapSystem, Secret},
    domain::{CheckSpec, Observation},
};

pub const KINDS: &[&str] = &["entry", "group_membership"];

/// Attributes that say an account cannot log in, across common servers.
const LOCK_ATTRIBUTES: &[&str] = &[
    "pwdAccountLockedTime",
    "nsAccountLock",
    "loginDisabled",
    "userAccountControl",
];
/// How deep nested groups are followed.
const MAX_NESTING: usize = 8;

pub struct LdapVerifier {
    system: String,
    url: String,
    bind: Option<(String, Secret)>,
    user_base: String,
    group_base: String,
    user_attribute: String,
    nested: bool,
    timeout: Duration,
    canary: Option<String>,
    /// One bound connection, reused until it fails.
    connection: Mutex<Option<Ldap>>,
}

impl LdapVerifier {
    pub fn build(system: &str, config: &LdapSystem) -> Result<Self, String> {
        let bind = match (&config.bind_dn, &config.bind_password) {
            (Some(dn), Some(pw)) => Some((dn.clone(), secret(system, "bind_password", pw)?)),
            (None, None) => None,
            _ => return Err(format!("systems.{system}: bind_dn and bind_password go together")),
        };
        if !config
            .user_attribute
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(format!("systems.{system}.user_attribute: not an attribute name"));
        }
        Ok(Self {
            system: system.to_string(),
            url: config.url.clone(),
            bind,
            user_base: config.user_base.clone(),
            group_base: config.group_base.clone(),
            user_attribute: config.user_attribute.clone(),
            nested: config.nested_groups,
            timeout: Duration::from_millis(config.timeout_ms),
            canary: config.canary.clone(),
            connection: Mutex::new(None),
        })
    }

    fn error(&self, e: ldap3::LdapError) -> VerifyError {
        match e {
            ldap3::LdapError::Io { .. } | ldap3::LdapError::EndOfStream | ldap3::LdapError::Timeout { .. } => {
                VerifyError::Unreachable {
                    system: self.system.clone(),
                    message: e.to_string(),
                }
            }
            other => VerifyError::Query {
                system: self.system.clone(),
                message: other.to_string(),
            },
        }
    }

    async fn connect(&self) -> Result<Ldap, VerifyError> {
        let mut slot = self.connection.lock().await;
        if let Some(ldap) = slot.as_mut()
            && !ldap.is_closed()
        {
            return Ok(ldap.clone());
        }
        let settings = LdapConnSettings::new().set_conn_timeout(self.timeout);
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &self.url)
            .await
            .map_err(|e| self.error(e))?;
        ldap3::drive!(conn);
        if let Some((dn, password)) = &self.bind {
            ldap.simple_bind(dn, password.expose())
                .await
                .and_then(|r| r.success())
                .map_err(|e| self.error(e))?;
        }
        *slot = Some(ldap.clone());
        Ok(ldap)
    }

    async fn search(&self, base: &str, filter: &str, attrs: &[&str]) -> Result<Vec<SearchEntry>, VerifyError> {
        let mut ldap = self.connect().await?;
        let result = ldap
            .with_timeout(self.timeout)
            .search(base, Scope::Subtree, filter, attrs.to_vec())
            .await;
        let (entries, _) = match result.and_then(|r| r.success()) {
            Ok(found) => found,
            Err(e) => {
                *self.connection.lock().await = None;
                return Err(self.error(e));
            }
        };
        Ok(entries.into_iter().map(SearchEntry::construct).collect())
    }

    /// The single entry whose user attribute equals `user`.
    async fn find_user(&self, user: &str, attrs: &[&str]) -> Result<Option<SearchEntry>, VerifyError> {
        let filter = format!("({}={})", self.user_attribute, ldap_escape(user));
        let mut found = self.search(&self.user_base, &filter, attrs).await?;
        match found.len() {
            0 | 1 => Ok(found.pop()),
            n => Err(VerifyError::Query {
                system: self.system.clone(),
                message: format!("{n} entries match {}={user}; expected one", self.user_attribute),
            }),
        }
    }

    /// Every group that has `dn` as a member, directly or (when configured) through other groups.
    async fn groups_of(&self, dn: &str, member_of: &[String]) -> Result<BTreeSet<String>, VerifyError> {
        let mut seen: BTreeSet<String> = member_of.iter().map(|g| g.to_lowercase()).collect();
        let mut names: BTreeSet<String> = member_of.iter().filter_map(|g| first_rdn_value(g)).collect();
        let mut frontier = vec![dn.to_string()];
        frontier.extend(member_of.iter().filter(|&_| self.nested).cloned());
        for _ in 0..MAX_NESTING {
            let mut next = Vec::new();
            for member in frontier.drain(..) {
                let escaped = ldap_escape(member.as_str());
                let filter = format!("(|(member={escaped})(uniqueMember={escaped}))");
                for group in self.search(&self.group_base, &filter, &["cn"]).await? {
                    if seen.insert(group.dn.to_lowercase()) {
                        if let Some(cn) = group.attrs.get("cn").and_then(|v| v.first()) {
                            names.insert(cn.to_lowercase());
                        }
                        next.push(group.dn);
                    }
                }
            }
            if !self.nested || next.is_empty() {
                break;
            }
            frontier = next;
        }
        Ok(names)
    }
}

impl LdapVerifier {
    /// Many users in one search (an OR filter, each value escaped), by the
    /// lower-cased value of the user attribute; a value matching several
    /// entries maps to an error.
    async fn find_users(
        &self,
        users: &[&str],
        attrs: &[&str],
    ) -> Result<HashMap<String, Result<SearchEntry, VerifyError>>, VerifyError> {
        let mut found: HashMap<String, Result<SearchEntry, VerifyError>> = HashMap::new();
        for chunk in users.chunks(200) {
            let terms: String = chunk
                .iter()
                .map(|u| format!("({}={})", self.user_attribute, ldap_escape(*u)))
                .collect();
            let mut wanted: Vec<&str> = attrs.to_vec();
            wanted.push(&self.user_attribute);
            for entry in self.search(&self.user_base, &format!("(|{terms})"), &wanted).await? {
                let values = entry
                    .attrs
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(&self.user_attribute))
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                for value in values {
                    let key = value.to_lowercase();
                    let duplicate = found.contains_key(&key);
                    if duplicate {
                        found.insert(
                            key,
                            Err(VerifyError::Query {
                                system: self.system.clone(),
                                message: format!("several entries match {}={value}; expected one", self.user_attribute),
                            }),
                        );
                    } else {
                        found.insert(key, Ok(entry.clone()));
                    }
                }
            }
        }
        Ok(found)
    }

    /// The groups naming each of `dns` as a member, in one search per chunk
    /// (direct membership; nested groups are followed per user).
    async fn direct_groups(&self, dns: &[String]) -> Result<HashMap<String, BTreeSet<String>>, VerifyError> {
        let mut groups: HashMap<String, BTreeSet<String>> = HashMap::new();
        for chunk in dns.chunks(200) {
            let terms: String = chunk
                .iter()
                .map(|dn| {
                    let e = ldap_escape(dn.as_str());
                    format!("(member={e})(uniqueMember={e})")
                })
                .collect();
            let found = self
                .search(
                    &self.group_base,
                    &format!("(|{terms})"),
                    &["cn", "member", "uniqueMember"],
                )
                .await?;
            for group in found {
                let Some(cn) = group.attrs.get("cn").and_then(|v| v.first()).map(|c| c.to_lowercase()) else {
                    continue;
                };
                let members = group
                    .attrs
                    .iter()
                    .filter(|(k, _)| k.eq_ignore_ascii_case("member") || k.eq_ignore_ascii_case("uniqueMember"))
                    .flat_map(|(_, v)| v.iter().map(|m| m.to_lowercase()));
                for member in members {
                    groups.entry(member).or_default().insert(cn.clone());
                }
            }
        }
        Ok(groups)
    }

    /// A batch: every user in one search, their groups in another.
    async fn observe_batch(&self, checks: &[CheckSpec]) -> Vec<Result<Observation, VerifyError>> {
        let users: Vec<Result<&str, VerifyError>> = checks.iter().map(|c| param(c, "user")).collect();
        let wanted: Vec<&str> = users.iter().flatten().copied().collect();
        let mut attrs: Vec<&str> = LOCK_ATTRIBUTES.to_vec();
        attrs.push("memberOf");
        let entries = match self.find_users(&wanted, &attrs).await {
            Ok(entries) => entries,
            Err(e) => return vec![Err(e); checks.len()],
        };
        let member_dns: Vec<String> = checks
            .iter()
            .zip(&users)
            .filter(|(c, _)| c.kind == "group_membership")
            .filter_map(|(_, u)| u.as_ref().ok())
            .filter_map(|u| entries.get(&u.to_lowercase()).and_then(|e| e.as_ref().ok()))
            .map(|e| e.dn.clone())
            .collect();
        let direct = if member_dns.is_empty() || self.nested {
            HashMap::new()
        } else {
            match self.direct_groups(&member_dns).await {
                Ok(direct) => direct,
                Err(e) => return vec![Err(e); checks.len()],
            }
        };
        let mut results = Vec::with_capacity(checks.len());
        for (check, user) in checks.iter().zip(users) {
            let result = async {
                let user = user?;
                let entry = match entries.get(&user.to_lowercase()) {
                    None => return Ok(observed(&self.url, user, "", false, [])),
                    Some(Err(e)) => return Err(e.clone()),
                    Some(Ok(entry)) => entry,
                };
                let (object, held) = match check.kind.as_str() {
                    "entry" => (
                        entry.dn.clone(),
                        BTreeSet::from([if is_locked(entry) { "LOCKED" } else { "ACTIVE" }.to_string()]),
                    ),
                    "group_membership" => {
                        let member_of = entry.attrs.get("memberOf").cloned().unwrap_or_default();
                        let held = if self.nested {
                            self.groups_of(&entry.dn, &member_of).await?
                        } else {
                            let mut held: BTreeSet<String> =
                                member_of.iter().filter_map(|g| first_rdn_value(g)).collect();
                            held.extend(direct.get(&entry.dn.to_lowercase()).cloned().unwrap_or_default());
                            held
                        };
                        ("group membership".to_string(), held)
                    }
                    other => return Err(VerifyError::BadParams(format!("unknown check kind {other}"))),
                };
                Ok(observed(&self.url, user, object, true, held))
            }
            .await;
            results.push(result);
        }
        results
    }
}

/// `cn=dba,ou=groups,...` → `dba` (lower case).
fn first_rdn_value(dn: &str) -> Option<String> {
    let first = dn.split(',').next()?;
    first.split_once('=').map(|(_, v)| v.trim().to_lowercase())
}

fn is_locked(entry: &SearchEntry) -> bool {
    let attr = |name: &str| {
        entry
            .attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    !attr("pwdAccountLockedTime").is_empty()
        || attr("nsAccountLock").iter().any(|v| v.eq_ignore_ascii_case("true"))
        || attr("loginDisabled").iter().any(|v| v.eq_ignore_ascii_case("true"))
        || attr("userAccountControl")
            .iter()
            .any(|v| v.parse::<u32>().is_ok_and(|flags| flags & 2 != 0))
}

#[async_trait]
impl Verifier for LdapVerifier {
    fn kinds(&self) -> &'static [&'static str] {
        KINDS
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn normalize(&self, kind: &str, item: &str) -> String {
        match kind {
            "entry" => item.trim().to_uppercase(),
            _ => item.trim().to_lowercase(),
        }
    }

    async fn observe(&self, check: &CheckSpec) -> Result<Observation, VerifyError> {
        let user = param(check, "user")?;
        let mut attrs: Vec<&str> = LOCK_ATTRIBUTES.to_vec();
        attrs.push("memberOf");
        let Some(entry) = self.find_user(user, &attrs).await? else {
            return Ok(observed(&self.url, user, "", false, []));
        };
        let (object, held) = match check.kind.as_str() {
            "entry" => (
                entry.dn.clone(),
                BTreeSet::from([if is_locked(&entry) { "LOCKED" } else { "ACTIVE" }.to_string()]),
            ),
            "group_membership" => {
                let member_of = entry.attrs.get("memberOf").cloned().unwrap_or_default();
                (
                    "group membership".to_string(),
                    self.groups_of(&entry.dn, &member_of).await?,
                )
            }
            other => return Err(VerifyError::BadParams(format!("unknown check kind {other}"))),
        };
        Ok(observed(&self.url, user, object, true, held))
    }

    async fn observe_many(&self, checks: &[CheckSpec]) -> Vec<Result<Observation, VerifyError>> {
        if let Some(canary) = &self.canary {
            match self.find_user(canary, &["1.1"]).await {
                Ok(Some(_)) => {}
                Ok(None) => return canary_unseen(&self.system, canary, checks.len()),
                Err(e) => return vec![Err(e); checks.len()],
            }
        }
        self.observe_batch(checks).await
    }

    async fn group_exists(&self, group: &str) -> Result<bool, VerifyError> {
        let filter = format!(
            "(&(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))(cn={}))",
            ldap_escape(group)
        );
        Ok(!self.search(&self.group_base, &filter, &["1.1"]).await?.is_empty())
    }

    async fn healthcheck(&self) -> Result<String, VerifyError> {
        let mut ldap = self.connect().await?;
        ldap.with_timeout(self.timeout)
            .search(&self.user_base, Scope::Base, "(objectClass=*)", vec!["1.1"])
            .await
            .and_then(|r| r.success())
            .map_err(|e| self.error(e))?;
        let who = self.bind.as_ref().map(|(dn, _)| dn.as_str()).unwrap_or("anonymous");
        Ok(format!("{} as {who}", self.url))
    }
}
