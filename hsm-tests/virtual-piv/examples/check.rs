//! End-to-end check of the virtual card through the `yubikey` 0.8 crate.
//!
//!   VIRTUAL_PIV_CA=STATEDIR/attest-ca.pem cargo run --example check
//!   VIRTUAL_PIV_CA=... cargo run --example check -- --persisted
//!
//! The first form runs the whole tour on a card with default PIN/management
//! key; `--persisted` (after a stop.sh/start.sh with the same STATEDIR) checks
//! that the 9c key and its certificate written by the first run survived.
//! Environment: VIRTUAL_PIV_CA (required), VIRTUAL_PIV_SERIAL (default 5437251).
//! Prints one line per step and "N passed, N failed" at the end.

use std::time::Instant;

use der::{Decode, DecodePem, Encode};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use sha2::{Digest, Sha256};
use x509_cert::Certificate as X509;
use yubikey::{
    certificate::{CertInfo, Certificate},
    piv::{self, AlgorithmId, SlotId},
    Key, MgmKey, PinPolicy, TouchPolicy, YubiKey,
};

type R<T = ()> = Result<T, String>;

struct Report {
    passed: u32,
    failed: u32,
}

impl Report {
    fn step<T>(&mut self, name: &str, f: impl FnOnce() -> R<T>) -> Option<T> {
        let t = Instant::now();
        let out = f();
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        match out {
            Ok(v) => {
                self.passed += 1;
                println!("ok   {name} ({ms:.0} ms)");
                Some(v)
            }
            Err(e) => {
                self.failed += 1;
                println!("FAIL {name} ({ms:.0} ms): {e}");
                None
            }
        }
    }
}

fn e<E: std::fmt::Debug>(what: &'static str) -> impl Fn(E) -> String {
    move |err| format!("{what}: {err:?}")
}

fn ensure(cond: bool, msg: impl Into<String>) -> R {
    if cond {
        Ok(())
    } else {
        Err(msg.into())
    }
}

const PIN: &[u8] = b"123456";

