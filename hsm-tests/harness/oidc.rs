//! OIDC issuers for the signer's tests: signing keys that mint tokens shaped like
//! GitHub Actions' and GitLab's (RS256 and ES256, through `jsonwebtoken`), their JWKS,
//! and a real HTTPS issuer on loopback (rustls, a test CA) that serves discovery
//! documents and JWKS, counts what it was asked for, can be changed while the daemon
//! runs (key rotation), and answers GitHub's token request. Also a TCP endpoint that
//! accepts and never answers, for hanging issuers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::TcpListener as StdListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// An issuer's signing key.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    pub enc: EncodingKey,
    /// The public key as a JWK (with `kid`, `alg` and `use`).
    pub jwk: Value,
    /// The public key's PEM (SPKI), for the HS256 "public key as secret" attack.
    pub public_pem: String,
}

impl SigningKey {
    /// A 2048-bit RSA key (GitHub's kind).
    pub fn rsa(kid: &str) -> SigningKey {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::pkcs8::{EncodePublicKey, LineEnding};
        let private = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
        let der = private.to_pkcs1_der().unwrap();
        let public_pem = private
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        Self::finish(
            kid,
            Algorithm::RS256,
            EncodingKey::from_rsa_der(der.as_bytes()),
            public_pem,
        )
    }

    /// A P-256 key (ES256).
    pub fn ec(kid: &str) -> SigningKey {
        let pair = rcgen::KeyPair::generate().unwrap();
        let public_pem = pair.public_key_pem();
        Self::finish(
            kid,
            Algorithm::ES256,
            EncodingKey::from_ec_der(&pair.serialize_der()),
            public_pem,
        )
    }

    fn finish(kid: &str, alg: Algorithm, enc: EncodingKey, public_pem: String) -> SigningKey {
        let mut jwk = Jwk::from_encoding_key(&enc, alg).unwrap();
        jwk.common.key_id = Some(kid.to_string());
        let mut jwk = serde_json::to_value(&jwk).unwrap();
        jwk["use"] = json!("sig");
        SigningKey {
            kid: kid.to_string(),
            alg,
            enc,
            jwk,
            public_pem,
        }
    }

    /// A token with these claims, signed by this key under its `kid`.
    pub fn mint(&self, claims: &Value) -> String {
        self.mint_as(&self.kid, claims)
    }

    /// A token signed by this key but naming key id `kid`.
    pub fn mint_as(&self, kid: &str, claims: &Value) -> String {
        let mut h = Header::new(self.alg);
        h.kid = Some(kid.to_string());
        jsonwebtoken::encode(&h, claims, &self.enc).unwrap()
    }

    /// The classic key-confusion forgery: HS256 with the issuer's public key (PEM) as
    /// the HMAC secret, under the real key's `kid`.
    pub fn forge_hs256(&self, claims: &Value) -> String {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(
            &h,
            claims,
            &EncodingKey::from_secret(self.public_pem.as_bytes()),
        )
        .unwrap()
    }

    /// An unsigned token (`alg: none`) naming this key.
    pub fn unsigned(&self, claims: &Value) -> String {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let header = json!({"alg": "none", "typ": "JWT", "kid": self.kid});
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }
}

