//! The signer daemon end to end: the real `tufkey serve` process on a loopback port,
//! real TLS with certificates made here (rcgen), keys on a throwaway SoftHSM token,
//! clients through tufkey's own remote client and through `tufkey sign`, and the
//! signatures checked by python-tuf.

mod harness;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use harness::daemon::{client_policy, daemon_folder, expires_in, line_of, signer_toml, Ca, Daemon};
use harness::*;
use serde_json::{json, Value};
use tufkey::keys::remote::{ClientTls, RemoteError};

/// Everything one daemon needs: a token with two keys, certificates, a config.
struct Setup {
    hsm: SoftHsm,
    dir: tempfile::TempDir,
    ca: Ca,
    /// P-256 key (timestamp/snapshot/targets for ci-main) and Ed25519 key (ci-other).
    p256: (String, String, Value),
    ed: (String, String, Value),
    config: PathBuf,
    audit: PathBuf,
    state: PathBuf,
}

fn setup(max_body: &str) -> Setup {
    let hsm = SoftHsm::new();
    let token = hsm.token("online", "4321");
    let p256 = generate(Some(&hsm), &token.uri("ts"), "ecdsa-p256", &[]);
    let ed = generate(Some(&hsm), &token.uri("tg"), "ed25519", &[]);
    let (dir, ca) = daemon_folder("tufkey-serve-");
    let config = dir.path().join("signer.toml");
    let text = signer_toml(
        "state = \"state.json\"\naudit = \"audit.jsonl\"",
        &format!(
            "[limits]\nmax_body = \"{max_body}\"\nheader_timeout = \"5s\"\nbody_timeout = \"5s\"\n\n"
        ),
        &[&p256.0, &ed.0],
        &[
            client_policy(
                "ci-main",
                &[&p256.1],
                &["*"],
                &["targets", "snapshot", "timestamp"],
                "7d",
                "",
            ),
            client_policy(
                "ci-other.example",
                &[&ed.1],
                &["acme"],
                &["snapshot", "team-a"],
                "30d",
                "raw = true\nrate = \"5/min\"\n",
            ),
        ],
    );
    std::fs::write(&config, text).unwrap();
    Setup {
        audit: dir.path().join("audit.jsonl"),
        state: dir.path().join("state.json"),
        hsm,
        dir,
        ca,
        p256,
        ed,
        config,
    }
}

impl Setup {
    fn d(&self) -> &Path {
        self.dir.path()
    }

    fn client_tls(&self, name: &str) -> ClientTls {
        let (c, k) = self.ca.issue(self.d(), name, name, false, false);
        ClientTls {
            ca: self.d().join("client-ca.pem"),
            identity: Some((c, k)),
        }
    }

