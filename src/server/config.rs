//! `signer.toml`: what the daemon listens on, which keys it serves, and who may use them.
//!
//! Every error names the file, the line and why, and the daemon does not start. PINs
//! never appear in the config: key URIs with `pin-value` are refused; use
//! `pin-source=file:…` or the `TUFKEY_PIN_<LABEL>` environment variables.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

pub use super::listeners::{ClientCertificate, Listener};
use super::oidc::config::{self as oidc, OidcConfig};
use super::policy::pattern_problem;
pub use super::policy::ClientPolicy;
use crate::keys::KeyUri;

/// A config error: `file:line: reason`.
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}: {reason}", path.display())]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: usize,
    pub reason: String,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub listen: SocketAddr,
    /// `[[listeners]]`: more addresses, each with its own client-certificate choice.
    pub listeners: Vec<Listener>,
    pub tls: TlsConfig,
    /// Where the last signed versions, rate counters and the audit log live.
    pub state: StateConfig,
    /// Concurrent HSM calls (each on its own PKCS#11 session).
    pub workers: usize,
    pub limits: Limits,
    pub keys: Vec<KeyConfig>,
    pub clients: Vec<ClientPolicy>,
    /// Trusted OIDC issuers (`[[oidc.issuers]]`); none: tokens are refused.
    pub oidc: OidcConfig,
}

/// The daemon's store: files for one daemon, PostgreSQL for several replicas.
#[derive(Debug, Clone, PartialEq)]
pub enum StateConfig {
    /// `state = "state.json"` and `audit = "audit.jsonl"`: the embedded store.
    Files { state: PathBuf, audit: PathBuf },
    /// `state = "postgres://user@host:port/db"`: versions, rate buckets and the one
    /// audit chain in PostgreSQL, shared by every replica; no `audit` file then.
    Postgres { url: String },
}

impl StateConfig {
    /// Where the audit log is, for messages (a PostgreSQL URL without its password).
    pub fn audit_display(&self) -> String {
        match self {
            StateConfig::Files { audit, .. } => audit.display().to_string(),
            StateConfig::Postgres { url } => crate::pg::redact_url(url),
        }
    }
}

/// Server certificate and key, and the CA that client certificates must chain to.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
    /// Whether a connection must present a client certificate.
    pub client_certificate: ClientCertificate,
}

/// Request limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body accepted; larger ones get 413.
    pub max_body: usize,
    /// Time for the TLS handshake and the request head.
    pub header_timeout: Duration,
    /// Time to receive the whole body once the head arrived.
    pub body_timeout: Duration,
    /// How long a request waits for a free HSM worker before 503.
    pub queue_timeout: Duration,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// Most documents in one `POST /v1/sign-batch`; more get 413 before any signing.
    pub max_batch_documents: usize,
    /// Largest `POST /v1/sign-batch` body; larger ones get 413.
    pub max_batch_body: usize,
    /// Memory for signing requests in flight, across all clients: each holds 12 times
    /// its body (the memory bound: see `body.rs` and docs/signer.md).
    pub body_memory: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body: 1 << 20,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            queue_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(30),
            max_batch_documents: 1024,
            max_batch_body: 4 << 20,
            body_memory: 64 << 20,
        }
    }
}

/// A key the daemon serves.
#[derive(Debug, Clone)]
pub struct KeyConfig {
    pub uri: String,
    /// The config line, for errors found when the key is opened.
    pub line: usize,
    /// Roles this key may ever sign, whoever asks (`None`: any the client may).
    pub roles: Option<Vec<String>>,
}