fn main() {
    let persisted = std::env::args().any(|a| a == "--persisted");
    let ca_path = std::env::var("VIRTUAL_PIV_CA").expect("set VIRTUAL_PIV_CA to the CA PEM");
    let serial: u32 = std::env::var("VIRTUAL_PIV_SERIAL")
        .ok()
        .map(|s| s.parse().expect("VIRTUAL_PIV_SERIAL"))
        .unwrap_or(5437251);
    let ca = X509::from_pem(std::fs::read(&ca_path).expect("read CA")).expect("parse CA");

    let mut r = Report {
        passed: 0,
        failed: 0,
    };
    let Some(mut yk) = r.step("open card, serial and version", || {
        let yk = YubiKey::open().map_err(e("open"))?;
        println!(
            "     reader {:?}, serial {}, version {}",
            yk.name(),
            yk.serial(),
            yk.version()
        );
        ensure(
            u32::from(yk.serial()) == serial,
            format!("serial {}", yk.serial()),
        )?;
        let v = yk.version();
        ensure(
            (v.major, v.minor, v.patch) == (5, 4, 3),
            format!("version {v}"),
        )?;
        Ok(yk)
    }) else {
        finish(&r);
    };
    let yk = &mut yk;

    if persisted {
        check_persisted(&mut r, yk, &ca);
        finish(&r);
    }

    r.step("PIN retries start at 3", || {
        let n = yk.get_pin_retries().map_err(e("get_pin_retries"))?;
        ensure(n == 3, format!("retries {n}"))
    });
    r.step("wrong PIN costs exactly one retry", || {
        match yk.verify_pin(b"654321") {
            Err(yubikey::Error::WrongPin { tries }) => {
                ensure(tries == 2, format!("tries {tries}"))?
            }
            other => return Err(format!("wrong PIN gave {other:?}")),
        }
        let n = yk.get_pin_retries().map_err(e("get_pin_retries"))?;
        ensure(n == 2, format!("retries after wrong PIN {n}"))
    });
    r.step("default PIN verifies and restores the counter", || {
        yk.verify_pin(PIN).map_err(e("verify_pin"))?;
        let n = yk.get_pin_retries().map_err(e("get_pin_retries"))?;
        ensure(n == 3, format!("retries after right PIN {n}"))
    });
    r.step("authenticate with the default 3DES management key", || {
        yk.authenticate(MgmKey::default())
            .map_err(e("authenticate"))
    });

    // P-256 in 9c
    let p256_spki = r.step("generate P-256 in 9c", || {
        piv::generate(
            yk,
            SlotId::Signature,
            AlgorithmId::EccP256,
            PinPolicy::Default,
            TouchPolicy::Default,
        )
        .map_err(e("generate"))
    });
    if let Some(spki) = &p256_spki {
        let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(spki.subject_public_key.raw_bytes())
            .expect("P-256 point");
        r.step("sign a SHA-256 digest with 9c and verify host-side", || {
            yk.verify_pin(PIN).map_err(e("verify_pin"))?;
            let digest = Sha256::digest(b"tufkey virtual-piv check");
            let sig = piv::sign_data(yk, &digest, AlgorithmId::EccP256, SlotId::Signature)
                .map_err(e("sign_data"))?;
            let sig = p256::ecdsa::Signature::from_der(&sig).map_err(e("DER signature"))?;
            vk.verify_prehash(&digest, &sig).map_err(e("verify"))
        });
        r.step("9c refuses a second signature without a new PIN", || {
            let digest = Sha256::digest(b"again");
            match piv::sign_data(yk, &digest, AlgorithmId::EccP256, SlotId::Signature) {
                Err(err) => {
                    println!("     (error: {err:?})");
                    Ok(())
                }
                Ok(_) => Err("signed without PIN".into()),
            }
        });
        let leaf = r.step("attest 9c: chains to the CA and holds the key", || {
            let der = piv::attest(yk, SlotId::Signature).map_err(e("attest"))?;
            let leaf = X509::from_der(&der).map_err(e("parse attestation"))?;
            check_attestation(yk, &ca, &leaf, spki, serial, [3, 1])?;
            Ok(leaf)
        });
        if let Some(leaf) = leaf {
            r.step("write a certificate into 9c and read it back", || {
                let der = leaf.to_der().map_err(e("der"))?;
                let cert = Certificate::from_bytes(der.clone()).map_err(e("from_bytes"))?;
                cert.write(yk, SlotId::Signature, CertInfo::Uncompressed)
                    .map_err(e("write"))?;
                let back = Certificate::read(yk, SlotId::Signature).map_err(e("read"))?;
                ensure(back.cert.to_der().unwrap() == der, "certificate differs")
            });
        }
        r.step(
            "metadata (F7) of 9c gives algorithm, policy and key",
            || {
                let m = piv::metadata(yk, SlotId::Signature).map_err(e("metadata"))?;
                println!("     {:?} {:?} {:?}", m.algorithm, m.policy, m.origin);
                ensure(m.public.as_ref() == Some(spki), "public key differs")
            },
        );
    }

    r.step("metadata (F7) of the PIN gives retries", || {
        let m = piv::metadata(yk, SlotId::Management(piv::ManagementSlotId::Pin))
            .map_err(e("metadata"))?;
        let retries = m.retries.ok_or("no retries")?;
        ensure(retries.remaining_count == 3, format!("{retries:?}"))
    });

    // RSA-2048 in 9a
    let rsa_spki = r.step("generate RSA-2048 in 9a", || {
        piv::generate(
            yk,
            SlotId::Authentication,
            AlgorithmId::Rsa2048,
            PinPolicy::Default,
            TouchPolicy::Default,
        )
        .map_err(e("generate"))
    });
    if let Some(spki) = &rsa_spki {
        use rsa::pkcs8::DecodePublicKey;
        let pk = rsa::RsaPublicKey::from_public_key_der(&spki.to_der().unwrap()).expect("RSA SPKI");
        r.step(
            "RSA-2048 raw sign (PKCS#1 v1.5 padded on the host), verify",
            || {
                yk.verify_pin(PIN).map_err(e("verify_pin"))?;
                let digest = Sha256::digest(b"tufkey virtual-piv rsa");
                let block = pkcs1v15_sha256_block(&digest, 256);
                let sig = piv::sign_data(yk, &block, AlgorithmId::Rsa2048, SlotId::Authentication)
                    .map_err(e("sign_data"))?;
                pk.verify(rsa::Pkcs1v15Sign::new::<Sha256>(), &digest, &sig)
                    .map_err(e("verify"))
            },
        );
        r.step("9a signs again without a new PIN (policy once)", || {
            let digest = Sha256::digest(b"again");
            let block = pkcs1v15_sha256_block(&digest, 256);
            let sig = piv::sign_data(yk, &block, AlgorithmId::Rsa2048, SlotId::Authentication)
                .map_err(e("sign_data"))?;
            pk.verify(rsa::Pkcs1v15Sign::new::<Sha256>(), &digest, &sig)
                .map_err(e("verify"))
        });
        r.step("attest 9a (RSA)", || {
            let der = piv::attest(yk, SlotId::Authentication).map_err(e("attest"))?;
            let leaf = X509::from_der(&der).map_err(e("parse attestation"))?;
            check_attestation(yk, &ca, &leaf, spki, serial, [2, 1])
        });
    }

    r.step(
        "generate P-384 in 9d and sign a SHA-384-sized digest",
        || {
            yk.authenticate(MgmKey::default())
                .map_err(e("authenticate"))?;
            piv::generate(
                yk,
                SlotId::KeyManagement,
                AlgorithmId::EccP384,
                PinPolicy::Default,
                TouchPolicy::Default,
            )
            .map_err(e("generate"))?;
            yk.verify_pin(PIN).map_err(e("verify_pin"))?;
            let sig = piv::sign_data(yk, &[7u8; 48], AlgorithmId::EccP384, SlotId::KeyManagement)
                .map_err(e("sign_data"))?;
            ensure(sig.first() == Some(&0x30), "not a DER signature")
        },
    );

    r.step("attest an empty slot fails", || {
        match piv::attest(yk, SlotId::Retired(piv::RetiredSlotId::R20)) {
            Err(_) => Ok(()),
            Ok(_) => Err("attested an empty slot".into()),
        }
    });

    r.step("Key::list sees 9c and the attestation slot", || {
        let keys = Key::list(yk).map_err(e("Key::list"))?;
        let slots: Vec<SlotId> = keys.iter().map(|k| k.slot()).collect();
        println!("     slots with certificates: {slots:?}");
        ensure(
            slots.contains(&SlotId::Signature) && slots.contains(&SlotId::Attestation),
            "missing",
        )
    });

    r.step("a new session starts without PIN verification", || {
        drop(std::mem::replace(yk, YubiKey::open().map_err(e("reopen"))?));
        let digest = Sha256::digest(b"x");
        match piv::sign_data(yk, &digest, AlgorithmId::Rsa2048, SlotId::Authentication) {
            Err(_) => Ok(()),
            Ok(_) => Err("signed with a stale PIN from an earlier session".into()),
        }
    });

    finish(&r);
}

