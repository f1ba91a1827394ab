//! PostgreSQL as a target system: roles, role membership and privileges on
//! databases, schemas and tables, read from the catalogs.
//!
//! Privileges are the *effective* ones (`has_*_privilege`: direct grants,
//! inherited roles and PUBLIC), because that is what the role can really do.

use std::{collections::BTreeSet, str::FromStr, time::Duration};

use async_trait::async_trait;
use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use super::{Verifier, VerifyError, observed, param, secret, sql_error};
use crate::{
    config::SqlSystem,
    domain::{CheckSpec, Observation},
};

pub const KINDS: &[&str] = &[
    "role",
    "membership",
    "table_privileges",
    "schema_privileges",
    "database_privileges",
];

const TABLE_PRIVILEGES: &[&str] = &[
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "TRUNCATE",
    "REFERENCES",
    "TRIGGER",
];
const SCHEMA_PRIVILEGES: &[&str] = &["USAGE", "CREATE"];
const DATABASE_PRIVILEGES: &[&str] = &["CONNECT", "CREATE", "TEMPORARY"];

pub struct PostgresVerifier {
    system: String,
    pool: PgPool,
    location: String,
    timeout: Duration,
}

/// A role's LOGIN (and still valid), SUPERUSER, CREATEDB, CREATEROLE,
/// REPLICATION and BYPASSRLS attributes.
type RoleFlags = (bool, bool, bool, bool, bool, bool);

impl PostgresVerifier {
    pub fn build(system: &str, config: &SqlSystem) -> Result<Self, String> {
        let url = secret(system, "url", &config.url)?;
        let options = PgConnectOptions::from_str(url.expose())
            .map_err(|_| format!("systems.{system}.url: not a valid PostgreSQL URL"))?;
        let location = format!(
            "postgresql://{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("")
        );
        let timeout = Duration::from_millis(config.timeout_ms);
        let pool = PgPoolOptions::new()
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

    fn observation(&self, subject: &str, object: String, exists: bool, held: BTreeSet<String>) -> Observation {
        observed(&self.location, subject, object, exists, held)
    }

    async fn role_exists(&self, role: &str) -> Result<bool, VerifyError> {
        sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(role)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.error(e))
    }

    async fn role(&self, role: &str) -> Result<Observation, VerifyError> {
        const SQL: &str = "SELECT rolcanlogin AND (rolvaliduntil IS NULL OR rolvaliduntil > now()), \
            rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls \
            FROM pg_roles WHERE rolname = $1";
        let row: Option<RoleFlags> = sqlx::query_as(SQL)
            .bind(role)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        Ok(self.role_observation(role, row))
    }

    /// What a role holds: its attributes, as `role` checks name them.
    fn role_observation(&self, role: &str, flags: Option<RoleFlags>) -> Observation {
        let Some(r) = flags else {
            return self.observation(role, String::new(), false, BTreeSet::new());
        };
        let flags = [
            (r.0, "LOGIN"),
            (r.1, "SUPERUSER"),
            (r.2, "CREATEDB"),
            (r.3, "CREATEROLE"),
            (r.4, "REPLICATION"),
            (r.5, "BYPASSRLS"),
        ];
        let held = flags.iter().filter(|(on, _)| *on).map(|(_, n)| n.to_string()).collect();
        self.observation(role, String::new(), true, held)
    }

    async fn membership(&self, role: &str) -> Result<Observation, VerifyError> {
        const SQL: &str = "SELECT g.rolname::text FROM pg_roles g \
            WHERE g.rolname <> $1 AND pg_has_role($1, g.oid, 'MEMBER') ORDER BY 1";
        if !self.role_exists(role).await? {
            return Ok(self.observation(role, "role membership".into(), false, BTreeSet::new()));
        }
        let groups: Vec<String> = sqlx::query_scalar(SQL)
            .bind(role)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        Ok(self.observation(role, "role membership".into(), true, groups.into_iter().collect()))
    }