/// A JWKS of these keys.
pub fn jwks(keys: &[&SigningKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

static JTI: AtomicUsize = AtomicUsize::new(0);

/// A unique token id.
pub fn jti() -> String {
    format!(
        "jti-{}-{}",
        std::process::id(),
        JTI.fetch_add(1, Ordering::Relaxed)
    )
}

/// Claims as GitHub Actions puts them in a job's token (a push to `git_ref` of
/// `repo`, id `repo_id`, in `environment`), valid from a minute ago for five minutes.
pub fn github_claims(
    iss: &str,
    aud: &str,
    repo: &str,
    repo_id: &str,
    git_ref: &str,
    environment: &str,
) -> Value {
    let t = now();
    let owner = repo.split('/').next().unwrap_or(repo);
    json!({
        "jti": jti(),
        "sub": format!("repo:{repo}:environment:{environment}"),
        "aud": aud,
        "ref": git_ref,
        "sha": "a3c5d9e1f2b4c6d8e0f1a2b3c4d5e6f708192a3b",
        "repository": repo,
        "repository_owner": owner,
        "repository_owner_id": "1001",
        "repository_id": repo_id,
        "repository_visibility": "private",
        "run_id": "7001",
        "run_number": "12",
        "run_attempt": "1",
        "actor": "release-bot",
        "actor_id": "5005",
        "workflow": "release",
        "workflow_ref": format!("{repo}/.github/workflows/release.yml@{git_ref}"),
        "job_workflow_ref": format!("{repo}/.github/workflows/release.yml@{git_ref}"),
        "event_name": "push",
        "ref_type": "branch",
        "environment": environment,
        "runner_environment": "github-hosted",
        "iss": iss,
        "nbf": t - 60,
        "iat": t - 60,
        "exp": t + 300,
    })
}

/// Claims as GitLab CI puts them in an `id_tokens:` token.
pub fn gitlab_claims(
    iss: &str,
    aud: &str,
    project: &str,
    project_id: &str,
    git_ref: &str,
    protected: bool,
) -> Value {
    let t = now();
    json!({
        "jti": jti(),
        "iss": iss,
        "aud": aud,
        "sub": format!("project_path:{project}:ref_type:branch:ref:{git_ref}"),
        "namespace_id": "72",
        "namespace_path": project.split('/').next().unwrap_or(project),
        "project_id": project_id,
        "project_path": project,
        "user_id": "42",
        "user_login": "release-bot",
        "pipeline_id": "1212",
        "pipeline_source": "push",
        "job_id": "3434",
        "ref": git_ref,
        "ref_type": "branch",
        "ref_path": format!("refs/heads/{git_ref}"),
        "ref_protected": protected.to_string(),
        "environment": "production",
        "environment_protected": "true",
        "runner_id": 8,
        "runner_environment": "gitlab-hosted",
        "nbf": t - 30,
        "iat": t - 30,
        "exp": t + 300,
    })
}

type Minter = Box<dyn Fn(&str) -> String + Send + Sync>;

/// What the HTTPS issuer serves, changeable while it runs.
#[derive(Default)]
struct Served {
    /// Path → JSON body.
    docs: HashMap<String, Vec<u8>>,
    /// Path → requests seen.
    hits: HashMap<String, usize>,
    /// GitHub's token endpoint: the request token it wants and how it mints.
    token_endpoint: Option<(String, String, Minter)>,
}

/// A real HTTPS server on loopback, in its own runtime thread.
pub struct HttpsIssuer {
    pub addr: String,
    served: Arc<Mutex<Served>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl HttpsIssuer {
    /// Serves with the certificate and key (PEM files) given.
    pub fn start(cert: &Path, key: &Path) -> HttpsIssuer {
        let certs = tufkey::pem::load_certs(cert).unwrap();
        let key = tufkey::pem::load_key(key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let std_listener = StdListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap().to_string();
        let served = Arc::new(Mutex::new(Served::default()));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let state = served.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                loop {
                    let (tcp, _) = tokio::select! {
                        _ = &mut stopped => return,
                        a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                    };
                    let acceptor = acceptor.clone();
                    let state = state.clone();
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else { return };
                        let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                            let state = state.clone();
                            async move { Ok::<_, std::convert::Infallible>(answer(&state, &req)) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tls), svc)
                            .await;
                    });
                }
            });
        });
        HttpsIssuer {
            addr,
            served,
            stop: Some(stop),
        }
    }

    /// `https://127.0.0.1:port/{name}`: one issuer of this server.
    pub fn issuer_url(&self, name: &str) -> String {
        format!("https://{}/{name}", self.addr)
    }

    /// Serves `name`'s discovery document and this JWKS (replacing what was there).
    pub fn publish(&self, name: &str, keys: &Value) {
        let issuer = self.issuer_url(name);
        let discovery = json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/.well-known/jwks"),
            "subject_types_supported": ["public"],
            "response_types_supported": ["id_token"],
            "id_token_signing_alg_values_supported": ["RS256"],
        });
        let mut s = self.served.lock().unwrap();
        s.docs.insert(
            format!("/{name}/.well-known/openid-configuration"),
            discovery.to_string().into_bytes(),
        );
        s.docs.insert(
            format!("/{name}/.well-known/jwks"),
            keys.to_string().into_bytes(),
        );
    }

    /// How often `name`'s JWKS was fetched.
    pub fn jwks_fetches(&self, name: &str) -> usize {
        self.hits(&format!("/{name}/.well-known/jwks"))
    }

    pub fn hits(&self, path: &str) -> usize {
        self.served
            .lock()
            .unwrap()
            .hits
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Answers `GET /gha-token?…&audience=A` carrying `Authorization: Bearer
    /// {request_token}` with `{"value": mint(A)}`, as GitHub's token endpoint does.
    pub fn serve_actions_tokens(
        &self,
        request_token: &str,
        mint: impl Fn(&str) -> String + Send + Sync + 'static,
    ) {
        self.served.lock().unwrap().token_endpoint = Some((
            "/gha-token".into(),
            request_token.to_string(),
            Box::new(mint),
        ));
    }
}

impl Drop for HttpsIssuer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

fn answer(
    state: &Mutex<Served>,
    req: &hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let mut s = state.lock().unwrap();
    let path = req.uri().path().to_string();
    *s.hits.entry(path.clone()).or_default() += 1;
    let reply = |status: u16, body: Vec<u8>| {
        let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
        r
    };
    if let Some((p, want, mint)) = &s.token_endpoint {
        if *p == path {
            let auth = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok());
            if auth != Some(format!("Bearer {want}").as_str()) {
                return reply(401, b"{\"message\":\"bad request token\"}".to_vec());
            }
            let query = req.uri().query().unwrap_or("");
            let audience = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("audience="))
                .map(|a| {
                    percent_encoding::percent_decode_str(a)
                        .decode_utf8_lossy()
                        .into_owned()
                })
                .unwrap_or_default();
            return reply(
                200,
                json!({"value": mint(&audience)}).to_string().into_bytes(),
            );
        }
    }
    match s.docs.get(&path) {
        Some(body) => reply(200, body.clone()),
        None => reply(404, b"{}".to_vec()),
    }
}

/// A TCP endpoint that accepts connections and says nothing until released.
pub struct Hang {
    pub addr: String,
    accepted: Arc<AtomicUsize>,
    release: Arc<AtomicBool>,
}

impl Hang {
    pub fn start() -> Hang {
        let listener = StdListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(AtomicBool::new(false));
        let (a, r) = (accepted.clone(), release.clone());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            loop {
                if r.load(Ordering::SeqCst) {
                    held.clear();
                }
                match listener.accept() {
                    Ok((s, _)) => {
                        a.fetch_add(1, Ordering::SeqCst);
                        if r.load(Ordering::SeqCst) {
                            drop(s);
                        } else {
                            held.push(s);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Hang {
            addr,
            accepted,
            release,
        }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Closes every held connection, and every later one at once.
    pub fn release(&self) {
        self.release.store(true, Ordering::SeqCst);
    }
}