/// After a restart: the 9c key and its certificate (the first run's
/// attestation certificate) are still there and the key still signs.
fn check_persisted(r: &mut Report, yk: &mut YubiKey, ca: &X509) {
    let cert = r.step("9c certificate survived the restart", || {
        Certificate::read(yk, SlotId::Signature).map_err(e("read"))
    });
    if let Some(cert) = cert {
        let spki = cert.cert.tbs_certificate.subject_public_key_info.clone();
        r.step("9c key survived: signature verifies against it", || {
            yk.verify_pin(PIN).map_err(e("verify_pin"))?;
            let digest = Sha256::digest(b"after restart");
            let sig = piv::sign_data(yk, &digest, AlgorithmId::EccP256, SlotId::Signature)
                .map_err(e("sign_data"))?;
            let vk =
                p256::ecdsa::VerifyingKey::from_sec1_bytes(spki.subject_public_key.raw_bytes())
                    .map_err(e("point"))?;
            let sig = p256::ecdsa::Signature::from_der(&sig).map_err(e("DER"))?;
            vk.verify_prehash(&digest, &sig).map_err(e("verify"))
        });
        r.step("attestation of 9c still chains to the same CA", || {
            let der = piv::attest(yk, SlotId::Signature).map_err(e("attest"))?;
            let leaf = X509::from_der(&der).map_err(e("parse"))?;
            let serial = u32::from(yk.serial());
            check_attestation(yk, ca, &leaf, &spki, serial, [3, 1])
        });
    }
}

