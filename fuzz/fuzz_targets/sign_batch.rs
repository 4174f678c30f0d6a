//! The body of the daemon's `POST /v1/sign-batch`, read as the daemon reads it, and every
//! document through the checks a batch makes before the HSM (metadata, role, repository,
//! key, version, expiry) against a fixed policy, state and clock
//! (`tufkey::fuzzing::sign_batch_body`; what passes is signed with an in-memory key and
//! checked as the daemon checks every signature).
//!
//! Checked beyond "no panic": whatever would be signed is allowed by the policy of the key
//! the body names — its repository and role, a role its `_type` fits, a version above the
//! last signed one and above any earlier document of the batch for the same role, an
//! expiry after the fixed clock and within the client's 30 days.
#![no_main]
use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use tufkey::fuzzing::{sign_batch_body, BATCH_NOW};
use tufkey::tuf::time::parse_expires;

/// The fixture's last signed versions (src/fuzzing.rs, `batch_world`).
fn last_signed(repository: &str, role: &str) -> u64 {
    match (repository, role) {
        ("acme", "targets") => 5,
        ("acme", "bin-0") => 3,
        ("beta", "snapshot") => 10,
        _ => 0,
    }
}

fuzz_target!(|data: &[u8]| {
    let accepted = sign_batch_body(data);
    let mut highest: BTreeMap<(String, String), u64> = BTreeMap::new();
    for a in &accepted {
        let (repositories, roles): (&[&str], Option<&[&str]>) = match a.identity.as_str() {
            "acme-ci" => (&["acme"], Some(&["targets", "bin-0", "bin-1"])),
            "release" => (
                &["acme", "beta"],
                Some(&["targets", "snapshot", "timestamp"]),
            ),
            other => panic!("signed for an unknown client {other}"),
        };
        assert!(
            repositories.contains(&a.repository.as_str()),
            "signed for repository {} which {} may not use",
            a.repository,
            a.identity
        );
        assert!(
            roles.is_none_or(|r| r.contains(&a.role.as_str())),
            "signed role {} which {} or its key may not sign",
            a.role,
            a.identity
        );
        let top_level = ["root", "targets", "snapshot", "timestamp"];
        let want_type = if top_level.contains(&a.role.as_str()) {
            a.role.as_str()
        } else {
            "targets"
        };
        assert_eq!(
            a.role_type, want_type,
            "role {} signed as _type {}",
            a.role, a.role_type
        );
        let key = (a.repository.clone(), a.role.clone());
        let floor = highest
            .get(&key)
            .copied()
            .unwrap_or_else(|| last_signed(&a.repository, &a.role));
        assert!(
            a.version > floor,
            "{}/{} version {} signed after {floor}",
            a.repository,
            a.role,
            a.version
        );
        highest.insert(key, a.version);
        let expires = parse_expires(&a.expires)
            .unwrap_or_else(|e| panic!("signed a document whose expiry does not parse: {e}"));
        let t = expires.timestamp();
        assert!(
            t > BATCH_NOW && t <= BATCH_NOW + 30 * 86_400,
            "signed a document expiring at {}",
            a.expires
        );
    }
});
