//! Entry points for the fuzz targets in `fuzz/` (docs/testing.md, "Fuzzing"): each calls
//! the parser that production code calls on untrusted bytes, so that a fuzz target never
//! fuzzes a copy. Hidden from the docs; not an API for anything else.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value};

use crate::keys::file::SoftKey;
#[cfg(feature = "yubikey")]
use crate::keys::yubikey::{attest, mgm};
use crate::keys::{sign_checked_many, KeyError, Signer};
use crate::repo::verify::{files, paths};
use crate::server::config::ClientPolicy;
use crate::server::identity::{self, Identity};
use crate::server::oidc::Oidc;
use crate::server::state::VersionStore;
use crate::server::store::ReserveError;
use crate::server::{api, document, sign_body};
use crate::tuf::Key;

/// The body of `POST /v1/sign` and `POST /v1/sign-raw` as the daemon reads it, up to the
/// point where the key and the client's policy are needed: the request, the TUF document
/// in it, its canonical payload, role type and version; the raw request's hex.
pub fn sign_request_body(body: &[u8]) {
    if let Ok(r) = sign_body::parse(body) {
        if let Ok(doc) = r.metadata.prepare(r.role) {
            let _ = (
                doc.payload,
                doc.md.role_type(),
                doc.md.version(),
                doc.md.expires(),
            );
        }
    }
    if let Ok(r) = serde_json::from_slice::<api::RawSignRequest>(body) {
        let _ = hex::decode(r.message_hex.trim());
    }
}

/// A PIV card's answers that tufkey reads itself (the `yubikey` crate reads the rest):
/// GET METADATA for the management key, the PIN-protected management key object, and the
/// TLVs around an attested public key.
#[cfg(feature = "yubikey")]
pub fn piv_answers(data: &[u8]) {
    let _ = mgm::parse_metadata(data);
    let _ = mgm::parse_protected(data);
    if let Some(&tag) = data.first() {
        let _ = attest::strip_tlv(&data[1..], tag);
    }
}

/// The parts of a repository that `repo verify` reads from metadata: a delegated role's
/// path rule (and which paths it allows), succinct hash bins, a file's stated length and
/// hashes and the file names a client would fetch it by.
pub fn repo_metadata_value(value: &Value, target: &str) {
    if let Ok(rule) = paths::PathRule::from_role(value) {
        let _ = (rule.allows(target), rule.describe());
    }
    if let Some(bins) = value.get("succinct_roles") {
        if let Ok(s) = paths::Succinct::from_value(bins) {
            let _ = s.role_for(target);
        }
    }
    for required in [false, true] {
        if let Ok(stated) = files::Stated::from_info(value, required) {
            let _ = files::target_file_names(target, &stated, required);
            let _ = stated.check_bytes(target.as_bytes(), "fuzz");
        }
    }
    let _ = files::safe_target_path(target);
}

/// A ceremony transcript read from `path` whose text is `text`.
pub fn ceremony_transcript(path: &Path, text: &str) {
    let _ = crate::ceremony::Transcript::parse(path, text);
}

/// The fixed clock of the `sign_batch` target: 2027-01-15T08:00:00Z.
pub const BATCH_NOW: i64 = 1_800_000_000;

/// What the daemon would sign from one batch body, for the `sign_batch` target's checks.
#[derive(Debug)]
pub struct BatchAccepted {
    /// The client policy whose key the body named.
    pub identity: String,
    pub repository: String,
    pub role: String,
    pub role_type: String,
    pub version: u64,
    pub expires: String,
}

/// The daemon's fixed world for the `sign_batch` target: two served keys (Ed25519 from
/// fixed seeds, so their key ids are stable and the seed corpus can name them), two client
/// policies and the versions already signed.
struct BatchWorld {
    policies: Vec<crate::server::config::ClientPolicy>,
    keys: Vec<(String, crate::server::served::ServedKey)>,
    /// (repository, role, last signed version), as a replayed audit log gives them.
    signed: Vec<Map<String, Value>>,
}

/// An in-memory key with a fixed seed: the `sign_batch` target signs what the checks
/// accept with it, through the same `sign_checked_many` the daemon uses.
struct SeedKey {
    key: SoftKey,
    public: Key,
    keyid: String,
}

impl SeedKey {
    fn new(seed: u8) -> SeedKey {
        let key = SoftKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]));
        let public = key.public().to_tuf_key();
        let keyid = public.key_id();
        SeedKey { key, public, keyid }
    }
}

