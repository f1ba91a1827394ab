//! Redis ACL as a target system: users, whether they are enabled, their command
//! and key permissions, and whether a credential is still valid — checked by
//! its SHA-256 fingerprint against the user's password hashes, so closegate
//! never holds the key itself.

use std::{collections::BTreeSet, time::Duration};

use async_trait::async_trait;
use redis::{Value, aio::MultiplexedConnection};
use tokio::sync::Mutex;

use super::{Verifier, VerifyError, observed, param, secret};
use crate::{
    config::RedisSystem,
    domain::{CheckSpec, Observation},
};

pub const KINDS: &[&str] = &["user", "credential", "commands", "keys"];

pub struct RedisVerifier {
    system: String,
    client: redis::Client,
    /// One multiplexed connection, opened on first use and replaced after an error.
    connection: Mutex<Option<MultiplexedConnection>>,
    location: String,
    timeout: Duration,
}

/// The parts of `ACL GETUSER` closegate reads.
struct AclUser {
    flags: BTreeSet<String>,
    passwords: BTreeSet<String>,
    commands: BTreeSet<String>,
    keys: BTreeSet<String>,
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes)
            .split_whitespace()
            .map(String::from)
            .collect(),
        Value::SimpleString(s) => s.split_whitespace().map(String::from).collect(),
        Value::Array(items) | Value::Set(items) => items.iter().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

fn parse_acl_user(reply: &Value) -> Option<AclUser> {
    let pairs: Vec<(String, &Value)> = match reply {
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|kv| match kv {
                [k, v] => strings(k).into_iter().next().map(|k| (k, v)),
                _ => None,
            })
            .collect(),
        Value::Map(items) => items
            .iter()
            .filter_map(|(k, v)| strings(k).into_iter().next().map(|k| (k, v)))
            .collect(),
        _ => return None,
    };
    let field = |name: &str| -> BTreeSet<String> {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| strings(v).into_iter().collect())
            .unwrap_or_default()
    };
    Some(AclUser {
        flags: field("flags"),
        passwords: field("passwords"),
        commands: field("commands"),
        keys: field("keys"),
    })
}

impl RedisVerifier {
    pub fn build(system: &str, config: &RedisSystem) -> Result<Self, String> {
        let url = secret(system, "url", &config.url)?;
        let client =
            redis::Client::open(url.expose()).map_err(|_| format!("systems.{system}.url: not a valid Redis URL"))?;
        let location = match &client.get_connection_info().addr {
            redis::ConnectionAddr::Tcp(host, port) => format!("redis://{host}:{port}"),
            redis::ConnectionAddr::TcpTls { host, port, .. } => format!("rediss://{host}:{port}"),
            redis::ConnectionAddr::Unix(path) => format!("redis+unix://{}", path.display()),
        };
        Ok(Self {
            system: system.to_string(),
            client,
            connection: Mutex::new(None),
            location,
            timeout: Duration::from_millis(config.timeout_ms),
        })
    }

    fn error(&self, e: redis::RedisError) -> VerifyError {
        if e.is_io_error() || e.is_connection_refusal() || e.is_timeout() || e.is_connection_dropped() {
            VerifyError::Unreachable {
                system: self.system.clone(),
                message: e.to_string(),
            }
        } else {
            VerifyError::Query {
                system: self.system.clone(),
                message: e.to_string(),
            }
        }
    }

    /// The shared connection, opened on first use.
    async fn connection(&self) -> Result<MultiplexedConnection, VerifyError> {
        let mut slot = self.connection.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let conn = self
            .client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| self.error(e))?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Forgets a connection that failed, so the next call opens a new one.
    async fn settle<T>(&self, result: redis::RedisResult<T>) -> Result<T, VerifyError> {
        if let Err(e) = &result
            && (e.is_io_error() || e.is_connection_dropped())
        {
            *self.connection.lock().await = None;
        }
        result.map_err(|e| self.error(e))
    }

    async fn command(&self, cmd: &redis::Cmd) -> Result<Value, VerifyError> {
        let mut conn = self.connection().await?;
        let result = cmd.query_async::<Value>(&mut conn).await;
        self.settle(result).await
    }

    /// What an `ACL GETUSER` reply says about one check's subject.
    fn observe_reply(&self, check: &CheckSpec, user: &str, reply: &Value) -> Result<Observation, VerifyError> {
        if *reply == Value::Nil {
            return Ok(observed(&self.location, user, "", false, []));
        }
        let acl = parse_acl_user(reply).ok_or_else(|| VerifyError::Query {
            system: self.system.clone(),
            message: "unexpected ACL GETUSER reply".into(),
        })?;
        let enabled = acl.flags.contains("on");
        let (object, held): (&str, BTreeSet<String>) = match check.kind.as_str() {
            "user" => ("account", acl.flags),
            // A disabled user cannot authenticate with anything; `nopass` takes any credential.
            "credential" if !enabled => ("credentials", BTreeSet::new()),
            "credential" if acl.flags.contains("nopass") => ("credentials", check.requested.clone()),
            "credential" => ("credentials", acl.passwords.iter().map(|p| p.to_lowercase()).collect()),
            "commands" => (
                "command permissions",
                acl.commands.iter().map(|c| c.to_lowercase()).collect(),
            ),
            "keys" => ("key permissions", acl.keys),
            other => return Err(VerifyError::BadParams(format!("unknown check kind {other}"))),
        };
        Ok(observed(&self.location, user, object, true, held))
    }
}

#[async_trait]
impl Verifier for RedisVerifier {
    fn kinds(&self) -> &'static [&'static str] {
        KINDS
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn normalize(&self, kind: &str, item: &str) -> String {
        match kind {
            "keys" => item.trim().to_string(),
            _ => item.trim().to_lowercase(),
        }
    }

    async fn observe(&self, check: &CheckSpec) -> Result<Observation, VerifyError> {
        let user = param(check, "user")?;
        let reply = self.command(redis::cmd("ACL").arg("GETUSER").arg(user)).await?;
        self.observe_reply(check, user, &reply)
    }

    /// Every check's `ACL GETUSER` in one pipelined round trip.
    async fn observe_many(&self, checks: &[CheckSpec]) -> Vec<Result<Observation, VerifyError>> {
        let users: Vec<Result<&str, VerifyError>> = checks.iter().map(|c| param(c, "user")).collect();
        let mut pipe = redis::pipe();
        for user in users.iter().flatten() {
            pipe.cmd("ACL").arg("GETUSER").arg(*user);
        }
        if users.iter().all(Result::is_err) {
            return users.into_iter().map(|u| u.map(|_| unreachable!())).collect();
        }
        let replies = match self.connection().await {
            Ok(mut conn) => {
                let result = pipe.query_async::<Vec<Value>>(&mut conn).await;
                self.settle(result).await
            }
            Err(e) => Err(e),
        };
        let mut replies = match replies {
            Ok(replies) => replies.into_iter(),
            Err(e) => return vec![Err(e); checks.len()],
        };
        checks
            .iter()
            .zip(users)
            .map(|(check, user)| {
                let user = user?;
                let reply = replies.next().ok_or_else(|| VerifyError::Query {
                    system: self.system.clone(),
                    message: "the pipeline answered fewer replies than it was sent".into(),
                })?;
                self.observe_reply(check, user, &reply)
            })
            .collect()
    }

    async fn healthcheck(&self) -> Result<String, VerifyError> {
        let who = self.command(&redis::cmd("ACL").arg("WHOAMI").to_owned()).await?;
        Ok(format!("{} as {}", self.location, strings(&who).join(" ")))
    }
}
