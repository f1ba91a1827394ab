//! MariaDB / MySQL as a target system: accounts (and whether they are locked),
//! global, database and table privileges, and granted roles, read from the
//! grant tables and `information_schema`.
//!
//! Database and table privileges are reported as held at that level or above
//! (a global `SELECT` covers every table), because that is what the account can do.
//! The monitoring login needs `SELECT` on `mysql.*`.

use std::{
    collections::{BTreeSet, HashMap},
    str::FromStr,
    time::Duration,
};

use async_trait::async_trait;
use sqlx::{
    MySqlPool,
    mysql::{MySqlConnectOptions, MySqlPoolOptions},
};

use super::{Verifier, VerifyError, observed, param, secret, sql_error};
use crate::{
    config::SqlSystem,
    domain::{CheckSpec, Observation},
};

pub const KINDS: &[&str] = &[
    "account",
    "global_privileges",
    "database_privileges",
    "table_privileges",
    "roles",
];

pub struct MysqlVerifier {
    system: String,
    pool: MySqlPool,
    location: String,
    timeout: Duration,
}

const GLOBAL: &str = "SELECT CAST(PRIVILEGE_TYPE AS CHAR) FROM information_schema.USER_PRIVILEGES \
    WHERE GRANTEE = ? AND PRIVILEGE_TYPE <> 'USAGE'";
const DATABASE: &str = "SELECT CAST(PRIVILEGE_TYPE AS CHAR) FROM information_schema.SCHEMA_PRIVILEGES \
    WHERE GRANTEE = ? AND TABLE_SCHEMA = ?";
const TABLE: &str = "SELECT CAST(PRIVILEGE_TYPE AS CHAR) FROM information_schema.TABLE_PRIVILEGES \
    WHERE GRANTEE = ? AND TABLE_SCHEMA = ? AND TABLE_NAME = ?";

impl MysqlVerifier {
    pub fn build(system: &str, config: &SqlSystem) -> Result<Self, String> {
        let url = secret(system, "url", &config.url)?;
        let options = MySqlConnectOptions::from_str(url.expose())
            .map_err(|_| format!("systems.{system}.url: not a valid MySQL/MariaDB URL"))?;
        let timeout = Duration::from_millis(config.timeout_ms);
        let location = {
            let parsed = reqwest::Url::parse(url.expose()).map_err(|e| format!("systems.{system}.url: {e}"))?;
            format!(
                "mysql://{}:{}{}",
                parsed.host_str().unwrap_or(""),
                parsed.port().unwrap_or(3306),
                parsed.path()
            )
        };
        let pool = MySqlPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(timeout)
            .connect_lazy_with(options);
        Ok(Self {
            system: system.to_string(),
            pool,
            location,
            timeout,
        })
    }

    fn error(&self, e: sqlx::Error) -> VerifyError {
        sql_error(&self.system, e)
    }

    async fn strings(&self, sql: &str, binds: &[&str]) -> Result<BTreeSet<String>, VerifyError> {
        let mut query = sqlx::query_scalar::<_, String>(sql);
        for b in binds {
            query = query.bind(*b);
        }
        let rows = query.fetch_all(&self.pool).await.map_err(|e| self.error(e))?;
        Ok(rows.into_iter().collect())
    }

    /// Whether the account exists, and whether it is locked (MariaDB keeps this
    /// in `mysql.global_priv`, MySQL in `mysql.user.account_locked`).
    async fn account(&self, user: &str, host: &str) -> Result<Option<bool>, VerifyError> {
        // JSON_VALUE gives `1` for JSON true on MariaDB.
        const MARIADB: &str = "SELECT COALESCE(JSON_VALUE(Priv, '$.account_locked'), 'false') IN ('true', '1') \
            FROM mysql.global_priv WHERE User = ? AND Host = ?";
        const MYSQL: &str = "SELECT account_locked = 'Y' FROM mysql.user WHERE User = ? AND Host = ?";
        let mariadb = sqlx::query_scalar::<_, bool>(MARIADB)
            .bind(user)
            .bind(host)
            .fetch_optional(&self.pool)
            .await;
        match mariadb {
            Ok(locked) => Ok(locked),
            Err(sqlx::Error::Database(_)) => sqlx::query_scalar::<_, bool>(MYSQL)
                .bind(user)
                .bind(host)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.error(e)),
            Err(e) => Err(self.error(e)),
        }
    }

    async fn roles(&self, user: &str, host: &str) -> Result<BTreeSet<String>, VerifyError> {
        const MARIADB: &str = "SELECT CAST(Role AS CHAR) FROM mysql.roles_mapping WHERE User = ? AND Host = ?";
        const MYSQL: &str = "SELECT CAST(FROM_USER AS CHAR) FROM mysql.role_edges WHERE TO_USER = ? AND TO_HOST = ?";
        match self.strings(MARIADB, &[user, host]).await {
            Err(VerifyError::Query { .. }) => self.strings(MYSQL, &[user, host]).await,
            other => other,
        }
    }
}

