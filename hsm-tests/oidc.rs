//! OIDC workload identity for `tufkey serve`, end to end: the real daemon over TLS
//! with a key on a throwaway SoftHSM token, a real HTTPS issuer on loopback that the
//! test starts (discovery and JWKS over TLS with a test CA; its key rotated while the
//! daemon runs), tokens shaped like GitHub Actions' and GitLab's, python-tuf checking
//! what an OIDC-authorized request signed, replicas sharing single-use token ids in a
//! real PostgreSQL, and `tufkey sign` with a remote key sending tokens itself.

mod harness;
#[path = "harness/oidc.rs"]
mod issuer;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use harness::daemon::{client_policy, daemon_folder, expires_in, signer_toml, Ca, Daemon};
use harness::pg::Postgres;
use harness::*;
use issuer::{github_claims, gitlab_claims, jwks, now, Hang, HttpsIssuer, SigningKey};
use serde_json::{json, Value};
use tufkey::keys::remote::{Client, ClientTls, Response, TokenSource};
use tufkey::keys::Secret;

const REPO: &str = "acme/app";
const REPO_ID: &str = "4242";
const GH_AUD: &str = "https://signer.acme.example";
const GL_AUD: &str = "tufkey-signer";
const GL_ISS: &str = "https://gitlab.acme.example";

const PY_VERIFY_SIG: &str = r#"
import json, sys
from securesystemslib.signer import SSlibKey
from tuf.api.metadata import Metadata
md = Metadata.from_file(sys.argv[1])
key = SSlibKey.from_dict(sys.argv[2], json.loads(sys.argv[3]))
key.verify_signature(md.signatures[sys.argv[2]], md.signed_bytes)
print("ok")
"#;

/// A daemon with one P-256 key, trusting a GitHub-like issuer (RS256, discovery over
/// HTTPS, single use), a GitLab-like one (ES256, a JWKS file), one that is down and
/// two that hang; a certificate client `ci-main` on the same daemon.
struct Setup {
    hsm: SoftHsm,
    dir: tempfile::TempDir,
    ca: Ca,
    issuer: HttpsIssuer,
    hang: Hang,
    gh: SigningKey,
    gl: SigningKey,
    key: (String, String, Value),
    config: PathBuf,
    /// An issuer URL where nothing listens.
    down: String,
}

impl Setup {
    fn new() -> Setup {
        let hsm = SoftHsm::new();
        let token = hsm.token("online", "4321");
        let key = generate(Some(&hsm), &token.uri("ts"), "ecdsa-p256", &[]);
        let (dir, ca) = daemon_folder("tufkey-oidc-");
        let d = dir.path();
        // The issuer's own CA and certificate: the daemon trusts it through `ca`.
        let issuer_ca = Ca::new(d, "issuer-ca");
        let (cert, k) = issuer_ca.issue(d, "issuer", "127.0.0.1", true, false);
        let issuer = HttpsIssuer::start(&cert, &k);
        let gh = SigningKey::rsa("gh-1");
        issuer.publish("gh", &jwks(&[&gh]));
        // An issuer whose JWKS is larger than the daemon accepts (256 KiB).
        let padding = "x".repeat(300 << 10);
        issuer.publish("huge", &json!({"keys": [gh.jwk], "padding": padding}));
        let gl = SigningKey::ec("gl-1");
        std::fs::write(d.join("gitlab-jwks.json"), jwks(&[&gl]).to_string()).unwrap();
        let hang = Hang::start();
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let down = format!("https://{closed}");
        let s = Setup {
            hsm,
            dir,
            ca,
            issuer,
            hang,
            gh,
            gl,
            key,
            config: PathBuf::new(),
            down,
        };
        let config = s.write_config("state = \"state.json\"\naudit = \"audit.jsonl\"");
        Setup { config, ..s }
    }

    fn d(&self) -> &Path {
        self.dir.path()
    }

    fn gh_iss(&self) -> String {
        self.issuer.issuer_url("gh")
    }

