//! The local PostgreSQL server the tests use, as target system and as store.

use sqlx::{Connection, Executor, PgConnection};

/// URL of `database` on the test server (`CLOSEGATE_TEST_PG` overrides the server).
pub fn pg_url(database: &str) -> String {
    let base = std::env::var("CLOSEGATE_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    format!("{}/{database}", base.trim_end_matches('/'))
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// Creates an empty database and returns its URL.
pub async fn fresh_database() -> String {
    let name = unique("cg_store");
    let mut admin = PgConnection::connect(&pg_url("postgres"))
        .await
        .expect("PostgreSQL is reachable");
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("create a database");
    pg_url(&name)
}
