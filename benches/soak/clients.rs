//! The soak's clients: each one keep-alive mutual-TLS connection (re-opened when it
//! breaks) signing consecutive versions of its own (repository, role), and recording
//! every answer.
//!
//! Client `i` signs role `ROLES[i % 4]` of repository `soak-<i / 4>`; the team-a
//! clients of odd repositories send `POST /v1/sign-batch` with `batch` consecutive
//! versions, the others `POST /v1/sign`. What a single-document client does next:
//!
//! - signed: the next version (and after every 25th signature, first a replay probe:
//!   the version just signed again with another payload, which must be refused);
//! - 403 `version-not-increasing`: an earlier attempt at this version was signed but its
//!   answer was lost; the next version;
//! - anything else (503 during a fault, no answer at all): after `backoff`, the SAME
//!   version again with ANOTHER payload (a later `expires`). If the lost attempt had been
//!   signed, signing this one would be two payloads for one version: the check that
//!   matters most.
//!
//! A batch client moves on past its batch whatever happened (versions may be skipped).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use tufkey::tuf::cjson::to_canonical;
use tufkey::tuf::Key;

pub const ROLES: [&str; 4] = ["timestamp", "snapshot", "targets", "team-a"];
/// Every this many signatures a single-document client sends a replay probe.
const PROBE_EVERY: u64 = 25;

/// One document a client sent: what the audit entry of its signature must name.
#[derive(Clone, Debug)]
pub struct Doc {
    pub repo: String,
    pub role: &'static str,
    pub version: u64,
    /// SHA-256 of the canonical `signed` (the daemon's `payload_sha256`).
    pub sha: String,
}

#[derive(Clone, Debug)]
pub enum Outcome {
    /// 200 with a signature; whether it verified against the key over our own canonical
    /// payload, and whether the daemon's `payload_sha256` was ours.
    Signed { verified: bool, hash_matches: bool },
    /// Any other answer: HTTP status and `error` code.
    Answered { status: u16, code: String },
    /// No answer (connection refused or cut, timeout): the daemon may or may not have
    /// signed.
    NoAnswer(String),
}

#[derive(Clone, Debug)]
pub struct Record {
    pub client: usize,
    /// Sent and answered, seconds since the clients started.
    pub t0: f64,
    pub t1: f64,
    pub batch: bool,
    /// A deliberate replay of a version that was already signed.
    pub probe: bool,
    pub doc: Doc,
    pub outcome: Outcome,
}

impl Record {
    pub fn code(&self) -> String {
        match &self.outcome {
            Outcome::Signed { .. } => "200 signed".into(),
            Outcome::Answered { status, code } => format!("{status} {code}"),
            Outcome::NoAnswer(why) => {
                format!("no answer ({})", why.split(':').next().unwrap_or_default())
            }
        }
    }
}

