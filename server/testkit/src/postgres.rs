//! PostgreSQL: a fresh database per test on the server `TEST_DATABASE_URL`
//! names (`./scripts/test.sh` sets it and starts PostgreSQL).

use crate::{TestApp, spawn_app_with};

/// A fresh, empty PostgreSQL database on the server named by
/// `TEST_DATABASE_URL` (the README's test command sets it and starts
/// PostgreSQL). Missing variable → the test fails: never a silent skip.
pub async fn fresh_postgres_url() -> String {
    use sqlx::Connection;
    let base = std::env::var("TEST_DATABASE_URL").expect(
        "TEST_DATABASE_URL is not set: run the tests with ./scripts/test.sh (see README), which starts PostgreSQL",
    );
    let mut admin = sqlx::PgConnection::connect(&base).await.expect("TEST_DATABASE_URL is reachable");
    let name = format!("parley_test_{}", uuid::Uuid::new_v4().simple());
    // `name` is generated above from a UUID: safe to splice.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create test database");
    let (prefix, _) = base.rsplit_once('/').expect("URL has a database path");
    format!("{prefix}/{name}")
}

/// A server on a fresh PostgreSQL database.
pub async fn spawn_app_on_postgres() -> TestApp {
    let url = fresh_postgres_url().await;
    spawn_app_with(|c| c.database_url = url).await
}
