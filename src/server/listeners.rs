//! Where the daemon listens and whether each listener wants a client certificate:
//! `listen` with `[tls] client_certificate`, plus any `[[listeners]]` — say mutual TLS
//! only for people and scripts on one port, and OIDC tokens without a certificate for
//! CI on another. A leaf: `server::config` reads these parts through it.

use std::net::SocketAddr;

use serde::Deserialize;
use toml::Spanned;

/// Whether a connection must present a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCertificate {
    /// Mutual TLS for everyone (the default), OIDC clients included.
    Required,
    /// A client without a certificate gets in, and each of its requests must carry an
    /// OIDC bearer token.
    Optional,
}

impl ClientCertificate {
    /// `"required"` or `"optional"` at byte offset `at`.
    pub fn parse(s: &Spanned<String>) -> Result<ClientCertificate, (usize, String)> {
        match s.get_ref().as_str() {
            "required" => Ok(ClientCertificate::Required),
            "optional" => Ok(ClientCertificate::Optional),
            other => Err((
                s.span().start,
                format!("client_certificate = \"{other}\": give \"required\" or \"optional\" (OIDC clients without a certificate)"),
            )),
        }
    }
}

/// `[[listeners]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    listen: Spanned<String>,
    client_certificate: Spanned<String>,
}

/// A listener besides `listen`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub addr: SocketAddr,
    pub client_certificate: ClientCertificate,
}

/// Reads `[[listeners]]`; none may repeat `primary` or another's address.
pub fn parse(
    raw: &[Spanned<RawListener>],
    primary: SocketAddr,
) -> Result<Vec<Listener>, (usize, String)> {
    let mut out: Vec<Listener> = Vec::new();
    for l in raw {
        let l = l.get_ref();
        let at = l.listen.span().start;
        let addr: SocketAddr = l.listen.get_ref().parse().map_err(|e| {
            (
                at,
                format!(
                    "listen = \"{}\" is not an address:port such as 0.0.0.0:7444 ({e})",
                    l.listen.get_ref()
                ),
            )
        })?;
        if (addr == primary && addr.port() != 0)
            || out.iter().any(|o| o.addr == addr && addr.port() != 0)
        {
            return Err((at, format!("{addr} is listened on twice")));
        }
        out.push(Listener {
            addr,
            client_certificate: ClientCertificate::parse(&l.client_certificate)?,
        });
    }
    Ok(out)
}
