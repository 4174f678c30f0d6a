//! The test attestation PKI: a root CA (written to `--ca-out` for tests to
//! trust), an attestation intermediate (served as PIV object 5FFF01, like the
//! certificate in a YubiKey's slot F9) and per-slot attestation certificates
//! carrying Yubico's PIV attestation extensions.
//!
//! Everything is P-256 / ECDSA-SHA256. Keys persist in the state directory so
//! the CA stays the same across card restarts within a test run.

use std::{
    fs,
    path::{Path, PathBuf},
    str::FromStr,
    time::{Duration, SystemTime},
};

use der::{
    asn1::{BitString, GeneralizedTime, ObjectIdentifier, OctetString, UtcTime},
    DateTime, Decode, DecodePem, Encode, EncodePem,
};
use p256::{
    ecdsa::{DerSignature, SigningKey},
    pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding},
};
use rand_core::{OsRng, RngCore};
use spki::{AlgorithmIdentifierOwned, EncodePublicKey, SubjectPublicKeyInfoOwned};
use x509_cert::{
    certificate::{Certificate, TbsCertificate, Version},
    ext::{
        pkix::{BasicConstraints, KeyUsage, KeyUsages},
        Extension,
    },
    name::Name,
    serial_number::SerialNumber,
    time::{Time, Validity},
};

pub const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
/// Yubico PIV attestation extensions.
pub const OID_FIRMWARE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.41482.3.3");
pub const OID_SERIAL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.41482.3.7");
pub const OID_POLICY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.41482.3.8");
pub const OID_FORM_FACTOR: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.41482.3.9");

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// What goes into a slot's attestation certificate.
pub struct AttestInfo<'a> {
    pub slot: u8,
    pub spki: &'a SubjectPublicKeyInfoOwned,
    pub firmware: [u8; 3],
    pub serial: u32,
    pub pin_policy: u8,
    pub touch_policy: u8,
    pub form_factor: u8,
}

pub struct Pki {
    ca_cert: Certificate,
    intermediate_key: SigningKey,
    intermediate_cert: Certificate,
}

impl Pki {
    /// Loads the CA and intermediate from `dir`, creating them on first use.
    pub fn load_or_create(dir: &Path, serial: u32, firmware: [u8; 3]) -> Result<Self> {
        let paths = Paths::new(dir);
        if paths.all_exist() {
            let ca_cert = Certificate::from_pem(fs::read(&paths.ca_cert)?)?;
            let intermediate_cert = Certificate::from_pem(fs::read(&paths.int_cert)?)?;
            let intermediate_key =
                SigningKey::from_pkcs8_pem(&fs::read_to_string(&paths.int_key)?)?;
            return Ok(Self {
                ca_cert,
                intermediate_key,
                intermediate_cert,
            });
        }

        let ca_key = SigningKey::random(&mut OsRng);
        let ca_name =
            Name::from_str("CN=tufkey virtual-piv Test Attestation Root CA,O=tufkey tests")?;
        let ca_cert = sign(
            &ca_key,
            ca_name.clone(),
            ca_name.clone(),
            ca_key.verifying_key().to_public_key_der()?.decode_msg()?,
            vec![
                ext(
                    &BasicConstraints {
                        ca: true,
                        path_len_constraint: None,
                    },
                    true,
                )?,
                ext(&KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign), true)?,
            ],
        )?;

