//! TLS for the daemon: rustls (ring provider), TLS 1.3 and 1.2, a client certificate
//! from the configured CA (required, or optional for OIDC clients), and the client
//! identity read from it.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use x509_cert::der::oid::db::rfc4519::CN;
use x509_cert::der::Decode;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;

use super::config::ClientCertificate;
use super::error::ServerError;

fn tls_err(path: &Path, reason: impl std::fmt::Display) -> ServerError {
    ServerError::Tls(format!("{}: {reason}", path.display()))
}

/// Every certificate in a PEM file, as a TLS setup error naming the file.
fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ServerError> {
    crate::pem::load_certs(path).map_err(ServerError::Tls)
}

/// The private key in a PEM file (PKCS#8, SEC1 or PKCS#1).
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, ServerError> {
    crate::pem::load_key(path).map_err(ServerError::Tls)
}

/// The server's rustls configuration. A client certificate, when presented, must
/// chain to `client_ca` and be valid now. With `client_certificate = "required"`
/// nothing else gets an HTTP request through; with `"optional"` a connection without
/// one is let in, and each request must then carry an OIDC bearer token.
pub fn server_config(cfg: &super::config::TlsConfig) -> Result<Arc<ServerConfig>, ServerError> {
    server_config_for(cfg, cfg.client_certificate)
}

/// As [`server_config`], with this listener's own client-certificate choice.
pub fn server_config_for(
    cfg: &super::config::TlsConfig,
    client_certificate: ClientCertificate,
) -> Result<Arc<ServerConfig>, ServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for c in load_certs(&cfg.client_ca)? {
        roots.add(c).map_err(|e| tls_err(&cfg.client_ca, e))?;
    }
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    if client_certificate == ClientCertificate::Optional {
        builder = builder.allow_unauthenticated();
    }
    let verifier = builder.build().map_err(|e| tls_err(&cfg.client_ca, e))?;
    let mut sc = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(&cfg.cert)?, load_key(&cfg.key)?)
        .map_err(|e| tls_err(&cfg.key, e))?;
    sc.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(sc))
}

/// The names a client certificate proves: its subject CN, then its DNS, URI and
/// e-mail SANs. The policy entry for the first name that has one applies.
pub fn identities(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok(cert) = x509_cert::Certificate::from_der(cert.as_ref()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for rdn in cert.tbs_certificate.subject.0.iter() {
        for atv in rdn.0.iter() {
            if atv.oid == CN {
                // UTF8String, PrintableString and IA5String all carry the text as is.
                if let Ok(s) = std::str::from_utf8(atv.value.value()) {
                    out.push(s.to_string());
                }
            }
        }
    }
    for ext in cert.tbs_certificate.extensions.iter().flatten() {
        if ext.extn_id != x509_cert::der::oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME {
            continue;
        }
        if let Ok(san) = SubjectAltName::from_der(ext.extn_value.as_bytes()) {
            for name in san.0 {
                match name {
                    GeneralName::DnsName(s) => out.push(s.to_string()),
                    GeneralName::UniformResourceIdentifier(s) => out.push(s.to_string()),
                    GeneralName::Rfc822Name(s) => out.push(s.to_string()),
                    _ => {}
                }
            }
        }
    }
    out
}