impl Signer for SeedKey {
    fn uri(&self) -> &str {
        "fuzz:seed-key"
    }
    fn public_key(&self) -> &Key {
        &self.public
    }
    fn key_id(&self) -> &str {
        &self.keyid
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        Ok(self.key.sign(message))
    }
}

/// The key ids of the `sign_batch` target's two served keys (for its seeds): the first
/// belongs to client `acme-ci` (repository `acme` only; roles targets, bin-0, bin-1), the
/// second to client `release` (repositories acme and beta, any role; the key itself may
/// sign only targets, snapshot and timestamp).
pub fn batch_key_ids() -> [String; 2] {
    let w = batch_world();
    [w.keys[0].0.clone(), w.keys[1].0.clone()]
}

fn batch_world() -> &'static BatchWorld {
    use crate::server::config::KeyConfig;
    use crate::server::served::ServedKey;
    static WORLD: OnceLock<BatchWorld> = OnceLock::new();
    WORLD.get_or_init(|| {
        let served = |seed: u8, roles: Option<Vec<String>>| {
            let signer = SeedKey::new(seed);
            let id = signer.keyid.clone();
            let key = ServedKey {
                signer: Arc::new(signer),
                config: KeyConfig {
                    uri: "fuzz:seed-key".into(),
                    line: 1,
                    roles,
                },
                inline: true,
            };
            (id, key)
        };
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let keys = vec![
            served(1, None),
            served(2, Some(strings(&["targets", "snapshot", "timestamp"]))),
        ];
        let policy = |identity: &str, key: &str, repositories: &[&str], roles: &[&str]| {
            ClientPolicy {
                identity: identity.into(),
                oidc: None,
                line: 1,
                keys: vec![key.to_string()],
                repositories: strings(repositories),
                roles: strings(roles),
                max_expiry: std::time::Duration::from_secs(30 * 86_400),
                role_expiry: Vec::new(),
                rate: None,
                raw: false,
            }
        };
        let policies = vec![
            policy("acme-ci", &keys[0].0, &["acme"], &["targets", "bin-0", "bin-1"]),
            policy("release", &keys[1].0, &["acme", "beta"], &["*"]),
        ];
        let signed = [("acme", "targets", 5), ("acme", "bin-0", 3), ("beta", "snapshot", 10)]
            .iter()
            .map(|(repo, role, v)| {
                let e = serde_json::json!({"result": "signed", "repository": repo, "role": role, "version": v});
                e.as_object().cloned().unwrap_or_default()
            })
            .collect();
        BatchWorld {
            policies,
            keys,
            signed,
        }
    })
}

/// The body of `POST /v1/sign-batch` as the daemon reads it ([`sign_body::BatchRequest::parse`],
/// the one call to re-point if the body changes), then every document through the checks a
/// batch makes before the HSM (`Document::prepare`, `repository`, `check`, the version
/// claim), in the order `batch.rs`'s `claim` makes them, against a fixed policy, state and
/// clock ([`BATCH_NOW`]). What passes is signed with the fixture key and checked by
/// `sign_checked_many` as the daemon does. Returns what would have been signed.
pub fn sign_batch_body(body: &[u8]) -> Vec<BatchAccepted> {
    let mut out = Vec::new();
    let Ok(r) = sign_body::BatchRequest::parse(body) else {
        return out;
    };
    let world = batch_world();
    let key_id = r.key_id.to_ascii_lowercase();
    let Some(policy) = world.policies.iter().find(|p| p.allows_key(&key_id)) else {
        return out;
    };
    let Some((_, key)) = world.keys.iter().find(|(id, _)| *id == key_id) else {
        return out;
    };
    let Ok(state) = VersionStore::load(
        Path::new("/nonexistent/tufkey-fuzz/state.json"),
        &world.signed,
    ) else {
        return out;
    };
    let now = chrono::DateTime::from_timestamp(BATCH_NOW, 0).unwrap_or_default();
    let mut payloads = Vec::new();
    for d in r.documents {
        let repository = d.repository.or_else(|| r.repository.clone());
        let claimed = d.metadata.prepare(d.role).and_then(|doc| {
            let repository = document::repository(policy, repository)?;
            let version = document::check(policy, key, &key_id, &repository, &doc, now)?;
            state
                .reserve(&repository, &doc.role, version)
                .map_err(|n| {
                    document::reserve_refusal(
                        ReserveError::NotIncreasing { last: n.last },
                        &repository,
                        &doc.role,
                        version,
                    )
                })?;
            Ok((doc, repository, version))
        });
        match claimed {
            Ok((doc, repository, version)) => {
                out.push(BatchAccepted {
                    identity: policy.identity.clone(),
                    repository,
                    role: doc.role,
                    role_type: doc.role_type,
                    version,
                    expires: doc.md.expires().unwrap_or_default().to_string(),
                });
                payloads.push(doc.payload);
            }
            Err(refusal) => {
                let _ = refusal.body();
            }
        }
    }
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    for signed in sign_checked_many(key.signer.as_ref(), &refs) {
        if let Err(e) = signed {
            panic!("the fixture key's signature over an accepted document does not verify: {e}");
        }
    }
    out
}

