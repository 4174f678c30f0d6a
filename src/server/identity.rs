//! Who a request proved to be — by client certificate or by OIDC token — as the one
//! type every endpoint uses: which `[[clients]]` policy applies, the name the audit log
//! records, and the refusal when there is none.
//!
//! A bearer token, when a request carries one, decides the identity: the certificate
//! (if the listener asked for one) has then only admitted the connection. Certificate
//! names only match entries without `oidc`, and tokens only entries with it, so a
//! certificate whose CN equals an OIDC entry's label gets nothing.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::config::ClientPolicy;
use super::oidc::config::MAX_TOKEN_BYTES;
use super::oidc::{claims, AuthError, AuthFailure, Oidc, Verified};
use crate::audit::Event;

/// Who is on the other end of a connection: the client certificate's names (subject
/// CN first, then SANs), `None` when it presented none.
pub struct Connection {
    pub certificate: Option<Vec<String>>,
    pub peer: SocketAddr,
}

/// One request's caller, as every endpoint sees it.
pub struct ConnInfo {
    pub identity: Identity,
    pub peer: SocketAddr,
}

impl ConnInfo {
    /// Authenticates one request on connection `c` (see [`authenticate`]).
    pub async fn authenticate(
        oidc: Option<&Oidc>,
        headers: &hyper::HeaderMap,
        c: &Connection,
    ) -> ConnInfo {
        ConnInfo {
            identity: authenticate(oidc, headers, c.certificate.as_deref()).await,
            peer: c.peer,
        }
    }

    /// The audit event of `action` by this caller from its peer.
    pub fn event(&self, clients: &[ClientPolicy], action: &str) -> Event {
        Event {
            peer: Some(self.peer.to_string()),
            ..self.identity.event(clients, action)
        }
    }

    /// Uses up a single-use token (signing requests do; reading keys does not).
    pub async fn use_once(&self, oidc: Option<&Oidc>) -> Result<(), Denied> {
        match (&self.identity, oidc) {
            (Identity::Token(t), Some(oidc)) => {
                oidc.use_once(t).await.map_err(|f| Denied::from(&f))
            }
            _ => Ok(()),
        }
    }

    /// Whether this caller's token issuer wants a fresh token for every request, so
    /// the client knows to fetch one each time.
    pub fn single_use_token(&self, oidc: Option<&Oidc>) -> bool {
        match (&self.identity, oidc) {
            (Identity::Token(t), Some(oidc)) => oidc.single_use(&t.issuer),
            _ => false,
        }
    }
}

/// How a request authenticated.
#[derive(Debug, Clone)]
pub enum Identity {
    /// The names of a client certificate that chains to the client CA: subject CN
    /// first, then DNS, URI and e-mail SANs.
    Certificate(Vec<String>),
    /// A verified OIDC token.
    Token(Verified),
    /// A bearer token that was refused, or no credential at all.
    Refused(AuthFailure),
}

/// Why an identity may not use the API.
#[derive(Debug, Clone)]
pub struct Denied {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl From<&AuthFailure> for Denied {
    fn from(f: &AuthFailure) -> Denied {
        Denied {
            status: f.error.status(),
            code: f.error.code(),
            message: f.error.to_string(),
            retry_after: f.error.retry_after(),
        }
    }
}

impl Identity {
    /// The policy entry that applies, and for a token the claims it matched by.
    pub fn policy<'a>(
        &self,
        clients: &'a [ClientPolicy],
    ) -> Option<(&'a ClientPolicy, BTreeMap<String, String>)> {
        match self {
            Identity::Certificate(names) => names.iter().find_map(|n| {
                clients
                    .iter()
                    .find(|c| c.oidc.is_none() && &c.identity == n)
                    .map(|c| (c, BTreeMap::new()))
            }),
            Identity::Token(t) => clients.iter().find_map(|c| {
                let m = c.oidc.as_ref()?;
                claims::matches(m, &t.issuer, &t.claims).map(|matched| (c, matched))
            }),
            Identity::Refused(_) => None,
        }
    }

