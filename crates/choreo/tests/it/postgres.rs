//! The stack's PostgreSQL as the services meet it: TLS only (verify-full against the stack's
//! CA), and per service database a runtime role that reads and writes the tables the migration
//! role owns but cannot change the schema.

use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{ConnectOptions as _, Connection as _, PgConnection};

const SERVICES: [&str; 5] = ["ORDER", "INVENTORY", "PAYMENT", "SHIPPING", "GATEWAY"];

fn var(name: &str) -> String {
    choreo::config::load_env_file();
    std::env::var(name).unwrap_or_else(|_| panic!("{name} (run scripts/stack up)"))
}

/// A connection with the URL in variable `name`.
async fn connect(name: &str) -> PgConnection {
    PgConnection::connect(&var(name))
        .await
        .unwrap_or_else(|e| panic!("connecting with {name}: {e}"))
}

/// The SQLSTATE of a statement's error (a panic when it succeeded).
async fn refused(conn: &mut PgConnection, sql: &str) -> String {
    match sqlx::raw_sql(sql).execute(&mut *conn).await {
        Ok(_) => panic!("`{sql}` succeeded"),
        Err(sqlx::Error::Database(e)) => e.code().unwrap_or_default().into_owned(),
        Err(e) => panic!("`{sql}`: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_service_database_takes_its_runtime_role_over_tls() {
    for service in SERVICES {
        let mut conn = connect(&format!("DATABASE_URL_{service}")).await;
        let (user, database, ssl): (String, String, bool) = sqlx::query_as(
            "select current_user::text, current_database()::text,
                    (select ssl from pg_stat_ssl where pid = pg_backend_pid())",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        let db = format!("shop_{}", service.to_lowercase());
        assert_eq!(
            (user, database.as_str(), ssl),
            (format!("{db}_app"), db.as_str(), true)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_runtime_role_can_use_the_tables_but_not_create_alter_or_drop_them() {
    for service in SERVICES {
        let mut owner = connect(&format!("DATABASE_MIGRATION_URL_{service}")).await;
        let mut runtime = connect(&format!("DATABASE_URL_{service}")).await;
        let table = format!("probe_{}", uuid::Uuid::now_v7().simple());
        sqlx::raw_sql(&format!(
            "create table {table} (id bigserial primary key, v text)"
        ))
        .execute(&mut owner)
        .await
        .expect("the migration role creates tables");

        sqlx::raw_sql(&format!(
            "insert into {table} (v) values ('a'); update {table} set v = 'b';
             delete from {table}; select pg_advisory_lock(42); select pg_advisory_unlock(42);
             notify choreo_probe; listen choreo_probe; unlisten choreo_probe"
        ))
        .execute(&mut runtime)
        .await
        .expect("the runtime role reads and writes a table the migration role made");
        let insufficient_privilege = "42501";
        for ddl in [
            format!("create table {table}_2 (id int)"),
            format!("alter table {table} add column w text"),
            format!("drop table {table}"),
            format!("truncate {table}"),
            format!("create temporary table {table}_t (id int)"),
        ] {
            assert_eq!(
                refused(&mut runtime, &ddl).await,
                insufficient_privilege,
                "{service}: {ddl}"
            );
        }

        sqlx::raw_sql(&format!("drop table {table}"))
            .execute(&mut owner)
            .await
            .expect("the migration role drops its table");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plaintext_connection_is_refused() {
    for var_name in [
        "PG_ADMIN_URL",
        "DATABASE_URL_ORDER",
        "DATABASE_MIGRATION_URL_ORDER",
    ] {
        let options: PgConnectOptions = var(var_name).parse().unwrap();
        let plaintext = options.ssl_mode(PgSslMode::Disable).connect().await;
        match plaintext {
            Err(sqlx::Error::Database(e)) => {
                assert!(e.message().contains("no encryption"), "{var_name}: {e}")
            }
            other => panic!("{var_name}: a plaintext connection got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_migrates_as_the_owner_and_runs_as_the_runtime_role() {
    let url = var("DATABASE_URL_ORDER");
    let pool = choreo::db::connect_migrated(
        &url,
        sqlx::postgres::PgPoolOptions::new().max_connections(1),
        |owner| async move {
            let user: String = sqlx::query_scalar("select current_user::text")
                .fetch_one(&owner)
                .await?;
            assert_eq!(user, "shop_order");
            Ok(())
        },
    )
    .await
    .expect("connect_migrated");
    let user: String = sqlx::query_scalar("select current_user::text")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(user, "shop_order_app");
}
