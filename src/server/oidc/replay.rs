//! Single-use tokens: each (issuer, `jti`) is accepted once and remembered until the
//! token has expired (plus the clock skew, during which it would still be accepted).
//!
//! Kept beside the daemon's store and chosen by the same `state` setting: in memory
//! for one daemon, in PostgreSQL (`tufkey_oidc_jti`) for replicas, so a token used on
//! one replica is refused on every other. The claim is one statement whose conflict
//! row is locked, so two replicas given the same token at once let exactly one through.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::pg::{connect, ensure_tables, parse_url, redact_url, Target};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tufkey_oidc_jti (
    issuer text NOT NULL,
    jti text NOT NULL,
    expires timestamptz NOT NULL,
    PRIMARY KEY (issuer, jti)
);
";

/// Expired entries are swept at most this often.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Where used token ids are remembered.
pub enum Replay {
    Memory(Mutex<Memory>),
    Postgres(Box<PgReplay>),
}

/// (issuer, jti) → until when (seconds since the epoch).
#[derive(Default)]
pub struct Memory {
    seen: HashMap<(String, String), u64>,
    swept: Option<Instant>,
}

/// One connection of its own (replaced when it breaks): a claim is one statement.
pub struct PgReplay {
    url: String,
    target: Target,
    client: tokio::sync::Mutex<Option<Client>>,
    swept: Mutex<Option<Instant>>,
}

impl Replay {
    /// The in-memory set, for a single daemon.
    pub fn memory() -> Replay {
        Replay::Memory(Mutex::new(Memory::default()))
    }

    /// Connects and creates the table if it is missing. Call inside the runtime.
    pub async fn postgres(url: &str) -> Result<Replay, String> {
        let target = parse_url(url)?;
        let shown = redact_url(url);
        let mut client = connect(&target, &shown).await.map_err(|e| e.to_string())?;
        ensure_tables(&mut client, &shown, &["tufkey_oidc_jti"], SCHEMA)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Replay::Postgres(Box::new(PgReplay {
            url: shown,
            target,
            client: tokio::sync::Mutex::new(Some(client)),
            swept: Mutex::new(None),
        })))
    }

    /// True the first time (issuer, jti) is seen before `until`; false for a replay.
    pub async fn first_use(&self, issuer: &str, jti: &str, until: u64) -> Result<bool, String> {
        let now = jsonwebtoken::get_current_timestamp();
        match self {
            Replay::Memory(m) => {
                let mut m = m.lock().unwrap_or_else(|e| e.into_inner());
                if m.swept.is_none_or(|t| t.elapsed() >= SWEEP_INTERVAL) {
                    m.seen.retain(|_, u| *u >= now);
                    m.swept = Some(Instant::now());
                }
                let key = (issuer.to_string(), jti.to_string());
                match m.seen.get(&key) {
                    Some(u) if *u >= now => Ok(false),
                    _ => {
                        m.seen.insert(key, until);
                        Ok(true)
                    }
                }
            }
            Replay::Postgres(p) => p.first_use(issuer, jti, until).await,
        }
    }
}

impl PgReplay {
    async fn first_use(&self, issuer: &str, jti: &str, until: u64) -> Result<bool, String> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = Some(
                connect(&self.target, &self.url)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        let Some(client) = guard.as_ref() else {
            return Err(format!("{}: no connection", self.url));
        };
        let e = |e: tokio_postgres::Error| crate::pg::db_err(&self.url, &e).to_string();
        let sweep = {
            let mut s = self.swept.lock().unwrap_or_else(|e| e.into_inner());
            let due = s.is_none_or(|t| t.elapsed() >= SWEEP_INTERVAL);
            if due {
                *s = Some(Instant::now());
            }
            due
        };
        if sweep {
            client
                .execute("DELETE FROM tufkey_oidc_jti WHERE expires < now()", &[])
                .await
                .map_err(e)?;
        }
        // A row that exists but has expired is taken over: its token can no longer be
        // accepted anyway, so the id is free again.
        let until = until as f64;
        let n = client
            .execute(
                "INSERT INTO tufkey_oidc_jti AS t (issuer, jti, expires) VALUES ($1, $2, to_timestamp($3::float8))
                 ON CONFLICT (issuer, jti) DO UPDATE SET expires = EXCLUDED.expires WHERE t.expires < now()",
                &[&issuer, &jti, &until],
            )
            .await
            .map_err(e)?;
        Ok(n == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_token_id_is_accepted_once_per_issuer_until_it_expires() {
        let r = Replay::memory();
        let later = jsonwebtoken::get_current_timestamp() + 600;
        assert!(r.first_use("https://a", "j1", later).await.unwrap());
        assert!(!r.first_use("https://a", "j1", later).await.unwrap());
        assert!(r.first_use("https://b", "j1", later).await.unwrap());
        // An id whose token has expired is free again.
        let past = jsonwebtoken::get_current_timestamp() - 1;
        assert!(r.first_use("https://a", "old", past).await.unwrap());
        assert!(r.first_use("https://a", "old", later).await.unwrap());
    }
}
