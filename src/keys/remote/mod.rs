//! Keys held by a remote `tufkey serve` (`https://host:port/keys/<keyid>`).
//!
//! The client authenticates with a certificate and key and trusts one CA, all from the
//! environment: `TUFKEY_REMOTE_CERT`, `TUFKEY_REMOTE_KEY`, `TUFKEY_REMOTE_CA`
//! (PEM files). It is blocking (a current-thread runtime per client), as the
//! [`Signer`] trait is.
//!
//! **What is sent.** The signer signs TUF metadata, not bytes: it parses the document,
//! checks role, version and expiry, and computes the canonical payload itself. The
//! [`Signer::sign`] seam hands over the canonical bytes of `signed`; since canonical
//! JSON parses back to exactly the value it was made from, [`RemoteSigner::sign`]
//! parses those bytes, checks that they re-canonicalise to the same bytes, and posts
//! `{"signed": <that>, "signatures": []}`. The daemon answers with the SHA-256 of the
//! payload it signed, which must equal the hash of the bytes we were asked to sign,
//! and `keys::sign_checked` then verifies the signature locally. The repository is
//! `TUFKEY_REMOTE_REPOSITORY` (optional when the client's policy names only one). The
//! role is the one the caller names through [`Signer::sign_roles_with`] (each hashed
//! bin as itself); otherwise `TUFKEY_REMOTE_ROLE` (a single delegated file for
//! `tufkey sign`), else `_type`.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

mod batch;
pub mod config;
pub mod error;
pub mod limits;
pub mod token;

pub use error::RemoteError;
pub use token::TokenSource;

use self::config::SignerEntry;
use self::limits::BatchLimits;
use crate::keys::error::KeyError;
use crate::keys::signer::{Done, RoleMessage, Signer};
use crate::keys::uri::RemoteUri;
use crate::tuf::cjson::to_canonical;
use crate::tuf::{Key, PublicKey};

/// Environment variables naming the client's TLS material.
pub const ENV_CERT: &str = "TUFKEY_REMOTE_CERT";
pub const ENV_KEY: &str = "TUFKEY_REMOTE_KEY";
pub const ENV_CA: &str = "TUFKEY_REMOTE_CA";
/// The repository and (delegated) role a remote signature is asked for.
pub const ENV_REPOSITORY: &str = "TUFKEY_REMOTE_REPOSITORY";
pub const ENV_ROLE: &str = "TUFKEY_REMOTE_ROLE";

/// How long one request may take, connection and TLS included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The CA to trust and, normally, the client's certificate and key (PEM files).
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub ca: PathBuf,
    /// Certificate chain and private key; `None` connects without a client
    /// certificate (the signer then refuses, which tests check).
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl ClientTls {
    /// `TUFKEY_REMOTE_CA`, `TUFKEY_REMOTE_CERT` and `TUFKEY_REMOTE_KEY` (the CLI's
    /// `--remote-*` flags set them).
    pub fn from_env() -> Result<ClientTls, RemoteError> {
        Self::resolve(&SignerEntry::default(), &config::Found::NoFile.hint(""))
    }

    /// The settings for the signer at `base`: each from the flags/environment, else
    /// from the client config file's entry for that signer (see [`config`]).
    pub fn for_signer(base: &str) -> Result<(ClientTls, SignerEntry), RemoteError> {
        let found = config::find(base).map_err(RemoteError::Setup)?;
        // A file that exists but has no entry for this signer is named, with the urls
        // it does have, so a typo in `url` is found at once.
        let hint = found.hint(base);
        let entry = match found {
            config::Found::Entry(_, e) => e,
            _ => SignerEntry::default(),
        };
        let tls = Self::resolve(&entry, &hint)?;
        Ok((tls, entry))
    }

    /// `hint` says where else the settings could come from (see
    /// [`config::Found::hint`]).
    fn resolve(file: &SignerEntry, hint: &str) -> Result<ClientTls, RemoteError> {
        let var = |n: &str| {
            std::env::var_os(n)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let ca = var(ENV_CA).or_else(|| file.ca.clone()).ok_or_else(|| {
            RemoteError::Setup(format!(
                "set {ENV_CA} (--remote-ca) to the PEM file of the CA that issued the signer's certificate, \
and {ENV_CERT} / {ENV_KEY} to this client's certificate and key{hint}"
            ))
        })?;
        let cert = var(ENV_CERT).or_else(|| file.cert.clone());
        let key = var(ENV_KEY).or_else(|| file.key.clone());
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            // An OIDC token authenticates instead (server-authenticated TLS only).
            (None, None) if token::configured() => None,
            _ => {
                return Err(RemoteError::Setup(format!(
                    "set {ENV_CERT} and {ENV_KEY} (--remote-cert, --remote-key) to this client's certificate and private key (PEM){hint}; or, for a signer that accepts OIDC tokens, give one with {} or --remote-token-file (in GitHub Actions with `id-token: write` it is fetched)",
                    token::ENV_TOKEN
                )))
            }
        };
        Ok(ClientTls { ca, identity })
    }

    /// The rustls client configuration (TLS 1.3/1.2, this CA, this identity).
    pub fn rustls_config(&self) -> Result<Arc<ClientConfig>, RemoteError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for c in certs("CA certificate", &self.ca)? {
            roots.add(c).map_err(|e| RemoteError::Material {
                what: "CA certificate",
                path: self.ca.clone(),
                reason: e.to_string(),
            })?;
        }
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| RemoteError::Setup(e.to_string()))?
            .with_root_certificates(roots);
        let mut cfg = match &self.identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = certs("client certificate", cert)?;
                let k = PrivateKeyDer::from_pem_file(key).map_err(|e| RemoteError::Material {
                    what: "client key",
                    path: key.clone(),
                    reason: e.to_string(),
                })?;
                builder
                    .with_client_auth_cert(chain, k)
                    .map_err(|e| RemoteError::Material {
                        what: "client key",
                        path: key.clone(),
                        reason: e.to_string(),
                    })?
            }
        };
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

