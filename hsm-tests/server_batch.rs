//! `POST /v1/sign-batch` end to end: the real `tufkey serve` over mutual TLS with a
//! P-256 key on a throwaway SoftHSM token, batches sent by tufkey's own HTTPS client
//! and by the remote key's `Signer::sign_many`, signatures checked by python-tuf, the
//! audit log read back and its chain verified; and the same on the PostgreSQL store.

mod harness;

use std::path::{Path, PathBuf};

use harness::daemon::{client_policy, daemon_folder, expires_in, signer_toml, Ca, Daemon};
use harness::pg::Postgres;
use harness::*;
use serde_json::{json, Value};
use tufkey::keys::remote::{Client, ClientTls};

/// A daemon's files: a token with one P-256 key, certificates, a config.
struct Setup {
    hsm: SoftHsm,
    dir: tempfile::TempDir,
    ca: Ca,
    key_id: String,
    key: Value,
    config: PathBuf,
}

/// Roles ci-main may sign: timestamp, snapshot and three hashed bins.
const ROLES: &[&str] = &["timestamp", "snapshot", "bin-0", "bin-1", "bin-2"];

/// A daemon config with `limits` (a `[limits]` table or nothing) and `store` lines;
/// ci-main may sign [`ROLES`] for 7 days ahead, ci-slow the same at 5 documents a
/// minute.
fn setup(store: Option<&str>, limits: &str) -> Setup {
    let hsm = SoftHsm::new();
    let token = hsm.token("online", "4321");
    let (key_uri, key_id, key) = generate(Some(&hsm), &token.uri("batch"), "ecdsa-p256", &[]);
    let (dir, ca) = daemon_folder("tufkey-batch-");
    let config = dir.path().join("signer.toml");
    let text = signer_toml(
        store.unwrap_or("state = \"state.json\"\naudit = \"audit.jsonl\""),
        limits,
        &[&key_uri],
        &[
            client_policy("ci-main", &[&key_id], &["*"], ROLES, "7d", ""),
            client_policy(
                "ci-slow",
                &[&key_id],
                &["acme"],
                ROLES,
                "7d",
                "rate = \"5/min\"\n",
            ),
        ],
    );
    std::fs::write(&config, text).unwrap();
    Setup {
        hsm,
        dir,
        ca,
        key_id,
        key,
        config,
    }
}

impl Setup {
    fn d(&self) -> &Path {
        self.dir.path()
    }

    fn start(&self) -> Daemon {
        Daemon::start(self.d(), "daemon", &self.hsm, &self.config)
    }

    fn client_tls(&self, name: &str) -> ClientTls {
        let (c, k) = self.ca.issue(self.d(), name, name, false, false);
        ClientTls {
            ca: self.d().join("client-ca.pem"),
            identity: Some((c, k)),
        }
    }

    fn audit_entries(&self) -> Vec<Value> {
        read_lines(&self.d().join("audit.jsonl"))
    }
}

fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A timestamp document.
fn timestamp(version: u64, expires: &str) -> Value {
    json!({"signed": {
        "_type": "timestamp", "spec_version": "1.0.31", "version": version, "expires": expires,
        "meta": {"snapshot.json": {"version": version}},
    }, "signatures": []})
}

