//! A chain of root versions checked the way a client updates its root (python-tuf's
//! `TrustedMetadataSet.update_root`): each new root must be exactly one version above
//! the previous one and signed by a threshold of the previous root's root keys and of
//! its own.
//!
//! Long chains are checked fast: each public key is decoded once for the whole chain,
//! a signature that counts for both thresholds is verified once, checking stops as soon
//! as both thresholds are met (the answer cannot change), and the steps — independent
//! given their two files — are spread over the machine's cores.

use std::collections::HashMap;

use super::envelope::Envelope;
use super::key::{Key, PublicKey};
use super::verify::{Delegator, InvalidSignature};

/// One root in the chain, read and with its keys: what a step needs.
pub struct ChainRoot {
    pub env: Envelope,
    pub keys: Delegator,
}

/// How one threshold fared in a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Threshold {
    pub threshold: u64,
    /// Distinct public keys whose valid signature counted (at most the threshold:
    /// checking stops once it is met).
    pub counted: Vec<String>,
    /// Signatures by the role's keys that were checked and do not verify.
    pub invalid: Vec<InvalidSignature>,
}

impl Threshold {
    pub fn met(&self) -> bool {
        self.counted.len() as u64 >= self.threshold
    }
}

/// The check of root `new` against the root before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// `signed.version` of the new root (None when missing or not a positive integer).
    pub version: Option<u64>,
    /// The version it must have: the previous root's plus one.
    pub expected: u64,
    pub by_previous: Threshold,
    pub by_itself: Threshold,
}

impl Step {
    pub fn ok(&self) -> bool {
        self.version == Some(self.expected) && self.by_previous.met() && self.by_itself.met()
    }
}

/// A key as listed: (keytype, scheme, public value).
type Listed = (String, String, String);
/// The decoded key and its identity, or why it does not decode.
type Decoded = Result<(PublicKey, String), String>;

/// Public keys decoded once per chain.
#[derive(Default)]
pub struct KeyCache {
    keys: HashMap<Listed, Decoded>,
}

impl KeyCache {
    /// The decoded key and its identity (what makes two listings one key), or why it
    /// does not decode — the answers of `Key::public_key` and `Key::public_identity`.
    fn get(&mut self, key: &Key) -> &Decoded {
        let public = key
            .keyval
            .get("public")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let id = (key.keytype.clone(), key.scheme.clone(), public.to_string());
        self.keys.entry(id).or_insert_with(|| {
            key.public_key().map(|k| {
                let identity = k.spki_pem();
                (k, identity)
            })
        })
    }
}

/// Checks root `new` (with its keys) against the previous root, as one step of the chain.
/// A signature by a key both roots list is verified once and counts for both.
pub fn step(previous: &ChainRoot, new: &ChainRoot, cache: &mut KeyCache) -> Step {
    let expected = previous.env.version().unwrap_or(0) + 1;
    let sides = [&previous.keys, &new.keys];
    let roles: Vec<_> = sides.iter().map(|d| d.roles.get("root")).collect();
    let mut out = [
        Threshold {
            threshold: roles[0].map_or(0, |r| r.threshold),
            counted: Vec::new(),
            invalid: Vec::new(),
        },
        Threshold {
            threshold: roles[1].map_or(0, |r| r.threshold),
            counted: Vec::new(),
            invalid: Vec::new(),
        },
    ];
    let listed =
        |side: usize, keyid: &str| roles[side].is_some_and(|r| r.keyids.iter().any(|k| k == keyid));
    // Signatures by keys of both roles first: each may settle both thresholds at once.
    let mut candidates: Vec<_> = new
        .env
        .signatures()
        .iter()
        .filter(|s| !s.sig.is_empty() && (listed(0, &s.keyid) || listed(1, &s.keyid)))
        .collect();
    candidates.sort_by_key(|s| !(listed(0, &s.keyid) && listed(1, &s.keyid)));
    let mut identities: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    let mut verified: HashMap<(String, &str), Result<(), String>> = HashMap::new();
    for s in candidates {
        if out.iter().all(Threshold::met) {
            break;
        }
        for side in 0..2 {
            if !listed(side, &s.keyid) || out[side].met() {
                continue;
            }
            let Some(key) = sides[side].keys.get(&s.keyid) else {
                out[side].invalid.push(InvalidSignature {
                    keyid: s.keyid.clone(),
                    reason: "the delegator lists this key id for the role but has no such key"
                        .into(),
                });
                continue;
            };
            let outcome: Result<String, String> = match cache.get(key) {
                Err(e) => Err(e.clone()),
                Ok((public, identity)) => verified
                    .entry((identity.clone(), s.sig.as_str()))
                    .or_insert_with(|| {
                        hex::decode(&s.sig)
                            .map_err(|_| "the signature is not hex".to_string())
                            .and_then(|sig| public.verify(new.env.payload(), &sig))
                    })
                    .clone()
                    .map(|()| identity.clone()),
            };
            match outcome {
                Ok(identity) => {
                    if !identities[side].contains(&identity) {
                        identities[side].push(identity);
                        out[side].counted.push(s.keyid.clone());
                    }
                }
                Err(reason) => out[side].invalid.push(InvalidSignature {
                    keyid: s.keyid.clone(),
                    reason,
                }),
            }
        }
    }
    let [by_previous, by_itself] = out;
    Step {
        version: new.env.version(),
        expected,
        by_previous,
        by_itself,
    }
}

/// Every step of `roots` (the trusted root first), spread over up to `threads` threads;
/// `steps[i]` checks `roots[i + 1]` against `roots[i]`.
pub fn steps(roots: &[ChainRoot], threads: usize) -> Vec<Step> {
    let pairs: Vec<(&ChainRoot, &ChainRoot)> = roots.windows(2).map(|w| (&w[0], &w[1])).collect();
    let threads = threads.clamp(1, pairs.len().max(1));
    let chunk = pairs.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = pairs
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    let mut cache = KeyCache::default();
                    part.iter()
                        .map(|(prev, new)| step(prev, new, &mut cache))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            // A panic in a step is a bug of ours: carry it on rather than lose steps.
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}