        // Like a YubiKey's F9 certificate: an intermediate named after the device.
        let intermediate_key = SigningKey::random(&mut OsRng);
        let int_name = Name::from_str(&format!(
            "CN=Yubico PIV Attestation {serial},O=tufkey tests"
        ))?;
        let intermediate_cert = sign(
            &ca_key,
            ca_name,
            int_name,
            intermediate_key
                .verifying_key()
                .to_public_key_der()?
                .decode_msg()?,
            vec![
                ext(
                    &BasicConstraints {
                        ca: true,
                        path_len_constraint: Some(0),
                    },
                    true,
                )?,
                ext(&KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign), true)?,
                raw_ext(OID_FIRMWARE, firmware.to_vec()),
                raw_ext(OID_SERIAL, serial_integer(serial)?),
            ],
        )?;

        fs::create_dir_all(dir)?;
        write_private(
            &paths.ca_key,
            ca_key.to_pkcs8_pem(LineEnding::LF)?.as_bytes(),
        )?;
        write_private(
            &paths.int_key,
            intermediate_key.to_pkcs8_pem(LineEnding::LF)?.as_bytes(),
        )?;
        fs::write(&paths.ca_cert, ca_cert.to_pem(LineEnding::LF)?)?;
        fs::write(&paths.int_cert, intermediate_cert.to_pem(LineEnding::LF)?)?;
        Ok(Self {
            ca_cert,
            intermediate_key,
            intermediate_cert,
        })
    }

    pub fn ca_pem(&self) -> Result<String> {
        Ok(self.ca_cert.to_pem(LineEnding::LF)?)
    }

    pub fn intermediate_der(&self) -> Result<Vec<u8>> {
        Ok(self.intermediate_cert.to_der()?)
    }

    /// A slot attestation certificate, DER.
    pub fn attest(&self, info: &AttestInfo<'_>) -> Result<Vec<u8>> {
        let subject = Name::from_str(&format!("CN=YubiKey PIV Attestation {:02x}", info.slot))?;
        let cert = sign(
            &self.intermediate_key,
            self.intermediate_cert.tbs_certificate.subject.clone(),
            subject,
            info.spki.clone(),
            vec![
                raw_ext(OID_FIRMWARE, info.firmware.to_vec()),
                raw_ext(OID_SERIAL, serial_integer(info.serial)?),
                raw_ext(OID_POLICY, vec![info.pin_policy, info.touch_policy]),
                raw_ext(OID_FORM_FACTOR, vec![info.form_factor]),
            ],
        )?;
        Ok(cert.to_der()?)
    }
}

struct Paths {
    ca_key: PathBuf,
    ca_cert: PathBuf,
    int_key: PathBuf,
    int_cert: PathBuf,
}

impl Paths {
    fn new(dir: &Path) -> Self {
        Self {
            ca_key: dir.join("attest-ca.key.pem"),
            ca_cert: dir.join("attest-ca.pem"),
            int_key: dir.join("attest-intermediate.key.pem"),
            int_cert: dir.join("attest-intermediate.pem"),
        }
    }
    fn all_exist(&self) -> bool {
        [&self.ca_key, &self.ca_cert, &self.int_key, &self.int_cert]
            .iter()
            .all(|p| p.exists())
    }
}

fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    Ok(())
}

/// Yubico encodes the serial extension as a DER INTEGER inside the extnValue.
fn serial_integer(serial: u32) -> Result<Vec<u8>> {
    Ok(der::asn1::Uint::new(&serial.to_be_bytes())?.to_der()?)
}

fn ext<T: Encode + der::oid::AssociatedOid>(value: &T, critical: bool) -> Result<Extension> {
    Ok(Extension {
        extn_id: T::OID,
        critical,
        extn_value: OctetString::new(value.to_der()?)?,
    })
}

fn raw_ext(oid: ObjectIdentifier, value: Vec<u8>) -> Extension {
    Extension {
        extn_id: oid,
        critical: false,
        extn_value: OctetString::new(value).expect("short extension value"),
    }
}

fn validity() -> Result<Validity> {
    let not_before = SystemTime::now() - Duration::from_secs(24 * 3600);
    Ok(Validity {
        not_before: Time::UtcTime(UtcTime::from_system_time(not_before)?),
        // RFC 5280 4.1.2.5: 99991231235959Z means "no well-defined expiration".
        not_after: Time::GeneralTime(GeneralizedTime::from_date_time(DateTime::new(
            9999, 12, 31, 23, 59, 59,
        )?)),
    })
}

fn sign(
    issuer_key: &SigningKey,
    issuer: Name,
    subject: Name,
    spki: SubjectPublicKeyInfoOwned,
    extensions: Vec<Extension>,
) -> Result<Certificate> {
    let mut serial = [0u8; 16];
    OsRng.fill_bytes(&mut serial);
    serial[0] &= 0x7f; // positive
    serial[0] |= 0x01; // no leading zero byte
    let algorithm = AlgorithmIdentifierOwned {
        oid: ECDSA_WITH_SHA256,
        parameters: None,
    };
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&serial)?,
        signature: algorithm.clone(),
        issuer,
        validity: validity()?,
        subject,
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    let tbs_der = tbs.to_der()?;
    let signature: DerSignature = p256::ecdsa::signature::Signer::sign(issuer_key, &tbs_der);
    Ok(Certificate {
        tbs_certificate: tbs,
        signature_algorithm: algorithm,
        signature: BitString::from_bytes(signature.as_bytes())?,
    })
}

/// Parses a certificate (used by tests of this module).
#[allow(dead_code)]
pub fn parse(der: &[u8]) -> Result<Certificate> {
    Ok(Certificate::from_der(der)?)
}