/// A hashed bin (delegated targets) document.
fn bin(version: u64, expires: &str) -> Value {
    json!({"signed": {
        "_type": "targets", "spec_version": "1.0.31", "version": version, "expires": expires,
        "targets": {format!("pkg-{version}.tar.gz"): {"length": 3, "hashes": {"sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}}},
    }, "signatures": []})
}

/// One entry of `documents`.
fn doc(role: &str, metadata: Value) -> Value {
    json!({"role": role, "metadata": metadata})
}

fn batch(key_id: &str, docs: Vec<Value>) -> Value {
    json!({"repository": "acme", "key_id": key_id, "documents": docs})
}

/// (HTTP status, error code) of an answer.
fn answer(r: &tufkey::keys::remote::Response) -> (u16, String) {
    (
        r.status,
        r.json()["error"].as_str().unwrap_or_default().to_string(),
    )
}

/// (status, error code) of each document's result.
fn results(v: &Value) -> Vec<(u64, String)> {
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["status"].as_u64().unwrap(),
                r["error"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// python-tuf (securesystemslib) verifies each file's signature by the key given.
const PY_VERIFY_SIGS: &str = r#"
import json, sys
from securesystemslib.signer import SSlibKey
from tuf.api.metadata import Metadata
keyid, key = sys.argv[1], SSlibKey.from_dict(sys.argv[1], json.loads(sys.argv[2]))
for path in sys.argv[3:]:
    md = Metadata.from_file(path)
    key.verify_signature(md.signatures[keyid], md.signed_bytes)
    print(path, "ok")
"#;

/// Writes each (document, answer) pair as a signed file and has python-tuf verify them.
fn verify_with_python_tuf(s: &Setup, signed: &[(Value, Value)]) {
    let mut files = Vec::new();
    for (i, (d, a)) in signed.iter().enumerate() {
        let mut d = d.clone();
        d["signatures"] = json!([{"keyid": a["keyid"], "sig": a["sig"]}]);
        let f = s.d().join(format!("signed-{i}.json"));
        std::fs::write(&f, serde_json::to_vec_pretty(&d).unwrap()).unwrap();
        files.push(f.to_str().unwrap().to_string());
    }
    let mut args = vec![s.key_id.clone(), s.key.to_string()];
    args.extend(files);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = python_tuf(PY_VERIFY_SIGS, &args);
    assert_eq!(out.matches(" ok").count(), signed.len(), "{out}");
}

/// The audit entries added since `before` entries.
fn new_entries(all: Vec<Value>, before: usize) -> Vec<Value> {
    all.into_iter().skip(before).collect()
}

// ---------------------------------------------------------------------------

#[test]
fn an_authorized_batch_verifies_with_python_tuf_and_a_mixed_batch_answers_each_document() {
    let s = setup(None, "");
    let daemon = s.start();
    let c = daemon.client(&s.client_tls("ci-main"));
    let day = expires_in(86400);

    // Three documents for three roles: all signed, each verified by python-tuf.
    let docs = vec![timestamp(1, &day), bin(1, &day), bin(1, &day)];
    let roles = ["timestamp", "bin-0", "bin-1"];
    let body = batch(
        &s.key_id,
        docs.iter()
            .zip(roles)
            .map(|(d, r)| doc(r, d.clone()))
            .collect(),
    );
    let before = s.audit_entries().len();
    let v = c
        .expect_ok(c.post_json("/v1/sign-batch", &body).unwrap())
        .unwrap();
    assert_eq!(results(&v), vec![(200, String::new()); 3], "{v:#}");
    assert_eq!(
        (v["signed"].as_u64(), v["refused"].as_u64()),
        (Some(3), Some(0))
    );
    let answers = v["results"].as_array().unwrap();
    for (a, role) in answers.iter().zip(roles) {
        assert_eq!(a["keyid"], s.key_id.as_str());
        assert_eq!(
            (a["role"].as_str(), a["version"].as_u64()),
            (Some(role), Some(1))
        );
        assert_eq!(a["repository"], "acme");
    }
    let pairs: Vec<(Value, Value)> = docs.into_iter().zip(answers.iter().cloned()).collect();
    verify_with_python_tuf(&s, &pairs);
    let added = new_entries(s.audit_entries(), before);
    assert_eq!(added.len(), 3, "one audit entry per signature: {added:#?}");
    for (e, a) in added.iter().zip(answers) {
        assert_eq!(
            (
                e["action"].as_str(),
                e["result"].as_str(),
                e["who"].as_str()
            ),
            (Some("sign-batch"), Some("signed"), Some("ci-main"))
        );
        assert_eq!(e["payload_sha256"], a["payload_sha256"]);
        assert_eq!(e["role"], a["role"]);
    }

    // A batch mixing an allowed document, a rollback, a role the client may not sign
    // and an expiry beyond its policy: each its own result, in order, the refusals do
    // not stop the allowed one, exactly one audit entry each.
    let before = s.audit_entries().len();
    let mixed = batch(
        &s.key_id,
        vec![
            doc("timestamp", timestamp(2, &day)),
            doc("bin-0", bin(1, &day)),
            doc("targets", bin(7, &day)),
            doc("bin-2", bin(1, &next_year())),
        ],
    );
    let v = c
        .expect_ok(c.post_json("/v1/sign-batch", &mixed).unwrap())
        .unwrap();
    let want = [
        (200, ""),
        (403, "version-not-increasing"),
        (403, "role-not-allowed"),
        (403, "expiry-beyond-policy"),
    ];
    assert_eq!(
        results(&v),
        want.iter()
            .map(|(st, code)| (*st, code.to_string()))
            .collect::<Vec<_>>(),
        "{v:#}"
    );
    assert_eq!(
        (v["signed"].as_u64(), v["refused"].as_u64()),
        (Some(1), Some(3))
    );
    assert!(v["results"][1]["message"]
        .as_str()
        .unwrap()
        .contains("acme/bin-0"));
    verify_with_python_tuf(&s, &[(timestamp(2, &day), v["results"][0].clone())]);
    let added = new_entries(s.audit_entries(), before);
    assert_eq!(added.len(), 4, "one entry per document: {added:#?}");
    for (e, (st, code)) in added.iter().zip(want) {
        assert_eq!(e["status"].as_u64(), Some(st));
        if st == 200 {
            assert_eq!(e["result"], "signed");
        } else {
            assert_eq!(e["result"], "refused");
            assert!(
                e["reason"].as_str().unwrap().starts_with(code),
                "{e}: {code}"
            );
        }
    }
    // The refused documents claimed nothing: bin-2 v1 still signs (a fresh expiry).
    let again = batch(&s.key_id, vec![doc("bin-2", bin(1, &day))]);
    let v = c
        .expect_ok(c.post_json("/v1/sign-batch", &again).unwrap())
        .unwrap();
    assert_eq!(results(&v), vec![(200, String::new())]);

    // Whole-request refusals: a key the client may not use, an empty batch.
    let other = "ab".repeat(32);
    let r = c
        .post_json(
            "/v1/sign-batch",
            &batch(&other, vec![doc("timestamp", timestamp(3, &day))]),
        )
        .unwrap();
    assert_eq!(answer(&r), (403, "key-not-allowed".into()));
    let r = c
        .post_json("/v1/sign-batch", &batch(&s.key_id, vec![]))
        .unwrap();
    assert_eq!(answer(&r), (400, "malformed".into()));

    daemon.stop();
    // The chain holds, across every batch and refusal.
    let out = ok(
        None,
        &[
            "audit",
            "verify",
            s.d().join("audit.jsonl").to_str().unwrap(),
        ],
    );
    assert!(out.contains("chain intact"), "{out}");
}

#[test]
fn an_oversized_batch_is_refused_whole_with_413_before_anything_is_signed() {
    let s = setup(
        None,
        "[limits]\nmax_batch_documents = 3\nmax_batch_body = \"4KiB\"\n\n",
    );
    let daemon = s.start();
    let c = daemon.client(&s.client_tls("ci-main"));
    let day = expires_in(86400);
    let before = s.audit_entries().len();

    // Four documents against a limit of three.
    let four: Vec<Value> = (0..3)
        .map(|i| doc(&format!("bin-{i}"), bin(1, &day)))
        .chain([doc("timestamp", timestamp(1, &day))])
        .collect();
    let r = c
        .post_json("/v1/sign-batch", &batch(&s.key_id, four))
        .unwrap();
    assert_eq!(answer(&r), (413, "batch-too-large".into()));
    // The answer names the limits, so a client can split its work.
    assert_eq!(r.json()["max_documents"], 3);
    assert_eq!(r.json()["max_bytes"], 4096);

    // Two documents, but over 4 KiB of body.
    let mut big = bin(1, &day);
    big["signed"]["x-padding"] = json!("x".repeat(5000));
    let r = c
        .post_json(
            "/v1/sign-batch",
            &batch(
                &s.key_id,
                vec![doc("bin-0", big), doc("timestamp", timestamp(1, &day))],
            ),
        )
        .unwrap();
    assert_eq!(answer(&r), (413, "batch-too-large".into()));

    // Nothing was signed and nothing is audited as signed: one refusal entry each.
    let added = new_entries(s.audit_entries(), before);
    assert_eq!(added.len(), 2, "{added:#?}");
    for e in &added {
        assert_eq!(
            (
                e["result"].as_str(),
                e["status"].as_u64(),
                e["action"].as_str()
            ),
            (Some("refused"), Some(413), Some("sign-batch"))
        );
    }
    // No version was claimed: the same documents sign once the batch fits.
    let fits: Vec<Value> = (0..3)
        .map(|i| doc(&format!("bin-{i}"), bin(1, &day)))
        .collect();
    let v = c
        .expect_ok(
            c.post_json("/v1/sign-batch", &batch(&s.key_id, fits))
                .unwrap(),
        )
        .unwrap();
    assert_eq!(v["signed"], 3, "{v:#}");
    daemon.stop();
}

#[test]
fn a_batch_costs_one_rate_token_per_document_and_is_refused_whole_when_they_are_not_there() {
    let s = setup(None, "");
    let daemon = s.start();
    let c = daemon.client(&s.client_tls("ci-slow"));
    let day = expires_in(86400);
    let bins = |n: usize, version: u64| -> Vec<Value> {
        (0..n)
            .map(|i| doc(&format!("bin-{i}"), bin(version, &day)))
            .collect()
    };
    let before = s.audit_entries().len();

    // ci-slow may sign 5 a minute: six documents can never fit.
    let r = c
        .post_json("/v1/sign-batch", &batch(&s.key_id, bins(6, 1)))
        .unwrap();
    assert_eq!(answer(&r), (429, "batch-over-rate".into()));
    assert!(r.json()["message"].as_str().unwrap().contains("at most 5"));

    // Three documents take three tokens; two are left, so a batch of three is refused
    // whole (nothing signed) and a batch of two signs.
    let v = c
        .expect_ok(
            c.post_json("/v1/sign-batch", &batch(&s.key_id, bins(3, 1)))
                .unwrap(),
        )
        .unwrap();
    assert_eq!(v["signed"], 3);
    let r = c
        .post_json("/v1/sign-batch", &batch(&s.key_id, bins(3, 2)))
        .unwrap();
    assert_eq!(answer(&r), (429, "rate-limited".into()));
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("this batch needs 3"));
    let v = c
        .expect_ok(
            c.post_json("/v1/sign-batch", &batch(&s.key_id, bins(2, 2)))
                .unwrap(),
        )
        .unwrap();
    assert_eq!(v["signed"], 2, "the refused batch took no tokens: {v:#}");
    // The bucket is empty now, for single requests too.
    let r = c
        .post_json(
            "/v1/sign",
            &json!({"repository": "acme", "key_id": s.key_id, "metadata": timestamp(1, &day)}),
        )
        .unwrap();
    assert_eq!(answer(&r), (429, "rate-limited".into()));

    // GET /v1/keys tells the client how large its batches may be.
    let keys = c.expect_ok(c.get("/v1/keys").unwrap()).unwrap();
    assert_eq!(keys["keys"][0]["batch"]["max_documents"], 5);

    let added = new_entries(s.audit_entries(), before);
    let signed = added.iter().filter(|e| e["result"] == "signed").count();
    let refused: Vec<u64> = added
        .iter()
        .filter(|e| e["result"] == "refused")
        .map(|e| e["status"].as_u64().unwrap())
        .collect();
    assert_eq!(signed, 5);
    assert_eq!(refused, vec![429, 429, 429]);
    daemon.stop();
}

/// Held by the tests that open remote keys: the client's settings are process-wide
/// environment variables, and each test has its own CA.
static REMOTE_ENV: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Sets the remote client's TLS material for this process; hold [`REMOTE_ENV`].
fn remote_env(tls: &ClientTls) {
    let (cert, key) = tls.identity.clone().unwrap();
    std::env::set_var("TUFKEY_REMOTE_CA", &tls.ca);
    std::env::set_var("TUFKEY_REMOTE_CERT", cert);
    std::env::set_var("TUFKEY_REMOTE_KEY", key);
    std::env::set_var("TUFKEY_REMOTE_REPOSITORY", "acme");
}

#[test]
fn a_remote_keys_sign_many_goes_through_the_batch_endpoint_in_chunks_under_its_limits() {
    let s = setup(None, "[limits]\nmax_batch_documents = 4\n\n");
    let daemon = s.start();
    let _env = REMOTE_ENV.lock().unwrap_or_else(|e| e.into_inner());
    remote_env(&s.client_tls("ci-main"));
    let uri = format!("{}/keys/{}", daemon.base(), s.key_id);
    let signer = tufkey::keys::open_signer(&uri, &tufkey::keys::PinPolicy::default()).unwrap();
    let day = expires_in(86400);

    // Ten timestamp versions (the role is the document's _type): three requests of at
    // most four documents; version 5 twice, so its second copy is refused.
    let mut payloads = Vec::new();
    for v in [1, 2, 3, 4, 5, 5, 6, 7, 8, 9] {
        let md = tufkey::tuf::Metadata::from_value(timestamp(v, &day)).unwrap();
        payloads.push(md.payload());
    }
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    let before = s.audit_entries().len();
    let sigs = signer.sign_many(&refs);
    assert_eq!(sigs.len(), 10);
    for (i, (sig, payload)) in sigs.iter().zip(&payloads).enumerate() {
        if i == 5 {
            let e = sig.as_ref().unwrap_err().to_string();
            assert!(e.contains("version-not-increasing"), "{e}");
            continue;
        }
        let sig = sig.as_ref().unwrap_or_else(|e| panic!("document {i}: {e}"));
        signer
            .public_key()
            .verify_hex(payload, &hex::encode(sig))
            .unwrap();
    }
    // Every document went through the batch endpoint: one entry each, none from
    // /v1/sign; the stored limits were honoured (no 413 refusal on the way).
    let added = new_entries(s.audit_entries(), before);
    assert_eq!(added.len(), 10, "{added:#?}");
    assert!(
        added.iter().all(|e| e["action"] == "sign-batch"),
        "{added:#?}"
    );
    assert_eq!(added.iter().filter(|e| e["result"] == "signed").count(), 9);
    // A message that is not a TUF document is refused by the client itself, and the
    // others still sign.
    let next = tufkey::tuf::Metadata::from_value(timestamp(10, &day))
        .unwrap()
        .payload();
    let out = signer.sign_many(&[b"not json", &next]);
    assert!(out[0].is_err() && out[1].is_ok(), "{out:?}");
    daemon.stop();
}

#[test]
fn a_batch_against_the_postgres_store_claims_versions_and_commits_its_entries_in_one_chain() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    let s = setup(Some(&format!("state = \"{}\"", pg.url())), "");
    let daemon = s.start();
    let c: Client = daemon.client(&s.client_tls("ci-main"));
    let day = expires_in(86400);
    let body = |docs| batch(&s.key_id, docs);
    let v = c
        .expect_ok(
            c.post_json(
                "/v1/sign-batch",
                &body(vec![doc("bin-0", bin(1, &day)), doc("bin-1", bin(1, &day))]),
            )
            .unwrap(),
        )
        .unwrap();
    assert_eq!(v["signed"], 2, "{v:#}");
    let v = c
        .expect_ok(
            c.post_json(
                "/v1/sign-batch",
                &body(vec![doc("bin-0", bin(1, &day)), doc("bin-1", bin(2, &day))]),
            )
            .unwrap(),
        )
        .unwrap();
    assert_eq!(
        results(&v),
        vec![(403, "version-not-increasing".into()), (200, String::new())]
    );
    // The slow client's bucket lives in PostgreSQL too.
    let slow = daemon.client(&s.client_tls("ci-slow"));
    let six: Vec<Value> = (0..3)
        .map(|i| doc(&format!("bin-{i}"), bin(5, &day)))
        .collect();
    assert_eq!(
        answer(
            &slow
                .post_json("/v1/sign-batch", &body(six.clone()))
                .unwrap()
        )
        .0,
        200
    );
    assert_eq!(
        answer(&slow.post_json("/v1/sign-batch", &body(six)).unwrap()),
        (429, "rate-limited".into())
    );
    daemon.stop();

    let out = ok(None, &["audit", "verify", &pg.url()]);
    assert!(out.contains("chain intact"), "{out}");
    let file = s.d().join("exported.jsonl");
    ok(
        None,
        &[
            "audit",
            "export",
            &pg.url(),
            "--output",
            file.to_str().unwrap(),
        ],
    );
    let entries = read_lines(&file);
    let batch_entries: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "sign-batch")
        .collect();
    // 2 + 2 documents, 3 from the slow client, and its refused batch.
    assert_eq!(batch_entries.len(), 8, "{batch_entries:#?}");
    assert_eq!(
        batch_entries
            .iter()
            .filter(|e| e["result"] == "signed")
            .count(),
        6
    );
}

/// A signer from before the batch endpoint: a TLS proxy in front of the real daemon
/// that answers 404 for `POST /v1/sign-batch` and forwards everything else with
/// ci-main's certificate. Prints its port, then serves until killed.
const PY_OLD_SIGNER: &str = r#"
import http.client, http.server, json, ssl, sys
d, upstream = sys.argv[1], int(sys.argv[2])
up = ssl.create_default_context(cafile=f"{d}/client-ca.pem")
up.load_cert_chain(f"{d}/ci-main.pem", f"{d}/ci-main.key")
class H(http.server.BaseHTTPRequestHandler):
    def relay(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path == "/v1/sign-batch":
            status, out = 404, json.dumps({"error": "not-found", "message": "no such endpoint"}).encode()
        else:
            c = http.client.HTTPSConnection("localhost", upstream, context=up)
            c.request(self.command, self.path, body=body or None, headers={"content-type": "application/json"})
            r = c.getresponse()
            status, out = r.status, r.read()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    do_GET = do_POST = relay
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(f"{d}/server.pem", f"{d}/server.key")
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;

#[test]
fn a_remote_keys_sign_many_falls_back_to_one_request_each_against_a_signer_without_batches() {
    let s = setup(None, "");
    let daemon = s.start();
    let main = s.client_tls("ci-main");
    let _env = REMOTE_ENV.lock().unwrap_or_else(|e| e.into_inner());
    remote_env(&main);
    let port = daemon.addr.rsplit(':').next().unwrap().to_string();
    let mut proxy = std::process::Command::new(python())
        .args(["-c", PY_OLD_SIGNER, s.d().to_str().unwrap(), &port])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(proxy.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let uri = format!("https://127.0.0.1:{}/keys/{}", line.trim(), s.key_id);
    let signer = tufkey::keys::open_signer(&uri, &tufkey::keys::PinPolicy::default()).unwrap();
    let day = expires_in(86400);
    let payloads: Vec<Vec<u8>> = [21, 22, 23]
        .iter()
        .map(|v| {
            tufkey::tuf::Metadata::from_value(timestamp(*v, &day))
                .unwrap()
                .payload()
        })
        .collect();
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    let before = s.audit_entries().len();
    let sigs = signer.sign_many(&refs);
    let _ = proxy.kill();
    let _ = proxy.wait();
    for (sig, payload) in sigs.iter().zip(&payloads) {
        let sig = sig.as_ref().unwrap_or_else(|e| panic!("{e}"));
        signer
            .public_key()
            .verify_hex(payload, &hex::encode(sig))
            .unwrap();
    }
    // One POST /v1/sign per document, after the one batch request that got 404.
    let added = new_entries(s.audit_entries(), before);
    let actions: Vec<&str> = added
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, vec!["sign"; 3], "{added:#?}");
    daemon.stop();
}