fn certs(what: &'static str, path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, RemoteError> {
    let err = |reason: String| RemoteError::Material {
        what,
        path: path.clone(),
        reason,
    };
    let v = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if v.is_empty() {
        return Err(err("no PEM certificate in the file".into()));
    }
    Ok(v)
}

/// An answer from the signer.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// A blocking HTTPS client for one signer (`https://host:port`).
pub struct Client {
    base: String,
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    tls: tokio_rustls::TlsConnector,
    rt: tokio::runtime::Runtime,
    /// The OIDC bearer token sent with every request, if any ([`token`]).
    token: Option<TokenSource>,
    /// A fresh token for every request (the signer accepts each token once).
    fresh_tokens: std::sync::atomic::AtomicBool,
}

impl Client {
    /// A client for `base` (`https://host:port`, no path).
    pub fn new(base: &str, tls: &ClientTls) -> Result<Client, RemoteError> {
        let authority = base
            .strip_prefix("https://")
            .map(|a| a.trim_end_matches('/'))
            .filter(|a| !a.is_empty() && !a.contains('/'))
            .ok_or_else(|| RemoteError::Setup(format!("{base} is not https://host:port")))?;
        let (host, port) = split_authority(authority)
            .ok_or_else(|| RemoteError::Setup(format!("{base}: expected https://host:port")))?;
        let server_name = ServerName::try_from(host.clone())
            .map_err(|e| RemoteError::Setup(format!("{base}: {e}")))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RemoteError::Setup(format!("cannot start the I/O runtime: {e}")))?;
        Ok(Client {
            base: format!("https://{authority}"),
            host,
            port,
            server_name,
            tls: tokio_rustls::TlsConnector::from(tls.rustls_config()?),
            rt,
            token: None,
            fresh_tokens: Default::default(),
        })
    }

    /// Sends `Authorization: Bearer <token>` from `source` with every request.
    pub fn with_token(mut self, source: Option<TokenSource>) -> Client {
        self.token = source;
        self
    }

    /// Asks the token source for a fresh token for every request.
    pub fn fresh_tokens(&self, on: bool) {
        self.fresh_tokens
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// The signer's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Result<Response, RemoteError> {
        self.request(hyper::Method::GET, path, None)
    }

    /// `POST path` with a JSON body.
    pub fn post_json(&self, path: &str, body: &Value) -> Result<Response, RemoteError> {
        let bytes = serde_json::to_vec(body).map_err(|e| RemoteError::Setup(e.to_string()))?;
        self.request(hyper::Method::POST, path, Some(bytes))
    }

    /// One request on a fresh connection. Any body may be sent; tests use this to send
    /// malformed and oversized ones.
    pub fn request(
        &self,
        method: hyper::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response, RemoteError> {
        let connect = |reason: String| RemoteError::Connect {
            base: self.base.clone(),
            reason,
        };
        let fresh = self.fresh_tokens.load(std::sync::atomic::Ordering::Relaxed);
        let bearer = match &self.token {
            Some(t) => Some(zeroize::Zeroizing::new(format!(
                "Bearer {}",
                t.token(&self.rt, fresh)?.expose()
            ))),
            None => None,
        };
        let fut = async {
            let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| connect(e.to_string()))?;
            let _ = tcp.set_nodelay(true);
            let tls = self
                .tls
                .connect(self.server_name.clone(), tcp)
                .await
                .map_err(|e| connect(format!("TLS: {e}")))?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| connect(e.to_string()))?;
            let driver = tokio::spawn(conn);
            let mut req = hyper::Request::builder().method(method).uri(path).header(
                hyper::header::HOST,
                self.base["https://".len()..].to_string(),
            );
            if body.is_some() {
                req = req.header(hyper::header::CONTENT_TYPE, "application/json");
            }
            if let Some(b) = &bearer {
                req = req.header(hyper::header::AUTHORIZATION, b.as_str());
            }
            let req = req
                .body(Full::new(Bytes::from(body.unwrap_or_default())))
                .map_err(|e| RemoteError::Setup(e.to_string()))?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| connect(describe_hyper(&e)))?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| connect(describe_hyper(&e)))?
                .to_bytes()
                .to_vec();
            driver.abort();
            Ok(Response { status, body })
        };
        self.rt.block_on(async {
            tokio::time::timeout(REQUEST_TIMEOUT, fut)
                .await
                .map_err(|_| connect(format!("no answer within {REQUEST_TIMEOUT:?}")))?
        })
    }

    /// Turns a non-2xx answer into [`RemoteError::Refused`] with the signer's reason.
    pub fn expect_ok(&self, r: Response) -> Result<Value, RemoteError> {
        let v = r.json();
        if (200..300).contains(&r.status) {
            return Ok(v);
        }
        Err(RemoteError::Refused {
            base: self.base.clone(),
            status: r.status,
            code: v["error"].as_str().unwrap_or("error").to_string(),
            message: v["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&r.body).into_owned()),
        })
    }
}