pub struct Setup {
    pub addr: std::net::SocketAddr,
    pub tls: Arc<rustls::ClientConfig>,
    pub key_id: String,
    pub key: Key,
    pub start: Instant,
    pub deadline: Duration,
    pub batch: usize,
    pub backoff: Duration,
    pub timeout: Duration,
    /// `expires` of attempt n is this plus n seconds: every attempt a new payload.
    pub expires_base: chrono::DateTime<chrono::Utc>,
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(s: &Setup) -> Result<Sender, String> {
    let tcp = tokio::net::TcpStream::connect(s.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let stream = tokio_rustls::TlsConnector::from(s.tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

async fn post(send: &mut Sender, path: &str, body: String) -> Result<(u16, Bytes), String> {
    send.ready().await.map_err(|e| format!("connection: {e}"))?;
    let req = hyper::Request::post(path)
        .header(hyper::header::HOST, "localhost")
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((status, bytes))
}

fn signed_doc(role: &str, version: u64, expires: &str) -> Value {
    match role {
        "timestamp" => json!({"_type": "timestamp", "spec_version": "1.0.31", "version": version,
            "expires": expires, "meta": {"snapshot.json": {"version": version}}}),
        "snapshot" => json!({"_type": "snapshot", "spec_version": "1.0.31", "version": version,
            "expires": expires, "meta": {"targets.json": {"version": version}}}),
        _ => json!({"_type": "targets", "spec_version": "1.0.31", "version": version,
            "expires": expires, "targets": {}}),
    }
}

/// A document of one attempt: its JSON for the request, its canonical payload, its record.
struct Attempt {
    metadata: Value,
    payload: Vec<u8>,
    doc: Doc,
}

fn attempt(s: &Setup, repo: &str, role: &'static str, version: u64, n: u64) -> Attempt {
    let expires =
        tufkey::tuf::time::format_expires(s.expires_base + chrono::Duration::seconds(n as i64));
    let signed = signed_doc(role, version, &expires);
    let payload = to_canonical(&signed).unwrap_or_else(|e| panic!("soak: canonical JSON: {e}"));
    let sha = hex::encode(Sha256::digest(&payload));
    Attempt {
        metadata: json!({"signed": signed, "signatures": []}),
        payload,
        doc: Doc {
            repo: repo.to_string(),
            role,
            version,
            sha,
        },
    }
}

/// The outcome of one document from a 200 answer's (or a batch result's) JSON.
fn outcome_of(s: &Setup, status: u16, v: &Value, a: &Attempt) -> Outcome {
    if status != 200 {
        return Outcome::Answered {
            status,
            code: v["error"].as_str().unwrap_or("(no error code)").to_string(),
        };
    }
    let sig = v["sig"].as_str().unwrap_or_default().to_string();
    let verified = v["keyid"].as_str() == Some(s.key_id.as_str())
        && s.key.verify_hex(&a.payload, &sig).is_ok();
    let hash_matches = v["payload_sha256"].as_str() == Some(a.doc.sha.as_str());
    Outcome::Signed {
        verified,
        hash_matches,
    }
}

/// One request of `attempts` (one: `/v1/sign`, more: `/v1/sign-batch`); one outcome each.
async fn send(
    s: &Setup,
    conn: &mut Option<Sender>,
    repo: &str,
    attempts: &[Attempt],
) -> Vec<Outcome> {
    let batch = attempts.len() > 1;
    let (path, body) = if batch {
        let docs: Vec<Value> = attempts
            .iter()
            .map(|a| json!({"role": a.doc.role, "metadata": a.metadata}))
            .collect();
        (
            "/v1/sign-batch",
            json!({"repository": repo, "key_id": s.key_id, "documents": docs}),
        )
    } else {
        let a = &attempts[0];
        (
            "/v1/sign",
            json!({"repository": repo, "key_id": s.key_id, "role": a.doc.role, "metadata": a.metadata}),
        )
    };
    let lost = |why: String| vec![Outcome::NoAnswer(why); attempts.len()];
    if conn.is_none() {
        match tokio::time::timeout(s.timeout, connect(s)).await {
            Ok(Ok(c)) => *conn = Some(c),
            Ok(Err(e)) => return lost(e),
            Err(_) => return lost("connect: timed out".into()),
        }
    }
    let Some(c) = conn.as_mut() else {
        return lost("no connection".into());
    };
    let answer = tokio::time::timeout(s.timeout, post(c, path, body.to_string())).await;
    let (status, bytes) = match answer {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            *conn = None;
            return lost(e);
        }
        Err(_) => {
            *conn = None;
            return lost(format!("no answer within {:?}", s.timeout));
        }
    };
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if batch && status == 200 {
        let results = v["results"].as_array().cloned().unwrap_or_default();
        attempts
            .iter()
            .enumerate()
            .map(|(i, a)| match results.get(i) {
                Some(r) => {
                    let st = r["status"].as_u64().unwrap_or(0) as u16;
                    outcome_of(s, st, r, a)
                }
                None => Outcome::Answered {
                    status,
                    code: "(batch answer without this result)".into(),
                },
            })
            .collect()
    } else {
        attempts
            .iter()
            .map(|a| outcome_of(s, status, &v, a))
            .collect()
    }
}

/// Client `i` until the deadline; every document's record.
pub async fn run(s: Arc<Setup>, i: usize) -> Vec<Record> {
    let repo = format!("soak-{:02}", i / ROLES.len());
    let role = ROLES[i % ROLES.len()];
    let batch = if role == "team-a" && (i / ROLES.len()) % 2 == 1 {
        s.batch.max(2)
    } else {
        1
    };
    let now = || s.start.elapsed().as_secs_f64();
    let mut conn: Option<Sender> = None;
    let mut records = Vec::new();
    let mut version = 1u64;
    let mut n = 0u64; // attempts so far: each gets its own payload
    let mut signed = 0u64;
    let mut probe_due = false;
    while s.start.elapsed() < s.deadline {
        let probe = probe_due;
        let first = if probe { version - 1 } else { version };
        let attempts: Vec<Attempt> = (0..batch as u64)
            .map(|k| {
                n += 1;
                attempt(&s, &repo, role, first + k, n)
            })
            .collect();
        let t0 = now();
        let outcomes = send(&s, &mut conn, &repo, &attempts).await;
        let t1 = now();
        let mut failed = false;
        for (a, o) in attempts.into_iter().zip(outcomes) {
            match &o {
                Outcome::Signed { .. } => signed += 1,
                Outcome::Answered { status: 403, code } if code == "version-not-increasing" => {}
                _ => failed = true,
            }
            records.push(Record {
                client: i,
                t0,
                t1,
                batch: batch > 1,
                probe,
                doc: a.doc,
                outcome: o,
            });
        }
        if failed {
            tokio::time::sleep(s.backoff).await;
        }
        if probe {
            probe_due = false;
            continue;
        }
        let last = records.last().map(|r| &r.outcome);
        if batch > 1 {
            version += batch as u64;
        } else {
            match last {
                Some(Outcome::Signed { .. }) => {
                    version += 1;
                    probe_due = signed.is_multiple_of(PROBE_EVERY);
                }
                Some(Outcome::Answered { status: 403, code })
                    if code == "version-not-increasing" =>
                {
                    version += 1
                }
                _ => {}
            }
        }
    }
    records
}
