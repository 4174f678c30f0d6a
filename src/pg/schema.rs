//! Creating tufkey's tables the same way for each of their owners (the replicas' store,
//! the audit sink): only when missing, under one advisory lock.

use tokio_postgres::Client;

use super::conn::{db_err, PgError};

/// The advisory lock every tufkey DDL transaction takes, so that replicas (and CLI
/// commands) starting together do not race on CREATE TABLE's catalog rows.
const DDL_LOCK: i64 = 7472657566;

/// Runs `ddl` in one transaction under `DDL_LOCK` unless every table in `tables`
/// exists. Tables that exist need no DDL, so an account without CREATE on the schema
/// (the grants docs/signer.md lists) can still use them.
pub async fn ensure_tables(
    client: &mut Client,
    url: &str,
    tables: &[&str],
    ddl: &str,
) -> Result<(), PgError> {
    let e = |e: tokio_postgres::Error| db_err(url, &e);
    let mut present = true;
    for table in tables {
        let exists: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[table])
            .await
            .map_err(e)?
            .try_get(0)
            .map_err(e)?;
        present &= exists;
    }
    if present {
        return Ok(());
    }
    let tx = client.transaction().await.map_err(e)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&DDL_LOCK])
        .await
        .map_err(e)?;
    tx.batch_execute(ddl).await.map_err(e)?;
    tx.commit().await.map_err(e)
}
