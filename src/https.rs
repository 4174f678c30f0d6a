//! One small HTTPS GET with hard limits, for the two places tufkey fetches from the
//! outside world: the daemon's OIDC discovery and JWKS (`server::oidc`), and the
//! remote-key client's CI token request (`keys::remote::token`). A leaf: it knows
//! rustls and hyper, nothing of ours.
//!
//! Every fetch is bounded three ways — a deadline for the whole exchange (connect,
//! handshake, head and body), a cap on the body's size, and no redirects — because the
//! other end is not trusted to be quick, small or well-behaved: a hanging or huge
//! answer must cost one request its deadline, never the daemon its memory.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};

/// Why a fetch failed; the message names the URL.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{url}: {reason}")]
pub struct FetchError {
    pub url: String,
    pub reason: String,
}

/// Limits of one fetch.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The whole exchange, connection included.
    pub timeout: Duration,
    /// The largest body accepted.
    pub max_bytes: usize,
}

/// The roots a fetch trusts: the configured CA file alone when one is given (a private
/// issuer, a GitHub Enterprise Server), else the operating system's roots.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            for c in crate::pem::load_certs(path)? {
                roots
                    .add(c)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                // A system store with one odd certificate still has the others.
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err(format!(
                    "no system CA certificates found ({}); install ca-certificates or configure a CA file",
                    found
                        .errors
                        .first()
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| "the store is empty".into())
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// An `https://host[:port]/path?query` split for connecting.
struct Target {
    host: String,
    port: u16,
    authority: String,
    path: String,
}

fn split(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or("only https:// URLs are fetched")?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err("expected https://host[:port]/path".into());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or("unclosed [ in the host")?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().map_err(|_| format!("bad port {p:?}"))?,
        None => 443,
    };
    Ok(Target {
        host: host.to_string(),
        port,
        authority: authority.to_string(),
        path,
    })
}

/// `GET url` with `headers`; the body of a 200 answer, or why not.
pub async fn get(
    url: &str,
    tls: Arc<ClientConfig>,
    headers: &[(&str, &str)],
    limits: Limits,
) -> Result<Bytes, FetchError> {
    let fail = |reason: String| FetchError {
        url: url.to_string(),
        reason,
    };
    let exchange = async {
        let t = split(url).map_err(&fail)?;
        let name = ServerName::try_from(t.host.clone()).map_err(|e| fail(e.to_string()))?;
        let tcp = tokio::net::TcpStream::connect((t.host.as_str(), t.port))
            .await
            .map_err(|e| fail(format!("cannot connect: {e}")))?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| fail(format!("TLS: {e}")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| fail(e.to_string()))?;
        let driver = tokio::spawn(conn);
        let mut req = hyper::Request::get(t.path.as_str())
            .header(hyper::header::HOST, t.authority.as_str())
            .header(hyper::header::ACCEPT, "application/json")
            .header(hyper::header::USER_AGENT, "tufkey");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| fail(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), limits.max_bytes)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    fail(format!(
                        "the answer is larger than {} bytes",
                        limits.max_bytes
                    ))
                } else {
                    fail(e.to_string())
                }
            })?
            .to_bytes();
        driver.abort();
        if status != hyper::StatusCode::OK {
            // Redirects are not followed: an issuer's documents are at fixed URLs.
            return Err(fail(format!("answered {status}")));
        }
        Ok(body)
    };
    tokio::time::timeout(limits.timeout, exchange)
        .await
        .map_err(|_| fail(format!("no whole answer within {:?}", limits.timeout)))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_port_and_path() {
        let t = split("https://token.actions.githubusercontent.com/.well-known/jwks").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            (
                "token.actions.githubusercontent.com",
                443,
                "/.well-known/jwks"
            )
        );
        let t = split("https://127.0.0.1:8443?audience=x").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 8443, "/?audience=x")
        );
        let t = split("https://[::1]:9000/a").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9000));
        assert!(split("http://example.com/").is_err());
        assert!(split("https://user@example.com/").is_err());
        assert!(split("https://example.com:port/").is_err());
    }
}