/// `host:port`, `[v6]:port` or a bare host (port 443).
fn split_authority(a: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = a.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        (h, after.strip_prefix(':'))
    } else {
        match a.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (a, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => 443,
    };
    (!host.is_empty()).then(|| (host.to_string(), port))
}

/// hyper's errors hide the TLS alert in their source chain; show it.
fn describe_hyper(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A signer that asks a remote `tufkey serve` to sign.
pub struct RemoteSigner {
    uri: String,
    public: Key,
    keyid: String,
    client: Client,
    repository: Option<String>,
    role: Option<String>,
    /// What one `POST /v1/sign-batch` may carry, as the signer announced it.
    batch: Mutex<BatchLimits>,
    /// The signer answered 404 for the batch endpoint: sign one at a time.
    no_batch: AtomicBool,
}

/// A failure talking to the signer, kept typed (its outcome depends on what failed).
fn key_err(uri: &RemoteUri, err: RemoteError) -> KeyError {
    KeyError::Remote {
        uri: uri.to_string(),
        err,
    }
}

/// Something about the key itself that is not right.
fn key_wrong(uri: &RemoteUri, reason: impl std::fmt::Display) -> KeyError {
    KeyError::Unsupported {
        uri: uri.to_string(),
        reason: reason.to_string(),
    }
}

impl RemoteSigner {
    /// Connects to the signer and fetches the key's public half (`GET /v1/keys/<id>`);
    /// the key id it computes must be the one in the URI.
    pub fn open(uri: &RemoteUri) -> Result<RemoteSigner, KeyError> {
        let (tls, defaults) = ClientTls::for_signer(&uri.base).map_err(|e| key_err(uri, e))?;
        let has_certificate = tls.identity.is_some();
        let tokens =
            TokenSource::from_env(&uri.base, defaults.audience.as_deref(), has_certificate)
                .map_err(|e| key_err(uri, e))?;
        let client = Client::new(&uri.base, &tls)
            .map_err(|e| key_err(uri, e))?
            .with_token(tokens);
        let r = client
            .get(&format!("/v1/keys/{}", uri.keyid))
            .map_err(|e| key_err(uri, e))?;
        let v = client.expect_ok(r).map_err(|e| key_err(uri, e))?;
        client.fresh_tokens(v["single_use_token"] == json!(true));
        let public = Key::from_value(&uri.keyid, &v["key"]).map_err(|e| {
            key_err(
                uri,
                RemoteError::Protocol {
                    base: uri.base.clone(),
                    reason: e.to_string(),
                },
            )
        })?;
        let keyid = public.key_id();
        if keyid != uri.keyid {
            return Err(key_wrong(
                uri,
                format!("the signer's key has key id {keyid}, not the one in the URI"),
            ));
        }
        let env = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
        Ok(RemoteSigner {
            uri: uri.to_string(),
            public,
            keyid,
            client,
            repository: env(ENV_REPOSITORY).or(defaults.repository),
            role: env(ENV_ROLE).or(defaults.role),
            batch: Mutex::new(BatchLimits::from_value(&v["batch"]).unwrap_or_default()),
            no_batch: AtomicBool::new(false),
        })
    }
}

/// The public key of a remote key.
pub fn public_key(uri: &RemoteUri) -> Result<PublicKey, KeyError> {
    let s = RemoteSigner::open(uri)?;
    s.public
        .public_key()
        .map_err(|reason| key_wrong(uri, reason))
}

impl Signer for RemoteSigner {
    fn uri(&self) -> &str {
        &self.uri
    }
    fn public_key(&self) -> &Key {
        &self.public
    }
    fn key_id(&self) -> &str {
        &self.keyid
    }
    /// As role `TUFKEY_REMOTE_ROLE` (or the client config's `role`), else `_type`.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.sign_as(self.role.as_deref(), message)
    }

    /// Many documents per `POST /v1/sign-batch` ([`batch`]); one at a time against a
    /// signer without that endpoint.
    fn sign_many(&self, messages: &[&[u8]]) -> Vec<Result<Vec<u8>, KeyError>> {
        self.sign_many_with(messages, &|_, _| {})
    }

    fn sign_many_with(
        &self,
        messages: &[&[u8]],
        done: &Done<'_>,
    ) -> Vec<Result<Vec<u8>, KeyError>> {
        let role = self.role.as_deref();
        let docs: Vec<(Option<&str>, &[u8])> = messages.iter().map(|m| (role, *m)).collect();
        self.sign_documents(&docs, done)
    }

    /// Each document as the role the caller names (16,384 bins are 16,384 roles to the
    /// signer's policy and rollback checks): the caller knows better than
    /// `TUFKEY_REMOTE_ROLE`, which names one role for a single `tufkey sign`.
    fn sign_roles_with(
        &self,
        docs: &[RoleMessage<'_>],
        done: &Done<'_>,
    ) -> Vec<Result<Vec<u8>, KeyError>> {
        let docs: Vec<(Option<&str>, &[u8])> =
            docs.iter().map(|d| (Some(d.role), d.message)).collect();
        self.sign_documents(&docs, done)
    }
}

impl RemoteSigner {
    /// One document through `POST /v1/sign`, as `role` (`None`: `signed._type`).
    fn sign_as(&self, role: Option<&str>, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let signed = self.signed_value(message)?;
        let mut req = json!({
            "key_id": self.keyid,
            "metadata": {"signed": signed, "signatures": []},
        });
        if let Some(r) = &self.repository {
            req["repository"] = json!(r);
        }
        if let Some(r) = role {
            req["role"] = json!(r);
        }
        let remote = |err: RemoteError| KeyError::Remote {
            uri: self.uri.clone(),
            err,
        };
        let resp = self.client.post_json("/v1/sign", &req).map_err(remote)?;
        let v = self.client.expect_ok(resp).map_err(remote)?;
        self.signature_of(&v, message)
    }

    /// A single document by `/v1/sign`, more than one by batches.
    fn sign_documents(
        &self,
        docs: &[(Option<&str>, &[u8])],
        done: &Done<'_>,
    ) -> Vec<Result<Vec<u8>, KeyError>> {
        if let [(role, m)] = docs {
            let r = self.sign_as(*role, m);
            done(0, &r);
            return vec![r];
        }
        self.sign_batched(docs, done)
    }
}

impl RemoteSigner {
    /// The `signed` object `message` is the canonical form of; anything else is refused
    /// here (a remote signer signs TUF metadata only).
    fn signed_value(&self, message: &[u8]) -> Result<Value, KeyError> {
        serde_json::from_slice(message)
            .ok()
            .filter(|v: &Value| v.is_object() && to_canonical(v).ok().as_deref() == Some(message))
            .ok_or_else(|| KeyError::Unsupported {
                uri: self.uri.clone(),
                reason: "a remote signer signs TUF metadata only, and this message is not the canonical `signed` object of a TUF document".into(),
            })
    }

    /// The signature in a signer's answer for `message`, once the payload hash it
    /// reports is the hash of `message`.
    fn signature_of(&self, v: &Value, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let err = |reason: String| KeyError::Unsupported {
            uri: self.uri.clone(),
            reason,
        };
        let want = hex::encode(Sha256::digest(message));
        if v["payload_sha256"].as_str() != Some(want.as_str()) {
            return Err(err(format!(
                "the signer signed a payload with SHA-256 {}, not the expected {want}",
                v["payload_sha256"]
            )));
        }
        v["sig"]
            .as_str()
            .and_then(|s| hex::decode(s).ok())
            .ok_or_else(|| err("the signer's answer has no hex `sig`".into()))
    }
}