    async fn privileges(&self, check: &CheckSpec, role: &str) -> Result<Observation, VerifyError> {
        let (object, sql, object_arg): (String, &str, String) = match check.kind.as_str() {
            "table_privileges" => {
                let table = param(check, "table")?;
                let (schema, name) = table.split_once('.').unwrap_or(("public", table));
                // Resolve the table by name first: no SQL is built from ticket text.
                let oid: Option<i64> = sqlx::query_scalar(
                    "SELECT c.oid::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = $1 AND c.relname = $2",
                )
                .bind(schema)
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.error(e))?;
                let oid = oid.ok_or_else(|| VerifyError::Query {
                    system: self.system.clone(),
                    message: format!("table {schema}.{name} does not exist"),
                })?;
                (
                    format!("table {schema}.{name}"),
                    "SELECT p FROM unnest($3::text[]) AS p WHERE has_table_privilege($1, $2::bigint::oid, p)",
                    oid.to_string(),
                )
            }
            "schema_privileges" => {
                let schema = param(check, "schema")?;
                (
                    format!("schema {schema}"),
                    "SELECT p FROM unnest($3::text[]) AS p WHERE has_schema_privilege($1, \
                     (SELECT oid FROM pg_namespace WHERE nspname = $2), p)",
                    schema.to_string(),
                )
            }
            _ => {
                let database = match check.params.get("database").filter(|d| !d.is_empty()) {
                    Some(d) => d.clone(),
                    None => sqlx::query_scalar("SELECT current_database()::text")
                        .fetch_one(&self.pool)
                        .await
                        .map_err(|e| self.error(e))?,
                };
                (
                    format!("database {database}"),
                    "SELECT p FROM unnest($3::text[]) AS p WHERE has_database_privilege($1, \
                     (SELECT oid FROM pg_database WHERE datname = $2), p)",
                    database,
                )
            }
        };
        if check.kind == "schema_privileges" || check.kind == "database_privileges" {
            let exists_sql = if check.kind == "schema_privileges" {
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)"
            } else {
                "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)"
            };
            let found: bool = sqlx::query_scalar(exists_sql)
                .bind(&object_arg)
                .fetch_one(&self.pool)
                .await
                .map_err(|e| self.error(e))?;
            if !found {
                return Err(VerifyError::Query {
                    system: self.system.clone(),
                    message: format!("{object} does not exist"),
                });
            }
        }
        if !self.role_exists(role).await? {
            return Ok(self.observation(role, object, false, BTreeSet::new()));
        }
        let all: Vec<String> = match check.kind.as_str() {
            "table_privileges" => TABLE_PRIVILEGES,
            "schema_privileges" => SCHEMA_PRIVILEGES,
            _ => DATABASE_PRIVILEGES,
        }
        .iter()
        .map(|s| s.to_string())
        .collect();
        let held: Vec<String> = sqlx::query_scalar(sql)
            .bind(role)
            .bind(&object_arg)
            .bind(&all)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        Ok(self.observation(role, object, true, held.into_iter().collect()))
    }
}

impl PostgresVerifier {
    /// Table privileges of many (role, table) pairs in one round trip: the
    /// pairs travel as arrays and are joined against the catalogs.
    async fn table_privileges_many(&self, checks: &[&CheckSpec]) -> Vec<Result<Observation, VerifyError>> {
        const SQL: &str = "SELECT q.i, r.oid IS NOT NULL, c.oid IS NOT NULL, \
            CASE WHEN r.oid IS NOT NULL AND c.oid IS NOT NULL THEN \
                ARRAY(SELECT p FROM unnest($4::text[]) AS p WHERE has_table_privilege(r.oid, c.oid, p)) END \
            FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS q(role, schema, tbl, i) \
            LEFT JOIN pg_roles r ON r.rolname = q.role \
            LEFT JOIN pg_namespace n ON n.nspname = q.schema \
            LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = q.tbl \
            ORDER BY q.i";
        let mut roles = Vec::with_capacity(checks.len());
        let mut schemas = Vec::with_capacity(checks.len());
        let mut tables = Vec::with_capacity(checks.len());
        let mut bad: Vec<Option<VerifyError>> = Vec::with_capacity(checks.len());
        for check in checks {
            let parsed = param(check, "role").and_then(|role| Ok((role, param(check, "table")?)));
            let (role, table) = match parsed {
                Ok(pair) => {
                    bad.push(None);
                    pair
                }
                Err(e) => {
                    bad.push(Some(e));
                    ("", "")
                }
            };
            let (schema, name) = table.split_once('.').unwrap_or(("public", table));
            roles.push(role.to_string());
            schemas.push(schema.to_string());
            tables.push(name.to_string());
        }
        let all: Vec<String> = TABLE_PRIVILEGES.iter().map(|s| s.to_string()).collect();
        let rows: Vec<(i64, bool, bool, Option<Vec<String>>)> = match self.answered(
            sqlx::query_as(SQL)
                .bind(&roles)
                .bind(&schemas)
                .bind(&tables)
                .bind(&all)
                .fetch_all(&self.pool)
                .await,
            checks.len(),
        ) {
            Ok(rows) => rows,
            Err(failed) => return failed,
        };
        rows.into_iter()
            .zip(bad)
            .enumerate()
            .map(|(i, ((_, role_exists, table_exists, held), bad))| {
                if let Some(e) = bad {
                    return Err(e);
                }
                let object = format!("table {}.{}", schemas[i], tables[i]);
                if !table_exists {
                    return Err(VerifyError::Query {
                        system: self.system.clone(),
                        message: format!("{object} does not exist"),
                    });
                }
                let held = held.unwrap_or_default().into_iter().collect();
                Ok(self.observation(&roles[i], object, role_exists, held))
            })
            .collect()
    }
}