/// What the daemon made of one request's `Authorization` header, for the `jwt` target.
pub struct OidcOutcome {
    pub identity: Identity,
    /// The policy entry that applies (its `identity`), or the refusal's status and code.
    pub authorized: Result<String, (u16, &'static str)>,
    /// The audit entry's who, issuer and subject.
    pub event: crate::audit::Event,
}

/// An `Authorization` header value through the daemon's own path: the bearer token read
/// from the header, checked by `oidc` (issuer, algorithm allowlist, key lookup, signature,
/// `aud`, times at `oidc`'s clock), then matched against `clients` and made into the audit
/// entry's fields, as every endpoint does.
pub fn oidc_request(oidc: &Oidc, authorization: &[u8], clients: &[ClientPolicy]) -> OidcOutcome {
    static RUNTIME: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .ok()
    });
    let Some(runtime) = runtime else {
        panic!("no tokio runtime for the jwt fuzz target");
    };
    let mut headers = hyper::HeaderMap::new();
    if let Ok(v) = hyper::header::HeaderValue::from_bytes(authorization) {
        headers.insert(hyper::header::AUTHORIZATION, v);
    }
    let identity = runtime.block_on(identity::authenticate(Some(oidc), &headers, None));
    let authorized = identity
        .authorize(clients)
        .map(|p| p.identity.clone())
        .map_err(|d| (d.status, d.code));
    let event = identity.event(clients, "sign");
    OidcOutcome {
        identity,
        authorized,
        event,
    }
}

/// An audit event read as JSON (absent fields empty), written as its line member by
/// member (`audit::line`) and through a `serde_json::Value` tree: the bytes must be the
/// same, or the daemon would write lines that differ from what it wrote before and what
/// the PostgreSQL sink writes. Panics on a difference (a crash for the fuzzer).
pub fn audit_line(event_json: &[u8]) {
    let Ok(event) = serde_json::from_slice::<crate::audit::Event>(event_json) else {
        return;
    };
    let (seq, prev, time) = (7, crate::audit::chain::GENESIS, "2026-12-04T13:00:00.000Z");
    let written = crate::audit::line::write(&event, seq, prev, time);
    if let Some(tree) = crate::audit::chain::through_a_tree(&event, seq, prev, time) {
        assert_eq!(
            String::from_utf8_lossy(&written),
            String::from_utf8_lossy(&tree),
            "audit::line::write differs from the tree path"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(name: &str) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus/sign_batch")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn the_sign_batch_seeds_name_the_fixture_keys_and_reach_the_signature() {
        let [acme, release] = batch_key_ids();
        assert!(String::from_utf8(seed("acme-ci-targets-and-bins"))
            .unwrap()
            .contains(&acme));
        assert!(String::from_utf8(seed("release-two-repositories"))
            .unwrap()
            .contains(&release));
        let signed: Vec<(String, String, u64)> = sign_batch_body(&seed("acme-ci-targets-and-bins"))
            .into_iter()
            .map(|a| (a.repository, a.role, a.version))
            .collect();
        let want = [
            ("acme", "targets", 6),
            ("acme", "bin-0", 4),
            ("acme", "bin-1", 1),
        ];
        let want: Vec<(String, String, u64)> = want
            .iter()
            .map(|(r, o, v)| (r.to_string(), o.to_string(), *v))
            .collect();
        assert_eq!(signed, want);
    }

    #[test]
    fn the_sign_batch_fixture_refuses_what_its_policy_forbids() {
        // Replayed version, wrong _type for the role, a repository the client may not
        // use, an expired and a too-distant expiry, a document without a version.
        assert!(sign_batch_body(&seed("acme-ci-refusals")).is_empty());
        // `release` may sign snapshot v11 of beta once, timestamp, and acme's targets;
        // not root (its key may not) nor bin-0.
        let roles: Vec<String> = sign_batch_body(&seed("release-two-repositories"))
            .into_iter()
            .map(|a| format!("{}/{}", a.repository, a.role))
            .collect();
        assert_eq!(roles, ["beta/snapshot", "beta/timestamp", "acme/targets"]);
    }
}
