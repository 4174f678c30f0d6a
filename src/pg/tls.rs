//! TLS to PostgreSQL, configured the way libpq users already write it: `sslmode`,
//! `sslrootcert`, `sslcert` and `sslkey` in the `postgres://` URL.
//!
//! The audit chain and the version claims travel over this connection, so a database
//! reached over a network must be authenticated, not just encrypted. The modes:
//!
//! - `verify-full`: the server's certificate must chain to `sslrootcert` and name the
//!   host of the URL (what `sslmode=verify-full` means in libpq).
//! - `verify-ca`: the certificate must chain to `sslrootcert`; the name is not checked.
//! - `require`: as libpq does when a root certificate is given, this is `verify-ca`.
//!   Without `sslrootcert` libpq would encrypt without authenticating the server;
//!   tufkey refuses that instead (an active attacker could rewrite the audit log).
//! - `disable`, `prefer` or no `sslmode`: no TLS, as before (loopback or unix socket).
//!   `prefer` is not opportunistic TLS here: an unauthenticated fallback protects
//!   nothing that matters for a signer.
//!
//! `sslcert` + `sslkey` add a client certificate (PEM). The tufkey-only parameters are
//! taken out of the URL before tokio-postgres sees it; `sslmode` is passed on as
//! `require` for the verifying modes. SCRAM channel binding is not offered (the
//! server is authenticated by its certificate already).

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

use crate::pem::{load_certs, load_key};

/// How the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Chain to the root and the URL's host name.
    Full,
    /// Chain to the root only.
    Ca,
}

/// The TLS part of a connection URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsParams {
    pub verify: Verify,
    pub root_cert: PathBuf,
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// A URL split into what tokio-postgres parses and the TLS settings tufkey applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitUrl {
    /// The URL without `sslrootcert`, `sslcert` and `sslkey`, and with a verifying
    /// `sslmode` replaced by `require`.
    pub driver_url: String,
    pub tls: Option<TlsParams>,
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent-encoding in {s:?}"))?;
                out.push(hex);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 after percent-decoding"))
}

/// Takes the TLS parameters out of a `postgres://` URL. Errors never contain the
/// password (they name parameters, not the URL).
pub fn split_url(url: &str) -> Result<SplitUrl, String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok(SplitUrl {
            driver_url: url.to_string(),
            tls: None,
        });
    };
    let mut kept = Vec::new();
    let (mut mode, mut root, mut cert, mut key) = (None, None, None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "sslmode" => mode = Some(percent_decode(v)?),
            "sslrootcert" => root = Some(PathBuf::from(percent_decode(v)?)),
            "sslcert" => cert = Some(PathBuf::from(percent_decode(v)?)),
            "sslkey" => key = Some(PathBuf::from(percent_decode(v)?)),
            _ => kept.push(pair),
        }
    }
    let verify = match mode.as_deref() {
        None | Some("disable") | Some("prefer") | Some("allow") => None,
        Some("verify-full") => Some(Verify::Full),
        Some("verify-ca") | Some("require") => Some(Verify::Ca),
        Some(other) => {
            return Err(format!(
                "sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"
            ))
        }
    };
    let tls = match verify {
        None => {
            if root.is_some() || cert.is_some() || key.is_some() {
                return Err(format!(
                    "sslrootcert/sslcert/sslkey are given but sslmode is {}: set sslmode=verify-full to use TLS",
                    mode.as_deref().unwrap_or("not set")
                ));
            }
            if let Some(m) = &mode {
                kept.push(if m == "disable" {
                    "sslmode=disable"
                } else {
                    "sslmode=prefer"
                });
            }
            None
        }
        Some(verify) => {
            let root_cert = root.ok_or_else(|| {
                format!(
                    "sslmode={} needs sslrootcert=<CA file>: tufkey does not talk to a database it cannot authenticate",
                    mode.as_deref().unwrap_or_default()
                )
            })?;
            let client_cert = match (cert, key) {
                (Some(c), Some(k)) => Some((c, k)),
                (None, None) => None,
                _ => return Err("sslcert and sslkey must be given together".into()),
            };
            kept.push("sslmode=require");
            Some(TlsParams {
                verify,
                root_cert,
                client_cert,
            })
        }
    };
    let driver_url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok(SplitUrl { driver_url, tls })
}

fn percent_encode_path(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for b in p.bytes() {
        match b {
            b'%' | b'&' | b'#' | b'?' | b'=' | b'+' | b' ' | 0x80.. => {
                out.push_str(&format!("%{b:02X}"))
            }
            _ => out.push(b as char),
        }
    }
    out
}

/// The URL with relative `sslrootcert`, `sslcert` and `sslkey` paths made absolute
/// against `base` (a config file's folder), so a daemon started from any working
/// directory reads the files `--check` read. Other parameters are left as written.
pub fn anchor_paths(url: &str, base: &Path) -> String {
    let Some((head, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if matches!(k, "sslrootcert" | "sslcert" | "sslkey") => {
                match percent_decode(v) {
                    Ok(path) if Path::new(&path).is_relative() => {
                        let abs = base.join(path);
                        format!("{k}={}", percent_encode_path(&abs.to_string_lossy()))
                    }
                    _ => pair.to_string(),
                }
            }
            _ => pair.to_string(),
        })
        .collect();
    format!("{head}?{}", pairs.join("&"))
}