impl PostgresVerifier {
    /// The attributes of many roles in one round trip.
    async fn roles_many(&self, checks: &[&CheckSpec]) -> Vec<Result<Observation, VerifyError>> {
        const SQL: &str = "SELECT q.i, r.rolname IS NOT NULL, \
            COALESCE(r.rolcanlogin AND (r.rolvaliduntil IS NULL OR r.rolvaliduntil > now()), false), \
            COALESCE(r.rolsuper, false), COALESCE(r.rolcreatedb, false), COALESCE(r.rolcreaterole, false), \
            COALESCE(r.rolreplication, false), COALESCE(r.rolbypassrls, false) \
            FROM unnest($1::text[]) WITH ORDINALITY AS q(role, i) \
            LEFT JOIN pg_roles r ON r.rolname = q.role ORDER BY q.i";
        let roles: Vec<Result<&str, VerifyError>> = checks.iter().map(|c| param(c, "role")).collect();
        let names: Vec<&str> = roles.iter().map(|r| r.as_ref().map_or("", |r| *r)).collect();
        type Row = (i64, bool, bool, bool, bool, bool, bool, bool);
        let rows: Vec<Row> = match self.answered(
            sqlx::query_as(SQL).bind(&names).fetch_all(&self.pool).await,
            checks.len(),
        ) {
            Ok(rows) => rows,
            Err(failed) => return failed,
        };
        rows.into_iter()
            .zip(roles)
            .map(|((_, exists, login, sup, db, cr, repl, bypass), role)| {
                let flags = exists.then_some((login, sup, db, cr, repl, bypass));
                Ok(self.role_observation(role?, flags))
            })
            .collect()
    }

    /// The rows of a batched query, one per check; otherwise every check's
    /// error (the query's, or a row count that does not match).
    fn answered<T>(
        &self,
        rows: Result<Vec<T>, sqlx::Error>,
        checks: usize,
    ) -> Result<Vec<T>, Vec<Result<Observation, VerifyError>>> {
        let message = match rows {
            Ok(rows) if rows.len() == checks => return Ok(rows),
            Ok(_) => "the batch answered a different number of rows".to_string(),
            Err(e) => self.error(e).to_string(),
        };
        Err((0..checks)
            .map(|_| {
                Err(VerifyError::Query {
                    system: self.system.clone(),
                    message: message.clone(),
                })
            })
            .collect())
    }
}

#[async_trait]
impl Verifier for PostgresVerifier {
    fn kinds(&self) -> &'static [&'static str] {
        KINDS
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn normalize(&self, kind: &str, item: &str) -> String {
        match kind {
            "membership" => item.to_string(),
            _ => {
                let upper = item.to_uppercase();
                if upper == "TEMP" { "TEMPORARY".into() } else { upper }
            }
        }
    }

    async fn observe(&self, check: &CheckSpec) -> Result<Observation, VerifyError> {
        let role = param(check, "role")?;
        match check.kind.as_str() {
            "role" => self.role(role).await,
            "membership" => self.membership(role).await,
            "table_privileges" | "schema_privileges" | "database_privileges" => self.privileges(check, role).await,
            other => Err(VerifyError::BadParams(format!("unknown check kind {other}"))),
        }
    }

    async fn observe_many(&self, checks: &[CheckSpec]) -> Vec<Result<Observation, VerifyError>> {
        let of_kind = |kind: &str| -> (Vec<usize>, Vec<&CheckSpec>) {
            checks.iter().enumerate().filter(|(_, c)| c.kind == kind).unzip()
        };
        let (table_at, tables) = of_kind("table_privileges");
        let (role_at, roles) = of_kind("role");
        let others: Vec<(usize, &CheckSpec)> = checks
            .iter()
            .enumerate()
            .filter(|(_, c)| c.kind != "table_privileges" && c.kind != "role")
            .collect();
        let (table_results, role_results, other_results) = futures_util::join!(
            async {
                if tables.is_empty() {
                    Vec::new()
                } else {
                    self.table_privileges_many(&tables).await
                }
            },
            async {
                if roles.is_empty() {
                    Vec::new()
                } else {
                    self.roles_many(&roles).await
                }
            },
            futures_util::future::join_all(others.iter().map(|(_, c)| self.observe(c)))
        );
        let mut placed: Vec<Option<Result<Observation, VerifyError>>> = (0..checks.len()).map(|_| None).collect();
        let at = table_at
            .into_iter()
            .chain(role_at)
            .chain(others.iter().map(|(i, _)| *i));
        for (i, result) in at.zip(table_results.into_iter().chain(role_results).chain(other_results)) {
            placed[i] = Some(result);
        }
        placed.into_iter().flatten().collect()
    }

    async fn healthcheck(&self) -> Result<String, VerifyError> {
        let (user, version): (String, String) =
            sqlx::query_as("SELECT current_user::text, current_setting('server_version')")
                .fetch_one(&self.pool)
                .await
                .map_err(|e| self.error(e))?;
        Ok(format!("{} as {user} (PostgreSQL {version})", self.location))
    }
}
