//! PostgreSQL, for several signer replicas behind a load balancer: the one layer that
//! knows how to reach the database. The daemon's store (`server::pg`: versions and
//! rate buckets) and the audit log's sink ([`crate::audit::pg`]) both connect through
//! it, so neither imports the other.

mod conn;
mod schema;
pub mod tls;

pub use conn::{
    blocking_setup, connect, db_err, describe, is_postgres_url, parse_url, pg_err, redact_url,
    PgError, Target,
};
pub use schema::ensure_tables;