/// Accepts a certificate that chains to the roots whatever name it carries: libpq's
/// `verify-ca`. Every other check (chain, validity, key usage, signatures) stays.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                ..
            })) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> String {
    format!("{}: {e}", path.display())
}

/// The rustls client configuration for these parameters; reads the files now, so a
/// missing or bad file stops the daemon at start with its name.
pub fn client_config(p: &TlsParams) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for c in load_certs(&p.root_cert)? {
        roots.add(c).map_err(|e| file_err(&p.root_cert, e))?;
    }
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| file_err(&p.root_cert, e))?;
    let verifier: Arc<dyn ServerCertVerifier> = match p.verify {
        Verify::Full => webpki,
        Verify::Ca => Arc::new(ChainOnly(webpki)),
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match &p.client_cert {
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| file_err(key, e))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// tokio-postgres' TLS hook, backed by tokio-rustls.
#[derive(Clone)]
pub struct RustlsConnect(pub Arc<ClientConfig>);

/// One handshake for one host.
pub struct RustlsHandshake {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

/// The TLS stream handed to tokio-postgres.
pub struct RustlsStream<S>(Box<tokio_rustls::client::TlsStream<S>>);

impl<S> MakeTlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsHandshake;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsHandshake, io::Error> {
        let name = ServerName::try_from(domain.to_string()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{domain:?} is not a host name or address TLS can check"),
            )
        })?;
        Ok(RustlsHandshake {
            config: self.0.clone(),
            name,
        })
    }
}

impl<S> TlsConnect<S> for RustlsHandshake
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config);
        Box::pin(async move {
            let s = connector.connect(self.name, stream).await?;
            Ok(RustlsStream(Box::new(s)))
        })
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_urls_pass_through() {
        let s = split_url("postgres://u:pw@127.0.0.1:5432/db").unwrap();
        assert_eq!(s.driver_url, "postgres://u:pw@127.0.0.1:5432/db");
        assert_eq!(s.tls, None);
        let s = split_url("postgres://h/db?connect_timeout=3&sslmode=disable").unwrap();
        assert_eq!(
            s.driver_url,
            "postgres://h/db?connect_timeout=3&sslmode=disable"
        );
        assert_eq!(s.tls, None);
    }

    #[test]
    fn verifying_modes_are_taken_out_and_become_require() {
        let s = split_url(
            "postgres://h:5/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=2",
        )
        .unwrap();
        assert_eq!(
            s.driver_url,
            "postgres://h:5/db?connect_timeout=2&sslmode=require"
        );
        let tls = s.tls.unwrap();
        assert_eq!(tls.verify, Verify::Full);
        assert_eq!(tls.root_cert, PathBuf::from("/etc/ca.pem"));
        assert_eq!(tls.client_cert, None);
        let s = split_url("postgres://h/db?sslmode=require&sslrootcert=ca.pem&sslcert=c&sslkey=k")
            .unwrap();
        let tls = s.tls.unwrap();
        assert_eq!(tls.verify, Verify::Ca);
        assert_eq!(
            tls.client_cert,
            Some((PathBuf::from("c"), PathBuf::from("k")))
        );
    }

    #[test]
    fn relative_certificate_paths_are_anchored_to_the_config_folder() {
        let url = anchor_paths(
            "postgres://h/db?sslmode=verify-full&sslrootcert=ca%20dir/ca.pem&sslcert=%2Fabs%2Fc.pem&sslkey=k.pem&x=y",
            Path::new("/etc/tufkey"),
        );
        assert_eq!(
            url,
            "postgres://h/db?sslmode=verify-full&sslrootcert=/etc/tufkey/ca%20dir/ca.pem&sslcert=%2Fabs%2Fc.pem&sslkey=/etc/tufkey/k.pem&x=y"
        );
        let tls = split_url(&url).unwrap().tls.unwrap();
        assert_eq!(tls.root_cert, PathBuf::from("/etc/tufkey/ca dir/ca.pem"));
        assert_eq!(
            tls.client_cert,
            Some((
                PathBuf::from("/abs/c.pem"),
                PathBuf::from("/etc/tufkey/k.pem")
            ))
        );
        assert_eq!(
            anchor_paths("postgres://h/db", Path::new("/x")),
            "postgres://h/db"
        );
    }

    #[test]
    fn unauthenticated_or_half_configured_tls_is_refused() {
        let e = split_url("postgres://u:secret@h/db?sslmode=require").unwrap_err();
        assert!(e.contains("needs sslrootcert"), "{e}");
        assert!(!e.contains("secret"));
        let e =
            split_url("postgres://h/db?sslmode=verify-full&sslrootcert=a&sslcert=c").unwrap_err();
        assert!(e.contains("together"), "{e}");
        let e = split_url("postgres://h/db?sslrootcert=a").unwrap_err();
        assert!(e.contains("sslmode=verify-full"), "{e}");
        let e = split_url("postgres://h/db?sslmode=verify-everything").unwrap_err();
        assert!(e.contains("verify-everything"), "{e}");
        assert!(split_url("postgres://h/db?sslmode=verify-full&sslrootcert=%zz").is_err());
    }
}