    /// The policy, or why the request is refused (401/503 for a token that did not
    /// verify, 403 `no-policy` for an identity no entry names).
    pub fn authorize<'a>(&self, clients: &'a [ClientPolicy]) -> Result<&'a ClientPolicy, Denied> {
        if let Some((p, _)) = self.policy(clients) {
            return Ok(p);
        }
        let no_policy = |message: String| Denied {
            status: 403,
            code: "no-policy",
            message,
            retry_after: None,
        };
        Err(match self {
            Identity::Refused(f) => Denied::from(f),
            Identity::Certificate(names) => no_policy(format!(
                "the client certificate ({}) matches no [[clients]] identity in the signer's policy",
                if names.is_empty() { "no names".to_string() } else { names.join(", ") }
            )),
            Identity::Token(t) => {
                let seen = claims::looked_at(clients.iter().filter_map(|c| c.oidc.as_ref()), &t.issuer, &t.claims);
                no_policy(format!(
                    "the token of issuer {} (subject {}) matches no [[clients]] oidc entry; its claims: {}",
                    t.issuer,
                    t.subject.as_deref().unwrap_or("-"),
                    if seen.is_empty() {
                        "none that an entry names".to_string()
                    } else {
                        seen.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
                    }
                ))
            }
        })
    }

    /// The name audit entries give: the policy entry's identity when one applies,
    /// else the certificate's first name or the verified token's subject, else `-`
    /// (a refused token proved nothing: what it claimed is in `issuer`/`subject`).
    pub fn who(&self, clients: &[ClientPolicy]) -> String {
        if let Some((p, _)) = self.policy(clients) {
            return p.identity.clone();
        }
        match self {
            Identity::Certificate(names) => names.first().cloned(),
            Identity::Token(t) => t.subject.clone(),
            Identity::Refused(_) => None,
        }
        .unwrap_or_else(|| "-".into())
    }

    /// An audit event for `action` by this identity: who, and for tokens the issuer,
    /// subject and the claims the policy matched (or, with no match, the claims the
    /// issuer's entries look at; for a refused token, what it claimed).
    pub fn event(&self, clients: &[ClientPolicy], action: &str) -> Event {
        let mut ev = Event {
            who: self.who(clients),
            action: action.into(),
            ..Default::default()
        };
        match self {
            Identity::Certificate(_) => {}
            Identity::Token(t) => {
                ev.issuer = Some(t.issuer.clone());
                ev.subject = t.subject.clone();
                let matched = match self.policy(clients) {
                    Some((_, m)) => m,
                    None => claims::looked_at(
                        clients.iter().filter_map(|c| c.oidc.as_ref()),
                        &t.issuer,
                        &t.claims,
                    ),
                };
                ev.claims = (!matched.is_empty()).then_some(matched);
            }
            Identity::Refused(f) => {
                ev.issuer = f.issuer.clone();
                ev.subject = f.subject.clone();
            }
        }
        ev
    }
}

/// The identity of one request: its bearer token when it has one and the signer trusts
/// OIDC issuers, else the connection's client certificate (`certificate`: its names,
/// `None` when the client presented none).
pub async fn authenticate(
    oidc: Option<&Oidc>,
    headers: &hyper::HeaderMap,
    certificate: Option<&[String]>,
) -> Identity {
    let refused = |e: AuthError| Identity::Refused(e.into());
    let token = match bearer(headers) {
        Ok(t) => t,
        Err(e) => return refused(e),
    };
    match (token, oidc, certificate) {
        (Some(t), Some(oidc), _) => match oidc.verify(t).await {
            Ok(v) => Identity::Token(v),
            Err(f) => Identity::Refused(f),
        },
        // A signer without issuers keeps serving its certificate clients as before,
        // whatever else their requests carry.
        (_, _, Some(names)) => Identity::Certificate(names.to_vec()),
        (Some(_), None, None) => refused(AuthError::Malformed(
            "this signer trusts no OIDC issuer; present a client certificate".into(),
        )),
        (None, _, None) => refused(AuthError::NoCredentials),
    }
}

/// The token of an `Authorization: Bearer …` header, if there is one.
fn bearer(headers: &hyper::HeaderMap) -> Result<Option<&str>, AuthError> {
    let Some(v) = headers.get(hyper::header::AUTHORIZATION) else {
        return Ok(None);
    };
    if v.len() > MAX_TOKEN_BYTES + 16 {
        return Err(AuthError::TooLarge(v.len()));
    }
    let v = v
        .to_str()
        .map_err(|_| AuthError::Malformed("the Authorization header is not ASCII".into()))?;
    let (scheme, token) = v.split_once(' ').unwrap_or((v, ""));
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::Malformed(
            "the Authorization header must be `Bearer <token>`".into(),
        ));
    }
    Ok(Some(token.trim()))
}
