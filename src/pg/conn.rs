//! Connections to PostgreSQL, shared by the daemon's store (versions, rate buckets)
//! and the audit log's PostgreSQL sink: the URL (parsed once, a password never shown),
//! TLS the libpq way ([`super::tls`]) and the driver's errors with their causes.

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;

use tokio_postgres::{Client, NoTls};

use super::tls;

/// A database that could not be used: the redacted URL and why. The same words for
/// the daemon's store and the CLI's audit sink, so an operator reads one form.
#[derive(Debug, Clone, thiserror::Error)]
#[error("PostgreSQL store {url}: {reason}")]
pub struct PgError {
    /// Redacted ([`redact_url`]): safe for messages.
    pub url: String,
    pub reason: String,
}

/// A [`PgError`] for `url` (already redacted).
pub fn pg_err(url: &str, e: impl std::fmt::Display) -> PgError {
    PgError {
        url: url.to_string(),
        reason: e.to_string(),
    }
}

/// True for values of `state` that name a PostgreSQL database.
pub fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// A database to connect to: the driver's settings and, when the URL asks for TLS,
/// the rustls configuration built from its certificate files once.
/// (Debug: the driver's own Debug hides the password.)
#[derive(Clone, Debug)]
pub struct Target {
    config: tokio_postgres::Config,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// Parses a connection URL; the error never repeats a password.
/// TLS settings (`sslmode=verify-full&sslrootcert=…`) are read here too, files
/// included, so a bad one stops the daemon at start (see [`super::tls`]).
pub fn parse_url(url: &str) -> Result<Target, String> {
    let shown = redact_url(url);
    check_userinfo(url).map_err(|e| format!("{shown}: {e}"))?;
    let split = tls::split_url(url).map_err(|e| format!("{shown}: {e}"))?;
    let tls = match &split.tls {
        Some(params) => Some(tls::client_config(params).map_err(|e| format!("{shown}: {e}"))?),
        None => None,
    };
    let mut config = tokio_postgres::Config::from_str(&split.driver_url)
        .map_err(|e| format!("{shown} is not a PostgreSQL URL: {e}"))?;
    if tls.is_some() {
        // Set here, not only through the rewritten URL: a verifying mode must never
        // end as "prefer", which falls back to plain text when the server says no.
        config.ssl_mode(tokio_postgres::config::SslMode::Require);
    }
    // An unreachable database must turn into a 503, not a request that hangs until
    // the client gives up; `?connect_timeout=N` in the URL overrides this.
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(5));
    }
    Ok(Target { config, tls })
}

/// The URL with any password replaced by `***`, for messages and logs. The user info
/// is found as tokio-postgres finds it (up to the first `@` anywhere after `://`), so
/// what the driver takes for a password is what is hidden; a `password=` query
/// parameter is hidden too.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let (head, rest) = url.split_at(scheme_end);
    let (mut out, after) = match rest.find('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => (
                format!("{head}{}:***{}", &rest[..colon], &rest[at..]),
                scheme_end + colon + 4,
            ),
            None => (url.to_string(), scheme_end + at),
        },
        None => (url.to_string(), scheme_end),
    };
    if let Some(q) = out[after..].find('?').map(|q| after + q + 1) {
        let query = out[q..]
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some(("password", _)) => "password=***".to_string(),
                _ => pair.to_string(),
            })
            .collect::<Vec<_>>()
            .join("&");
        out.truncate(q);
        out.push_str(&query);
    }
    out
}

/// tokio-postgres takes everything up to the first `@` for the user info, a browser
/// or libpq only what comes before the host; where the two readings differ (a raw
/// `/`, `?` or `#` in a password, or an `@` in the query), the URL means different
/// things to different tools, so it is refused.
fn check_userinfo(url: &str) -> Result<(), String> {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return Ok(());
    };
    let rest = &url[scheme_end..];
    match rest.find('@') {
        Some(at) if rest[..at].contains(['/', '?', '#']) => Err(
            "a user name or password with a raw '/', '?' or '#', or an '@' after the host: percent-encode them (%2F, %3F, %23, %40)"
                .into(),
        ),
        _ => Ok(()),
    }
}

/// A driver error with its cause: tokio-postgres shows only "db error" for the
/// server's own message, which is the part an operator needs.
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

/// [`pg_err`] for driver errors.
pub fn db_err(url: &str, e: &tokio_postgres::Error) -> PgError {
    pg_err(url, describe(e))
}

/// Connects (over TLS when the URL asked for it) and drives the connection on the
/// current runtime; `url` is the redacted URL, for messages.
pub async fn connect(target: &Target, url: &str) -> Result<Client, PgError> {
    let url = url.to_string();
    let (client, conn): (Client, Pin<Box<dyn Future<Output = _> + Send>>) = match &target.tls {
        Some(rustls) => {
            let (client, conn) = target
                .config
                .connect(tls::RustlsConnect(rustls.clone()))
                .await
                .map_err(|e| db_err(&url, &e))?;
            (client, Box::pin(conn))
        }
        None => {
            let (client, conn) = target
                .config
                .connect(NoTls)
                .await
                .map_err(|e| db_err(&url, &e))?;
            (client, Box::pin(conn))
        }
    };
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            eprintln!("tufkey serve: PostgreSQL connection to {url} ended: {e}");
        }
    });
    Ok(client)
}

/// For blocking callers (the CLI): the redacted URL, the parsed target and a small
/// runtime of its own to drive the connection on.
pub fn blocking_setup(url: &str) -> Result<(String, Target, tokio::runtime::Runtime), PgError> {
    let shown = redact_url(url);
    let target = parse_url(url).map_err(|reason| PgError {
        url: shown.clone(),
        reason,
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| pg_err(&shown, e))?;
    Ok((shown, target, rt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_recognised_and_passwords_redacted() {
        assert!(is_postgres_url("postgres://u@127.0.0.1:5432/db"));
        assert!(!is_postgres_url("state.json"));
        assert_eq!(
            redact_url("postgres://u:secret@127.0.0.1:5432/db"),
            "postgres://u:***@127.0.0.1:5432/db"
        );
        assert_eq!(
            redact_url("postgres://u@127.0.0.1/db"),
            "postgres://u@127.0.0.1/db"
        );
        assert!(parse_url("postgres://u@127.0.0.1:5432/db").is_ok());
        let e = parse_url("postgres://u:secret@127.0.0.1:notaport/db").unwrap_err();
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn passwords_are_hidden_where_the_driver_finds_them() {
        // tokio-postgres reads "ab/cd" as the password (up to the first '@').
        let shown = redact_url("postgres://tufkey:ab/cd@db/signer");
        assert!(
            !shown.contains("ab/cd") && !shown.contains("cd@"),
            "{shown}"
        );
        assert_eq!(
            redact_url("postgres://u@h/db?connect_timeout=3&password=secret&x=1"),
            "postgres://u@h/db?connect_timeout=3&password=***&x=1"
        );
        assert_eq!(
            redact_url("postgres://u:p@h/db?password=q"),
            "postgres://u:***@h/db?password=***"
        );
        // Such a URL means different things to different tools: refused, and the
        // message does not repeat the password.
        let e = parse_url("postgres://tufkey:ab/cd@db/signer").unwrap_err();
        assert!(e.contains("percent-encode") && !e.contains("ab/cd"), "{e}");
        let e =
            parse_url("postgres://?x=a@db.internal/signer&sslmode=verify-full&sslrootcert=/ca.pem")
                .unwrap_err();
        assert!(e.contains("percent-encode"), "{e}");
        assert!(parse_url("postgres://u:ab%2Fcd@db/signer").is_ok());
    }
}