impl KeyConfig {
    /// Names, `*` or globs, as a client's `roles` ([`super::policy::role_matches`]).
    pub fn allows_role(&self, r: &str) -> bool {
        self.roles
            .as_ref()
            .is_none_or(|l| l.iter().any(|x| super::policy::role_matches(x, r)))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Spanned<String>,
    tls: Spanned<RawTls>,
    state: Spanned<String>,
    #[serde(default)]
    audit: Option<Spanned<String>>,
    #[serde(default)]
    workers: Option<Spanned<i64>>,
    #[serde(default)]
    limits: Option<RawLimits>,
    #[serde(default)]
    keys: Vec<Spanned<RawKey>>,
    #[serde(default)]
    clients: Vec<Spanned<super::policy::RawClient>>,
    #[serde(default)]
    oidc: Option<oidc::RawOidc>,
    #[serde(default)]
    listeners: Vec<Spanned<super::listeners::RawListener>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Spanned<String>,
    key: Spanned<String>,
    client_ca: Spanned<String>,
    #[serde(default)]
    client_certificate: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_body: Option<Spanned<String>>,
    header_timeout: Option<Spanned<String>>,
    body_timeout: Option<Spanned<String>>,
    queue_timeout: Option<Spanned<String>>,
    shutdown_grace: Option<Spanned<String>>,
    max_batch_documents: Option<Spanned<i64>>,
    max_batch_body: Option<Spanned<String>>,
    body_memory: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    uri: Spanned<String>,
    #[serde(default)]
    roles: Option<Spanned<Vec<String>>>,
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.into(),
            line: 0,
            reason: format!("cannot read the config: {e}"),
        })?;
        Config::parse(path, &text)
    }

    /// Parses config text; `path` names it in errors and anchors relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let err = |offset: usize, reason: String| ConfigError {
            path: path.into(),
            line: line_of(offset),
            reason,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            err(offset, e.message().trim().to_string())
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let file = |s: &Spanned<String>| -> Result<PathBuf, ConfigError> {
            if s.get_ref().is_empty() {
                return Err(err(s.span().start, "empty path".into()));
            }
            Ok(base.join(s.get_ref()))
        };
        let existing = |s: &Spanned<String>, what: &str| -> Result<PathBuf, ConfigError> {
            let p = file(s)?;
            if !p.is_file() {
                return Err(err(
                    s.span().start,
                    format!("{what} {} does not exist or is not a file", p.display()),
                ));
            }
            Ok(p)
        };

        let listen = raw.listen.get_ref().parse::<SocketAddr>().map_err(|e| {
            err(
                raw.listen.span().start,
                format!(
                    "listen = \"{}\" is not an address:port such as 127.0.0.1:7443 ({e})",
                    raw.listen.get_ref()
                ),
            )
        })?;
        let tls = raw.tls.get_ref();
        let client_certificate = match &tls.client_certificate {
            None => ClientCertificate::Required,
            Some(s) => ClientCertificate::parse(s).map_err(|(at, why)| err(at, why))?,
        };
        let listeners =
            super::listeners::parse(&raw.listeners, listen).map_err(|(at, why)| err(at, why))?;
        let tls = TlsConfig {
            cert: existing(&tls.cert, "server certificate")?,
            key: existing(&tls.key, "server key")?,
            client_ca: existing(&tls.client_ca, "client CA")?,
            client_certificate,
        };
        let reader = oidc::Reader {
            base,
            line_of: &line_of,
            duration: parse_duration,
        };
        let oidc_cfg =
            oidc::issuers(raw.oidc.as_ref(), &reader).map_err(|(at, why)| err(at, why))?;
        let state = if crate::pg::is_postgres_url(raw.state.get_ref()) {
            // Certificate paths in the URL are relative to this file, like every path here.
            let url = crate::pg::tls::anchor_paths(raw.state.get_ref(), base);
            crate::pg::parse_url(&url).map_err(|reason| err(raw.state.span().start, reason))?;
            if let Some(a) = &raw.audit {
                return Err(err(
                    a.span().start,
                    "with state = \"postgres://…\" the audit log is kept in PostgreSQL too (one chain for every replica); remove `audit`".into(),
                ));
            }
            StateConfig::Postgres { url }
        } else {
            let Some(raw_audit) = &raw.audit else {
                return Err(err(
                    raw.state.span().start,
                    "missing `audit`: give the audit log's file (or a postgres:// URL as `state` for replicas)".into(),
                ));
            };
            let state = file(&raw.state)?;
            let audit = file(raw_audit)?;
            for (s, p) in [(&raw.state, &state), (raw_audit, &audit)] {
                let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
                if let Some(d) = dir {
                    if !d.is_dir() {
                        return Err(err(
                            s.span().start,
                            format!("folder {} does not exist", d.display()),
                        ));
                    }
                }
            }
            if state == audit {
                return Err(err(
                    raw_audit.span().start,
                    "state and audit must be different files".into(),
                ));
            }
            StateConfig::Files { state, audit }
        };
        let workers = match &raw.workers {
            // Twice the CPUs (at least 4): an HSM call spends much of its time off the
            // CPU (the module's file checks and locks, a network HSM's round trip), so
            // one worker per CPU leaves CPUs idle (docs/performance.md measured ×1.2).
            None => std::thread::available_parallelism()
                .map(|n| (2 * n.get()).max(4))
                .unwrap_or(4),
            Some(w) => match *w.get_ref() {
                n @ 1..=256 => n as usize,
                n => {
                    return Err(err(
                        w.span().start,
                        format!("workers = {n}: give 1 to 256 concurrent HSM calls"),
                    ))
                }
            },
        };
        let mut limits = Limits::default();
        if let Some(l) = &raw.limits {
            if let Some(s) = &l.max_body {
                limits.max_body =
                    parse_size(s.get_ref())
                        .filter(|n| *n >= 1024)
                        .ok_or_else(|| {
                            err(
                                s.span().start,
                                format!(
                                "max_body = \"{}\": give a size of at least 1KiB such as \"1MiB\"",
                                s.get_ref()
                            ),
                            )
                        })?;
            }
            for (field, slot, least) in [
                (&l.max_batch_body, &mut limits.max_batch_body, 1024),
                (&l.body_memory, &mut limits.body_memory, 64 << 10),
            ] {
                if let Some(s) = field {
                    *slot = parse_size(s.get_ref())
                        .filter(|n| *n >= least)
                        .ok_or_else(|| {
                            err(
                                s.span().start,
                                format!(
                                    "\"{}\": give a size of at least {least} bytes such as \"16MiB\"",
                                    s.get_ref()
                                ),
                            )
                        })?;
                }
            }
            if let Some(docs) = &l.max_batch_documents {
                limits.max_batch_documents = match *docs.get_ref() {
                    n @ 1..=100_000 => n as usize,
                    n => {
                        return Err(err(
                            docs.span().start,
                            format!("max_batch_documents = {n}: give 1 to 100000 documents"),
                        ))
                    }
                };
            }
            let biggest = limits.max_body.max(limits.max_batch_body);
            if limits.body_memory < biggest {
                let at = [&l.body_memory, &l.max_batch_body, &l.max_body]
                    .into_iter()
                    .find_map(|s| s.as_ref())
                    .map_or(0, |s| s.span().start);
                return Err(err(
                    at,
                    format!(
                        "body_memory ({} bytes) must be at least max_body and max_batch_body ({biggest} bytes): one request must fit",
                        limits.body_memory
                    ),
                ));
            }
            for (field, slot) in [
                (&l.header_timeout, &mut limits.header_timeout),
                (&l.body_timeout, &mut limits.body_timeout),
                (&l.queue_timeout, &mut limits.queue_timeout),
                (&l.shutdown_grace, &mut limits.shutdown_grace),
            ] {
                if let Some(s) = field {
                    *slot = parse_duration(s.get_ref())
                        .filter(|d| !d.is_zero())
                        .ok_or_else(|| {
                            err(
                                s.span().start,
                                format!(
                                    "\"{}\" is not a duration such as \"10s\", \"5m\", \"12h\" or \"30d\"",
                                    s.get_ref()
                                ),
                            )
                        })?;
                }
            }
        }

        let mut keys = Vec::new();
        for k in &raw.keys {
            let uri = k.get_ref().uri.get_ref();
            let at = k.get_ref().uri.span().start;
            let parsed = KeyUri::parse(uri).map_err(|e| err(at, e.to_string()))?;
            if let Some(refusal) = parsed.daemon_refusal() {
                return Err(err(at, refusal.to_string()));
            }
            let roles = match &k.get_ref().roles {
                Some(r) if r.get_ref().is_empty() => {
                    return Err(err(
                        r.span().start,
                        "roles must list at least one role (or leave it out)".into(),
                    ))
                }
                Some(r) => {
                    if let Some(why) = r.get_ref().iter().find_map(|p| pattern_problem(p)) {
                        return Err(err(r.span().start, why));
                    }
                    Some(r.get_ref().clone())
                }
                None => None,
            };
            keys.push(KeyConfig {
                uri: uri.clone(),
                line: line_of(at),
                roles,
            });
        }

        let mut clients: Vec<ClientPolicy> = Vec::new();
        for c in &raw.clients {
            let policy = super::policy::parse(c, &oidc_cfg, &line_of, parse_duration)
                .map_err(|(at, why)| err(at, why))?;
            if clients.iter().any(|o| o.identity == policy.identity) {
                let at = c.get_ref().identity_at().unwrap_or(c.span().start);
                return Err(err(
                    at,
                    format!(
                        "identity \"{}\" has two [[clients]] entries; merge them",
                        policy.identity
                    ),
                ));
            }
            clients.push(policy);
        }
        Ok(Config {
            path: path.into(),
            listen,
            listeners,
            tls,
            state,
            workers,
            limits,
            keys,
            clients,
            oidc: oidc_cfg,
        })
    }

    /// Key ids the policy names, for checking against the keys actually served.
    pub fn policy_key_ids(&self) -> BTreeSet<(String, usize)> {
        self.clients
            .iter()
            .flat_map(|c| c.keys.iter().map(move |k| (k.clone(), c.line)))
            .collect()
    }
}