    /// signer.toml with `store` lines.
    fn write_config(&self, store: &str) -> PathBuf {
        let down = self.down.as_str();
        let (gh, hang) = (self.gh_iss(), format!("https://{}", self.hang.addr));
        let huge = self.issuer.issuer_url("huge");
        let extra = format!(
            r#"client_certificate = "optional"

[oidc]
clock_skew = "30s"

[[oidc.issuers]]
issuer = "{gh}"
audience = "{GH_AUD}"
algorithms = ["RS256"]
ca = "issuer-ca.pem"
single_use = true
refetch_interval = "2s"

[[oidc.issuers]]
issuer = "{GL_ISS}"
audience = "{GL_AUD}"
algorithms = ["ES256"]
jwks_file = "gitlab-jwks.json"

[[oidc.issuers]]
issuer = "{huge}"
audience = "x"
ca = "issuer-ca.pem"

[[oidc.issuers]]
issuer = "{down}"
audience = "x"
ca = "issuer-ca.pem"
fetch_timeout = "5s"

[[oidc.issuers]]
issuer = "{hang}/slow"
audience = "x"
ca = "issuer-ca.pem"
fetch_timeout = "1s"

[[oidc.issuers]]
issuer = "{hang}/stuck"
audience = "x"
ca = "issuer-ca.pem"
fetch_timeout = "60s"

"#
        );
        let id = self.key.1.as_str();
        let roles = r#"repositories = ["acme"]
roles = ["targets", "snapshot", "timestamp"]
max_expiry = "7d"
"#;
        let oidc_client = |name: &str, issuer: &str, claims: &str| {
            format!("[[clients]]\nidentity = \"{name}\"\noidc = {{ issuer = \"{issuer}\", claims = {{ {claims} }} }}\nkeys = [\"{id}\"]\n{roles}")
        };
        let clients = vec![
            client_policy("ci-main", &[id], &["acme"], &["timestamp"], "7d", ""),
            oidc_client(
                "gh-release",
                &gh,
                &format!(
                    r#"repository = "{REPO}", repository_id = "{REPO_ID}", ref = "refs/heads/main", environment = "release""#
                ),
            ),
            oidc_client(
                "gl-release",
                GL_ISS,
                r#"project_path = "acme/app", ref_protected = "true", ref = "*""#,
            ),
            oidc_client("down", down, r#"sub = "x""#),
            oidc_client("huge", &huge, r#"sub = "x""#),
            oidc_client("slow", &format!("{hang}/slow"), r#"sub = "x""#),
            oidc_client("stuck", &format!("{hang}/stuck"), r#"sub = "x""#),
        ];
        let text = signer_toml(store, &extra, &[&self.key.0], &clients);
        let path = self.d().join("signer.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A client without a certificate sending `token`.
    fn bearer(&self, daemon: &Daemon, token: &str) -> Client {
        let tls = ClientTls {
            ca: self.d().join("client-ca.pem"),
            identity: None,
        };
        Client::new(&daemon.base(), &tls)
            .unwrap()
            .with_token(Some(TokenSource::Static(Secret::new(token.to_string()))))
    }

    fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(self.d().join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn gh_token(&self) -> String {
        self.gh.mint(&self.gh_claims())
    }

    fn gh_claims(&self) -> Value {
        github_claims(
            &self.gh_iss(),
            GH_AUD,
            REPO,
            REPO_ID,
            "refs/heads/main",
            "release",
        )
    }
}

/// A sign request for targets version `version` with key `key_id`.
fn targets(key_id: &str, version: u64) -> Value {
    json!({
        "repository": "acme",
        "key_id": key_id,
        "metadata": {
            "signed": {
                "_type": "targets",
                "spec_version": "1.0.31",
                "version": version,
                "expires": expires_in(86400),
                "targets": {},
            },
            "signatures": [],
        },
    })
}

fn code(r: &Response) -> (u16, String) {
    (
        r.status,
        r.json()["error"].as_str().unwrap_or_default().to_string(),
    )
}

/// Writes what `req` asked to sign with the signature of `answer` and has python-tuf
/// verify it with the daemon's public key.
fn python_tuf_accepts(dir: &Path, req: &Value, answer: &Value, key: &(String, String, Value)) {
    let file = dir.join("signed-by-oidc.json");
    let doc = json!({
        "signed": req["metadata"]["signed"],
        "signatures": [{"keyid": answer["keyid"], "sig": answer["sig"]}],
    });
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let out = python_tuf(
        PY_VERIFY_SIG,
        &[file.to_str().unwrap(), &key.1, &key.2.to_string()],
    );
    assert!(out.contains("ok"), "{out}");
}

#[test]
fn github_and_gitlab_tokens_sign_what_python_tuf_accepts_and_every_refusal_is_answered_and_audited()
{
    let s = Setup::new();
    let daemon = Daemon::start(s.d(), "daemon", &s.hsm, &s.config);
    let id = s.key.1.clone();
    let mut version = 0u64;
    let mut next = || {
        version += 1;
        version
    };

    // A certificate client keeps working on the same daemon.
    let (c, k) = s.ca.issue(s.d(), "ci-main", "ci-main", false, false);
    let cert = daemon.client(&ClientTls {
        ca: s.d().join("client-ca.pem"),
        identity: Some((c, k)),
    });
    let ts = json!({"repository": "acme", "key_id": id, "metadata": {"signed": {
        "_type": "timestamp", "spec_version": "1.0.31", "version": 1,
        "expires": expires_in(3600), "meta": {"snapshot.json": {"version": 1}}}, "signatures": []}});
    let r = cert.post_json("/v1/sign", &ts).unwrap();
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(s.audit().last().unwrap()["who"], "ci-main");

    // A GitHub Actions token (no certificate): lists its key, is told its tokens are
    // single use, signs; python-tuf accepts the signature.
    let gh_token = s.gh_token();
    let gh = s.bearer(&daemon, &gh_token);
    let keys = gh
        .expect_ok(gh.get(&format!("/v1/keys/{id}")).unwrap())
        .unwrap();
    assert_eq!(keys["single_use_token"], json!(true));
    let req = targets(&id, next());
    let r = gh.post_json("/v1/sign", &req).unwrap();
    assert_eq!(r.status, 200, "{:?}", r.json());
    python_tuf_accepts(s.d(), &req, &r.json(), &s.key);
    let entry = s
        .audit()
        .into_iter()
        .rev()
        .find(|e| e["result"] == "signed")
        .unwrap();
    assert_eq!(entry["who"], "gh-release");
    assert_eq!(entry["issuer"], json!(s.gh_iss()));
    assert_eq!(
        entry["subject"],
        json!(format!("repo:{REPO}:environment:release"))
    );
    assert_eq!(
        entry["claims"],
        json!({"environment": "release", "ref": "refs/heads/main", "repository": REPO, "repository_id": REPO_ID})
    );

    // A GitLab token, checked against the air-gapped JWKS file.
    let gl_claims = || gitlab_claims(GL_ISS, GL_AUD, "acme/app", "77", "main", true);
    let gl = s.bearer(&daemon, &s.gl.mint(&gl_claims()));
    let req = targets(&id, next());
    let r = gl.post_json("/v1/sign", &req).unwrap();
    assert_eq!(r.status, 200, "{:?}", r.json());
    python_tuf_accepts(s.d(), &req, &r.json(), &s.key);
    assert_eq!(
        s.audit().last().unwrap()["claims"]["project_path"],
        "acme/app"
    );

    // Every refusal: its status and reason, and an audit entry that says so.
    let gh_with = |edit: &dyn Fn(&mut Value)| {
        let mut c = s.gh_claims();
        edit(&mut c);
        s.gh.mint(&c)
    };
    let gl_with = |edit: &dyn Fn(&mut Value)| {
        let mut c = gl_claims();
        edit(&mut c);
        s.gl.mint(&c)
    };
    let rogue = SigningKey::rsa("gh-rogue");
    let impostor = SigningKey::rsa("gh-1");
    let t = now();
    let other_gh = SigningKey::rsa("x");
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "another audience",
            gh_with(&|c| c["aud"] = json!("https://other.example")),
            401,
            "wrong-audience",
        ),
        (
            "an issuer the signer does not trust",
            other_gh.mint(&github_claims(
                "https://token.evil.example",
                GH_AUD,
                REPO,
                REPO_ID,
                "refs/heads/main",
                "release",
            )),
            401,
            "unknown-issuer",
        ),
        (
            "an expired token",
            gh_with(&|c| {
                c["exp"] = json!(t - 600);
                c["iat"] = json!(t - 900);
                c["nbf"] = json!(t - 900);
            }),
            401,
            "token-expired",
        ),
        (
            "a token not valid yet",
            gh_with(&|c| c["nbf"] = json!(t + 600)),
            401,
            "token-not-yet-valid",
        ),
        (
            "a token issued in the future",
            gh_with(&|c| c["iat"] = json!(t + 600)),
            401,
            "token-issued-in-future",
        ),
        (
            "a key not in the JWKS",
            rogue.mint(&s.gh_claims()),
            401,
            "unknown-key",
        ),
        (
            "another key under the issuer's key id",
            impostor.mint(&s.gh_claims()),
            401,
            "bad-signature",
        ),
        (
            "alg: none",
            s.gh.unsigned(&s.gh_claims()),
            401,
            "algorithm-not-allowed",
        ),
        (
            "HS256 with the public key as the secret",
            s.gh.forge_hs256(&s.gh_claims()),
            401,
            "algorithm-not-allowed",
        ),
        (
            "ES256 where the issuer allows RS256 only",
            s.gl.mint(&s.gh_claims()),
            401,
            "algorithm-not-allowed",
        ),
        (
            "another repository",
            gh_with(&|c| c["repository"] = json!("acme/other")),
            403,
            "no-policy",
        ),
        (
            "a pull request's ref",
            gh_with(&|c| {
                c["ref"] = json!("refs/pull/7/merge");
                c["event_name"] = json!("pull_request");
            }),
            403,
            "no-policy",
        ),
        (
            "another environment",
            gh_with(&|c| c["environment"] = json!("staging")),
            403,
            "no-policy",
        ),
        (
            "a re-created repository of the same name",
            gh_with(&|c| c["repository_id"] = json!("9999")),
            403,
            "no-policy",
        ),
        (
            "another GitLab project",
            gl_with(&|c| c["project_path"] = json!("acme/fork")),
            403,
            "no-policy",
        ),
        (
            "an unprotected GitLab ref",
            gl_with(&|c| c["ref_protected"] = json!("false")),
            403,
            "no-policy",
        ),
        (
            "a replayed single-use token",
            gh_token.clone(),
            401,
            "token-replayed",
        ),
        (
            "an issuer whose JWKS cannot be fetched",
            other_gh.mint(&github_claims(&s.down, "x", REPO, REPO_ID, "main", "x")),
            503,
            "jwks-unavailable",
        ),
        (
            "an issuer whose JWKS is too large",
            s.gh.mint(&github_claims(
                &s.issuer.issuer_url("huge"),
                "x",
                REPO,
                REPO_ID,
                "main",
                "x",
            )),
            503,
            "jwks-unavailable",
        ),
        (
            "an issuer whose JWKS endpoint hangs",
            other_gh.mint(&github_claims(
                &format!("https://{}/slow", s.hang.addr),
                "x",
                REPO,
                REPO_ID,
                "main",
                "x",
            )),
            503,
            "jwks-unavailable",
        ),
        (
            "an oversized token",
            format!("{}.{}.x", "a".repeat(10_000), "b".repeat(10_000)),
            401,
            "token-too-large",
        ),
        (
            "a malformed token",
            "not.a-jwt".to_string(),
            401,
            "token-malformed",
        ),
    ];
    for (what, token, status, reason) in &cases {
        let before = s.audit().len();
        let r = s
            .bearer(&daemon, token)
            .post_json("/v1/sign", &targets(&id, next()))
            .unwrap();
        assert_eq!(
            code(&r),
            (*status, reason.to_string()),
            "{what}: {:?}",
            r.json()
        );
        let message = r.json()["message"].as_str().unwrap_or_default().to_string();
        assert!(
            !message.is_empty() && !message.contains(token.as_str()),
            "{what}: {message}"
        );
        if *status == 503 {
            assert!(
                message.contains("cannot fetch the signing keys"),
                "{what}: {message}"
            );
        }
        if what.contains("too large") {
            assert!(message.contains("larger than 262144 bytes"), "{message}");
        }
        if what.contains("hangs") {
            assert!(message.contains("no whole answer within 1s"), "{message}");
        }
        let entries = s.audit();
        assert_eq!(entries.len(), before + 1, "{what}: one audit entry");
        let e = entries.last().unwrap();
        assert_eq!(
            (e["result"].as_str(), e["status"].as_u64()),
            (
                Some(if *status == 503 { "error" } else { "refused" }),
                Some(u64::from(*status))
            ),
            "{what}: {e}"
        );
        assert!(
            e["reason"].as_str().unwrap().starts_with(reason),
            "{what}: {e}"
        );
        if *reason == "token-replayed" {
            // A genuine token, used again: who it was is known.
            assert_eq!(e["who"], "gh-release", "{e}");
        } else if *status != 403 {
            // A refused token proved nothing: no name in `who`.
            assert_eq!(e["who"], "-", "{what}: {e}");
        }
        if *status == 403 {
            // Who asked, and with which claims.
            assert!(
                e["issuer"].is_string() && e["subject"].is_string() && e["claims"].is_object(),
                "{what}: {e}"
            );
        }
    }
    // With no certificate and no token there is nothing to go by.
    let anonymous = Client::new(
        &daemon.base(),
        &ClientTls {
            ca: s.d().join("client-ca.pem"),
            identity: None,
        },
    )
    .unwrap();
    let r = anonymous
        .post_json("/v1/sign", &targets(&id, next()))
        .unwrap();
    assert_eq!(code(&r), (401, "no-credentials".to_string()));
    assert!(s.audit().last().unwrap()["reason"]
        .as_str()
        .unwrap()
        .starts_with("no-credentials"));
    daemon.stop();
}

#[test]
fn a_rotated_issuer_key_is_fetched_once_and_a_hanging_issuer_does_not_hold_up_the_others() {
    let s = Setup::new();
    let daemon = Daemon::start(s.d(), "daemon", &s.hsm, &s.config);
    let id = s.key.1.clone();
    let r = s
        .bearer(&daemon, &s.gh_token())
        .post_json("/v1/sign", &targets(&id, 1))
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(
        s.issuer.jwks_fetches("gh"),
        1,
        "discovery, then the JWKS, once"
    );
    assert_eq!(s.issuer.hits("/gh/.well-known/openid-configuration"), 1);

    // The issuer rotates: its JWKS now holds only a new key. A token signed by it is
    // accepted once the daemon fetched the set again for the unknown key id.
    let gh2 = SigningKey::rsa("gh-2");
    s.issuer.publish("gh", &jwks(&[&gh2]));
    std::thread::sleep(Duration::from_millis(2500)); // beyond refetch_interval = "2s"
    let r = s
        .bearer(&daemon, &gh2.mint(&s.gh_claims()))
        .post_json("/v1/sign", &targets(&id, 2))
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(s.issuer.jwks_fetches("gh"), 2);
    // Right after, made-up key ids and the retired key are refused without fetching
    // again: a flood of them cannot make the signer hammer the issuer.
    for token in [SigningKey::rsa("gh-3").mint(&s.gh_claims()), s.gh_token()] {
        let r = s
            .bearer(&daemon, &token)
            .post_json("/v1/sign", &targets(&id, 3))
            .unwrap();
        assert_eq!(code(&r), (401, "unknown-key".to_string()), "{:?}", r.json());
    }
    assert_eq!(
        s.issuer.jwks_fetches("gh"),
        2,
        "no fetch within the refetch interval"
    );

    // An issuer whose endpoint accepts and never answers: its request waits for its own
    // fetch; a GitHub token is served meanwhile.
    let stuck_iss = format!("https://{}/stuck", s.hang.addr);
    let stuck_token = gh2.mint(&github_claims(&stuck_iss, "x", REPO, REPO_ID, "main", "x"));
    let stuck = s.bearer(&daemon, &stuck_token);
    let waiting =
        std::thread::spawn(move || stuck.post_json("/v1/sign", &targets("00", 9)).unwrap());
    let until = Instant::now() + Duration::from_secs(30);
    while s.hang.accepted() == 0 {
        assert!(
            Instant::now() < until,
            "the daemon never tried the hanging issuer"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = s
        .bearer(&daemon, &gh2.mint(&s.gh_claims()))
        .post_json("/v1/sign", &targets(&id, 3))
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert!(
        !waiting.is_finished(),
        "the hanging issuer's request is still waiting for its fetch"
    );
    s.hang.release();
    let r = waiting.join().unwrap();
    assert_eq!(
        code(&r),
        (503, "jwks-unavailable".to_string()),
        "{:?}",
        r.json()
    );
    daemon.stop();
}

#[test]
fn a_single_use_token_is_accepted_once_across_two_replicas_on_postgresql() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    let (dir, _ca) = daemon_folder("tufkey-oidc-pg-");
    let d = dir.path();
    let gl = SigningKey::ec("gl-1");
    std::fs::write(d.join("gitlab-jwks.json"), jwks(&[&gl]).to_string()).unwrap();
    // One online key, imported into each replica's own SoftHSM.
    let key_file = d.join("online.p8.pem");
    std::fs::write(
        &key_file,
        rcgen::KeyPair::generate().unwrap().serialize_pem(),
    )
    .unwrap();
    let extra = format!(
        "client_certificate = \"optional\"\n\n[[oidc.issuers]]\nissuer = \"{GL_ISS}\"\naudience = \"{GL_AUD}\"\njwks_file = \"gitlab-jwks.json\"\nsingle_use = true\n\n"
    );
    let mut replicas = Vec::new();
    let mut key_id = String::new();
    for i in 0..2 {
        let hsm = SoftHsm::new();
        let uri = hsm.token("online", "4321").uri("ts");
        let out = ok(
            Some(&hsm),
            &["key", "import", key_file.to_str().unwrap(), &uri, "--json"],
        );
        key_id = serde_json::from_str::<Value>(&out).unwrap()["keyid"]
            .as_str()
            .unwrap()
            .to_string();
        let client = format!(
            "[[clients]]\nidentity = \"gl-release\"\noidc = {{ issuer = \"{GL_ISS}\", claims = {{ project_path = \"acme/app\" }} }}\nkeys = [\"{key_id}\"]\nrepositories = [\"acme\"]\nroles = [\"targets\"]\nmax_expiry = \"7d\"\n"
        );
        let config = d.join(format!("replica-{i}.toml"));
        std::fs::write(
            &config,
            signer_toml(
                &format!("state = \"{}\"", pg.url()),
                &extra,
                &[&uri],
                &[client],
            ),
        )
        .unwrap();
        replicas.push((hsm, config));
    }
    let daemons: Vec<Daemon> = replicas
        .iter()
        .enumerate()
        .map(|(i, (hsm, config))| Daemon::start(d, &format!("replica-{i}"), hsm, config))
        .collect();
    let bearer = |daemon: &Daemon, token: &str| {
        Client::new(
            &daemon.base(),
            &ClientTls {
                ca: d.join("client-ca.pem"),
                identity: None,
            },
        )
        .unwrap()
        .with_token(Some(TokenSource::Static(Secret::new(token.to_string()))))
    };
    let token = gl.mint(&gitlab_claims(
        GL_ISS, GL_AUD, "acme/app", "77", "main", true,
    ));
    let r = bearer(&daemons[0], &token)
        .post_json("/v1/sign", &targets(&key_id, 1))
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.json());
    // The same token on the other replica, and again on the first: used up everywhere.
    for daemon in [&daemons[1], &daemons[0]] {
        let r = bearer(daemon, &token)
            .post_json("/v1/sign", &targets(&key_id, 2))
            .unwrap();
        assert_eq!(
            code(&r),
            (401, "token-replayed".to_string()),
            "{:?}",
            r.json()
        );
    }
    // A fresh token from the same job signs on either.
    let fresh = gl.mint(&gitlab_claims(
        GL_ISS, GL_AUD, "acme/app", "77", "main", true,
    ));
    let r = bearer(&daemons[1], &fresh)
        .post_json("/v1/sign", &targets(&key_id, 2))
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.json());
    for daemon in daemons {
        daemon.stop();
    }
    // The one audit chain in PostgreSQL records both refusals with the issuer.
    let export = d.join("audit-export.jsonl");
    ok(
        None,
        &[
            "audit",
            "export",
            &pg.url(),
            "--output",
            export.to_str().unwrap(),
        ],
    );
    let replayed: Vec<Value> = std::fs::read_to_string(&export)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| {
            e["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("token-replayed"))
        })
        .collect();
    assert_eq!(replayed.len(), 2, "{replayed:?}");
    assert!(replayed
        .iter()
        .all(|e| e["issuer"] == GL_ISS && e["status"] == 401));
}

#[test]
fn tufkey_sign_with_a_remote_key_sends_a_token_from_the_environment_a_file_or_github_actions() {
    let s = Setup::new();
    let daemon = Daemon::start(s.d(), "daemon", &s.hsm, &s.config);
    let id = s.key.1.clone();
    let uri = format!("{}/keys/{id}", daemon.base());
    let gl_token = s.gl.mint(&gitlab_claims(
        GL_ISS, GL_AUD, "acme/app", "77", "main", true,
    ));
    let token_file = s.d().join("gitlab-token");
    std::fs::write(&token_file, format!("{gl_token}\n")).unwrap();
    let sign = |version: u64, envs: &[(&str, &str)], args: &[&str]| {
        let file = s.d().join(format!("targets-{version}.json"));
        write_unsigned(&file, targets(&id, version)["metadata"]["signed"].clone());
        let mut c = tufkey(None);
        c.args(["sign", file.to_str().unwrap(), "--key", &uri])
            .args(args)
            .env("TUFKEY_REMOTE_CA", s.d().join("client-ca.pem"))
            .env("TUFKEY_REMOTE_REPOSITORY", "acme");
        for (k, v) in envs {
            c.env(k, v);
        }
        let (code, out, err) = run(c);
        (code, format!("{out}{err}"), file)
    };
    let verify = |file: &Path| {
        let out = python_tuf(
            PY_VERIFY_SIG,
            &[file.to_str().unwrap(), &id, &s.key.2.to_string()],
        );
        assert!(out.contains("ok"), "{out}");
    };

    // The token itself, as GitLab's `id_tokens:` gives it.
    let (code, out, file) = sign(1, &[("TUFKEY_REMOTE_TOKEN", &gl_token)], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains(&gl_token), "the token is never printed");
    verify(&file);
    // A file holding it.
    let (code, out, file) = sign(
        2,
        &[],
        &["--remote-token-file", token_file.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}");
    verify(&file);

    // Inside GitHub Actions: the token is fetched from the job's token endpoint for the
    // signer's audience, and fetched anew for each request since the signer says its
    // tokens are single use.
    let (gh, iss) = (s.gh.clone(), s.gh_iss());
    s.issuer.serve_actions_tokens("request-secret", move |aud| {
        gh.mint(&github_claims(
            &iss,
            aud,
            REPO,
            REPO_ID,
            "refs/heads/main",
            "release",
        ))
    });
    let actions_url = format!("https://{}/gha-token?api-version=2.0", s.issuer.addr);
    let ca = s.d().join("issuer-ca.pem");
    let actions = [
        ("ACTIONS_ID_TOKEN_REQUEST_URL", actions_url.as_str()),
        ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "request-secret"),
        ("TUFKEY_REMOTE_TOKEN_CA", ca.to_str().unwrap()),
        ("TUFKEY_REMOTE_AUDIENCE", GH_AUD),
    ];
    let (code, out, file) = sign(3, &actions, &[]);
    assert_eq!(code, 0, "{out}");
    verify(&file);
    assert_eq!(
        s.issuer.hits("/gha-token"),
        2,
        "one token for reading the key, a fresh one for signing"
    );
    // A wrong request token: a clear error, the file unchanged.
    let mut wrong = actions;
    wrong[1].1 = "not-the-secret";
    let (code, out, file) = sign(4, &wrong, &[]);
    assert_ne!(code, 0);
    assert!(
        out.contains("GitHub Actions OIDC token request") && out.contains("401"),
        "{out}"
    );
    assert!(!out.contains("not-the-secret"), "{out}");
    let doc: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(doc["signatures"], json!([]));

    // The audience from the client config file's entry for this signer.
    let remote_toml = s.d().join("remote.toml");
    std::fs::write(
        &remote_toml,
        format!(
            "[[signer]]\nurl = \"{}\"\naudience = \"{GH_AUD}\"\n",
            daemon.base()
        ),
    )
    .unwrap();
    let config_env = ("TUFKEY_REMOTE_CONFIG", remote_toml.to_str().unwrap());
    let (code, out, file) = sign(5, &[actions[0], actions[1], actions[2], config_env], &[]);
    assert_eq!(code, 0, "{out}");
    verify(&file);
    // With none given, the audience is the signer's own URL, which this signer's
    // issuer entry does not accept.
    let (code, out, _) = sign(6, &[actions[0], actions[1], actions[2]], &[]);
    assert_ne!(code, 0);
    assert!(
        out.contains("wrong-audience") && out.contains(GH_AUD),
        "{out}"
    );

    // A job with a client certificate (and `id-token: write` for something else)
    // authenticates by its certificate: no token is fetched. `ci-main` may sign only
    // timestamp, so this targets file is refused for its role, not its token.
    let fetched = s.issuer.hits("/gha-token");
    let (cert, key) = s.ca.issue(s.d(), "ci-main", "ci-main", false, false);
    let (cert, key) = (
        cert.to_str().unwrap().to_string(),
        key.to_str().unwrap().to_string(),
    );
    let with_cert = [
        actions[0],
        actions[1],
        actions[2],
        actions[3],
        ("TUFKEY_REMOTE_CERT", &cert),
        ("TUFKEY_REMOTE_KEY", &key),
    ];
    let (code, out, _) = sign(7, &with_cert, &[]);
    assert_ne!(code, 0);
    assert!(
        out.contains("role-not-allowed") && out.contains("ci-main"),
        "{out}"
    );
    assert_eq!(s.issuer.hits("/gha-token"), fetched);
    daemon.stop();
}

#[test]
fn one_listener_can_require_client_certificates_while_another_takes_tokens_alone() {
    let s = Setup::new();
    let port = harness::pg::free_port();
    let text = std::fs::read_to_string(&s.config).unwrap().replace(
        "client_certificate = \"optional\"\n",
        &format!(
            "\n[[listeners]]\nlisten = \"127.0.0.1:{port}\"\nclient_certificate = \"optional\"\n"
        ),
    );
    std::fs::write(&s.config, text).unwrap();
    let daemon = Daemon::start(s.d(), "daemon", &s.hsm, &s.config);
    let id = s.key.1.clone();
    let ca = s.d().join("client-ca.pem");
    let token_port = format!("https://127.0.0.1:{port}");
    let with_token = |base: &str, cert: Option<(PathBuf, PathBuf)>| {
        let gl = s.gl.mint(&gitlab_claims(
            GL_ISS, GL_AUD, "acme/app", "77", "main", true,
        ));
        Client::new(
            base,
            &ClientTls {
                ca: ca.clone(),
                identity: cert,
            },
        )
        .unwrap()
        .with_token(Some(TokenSource::Static(Secret::new(gl))))
    };
    let cert = s.ca.issue(s.d(), "ci-main", "ci-main", false, false);

    // `listen` still wants a certificate: a token alone does not get through TLS.
    let e = with_token(&daemon.base(), None)
        .get("/v1/keys")
        .unwrap_err();
    assert!(e.to_string().contains("CertificateRequired"), "{e}");
    // With one, the token decides who it is.
    let r = with_token(&daemon.base(), Some(cert.clone()))
        .post_json("/v1/sign", &targets(&id, 1))
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(s.audit().last().unwrap()["who"], "gl-release");

    // The token listener: a token alone signs; a certificate client works too; nothing
    // at all is 401.
    let r = with_token(&token_port, None)
        .post_json("/v1/sign", &targets(&id, 2))
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.json());
    let cert_only = Client::new(
        &token_port,
        &ClientTls {
            ca: ca.clone(),
            identity: Some(cert),
        },
    )
    .unwrap();
    let keys = cert_only
        .expect_ok(cert_only.get("/v1/keys").unwrap())
        .unwrap();
    assert_eq!(keys["identity"], "ci-main");
    let anonymous = Client::new(&token_port, &ClientTls { ca, identity: None }).unwrap();
    let r = anonymous.get("/v1/keys").unwrap();
    assert_eq!(code(&r), (401, "no-credentials".to_string()));
    daemon.stop();
}

#[test]
fn serve_check_reads_jwks_files_and_names_the_issuer_line_of_a_broken_one() {
    let s = Setup::new();
    let config = s.config.to_str().unwrap();
    let out = ok(Some(&s.hsm), &["serve", "--config", config, "--check"]);
    assert!(out.contains(": ok"), "{out}");
    std::fs::write(s.d().join("gitlab-jwks.json"), "{\"keys\": [").unwrap();
    let (code, msg) = fails(Some(&s.hsm), &["serve", "--config", config, "--check"]);
    assert_ne!(code, 0);
    let text = std::fs::read_to_string(&s.config).unwrap();
    let line = text[..text.find(&format!("issuer = \"{GL_ISS}\"")).unwrap()]
        .matches('\n')
        .count();
    // The entry starts on the `[[oidc.issuers]]` line just above its `issuer`.
    assert!(
        msg.contains(&format!("signer.toml:{line}:")) && msg.contains("gitlab-jwks.json"),
        "{msg}"
    );
    // Nothing is served with it either.
    let (code, msg) = fails(Some(&s.hsm), &["serve", "--config", config]);
    assert_ne!(code, 0);
    assert!(msg.contains("gitlab-jwks.json"), "{msg}");
}