    fn audit_entries(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.audit)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Waits until an audit entry satisfies `pred` (TLS refusals are logged by the
    /// daemon after the client already saw the handshake fail).
    fn wait_audit(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(e) = self.audit_entries().into_iter().find(|e| pred(e)) {
                return e;
            }
            assert!(Instant::now() < until, "no audit entry for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn timestamp_doc(version: u64, expires: &str) -> Value {
    json!({
        "signed": {
            "_type": "timestamp",
            "spec_version": "1.0.31",
            "version": version,
            "expires": expires,
            "meta": {"snapshot.json": {"version": version}},
        },
        "signatures": [],
    })
}

fn targets_doc(version: u64, expires: &str) -> Value {
    json!({
        "signed": {
            "_type": "targets",
            "spec_version": "1.0.31",
            "version": version,
            "expires": expires,
            "targets": {"app.tar.gz": {"length": 3, "hashes": {"sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}}},
            "x-ci": {"run": 42},
        },
        "signatures": [],
    })
}

fn sign_req(repo: &str, key_id: &str, doc: Value) -> Value {
    json!({"repository": repo, "key_id": key_id, "metadata": doc})
}

/// (status, error code) of an answer.
fn status(r: &tufkey::keys::remote::Response) -> (u16, String) {
    (
        r.status,
        r.json()["error"].as_str().unwrap_or_default().to_string(),
    )
}

/// python-tuf (securesystemslib) verifies each signature of each file with the key given.
const PY_VERIFY_SIGS: &str = r#"
import json, sys
from securesystemslib.signer import SSlibKey
from tuf.api.metadata import Metadata
for path, keyid, keyjson in zip(sys.argv[1::3], sys.argv[2::3], sys.argv[3::3]):
    md = Metadata.from_file(path)
    key = SSlibKey.from_dict(keyid, json.loads(keyjson))
    key.verify_signature(md.signatures[keyid], md.signed_bytes)
    print(path, "ok")
"#;

#[test]
fn authorized_signatures_verify_with_python_tuf_and_every_refusal_is_audited() {
    let s = setup("8KiB");
    let daemon = Daemon::start(s.d(), "daemon", &s.hsm, &s.config);
    let main = s.client_tls("ci-main");
    let c = daemon.client(&main);

    // Health, and the keys this client may use, with TUF public keys.
    assert_eq!(c.get("/healthz").unwrap().status, 200);
    let keys = c.expect_ok(c.get("/v1/keys").unwrap()).unwrap();
    assert_eq!(keys["identity"], "ci-main");
    let listed: Vec<&str> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["keyid"].as_str().unwrap())
        .collect();
    assert_eq!(listed, vec![s.p256.1.as_str()], "only its own key");
    assert_eq!(keys["keys"][0]["key"], s.p256.2);

    // An authorized signature, verified by python-tuf.
    let doc = timestamp_doc(1, &expires_in(86400));
    let r = c
        .post_json("/v1/sign", &sign_req("acme", &s.p256.1, doc.clone()))
        .unwrap();
    let v = c.expect_ok(r).unwrap();
    assert_eq!(v["keyid"], s.p256.1.as_str());
    let mut signed_doc = doc.clone();
    signed_doc["signatures"] = json!([{"keyid": v["keyid"], "sig": v["sig"]}]);
    let ts_file = s.d().join("timestamp.json");
    std::fs::write(&ts_file, serde_json::to_vec_pretty(&signed_doc).unwrap()).unwrap();
    let entry = s.wait_audit("the signature", |e| {
        e["result"] == "signed" && e["role"] == "timestamp"
    });
    assert_eq!(entry["who"], "ci-main");
    assert_eq!(entry["repository"], "acme");
    assert_eq!(entry["version"], 1);
    assert_eq!(entry["key_id"], s.p256.1.as_str());
    assert_eq!(entry["payload_sha256"], v["payload_sha256"]);

    // `tufkey sign` with the remote key URI, like a local key (Ed25519: the whole
    // canonical message travels), for a delegated role of the other client.
    let other = s.client_tls("ci-other.example");
    let team = s.d().join("team-a.json");
    write_unsigned(&team, targets_doc(3, &expires_in(86400))["signed"].clone());
    let remote_uri = format!("{}/keys/{}", daemon.base(), s.ed.1);
    let (cert, key) = other.identity.clone().unwrap();
    let mut cmd = tufkey(None);
    cmd.args(["sign", team.to_str().unwrap(), "--key", &remote_uri])
        .env("TUFKEY_REMOTE_CA", &other.ca)
        .env("TUFKEY_REMOTE_CERT", &cert)
        .env("TUFKEY_REMOTE_KEY", &key)
        .env("TUFKEY_REMOTE_ROLE", "team-a");
    let (code, out, err) = run(cmd);
    assert_eq!(code, 0, "tufkey sign with a remote key: {out}{err}");
    // Without client material the CLI says what to set.
    let mut cmd = tufkey(None);
    cmd.args(["sign", team.to_str().unwrap(), "--key", &remote_uri]);
    let (code, out, err) = run(cmd);
    assert_ne!(code, 0);
    assert!(
        format!("{out}{err}").contains("TUFKEY_REMOTE_CA"),
        "{out}{err}"
    );
    // Set up once instead: a client config file names the material (paths relative to
    // the file) and the role for this signer; the other signer's entry is not used.
    let name = |p: &std::path::Path| p.file_name().unwrap().to_str().unwrap().to_string();
    let remote_toml = s.d().join("remote.toml");
    std::fs::write(
        &remote_toml,
        format!(
            "[[signer]]\nurl = \"https://elsewhere.example:7443\"\nca = \"/nonexistent.pem\"\n\n\
[[signer]]\nurl = \"{}/\"\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\nrole = \"team-a\"\n",
            daemon.base(),
            name(&other.ca),
            name(&cert),
            name(&key)
        ),
    )
    .unwrap();
    write_unsigned(&team, targets_doc(4, &expires_in(86400))["signed"].clone());
    let mut cmd = tufkey(None);
    cmd.args(["sign", team.to_str().unwrap(), "--key", &remote_uri])
        .env("TUFKEY_REMOTE_CONFIG", &remote_toml);
    let (code, out, err) = run(cmd);
    assert_eq!(code, 0, "tufkey sign with a client config file: {out}{err}");
    // A mistake in that file names it and the line, and nothing is signed.
    let before = std::fs::read(&team).unwrap();
    std::fs::write(
        &remote_toml,
        "[[signer]]\nurl = \"https://x\"\nclient_cert = \"c\"\n",
    )
    .unwrap();
    let mut cmd = tufkey(None);
    cmd.args(["sign", team.to_str().unwrap(), "--key", &remote_uri])
        .env("TUFKEY_REMOTE_CONFIG", &remote_toml);
    let (code, out, err) = run(cmd);
    assert_ne!(code, 0);
    let msg = format!("{out}{err}");
    assert!(
        msg.contains("remote.toml") && msg.contains("line 3") && msg.contains("client_cert"),
        "{msg}"
    );
    assert_eq!(std::fs::read(&team).unwrap(), before);

    python_tuf(
        PY_VERIFY_SIGS,
        &[
            ts_file.to_str().unwrap(),
            &s.p256.1,
            &s.p256.2.to_string(),
            team.to_str().unwrap(),
            &s.ed.1,
            &s.ed.2.to_string(),
        ],
    );

    // Refusals: status, reason code and an audit entry for each.
    let refusals_before = s.audit_entries().len();
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "a key it may not use",
            sign_req("acme", &s.ed.1, timestamp_doc(2, &expires_in(3600))),
            403,
            "key-not-allowed",
        ),
        (
            "a replay of version 1",
            sign_req("acme", &s.p256.1, timestamp_doc(1, &expires_in(3600))),
            403,
            "version-not-increasing",
        ),
        (
            "an expiry beyond 7 days",
            sign_req("acme", &s.p256.1, timestamp_doc(5, &next_year())),
            403,
            "expiry-beyond-policy",
        ),
        (
            "an expired document",
            sign_req("acme", &s.p256.1, timestamp_doc(5, &expires_in(-60))),
            403,
            "expired",
        ),
        (
            "a root it may not sign",
            sign_req(
                "acme",
                &s.p256.1,
                json!({"signed": {"_type": "root", "version": 9, "expires": expires_in(3600), "keys": {}, "roles": {}, "consistent_snapshot": true, "spec_version": "1.0.31"}, "signatures": []}),
            ),
            403,
            "role-not-allowed",
        ),
        (
            "metadata that is not TUF",
            sign_req("acme", &s.p256.1, json!({"signed": [1, 2]})),
            400,
            "malformed-metadata",
        ),
    ];
    for (what, body, want_status, want_code) in &cases {
        let r = c.post_json("/v1/sign", body).unwrap();
        assert_eq!(
            status(&r),
            (*want_status, want_code.to_string()),
            "{what}: {}",
            String::from_utf8_lossy(&r.body)
        );
        s.wait_audit(what, |e| {
            e["result"] == "refused"
                && e["status"] == *want_status
                && e["reason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with(&format!("{want_code}:")))
        });
    }
    // A rollback after a newer version: version 2 signs, then 1 again is refused.
    let r = c
        .post_json(
            "/v1/sign",
            &sign_req("acme", &s.p256.1, timestamp_doc(3, &expires_in(3600))),
        )
        .unwrap();
    assert_eq!(r.status, 200);
    let r = c
        .post_json(
            "/v1/sign",
            &sign_req("acme", &s.p256.1, timestamp_doc(2, &expires_in(3600))),
        )
        .unwrap();
    assert_eq!(status(&r), (403, "version-not-increasing".into()));

    // The other client: a role it may not sign, a repository it may not sign for.
    let oc = daemon.client(&other);
    let r = oc
        .post_json(
            "/v1/sign",
            &json!({"key_id": s.ed.1, "metadata": timestamp_doc(1, &expires_in(60))}),
        )
        .unwrap();
    assert_eq!(status(&r), (403, "role-not-allowed".into()));
    let r = oc
        .post_json(
            "/v1/sign",
            &json!({"repository": "evil", "key_id": s.ed.1, "role": "team-a", "metadata": targets_doc(9, &expires_in(60))}),
        )
        .unwrap();
    assert_eq!(status(&r), (403, "repository-not-allowed".into()));

    // Malformed and oversized bodies.
    let r = c
        .request(
            hyper::Method::POST,
            "/v1/sign",
            Some(b"{\"key_id\": ".to_vec()),
        )
        .unwrap();
    assert_eq!(status(&r), (400, "malformed".into()));
    s.wait_audit("malformed body", |e| {
        e["status"] == 400 && e["reason"].as_str().unwrap_or("").starts_with("malformed:")
    });
    let big = sign_req(
        "acme",
        &s.p256.1,
        json!({"signed": {"_type": "timestamp", "pad": "x".repeat(20_000)}, "signatures": []}),
    );
    let r = c.post_json("/v1/sign", &big).unwrap();
    assert_eq!(status(&r), (413, "too-large".into()));
    s.wait_audit("oversized body", |e| e["status"] == 413);

    // Raw signing: refused where policy does not enable it, allowed where it does.
    let raw = |key: &str| json!({"key_id": key, "message_hex": hex::encode(b"arbitrary bytes")});
    let r = c.post_json("/v1/sign-raw", &raw(&s.p256.1)).unwrap();
    assert_eq!(status(&r), (403, "raw-not-allowed".into()));
    s.wait_audit("raw signing", |e| {
        e["action"] == "sign-raw" && e["result"] == "refused"
    });
    let v = oc
        .expect_ok(oc.post_json("/v1/sign-raw", &raw(&s.ed.1)).unwrap())
        .unwrap();
    let ed_key = tufkey::tuf::Key::from_value(&s.ed.1, &s.ed.2).unwrap();
    ed_key
        .verify_hex(b"arbitrary bytes", v["sig"].as_str().unwrap())
        .unwrap();

    // ci-other's rate is 5 signing requests a minute: its two remote `tufkey sign`s,
    // the two refused requests and the raw signature above used them up: now 429.
    let r = oc.post_json("/v1/sign-raw", &raw(&s.ed.1)).unwrap();
    assert_eq!(status(&r), (429, "rate-limited".into()));
    s.wait_audit("rate limit", |e| {
        e["who"] == "ci-other.example" && e["status"] == 429
    });

    // A valid certificate whose identity has no policy.
    let stranger = daemon.client(&s.client_tls("stranger"));
    let r = stranger.get("/v1/keys").unwrap();
    assert_eq!(status(&r), (403, "no-policy".into()));
    s.wait_audit("no policy", |e| {
        e["who"] == "stranger" && e["reason"].as_str().unwrap_or("").starts_with("no-policy:")
    });

    // TLS refusals: no certificate, a certificate from another CA, an expired one.
    let no_cert = ClientTls {
        ca: main.ca.clone(),
        identity: None,
    };
    let foreign_ca = Ca::new(s.d(), "foreign-ca");
    let foreign = ClientTls {
        ca: main.ca.clone(),
        identity: Some(foreign_ca.issue(s.d(), "foreign", "ci-main", false, false)),
    };
    let expired = ClientTls {
        ca: main.ca.clone(),
        identity: Some(s.ca.issue(s.d(), "expired", "ci-main", false, true)),
    };
    for (what, tls, word) in [
        ("no client certificate", &no_cert, "no certificates"),
        ("a foreign CA", &foreign, "UnknownIssuer"),
        ("an expired certificate", &expired, "certificate expired"),
    ] {
        let before = s
            .audit_entries()
            .iter()
            .filter(|e| e["action"] == "connect")
            .count();
        match daemon.client(tls).get("/v1/keys") {
            Err(RemoteError::Connect { reason, .. }) => {
                assert!(!reason.is_empty(), "{what}")
            }
            other => panic!("{what}: the daemon answered: {other:?}"),
        }
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let connects: Vec<Value> = s
                .audit_entries()
                .into_iter()
                .filter(|e| e["action"] == "connect")
                .collect();
            if connects.len() > before {
                let last = connects.last().unwrap();
                assert_eq!(last["result"], "refused");
                let reason = last["reason"].as_str().unwrap();
                assert!(reason.contains(word), "{what}: {reason}");
                break;
            }
            assert!(Instant::now() < until, "no audit entry for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert!(s.audit_entries().len() > refusals_before + cases.len());

    // Metrics: signatures by key and role, refusals by reason, latency, HSM errors.
    let m = String::from_utf8(c.get("/metrics").unwrap().body).unwrap();
    for want in [
        format!(
            "tufkey_signatures_total{{key_id=\"{}\",role=\"timestamp\"}} 2",
            s.p256.1
        ),
        format!(
            "tufkey_signatures_total{{key_id=\"{}\",role=\"team-a\"}} 2",
            s.ed.1
        ),
        "tufkey_refusals_total{reason=\"version-not-increasing\"} 2".into(),
        "tufkey_refusals_total{reason=\"tls\"} 3".into(),
        "tufkey_hsm_errors_total 0".into(),
        "tufkey_request_duration_seconds_count".into(),
        "tufkey_requests_total{route=\"/v1/sign\",status=\"403\"}".into(),
    ] {
        assert!(m.contains(&want), "metrics lack {want}:\n{m}");
    }

    daemon.stop();

    // The log verifies; an edit, a removal and a reordering are each detected.
    let log = s.audit.to_str().unwrap();
    let out = ok(None, &["audit", "verify", log]);
    assert!(out.contains("chain intact"), "{out}");
    let text = std::fs::read_to_string(&s.audit).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.last().unwrap().contains("\"action\":\"stop\""));
    let edited = text.replacen("\"who\":\"ci-main\"", "\"who\":\"ci-evil\"", 1);
    let mut removed = lines.clone();
    removed.remove(2);
    let mut reordered = lines.clone();
    reordered.swap(2, 3);
    for (what, bad) in [
        ("an edit", edited),
        ("a removal", removed.join("\n") + "\n"),
        ("a reordering", reordered.join("\n") + "\n"),
    ] {
        std::fs::write(&s.audit, &bad).unwrap();
        let (code, msg) = fails(None, &["audit", "verify", log]);
        assert_eq!(code, 3, "{what}: {msg}");
        assert!(msg.contains("line "), "{what}: {msg}");
    }
    // A log cut at the end shows against the head noted before.
    let head = tufkey::audit::verify(&{
        std::fs::write(&s.audit, &text).unwrap();
        s.audit.clone()
    })
    .unwrap()
    .head;
    std::fs::write(&s.audit, lines[..lines.len() - 1].join("\n") + "\n").unwrap();
    let (code, msg) = fails(None, &["audit", "verify", log, "--head", &head]);
    assert_eq!(code, 3, "{msg}");
    // And a daemon does not start on a broken log.
    std::fs::write(&s.audit, text.replacen("\"version\":1", "\"version\":7", 1)).unwrap();
    let mut c = tufkey(Some(&s.hsm));
    c.args(["serve", "--config", s.config.to_str().unwrap()]);
    let (code, _, err) = run(c);
    assert_ne!(code, 0);
    assert!(err.contains("audit log") && err.contains("line 3"), "{err}");
}

#[test]
fn last_signed_versions_survive_a_restart_even_without_the_state_file() {
    let s = setup("64KiB");
    let tls = s.client_tls("ci-main");
    let sign = |d: &Daemon, v: u64| {
        d.client(&tls)
            .post_json(
                "/v1/sign",
                &sign_req("acme", &s.p256.1, targets_doc(v, &expires_in(3600))),
            )
            .unwrap()
            .status
    };
    let d = Daemon::start(s.d(), "daemon", &s.hsm, &s.config);
    assert_eq!(sign(&d, 5), 200);
    d.stop();
    let state: Value = serde_json::from_slice(&std::fs::read(&s.state).unwrap()).unwrap();
    assert_eq!(state["versions"]["acme"]["targets"], 5);

    let d = Daemon::start(s.d(), "daemon", &s.hsm, &s.config);
    assert_eq!(sign(&d, 5), 403, "replay after a restart");
    assert_eq!(sign(&d, 4), 403, "rollback after a restart");
    assert_eq!(sign(&d, 6), 200);
    d.stop();

    // SIGTERM: a request in flight (head sent, body still coming) finishes and is
    // answered; new connections are refused; the daemon then exits cleanly.
    let d = Daemon::start(s.d(), "daemon", &s.hsm, &s.config);
    let body = serde_json::to_vec(&sign_req(
        "acme",
        &s.p256.1,
        targets_doc(8, &expires_in(3600)),
    ))
    .unwrap();
    let cfg = tls.rustls_config().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answer = rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let tcp = tokio::net::TcpStream::connect(d.addr.as_str()).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut conn = tokio_rustls::TlsConnector::from(cfg).connect(name, tcp).await.unwrap();
        let head = format!(
            "POST /v1/sign HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        conn.write_all(&body[..10]).await.unwrap();
        conn.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        d.sigterm();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let late = std::net::TcpStream::connect(d.addr.as_str());
        assert!(late.is_err(), "a new connection after SIGTERM was accepted");
        conn.write_all(&body[10..]).await.unwrap();
        conn.flush().await.unwrap();
        let mut out = Vec::new();
        let _ = conn.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    });
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    d.wait_exit();
    assert!(s
        .audit_entries()
        .iter()
        .any(|e| e["result"] == "signed" && e["version"] == 8));

    // The audit log alone carries the versions (the state file is only a snapshot).
    std::fs::remove_file(&s.state).unwrap();
    let d = Daemon::start(s.d(), "daemon", &s.hsm, &s.config);
    assert_eq!(sign(&d, 8), 403, "replay with the state file gone");
    assert_eq!(sign(&d, 9), 200);
    d.stop();
    ok(None, &["audit", "verify", s.audit.to_str().unwrap()]);
}

#[test]
fn many_concurrent_clients_all_succeed_and_every_signature_is_audited() {
    let s = setup("64KiB");
    let d = Daemon::start(s.d(), "daemon", &s.hsm, &s.config);
    let tls = s.client_tls("ci-main");
    let (clients, per_client) = (16u64, 12u64);
    let key = s.p256.1.clone();
    std::thread::scope(|scope| {
        for t in 0..clients {
            let (d, tls, key) = (&d, &tls, &key);
            scope.spawn(move || {
                let c = d.client(tls);
                for v in 1..=per_client {
                    let role_doc = if v % 2 == 0 {
                        timestamp_doc(v, &expires_in(3600))
                    } else {
                        targets_doc(v, &expires_in(3600))
                    };
                    let r = c
                        .post_json("/v1/sign", &sign_req(&format!("repo-{t}"), key, role_doc))
                        .unwrap();
                    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                }
            });
        }
    });
    // Racing on one version: exactly one signature.
    let wins: Vec<u16> = std::thread::scope(|scope| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let (d, tls, key) = (&d, &tls, &key);
                scope.spawn(move || {
                    d.client(tls)
                        .post_json(
                            "/v1/sign",
                            &sign_req("race", key, timestamp_doc(1, &expires_in(3600))),
                        )
                        .unwrap()
                        .status
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(wins.iter().filter(|s| **s == 200).count(), 1, "{wins:?}");
    assert_eq!(wins.iter().filter(|s| **s == 403).count(), 7, "{wins:?}");
    d.stop();

    let out = ok(None, &["audit", "verify", s.audit.to_str().unwrap()]);
    assert!(out.contains("chain intact"), "{out}");
    let signed: BTreeSet<(String, u64)> = s
        .audit_entries()
        .iter()
        .filter(|e| e["result"] == "signed")
        .map(|e| {
            (
                e["repository"].as_str().unwrap().to_string(),
                e["version"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(signed.len() as u64, clients * per_client + 1);
    for t in 0..clients {
        for v in 1..=per_client {
            assert!(signed.contains(&(format!("repo-{t}"), v)), "repo-{t} v{v}");
        }
    }
}

#[test]
fn a_config_error_names_the_line_and_the_daemon_does_not_start() {
    let s = setup("64KiB");
    let text = std::fs::read_to_string(&s.config).unwrap();
    let pin_file = s.hsm.dir.path().join("online.pin");
    assert!(text.contains(&pin_file.display().to_string()));
    for (bad, line, word) in [
        (
            text.replace("max_expiry = \"7d\"", "max_expiry = \"a week\""),
            line_of(&text, "max_expiry = \"7d\""),
            "max_expiry",
        ),
        (
            text.replace(
                &format!("pin-source=file:{}", pin_file.display()),
                "pin-value=4321",
            ),
            line_of(&text, "pin-source=file:"),
            "pin-value",
        ),
        (
            text.replace("workers = 4", "workers = 0"),
            line_of(&text, "workers = 4"),
            "workers",
        ),
    ] {
        std::fs::write(&s.config, bad).unwrap();
        let mut c = tufkey(Some(&s.hsm));
        c.args(["serve", "--config", s.config.to_str().unwrap()]);
        let (code, out, err) = run(c);
        assert_ne!(code, 0, "{out}");
        assert!(
            err.contains(&format!("signer.toml:{line}:")) && err.contains(word),
            "{err}"
        );
    }
    // A policy naming a key the daemon does not serve.
    std::fs::write(&s.config, text.replace(&s.ed.1, &"ab".repeat(32))).unwrap();
    let mut c = tufkey(Some(&s.hsm));
    c.args(["serve", "--config", s.config.to_str().unwrap(), "--check"]);
    let (code, _, err) = run(c);
    assert_ne!(code, 0);
    assert!(err.contains("no [[keys]] entry serves"), "{err}");
    assert!(!s.audit.exists() || s.audit_entries().is_empty());
}

/// Issue 5: the HSM token disappears under a running daemon and comes back. SoftHSM
/// 2.6 keeps failing every call on a token whose folder was moved away, even after it
/// is moved back, until the module is re-initialised: tufkey must do that by itself.
#[test]
fn an_hsm_that_disappears_gives_503_and_recovers_when_it_returns() {
    let s = setup("64KiB");
    let d = Daemon::start(s.d(), "daemon", &s.hsm, &s.config);
    let c = d.client(&s.client_tls("ci-main"));
    let sign = |v: u64| {
        let doc = timestamp_doc(v, &expires_in(3600));
        let r = c
            .post_json("/v1/sign", &sign_req("acme", &s.p256.1, doc.clone()))
            .unwrap();
        (r, doc)
    };
    let (r, _) = sign(1);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(c.get("/healthz").unwrap().status, 200);

    // The token goes away.
    let folder = s.hsm.token_file("online").parent().unwrap().to_path_buf();
    let away = s.hsm.dir.path().join("online-away");
    std::fs::rename(&folder, &away).unwrap();

    let t = Instant::now();
    let (r, _) = sign(2);
    eprintln!(
        "first request after the token went away answered in {:?}",
        t.elapsed()
    );
    assert_eq!(
        status(&r),
        (503, "hsm-unavailable".into()),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let message = r.json()["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("token \"online\"") && message.contains("object=ts"),
        "{message}"
    );
    assert!(message.contains("no restart is needed"), "{message}");
    eprintln!("503 message: {message}");
    assert!(!message.contains("4321"), "the PIN leaked: {message}");
    let entry = s.wait_audit("the unavailable HSM", |e| {
        e["status"] == 503 && e["version"] == 2
    });
    assert_eq!(entry["result"], "error");
    assert!(
        entry["reason"]
            .as_str()
            .unwrap()
            .starts_with("hsm-unavailable: "),
        "{entry}"
    );

    // Health says which key cannot sign, and why.
    let h = c.get("/healthz").unwrap();
    assert_eq!(h.status, 503, "{}", String::from_utf8_lossy(&h.body));
    let h = h.json();
    assert_eq!(h["status"], "degraded");
    eprintln!("healthz: {h}");
    let down: Vec<&str> = h["unavailable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["keyid"].as_str().unwrap())
        .collect();
    // Both keys live on the one token.
    assert_eq!(down.len(), 2, "{h}");
    assert!(down.contains(&s.p256.1.as_str()), "{h}");
    assert!(
        h["unavailable"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("online"),
        "{h}"
    );

    // Requests while it is away are answered at once, and each counts as an HSM error.
    let t = Instant::now();
    for v in 3..6 {
        assert_eq!(status(&sign(v).0), (503, "hsm-unavailable".into()));
    }
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let m = String::from_utf8(c.get("/metrics").unwrap().body).unwrap();
    for want in [
        "tufkey_hsm_errors_total 4",
        "tufkey_refusals_total{reason=\"hsm-unavailable\"} 4",
    ] {
        assert!(m.contains(want), "metrics lack {want}:\n{m}");
    }

    // It comes back: within a bounded time a request signs again, with no restart.
    std::fs::rename(&away, &folder).unwrap();
    let back = Instant::now();
    let mut v = 6;
    let (doc, sig) = loop {
        let (r, doc) = sign(v);
        if r.status == 200 {
            break (doc, r.json());
        }
        assert_eq!(
            status(&r),
            (503, "hsm-unavailable".into()),
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "no signature within 10 s after the token came back"
        );
        std::thread::sleep(Duration::from_millis(100));
        v += 1;
    };
    let took = back.elapsed();
    eprintln!("signed again {took:?} after the token came back (version {v})");
    assert!(took < Duration::from_secs(3), "{took:?}");
    let mut signed_doc = doc;
    signed_doc["signatures"] = json!([{"keyid": sig["keyid"], "sig": sig["sig"]}]);
    let file = s.d().join("timestamp.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&signed_doc).unwrap()).unwrap();
    python_tuf(
        PY_VERIFY_SIGS,
        &[file.to_str().unwrap(), &s.p256.1, &s.p256.2.to_string()],
    );
    // The other key on the token signs too (it shares the recovered token's login).
    let oc = d.client(&s.client_tls("ci-other.example"));
    let raw = json!({"key_id": s.ed.1, "message_hex": hex::encode(b"after")});
    let v2 = oc
        .expect_ok(oc.post_json("/v1/sign-raw", &raw).unwrap())
        .unwrap();
    tufkey::tuf::Key::from_value(&s.ed.1, &s.ed.2)
        .unwrap()
        .verify_hex(b"after", v2["sig"].as_str().unwrap())
        .unwrap();
    let h = c.get("/healthz").unwrap();
    assert_eq!(h.status, 200, "{}", String::from_utf8_lossy(&h.body));
    assert_eq!(h.json()["status"], "ok");

    d.stop();
    let out = ok(None, &["audit", "verify", s.audit.to_str().unwrap()]);
    assert!(out.contains("chain intact"), "{out}");
}