fn check_attestation(
    yk: &mut YubiKey,
    ca: &X509,
    leaf: &X509,
    spki: &spki::SubjectPublicKeyInfoOwned,
    serial: u32,
    policy: [u8; 2],
) -> R {
    ensure(
        &leaf.tbs_certificate.subject_public_key_info == spki,
        "attested key differs",
    )?;
    let intermediate = Certificate::read(yk, SlotId::Attestation)
        .map_err(e("read 5FFF01"))?
        .cert;
    verify_signed_by(leaf, &intermediate).map_err(|m| format!("leaf: {m}"))?;
    verify_signed_by(&intermediate, ca).map_err(|m| format!("intermediate: {m}"))?;
    ensure(
        leaf.tbs_certificate.issuer == intermediate.tbs_certificate.subject,
        "issuer name",
    )?;
    let ext = |oid: &str| -> R<Vec<u8>> {
        let oid = der::oid::ObjectIdentifier::new_unwrap(oid);
        leaf.tbs_certificate
            .extensions
            .iter()
            .flatten()
            .find(|x| x.extn_id == oid)
            .map(|x| x.extn_value.as_bytes().to_vec())
            .ok_or(format!("extension {oid} missing"))
    };
    ensure(
        ext("1.3.6.1.4.1.41482.3.3")? == [5, 4, 3],
        "firmware extension",
    )?;
    let s = ext("1.3.6.1.4.1.41482.3.7")?;
    let n = der::asn1::Uint::from_der(&s).map_err(e("serial extension"))?;
    ensure(
        n.as_bytes() == &serial.to_be_bytes()[serial.leading_zeros() as usize / 8..],
        "serial extension",
    )?;
    ensure(ext("1.3.6.1.4.1.41482.3.8")? == policy, "policy extension")?;
    ensure(
        ext("1.3.6.1.4.1.41482.3.9")?.len() == 1,
        "form factor extension",
    )
}

fn verify_signed_by(cert: &X509, issuer: &X509) -> R {
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(
        issuer
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes(),
    )
    .map_err(e("issuer key"))?;
    let sig = p256::ecdsa::Signature::from_der(cert.signature.raw_bytes()).map_err(e("sig"))?;
    let tbs = cert.tbs_certificate.to_der().map_err(e("tbs"))?;
    p256::ecdsa::signature::Verifier::verify(&key, &tbs, &sig).map_err(e("signature"))
}

/// EMSA-PKCS1-v1_5 block for a SHA-256 digest (what a raw RSA card signs).
fn pkcs1v15_sha256_block(digest: &[u8], k: usize) -> Vec<u8> {
    const PREFIX: [u8; 19] = [
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ];
    let t_len = PREFIX.len() + digest.len();
    let mut block = vec![0x00, 0x01];
    block.resize(k - t_len - 1, 0xFF);
    block.push(0x00);
    block.extend_from_slice(&PREFIX);
    block.extend_from_slice(digest);
    block
}

fn finish(r: &Report) -> ! {
    println!("{} passed, {} failed", r.passed, r.failed);
    std::process::exit(if r.failed == 0 { 0 } else { 1 })
}
