//! MariaDB / MySQL as a target system: accounts (and whether they are locked),
//! global, database and table privileges, and granted roles, read from the
//! grant tables and `information_schema`.
//!
//! Database and table privileges are reported as held at that level or above
//! (a global `SELECT` covers every table), because that is what the account can do.
//! The monitoring login needs `SELECT` on `mysql.*`.

use std::{collections::BTreeSet, str::FromStr, time::Duration};

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
        let host = check
            .params
            .get("host")
            .map(String::as_str)
            .filter(|h| !h.is_empty())
            .unwrap_or("%");
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

    async fn healthcheck(&self) -> Result<String, VerifyError> {
        let (user, version): (String, String) =
            sqlx::query_as("SELECT CAST(CURRENT_USER() AS CHAR), CAST(VERSION() AS CHAR)")
                .fetch_one(&self.pool)
                .await
                .map_err(|e| self.error(e))?;
        Ok(format!("{} as {user} ({version})", self.location))
    }
}