/// The account's host (`%` when the check names none).
fn host_of(check: &CheckSpec) -> &str {
    check
        .params
        .get("host")
        .map(String::as_str)
        .filter(|h| !h.is_empty())
        .unwrap_or("%")
}

/// One check of a batch, with its parameters read.
struct Asked<'a> {
    check: &'a CheckSpec,
    user: &'a str,
    host: &'a str,
    /// `'user'@'host'`, as information_schema names a grantee.
    subject: String,
}

impl MysqlVerifier {
    /// Account states of many (user, host) pairs in one query: `Some(locked)`
    /// for each account that exists.
    async fn accounts(&self, asked: &[&Asked<'_>]) -> Result<HashMap<(String, String), bool>, VerifyError> {
        let pairs = vec!["(?, ?)"; asked.len()].join(", ");
        let mariadb = format!(
            "SELECT CAST(User AS CHAR), CAST(Host AS CHAR), \
             COALESCE(JSON_VALUE(Priv, '$.account_locked'), 'false') IN ('true', '1') \
             FROM mysql.global_priv WHERE (User, Host) IN ({pairs})"
        );
        let mysql = format!(
            "SELECT CAST(User AS CHAR), CAST(Host AS CHAR), account_locked = 'Y' FROM mysql.user \
             WHERE (User, Host) IN ({pairs})"
        );
        let run = |sql: String| async move {
            let mut query = sqlx::query_as::<_, (String, String, bool)>(&sql);
            for a in asked {
                query = query.bind(a.user).bind(a.host);
            }
            query.fetch_all(&self.pool).await
        };
        let rows = match run(mariadb).await {
            Ok(rows) => rows,
            Err(sqlx::Error::Database(_)) => run(mysql).await.map_err(|e| self.error(e))?,
            Err(e) => return Err(self.error(e)),
        };
        Ok(rows.into_iter().map(|(u, h, locked)| ((u, h), locked)).collect())
    }

    /// Global, database and table privileges of many grantees in one query:
    /// (level, grantee, schema, table, privilege).
    async fn privileges_of(
        &self,
        grantees: &[&str],
    ) -> Result<Vec<(String, String, String, String, String)>, VerifyError> {
        let list = vec!["?"; grantees.len()].join(", ");
        let sql = format!(
            "SELECT 'g', CAST(GRANTEE AS CHAR), '', '', CAST(PRIVILEGE_TYPE AS CHAR) \
                 FROM information_schema.USER_PRIVILEGES WHERE GRANTEE IN ({list}) AND PRIVILEGE_TYPE <> 'USAGE' \
             UNION ALL SELECT 'd', CAST(GRANTEE AS CHAR), CAST(TABLE_SCHEMA AS CHAR), '', CAST(PRIVILEGE_TYPE AS CHAR) \
                 FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE IN ({list}) \
             UNION ALL SELECT 't', CAST(GRANTEE AS CHAR), CAST(TABLE_SCHEMA AS CHAR), CAST(TABLE_NAME AS CHAR), \
                 CAST(PRIVILEGE_TYPE AS CHAR) FROM information_schema.TABLE_PRIVILEGES WHERE GRANTEE IN ({list})"
        );
        let mut query = sqlx::query_as(&sql);
        for _ in 0..3 {
            for g in grantees {
                query = query.bind(*g);
            }
        }
        query.fetch_all(&self.pool).await.map_err(|e| self.error(e))
    }

    /// A batch of account and privilege checks in two round trips.
    async fn observe_batch(&self, asked: &[Asked<'_>]) -> Vec<Result<Observation, VerifyError>> {
        let refs: Vec<&Asked<'_>> = asked.iter().collect();
        let accounts = match self.accounts(&refs).await {
            Ok(accounts) => accounts,
            Err(e) => return vec![Err(e); asked.len()],
        };
        let mut grantees: Vec<&str> = asked.iter().map(|a| a.subject.as_str()).collect();
        grantees.sort_unstable();
        grantees.dedup();
        let rows = match self.privileges_of(&grantees).await {
            Ok(rows) => rows,
            Err(e) => return vec![Err(e); asked.len()],
        };
        let held = |grantee: &str, schema: Option<&str>, table: Option<&str>| -> BTreeSet<String> {
            rows.iter()
                .filter(|(level, g, s, t, _)| {
                    g == grantee
                        && match level.as_str() {
                            "g" => true,
                            "d" => schema.is_some_and(|x| x == s),
                            _ => schema.is_some_and(|x| x == s) && table.is_some_and(|x| x == t),
                        }
                })
                .map(|(_, _, _, _, p)| p.clone())
                .collect()
        };
        asked
            .iter()
            .map(|a| {
                let Some(&locked) = accounts.get(&(a.user.to_string(), a.host.to_string())) else {
                    return Ok(observed(&self.location, &a.subject, "", false, []));
                };
                let (object, items) = match a.check.kind.as_str() {
                    "account" => (
                        "account".to_string(),
                        BTreeSet::from([if locked { "LOCKED" } else { "LOGIN" }.to_string()]),
                    ),
                    "global_privileges" => ("*.*".to_string(), held(&a.subject, None, None)),
                    "database_privileges" => {
                        let database = param(a.check, "database")?;
                        (format!("database {database}"), held(&a.subject, Some(database), None))
                    }
                    _ => {
                        let table = param(a.check, "table")?;
                        let (database, name) = table
                            .split_once('.')
                            .ok_or_else(|| VerifyError::BadParams(format!("table {table:?} must be database.table")))?;
                        (format!("table {table}"), held(&a.subject, Some(database), Some(name)))
                    }
                };
                Ok(observed(&self.location, &a.subject, object, true, items))
            })
            .collect()
    }
}

#[async_trait]
impl Verifier for MysqlVerifier {
    fn kinds(&self) -> &'static [&'static str] {
        KINDS
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn normalize(&self, kind: &str, item: &str) -> String {
        match kind {
            "roles" => item.to_string(),
            _ => item.trim().to_uppercase(),
        }
    }

    async fn observe(&self, check: &CheckSpec) -> Result<Observation, VerifyError> {
        let user = param(check, "user")?;
        let host = host_of(check);
        let subject = format!("'{user}'@'{host}'");
        let Some(locked) = self.account(user, host).await? else {
            return Ok(observed(&self.location, &subject, "", false, []));
        };
        let (object, held) = match check.kind.as_str() {
            "account" => (
                "account".to_string(),
                BTreeSet::from([if locked { "LOCKED" } else { "LOGIN" }.to_string()]),
            ),
            "roles" => ("granted roles".to_string(), self.roles(user, host).await?),
            "global_privileges" => ("*.*".to_string(), self.strings(GLOBAL, &[&subject]).await?),
            "database_privileges" => {
                let database = param(check, "database")?;
                let mut held = self.strings(GLOBAL, &[&subject]).await?;
                held.extend(self.strings(DATABASE, &[&subject, database]).await?);
                (format!("database {database}"), held)
            }
            "table_privileges" => {
                let table = param(check, "table")?;
                let (database, name) = table
                    .split_once('.')
                    .ok_or_else(|| VerifyError::BadParams(format!("table {table:?} must be database.table")))?;
                let mut held = self.strings(GLOBAL, &[&subject]).await?;
                held.extend(self.strings(DATABASE, &[&subject, database]).await?);
                held.extend(self.strings(TABLE, &[&subject, database, name]).await?);
                (format!("table {table}"), held)
            }
            other => return Err(VerifyError::BadParams(format!("unknown check kind {other}"))),
        };
        Ok(observed(&self.location, &subject, object, true, held))
    }

    /// Account and privilege checks of a batch in two queries (accounts, then
    /// every grantee's privileges); role checks one by one.
    async fn observe_many(&self, checks: &[CheckSpec]) -> Vec<Result<Observation, VerifyError>> {
        let mut results: Vec<Option<Result<Observation, VerifyError>>> = (0..checks.len()).map(|_| None).collect();
        let mut batch = Vec::new();
        let mut positions = Vec::new();
        for (i, check) in checks.iter().enumerate() {
            if check.kind == "roles" {
                results[i] = Some(self.observe(check).await);
                continue;
            }
            match param(check, "user") {
                Err(e) => results[i] = Some(Err(e)),
                Ok(user) => {
                    let host = host_of(check);
                    batch.push(Asked {
                        check,
                        user,
                        host,
                        subject: format!("'{user}'@'{host}'"),
                    });
                    positions.push(i);
                }
            }
        }
        if !batch.is_empty() {
            for (i, result) in positions.into_iter().zip(self.observe_batch(&batch).await) {
                results[i] = Some(result);
            }
        }
        results.into_iter().flatten().collect()
    }

    async fn healthcheck(&self) -> Result<String, VerifyError> {
        let (user, version): (String, String) =
            sqlx::query_as("SELECT CAST(CURRENT_USER() AS CHAR), CAST(VERSION() AS CHAR)")
                .fetch_one(&self.pool)
                .await
                .map_err(|e| self.error(e))?;
        Ok(format!("{} as {user} ({version})", self.location))
    }
}