/// `30s`, `5m`, `12h`, `30d`, `2w` (also `min`); a bare number is seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "" | "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86400,
        "w" => 7 * 86400,
        _ => return None,
    };
    n.checked_mul(secs).map(Duration::from_secs)
}

/// `1048576`, `64KiB`, `1MiB` (also `KB`/`MB` as powers of 1000).
pub fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num.parse().ok()?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "KB" => 1000,
        "MB" => 1_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::rate::parse_rate;

    fn setup() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        for f in ["server.pem", "server.key", "ca.pem"] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        let p = dir.path().join("signer.toml");
        (dir, p)
    }

    const GOOD: &str = r#"listen = "127.0.0.1:0"
state = "state.json"
audit = "audit.jsonl"

[tls]
cert = "server.pem"
key = "server.key"
client_ca = "ca.pem"

[limits]
max_body = "64KiB"
header_timeout = "5s"

[[keys]]
uri = "pkcs11:token=online;object=ts?pin-source=file:/run/pin"

[[clients]]
identity = "ci-main"
keys = ["AB0000000000000000000000000000000000000000000000000000000000000f"]
repositories = ["acme"]
roles = ["targets", "timestamp"]
max_expiry = "7d"
rate = "60/min"
"#;

    #[test]
    fn a_good_config_parses() {
        let (_d, p) = setup();
        let c = Config::parse(&p, GOOD).unwrap();
        assert_eq!(c.limits.max_body, 64 * 1024);
        assert_eq!(c.limits.header_timeout, Duration::from_secs(5));
        assert_eq!(c.clients[0].max_expiry, Duration::from_secs(7 * 86400));
        assert_eq!(c.clients[0].keys[0], format!("ab{}f", "0".repeat(61)));
        assert_eq!(c.keys[0].line, 15);
        assert_eq!(c.clients[0].rate.unwrap().count, 60);
    }

    #[test]
    fn errors_name_the_line_and_reason() {
        let (_d, p) = setup();
        let cases = [
            (GOOD.replace("\"7d\"", "\"seven days\""), 22, "max_expiry"),
            (
                GOOD.replace("pin-source=file:/run/pin", "pin-value=1234"),
                15,
                "pin-value",
            ),
            (GOOD.replace("127.0.0.1:0", "localhost"), 1, "address"),
            (GOOD.replace("rate = ", "rat = "), 23, "unknown field"),
            (GOOD.replace("ca.pem", "missing.pem"), 8, "client CA"),
            (GOOD.replace("\"60/min\"", "\"lots\""), 23, "rate"),
            (GOOD.replace("AB000", "XY000"), 19, "key id"),
        ];
        for (text, line, word) in cases {
            let e = Config::parse(&p, &text).unwrap_err();
            assert_eq!(e.line, line, "{e}");
            assert!(e.to_string().contains(word), "{e}");
        }
    }

    #[test]
    fn a_key_the_daemon_cannot_hold_is_refused_at_its_line_with_what_to_use_instead() {
        let (_d, p) = setup();
        let pin = GOOD.replace("pin-source=file:/run/pin", "pin-value=1234");
        let e = Config::parse(&p, &pin).unwrap_err();
        assert_eq!(e.line, 15, "{e}");
        assert!(e.to_string().contains("pin-source=file:/path"), "{e}");
        assert!(!e.to_string().contains("1234"), "{e}");
        let remote = GOOD.replace(
            "pkcs11:token=online;object=ts?pin-source=file:/run/pin",
            &format!("https://signer.example:7443/keys/{}", "ab".repeat(32)),
        );
        let e = Config::parse(&p, &remote).unwrap_err();
        assert_eq!(e.line, 15, "{e}");
        assert!(e.to_string().contains("cannot serve a remote key"), "{e}");
    }

    #[test]
    fn state_is_files_or_one_postgres_url() {
        let (_d, p) = setup();
        let c = Config::parse(&p, GOOD).unwrap();
        assert!(matches!(c.state, StateConfig::Files { .. }));
        let pg = GOOD.replace(
            "state = \"state.json\"\naudit = \"audit.jsonl\"",
            "state = \"postgres://tufkey:pw@127.0.0.1:5432/signer\"",
        );
        let c = Config::parse(&p, &pg).unwrap();
        assert_eq!(
            c.state,
            StateConfig::Postgres {
                url: "postgres://tufkey:pw@127.0.0.1:5432/signer".into()
            }
        );
        assert_eq!(
            c.state.audit_display(),
            "postgres://tufkey:***@127.0.0.1:5432/signer"
        );
        // An audit file next to PostgreSQL would be a second, diverging log.
        let both = GOOD.replace("state.json", "postgres://u@127.0.0.1/signer");
        let e = Config::parse(&p, &both).unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.to_string().contains("remove `audit`"), "{e}");
        let e = Config::parse(&p, &GOOD.replace("audit = \"audit.jsonl\"\n", "")).unwrap_err();
        assert!(e.to_string().contains("missing `audit`"), "{e}");
        let e = Config::parse(&p, &pg.replace(":5432", ":port")).unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(!e.to_string().contains("pw@"), "{e}");
    }

    #[test]
    fn oidc_issuers_and_clients_parse_and_unsafe_entries_are_refused_at_their_line() {
        let (d, p) = setup();
        std::fs::write(d.path().join("jwks.json"), "{}").unwrap();
        let oidc = GOOD.replace(
            "client_ca = \"ca.pem\"\n",
            "client_ca = \"ca.pem\"\nclient_certificate = \"optional\"\n",
        ) + r#"
[[oidc.issuers]]
issuer = "https://token.actions.githubusercontent.com/"
audience = "https://signer.acme.example"
single_use = true

[[clients]]
oidc = { issuer = "https://token.actions.githubusercontent.com", claims = { repository_id = 42, ref = "refs/tags/v*" } }
keys = []
repositories = ["acme"]
roles = ["targets"]
max_expiry = "1d"
"#;
        let c = Config::parse(&p, &oidc).unwrap();
        assert_eq!(c.tls.client_certificate, ClientCertificate::Optional);
        let issuer = &c.oidc.issuers[0];
        assert_eq!(issuer.issuer, "https://token.actions.githubusercontent.com");
        assert!(issuer.single_use && issuer.line == 26);
        assert_eq!(issuer.refetch_interval, Duration::from_secs(60));
        let m = c.clients[1].oidc.as_ref().unwrap();
        assert_eq!(m.claims["repository_id"], "42");
        assert!(c.clients[1].identity.contains("ref=refs/tags/v*"));
        // (the changed config, text on the line the error must name, a word of its reason)
        let cases = [
            (
                oidc.replace("audience = \"https://signer.acme.example\"\n", ""),
                "[[oidc.issuers]]",
                "`audience` is required",
            ),
            (
                oidc.replace("single_use = true", "algorithms = [\"HS256\"]"),
                "algorithms",
                "never accepted",
            ),
            (
                oidc.replace(
                    "claims = { repository_id = 42, ref = \"refs/tags/v*\" }",
                    "claims = { ref = \"*\" }",
                ),
                "claims = {",
                "pin at least one claim",
            ),
            (
                oidc.replace(
                    "issuer = \"https://token.actions.githubusercontent.com\", claims",
                    "issuer = \"https://gitlab.com\", claims",
                ),
                "gitlab",
                "not in [[oidc.issuers]]",
            ),
            (
                oidc.replace(
                    "single_use = true",
                    "jwks_file = \"jwks.json\"\nca = \"ca.pem\"",
                ),
                "ca = \"ca.pem\"\n\n[[clients",
                "remove one",
            ),
            (
                oidc.replace("\"optional\"", "\"sometimes\""),
                "client_certificate",
                "required",
            ),
            (
                oidc.replace(
                    "https://token.actions.githubusercontent.com/\"",
                    "http://issuer\"",
                ),
                "http://issuer",
                "https://",
            ),
        ];
        for (text, needle, word) in cases {
            let e = Config::parse(&p, &text).unwrap_err();
            let line = text[..text.find(needle).unwrap()].matches('\n').count() + 1;
            assert_eq!(e.line, line, "{e}");
            assert!(e.to_string().contains(word), "{e}");
        }
    }

    #[test]
    fn batch_limits_and_the_body_budget_parse_and_one_request_must_fit_the_budget() {
        let (_d, p) = setup();
        let c = Config::parse(&p, GOOD).unwrap();
        assert_eq!(
            (
                c.limits.max_batch_documents,
                c.limits.max_batch_body,
                c.limits.body_memory
            ),
            (1024, 4 << 20, 64 << 20)
        );
        let text = GOOD.replace(
            "header_timeout = \"5s\"",
            "header_timeout = \"5s\"\nmax_batch_documents = 64\nmax_batch_body = \"2MiB\"\nbody_memory = \"8MiB\"",
        );
        let c = Config::parse(&p, &text).unwrap();
        assert_eq!(
            (
                c.limits.max_batch_documents,
                c.limits.max_batch_body,
                c.limits.body_memory
            ),
            (64, 2 << 20, 8 << 20)
        );
        let e = Config::parse(&p, &text.replace("= 64", "= 0")).unwrap_err();
        assert_eq!(e.line, 13, "{e}");
        assert!(e.to_string().contains("max_batch_documents"), "{e}");
        let e = Config::parse(&p, &text.replace("\"8MiB\"", "\"1MiB\"")).unwrap_err();
        assert_eq!(e.line, 15, "{e}");
        assert!(e.to_string().contains("one request must fit"), "{e}");
    }

    #[test]
    fn role_globs_and_expiry_per_role_parse_and_mistakes_are_refused_at_their_line() {
        let (_d, p) = setup();
        let bins = GOOD.replace("\"targets\", \"timestamp\"]", "\"timestamp\", \"bins-*\"]")
            + "role_max_expiry = { \"bins-*\" = \"90d\" }\n";
        let c = Config::parse(&p, &bins).unwrap();
        let client = &c.clients[0];
        assert!(client.allows_role("bins-3ff") && !client.allows_role("targets"));
        assert_eq!(
            client.max_expiry_for("bins-3ff").0,
            Duration::from_secs(90 * 86400)
        );
        assert_eq!(
            client.max_expiry_for("timestamp").0,
            Duration::from_secs(7 * 86400)
        );
        // A glob that would reach a top-level role, at the `roles` line.
        let e = Config::parse(&p, &GOOD.replace("\"timestamp\"]", "\"t*\"]")).unwrap_err();
        assert_eq!(e.line, 21, "{e}");
        assert!(e.to_string().contains("top-level role `targets`"), "{e}");
        // An expiry for a role the client may not sign is a typo, at its line.
        let typo = GOOD.to_string() + "role_max_expiry = { \"bin-*\" = \"90d\" }\n";
        let e = Config::parse(&p, &typo).unwrap_err();
        assert_eq!(e.line, 24, "{e}");
        assert!(e.to_string().contains("does not allow"), "{e}");
        let bad = bins.replace("\"90d\"", "\"ninety\"");
        let e = Config::parse(&p, &bad).unwrap_err();
        assert!(e.to_string().contains("role_max_expiry.\"bins-*\""), "{e}");
    }

    #[test]
    fn units() {
        assert_eq!(parse_duration("90m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1x"), None);
        assert_eq!(parse_size("1MiB"), Some(1 << 20));
        assert!(parse_rate("0/s").is_none());
    }
}
