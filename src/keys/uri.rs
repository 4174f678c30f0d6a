//! Key URIs: one string names a key everywhere (CLI flags, ceremony files, policy).
//!
//! - `pkcs11:` as in RFC 7512, with path attributes `token`, `object`, `id`, `serial`,
//!   `manufacturer`, `model`, `slot-id`, `type` and query attributes `module-path`,
//!   `pin-source`, `pin-value`;
//! - `file:PATH` (or `file:///PATH`) for an encrypted PKCS#8 file.

use std::fmt;
use std::path::PathBuf;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::error::KeyError;
use super::pin::Secret;

/// A parsed key URI.
#[derive(Debug, Clone)]
pub enum KeyUri {
    Pkcs11(Box<Pkcs11Uri>),
    File(FileUri),
    YubiKey(YubiKeyUri),
    Remote(RemoteUri),
}

impl KeyUri {
    /// Parses a key URI; an error quotes the part that is wrong.
    pub fn parse(s: &str) -> Result<KeyUri, KeyError> {
        if let Some(rest) = s.strip_prefix("pkcs11:") {
            Pkcs11Uri::parse_rest(s, rest).map(|u| KeyUri::Pkcs11(Box::new(u)))
        } else if let Some(rest) = s.strip_prefix("file:") {
            FileUri::parse_rest(s, rest).map(KeyUri::File)
        } else if let Some(rest) = s.strip_prefix("yubikey:") {
            YubiKeyUri::parse_rest(s, rest).map(KeyUri::YubiKey)
        } else if s.starts_with("https://") {
            RemoteUri::parse(s).map(KeyUri::Remote)
        } else {
            let scheme = s
                .split(':')
                .next()
                .filter(|p| p.len() < s.len())
                .unwrap_or(s);
            Err(KeyError::Uri {
                uri: redact(s),
                part: scheme.into(),
                reason: "unknown key URI scheme; use pkcs11:… (RFC 7512) or file:/path/key.p8"
                    .into(),
            })
        }
    }

    /// Why a signer daemon (`tufkey serve`) may not hold this key, or `None` when it may.
    /// The rule lives here, not in the daemon's config reader, so that nothing outside
    /// `keys/` looks inside a URI to decide what a kind of key may do.
    pub fn daemon_refusal(&self) -> Option<DaemonRefusal> {
        match self {
            KeyUri::Pkcs11(p) if p.pin_value.is_some() => Some(DaemonRefusal::ClearPin),
            KeyUri::Remote(_) => Some(DaemonRefusal::Remote),
            KeyUri::Pkcs11(_) | KeyUri::File(_) | KeyUri::YubiKey(_) => None,
        }
    }
}

/// Why `tufkey serve` refuses a key URI in its config; the words are what the config
/// error shows at the key's line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DaemonRefusal {
    /// A config file is read by operators and kept in version control: a PIN in it leaks.
    #[error(
        "the key URI carries a clear pin-value; PINs never go in the config: use pin-source=file:/path or the TUFKEY_PIN_<LABEL> environment variable"
    )]
    ClearPin,
    /// The daemon signs only with keys it holds itself; relaying to another signer would
    /// hide which device signed.
    #[error("a signer cannot serve a remote key; give a pkcs11:, yubikey: or file: URI")]
    Remote,
}

impl fmt::Display for KeyUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyUri::Pkcs11(u) => u.fmt(f),
            KeyUri::File(u) => u.fmt(f),
            KeyUri::YubiKey(u) => u.fmt(f),
            KeyUri::Remote(u) => u.fmt(f),
        }
    }
}

/// Hides a `pin-value` in a URI string that could not be parsed, for error messages.
pub fn redact(s: &str) -> String {
    match s.find("pin-value=") {
        Some(i) => {
            let end = s[i..].find('&').map(|j| i + j).unwrap_or(s.len());
            format!("{}pin-value=***{}", &s[..i], &s[end..])
        }
        None => s.to_string(),
    }
}

/// A key in a YubiKey PIV slot: `yubikey:serial=5437251;slot=9c`. The serial may be left
/// out when exactly one YubiKey is present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YubiKeyUri {
    pub serial: Option<u32>,
    /// The PIV slot as two hex digits: 9a, 9c, 9d, 9e or a retired slot 82–95.
    pub slot: u8,
}

impl YubiKeyUri {
    fn parse_rest(whole: &str, rest: &str) -> Result<YubiKeyUri, KeyError> {
        let err = |part: &str, reason: &str| KeyError::Uri {
            uri: whole.into(),
            part: part.into(),
            reason: reason.into(),
        };
        let (mut serial, mut slot) = (None, None);
        for attr in rest.split(';').filter(|a| !a.is_empty()) {
            match attr.split_once('=') {
                Some(("serial", v)) if serial.is_none() => {
                    serial = Some(v.parse::<u32>().map_err(|_| {
                        err(attr, "serial must be the YubiKey's decimal serial number")
                    })?)
                }
                Some(("slot", v)) if slot.is_none() => {
                    let n = u8::from_str_radix(v, 16)
                        .ok()
                        .filter(|n| matches!(n, 0x9a | 0x9c | 0x9d | 0x9e | 0x82..=0x95));
                    slot = Some(n.ok_or_else(|| {
                        err(attr, "slot must be a PIV key slot: 9a, 9c, 9d, 9e or 82…95")
                    })?);
                }
                Some(("serial" | "slot", _)) => return Err(err(attr, "attribute given twice")),
                _ => {
                    return Err(err(
                        attr,
                        "unknown attribute; yubikey URIs take serial= and slot=",
                    ))
                }
            }
        }
        Ok(YubiKeyUri {
            serial,
            slot: slot.ok_or_else(|| err(whole, "slot= is required, e.g. yubikey:slot=9c"))?,
        })
    }
}

impl fmt::Display for YubiKeyUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.serial {
            Some(s) => write!(f, "yubikey:serial={s};slot={:02x}", self.slot),
            None => write!(f, "yubikey:slot={:02x}", self.slot),
        }
    }
}

/// A key held by a remote `tufkey serve`: `https://host:port/keys/<keyid>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteUri {
    /// `https://host:port`, without a trailing slash.
    pub base: String,
    pub keyid: String,
}

impl RemoteUri {
    fn parse(whole: &str) -> Result<RemoteUri, KeyError> {
        let err = |part: &str, reason: &str| KeyError::Uri {
            uri: whole.into(),
            part: part.into(),
            reason: reason.into(),
        };
        let rest = &whole["https://".len()..];
        let (host, path) = rest
            .split_once('/')
            .ok_or_else(|| err(whole, "expected https://host:port/keys/<keyid>"))?;
        if host.is_empty() || host.contains('@') {
            return Err(err(
                host,
                "expected a host (and port), without user information",
            ));
        }
        let keyid = path
            .strip_prefix("keys/")
            .ok_or_else(|| err(path, "the path must be /keys/<keyid>"))?;
        if keyid.len() != 64 || !keyid.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err(keyid, "the key id must be 64 hex digits"));
        }
        Ok(RemoteUri {
            base: format!("https://{host}"),
            keyid: keyid.to_ascii_lowercase(),
        })
    }
}

impl fmt::Display for RemoteUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/keys/{}", self.base, self.keyid)
    }
}

/// A `file:` key: an encrypted PKCS#8 file (development and the embedded default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileUri {
    pub path: PathBuf,
}

impl FileUri {
    fn parse_rest(whole: &str, rest: &str) -> Result<FileUri, KeyError> {
        let path = match rest.strip_prefix("//") {
            Some(after) if after.starts_with('/') => after,
            Some(after) => return Err(KeyError::Uri {
                uri: whole.into(),
                part: format!("//{}", after.split('/').next().unwrap_or_default()),
                reason:
                    "file URIs name a local path: file:/abs/path, file:rel/path or file:///abs/path"
                        .into(),
            }),
            None => rest,
        };
        if path.is_empty() {
            return Err(KeyError::Uri {
                uri: whole.into(),
                part: "file:".into(),
                reason: "no path after `file:`".into(),
            });
        }
        Ok(FileUri {
            path: PathBuf::from(path),
        })
    }
}

impl fmt::Display for FileUri {
    /// A path that starts with `//` is shown as `file:////…`: `file://…` would read back
    /// as a URI with a host, which `file:` keys refuse.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display().to_string();
        if path.starts_with("//") {
            write!(f, "file://{path}")
        } else {
            write!(f, "file:{path}")
        }
    }
}

/// An RFC 7512 PKCS#11 URI. `pin-value` is kept as a zeroizing secret and never displayed.
#[derive(Debug, Clone, Default)]
pub struct Pkcs11Uri {
    pub token: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub slot_id: Option<u64>,
    pub object: Option<String>,
    pub id: Option<Vec<u8>>,
    pub object_type: Option<String>,
    pub module_path: Option<PathBuf>,
    pub pin_source: Option<String>,
    pub pin_value: Option<Secret>,
}

const PATH_ATTRS: &[&str] = &[
    "token",
    "manufacturer",
    "model",
    "serial",
    "slot-id",
    "object",
    "id",
    "type",
    "library-manufacturer",
    "library-description",
    "library-version",
    "slot-description",
    "slot-manufacturer",
];
const QUERY_ATTRS: &[&str] = &["module-path", "pin-source", "pin-value", "module-name"];

impl Pkcs11Uri {
    fn parse_rest(whole: &str, rest: &str) -> Result<Pkcs11Uri, KeyError> {
        let err = |part: &str, reason: String| KeyError::Uri {
            uri: redact(whole),
            part: redact(part),
            reason,
        };
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let mut uri = Pkcs11Uri::default();
        let mut seen: Vec<String> = Vec::new();
        let attrs = path
            .split(';')
            .filter(|a| !a.is_empty())
            .map(|a| (a, false))
            .chain(
                query
                    .into_iter()
                    .flat_map(|q| q.split('&'))
                    .filter(|a| !a.is_empty())
                    .map(|a| (a, true)),
            );
        for (attr, in_query) in attrs {
            let (name, raw) = attr
                .split_once('=')
                .ok_or_else(|| err(attr, "an attribute must be name=value".into()))?;
            let known = if in_query { QUERY_ATTRS } else { PATH_ATTRS };
            if !known.contains(&name) && !name.starts_with("x-") {
                let (place, list) = if in_query {
                    ("query", QUERY_ATTRS)
                } else {
                    ("path", PATH_ATTRS)
                };
                return Err(err(
                    attr,
                    format!(
                        "unknown {place} attribute `{name}` (known: {})",
                        list.join(", ")
                    ),
                ));
            }
            if seen.iter().any(|s| s == name) {
                return Err(err(attr, format!("attribute `{name}` is given twice")));
            }
            seen.push(name.to_string());
            let bytes: Vec<u8> = percent_decode_str(raw).collect();
            let text = || {
                String::from_utf8(bytes.clone())
                    .map_err(|_| err(attr, "value is not UTF-8 after percent-decoding".into()))
            };
            match name {
                "token" => uri.token = Some(text()?),
                "manufacturer" => uri.manufacturer = Some(text()?),
                "model" => uri.model = Some(text()?),
                "serial" => uri.serial = Some(text()?),
                "slot-id" => {
                    uri.slot_id = Some(text()?.parse().map_err(|_| err(attr, "slot-id must be a decimal number".into()))?)
                }
                "object" => uri.object = Some(text()?),
                "id" => uri.id = Some(bytes),
                "type" => {
                    let t = text()?;
                    if !["private", "public", "cert", "secret-key", "data"].contains(&t.as_str()) {
                        return Err(err(attr, "type must be one of private, public, cert, secret-key, data".into()));
                    }
                    uri.object_type = Some(t);
                }
                "module-path" => uri.module_path = Some(PathBuf::from(text()?)),
                "module-name" => {
                    return Err(err(attr, "module-name is not supported; give the library with module-path=/path/to/module.so".into()))
                }
                "pin-source" => uri.pin_source = Some(text()?),
                "pin-value" => uri.pin_value = Some(Secret::new(text()?)),
                _ => {} // library-*, slot-description, slot-manufacturer and x- attributes: accepted, not used to match
            }
        }
        Ok(uri)
    }

    /// This URI without object selectors: names the token only.
    pub fn token_only(&self) -> Pkcs11Uri {
        Pkcs11Uri {
            object: None,
            id: None,
            object_type: None,
            ..self.clone()
        }
    }
}

/// Characters kept literal in attribute values (RFC 7512 pk11-pchar, minus the ones that
/// read badly in a shell).
const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

impl fmt::Display for Pkcs11Uri {
    /// The URI in a stable form; `pin-value` is shown as `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let enc = |s: &str| utf8_percent_encode(s, VALUE).to_string();
        let mut path: Vec<String> = Vec::new();
        if let Some(v) = &self.token {
            path.push(format!("token={}", enc(v)));
        }
        if let Some(v) = &self.manufacturer {
            path.push(format!("manufacturer={}", enc(v)));
        }
        if let Some(v) = &self.model {
            path.push(format!("model={}", enc(v)));
        }
        if let Some(v) = &self.serial {
            path.push(format!("serial={}", enc(v)));
        }
        if let Some(v) = &self.slot_id {
            path.push(format!("slot-id={v}"));
        }
        if let Some(v) = &self.object {
            path.push(format!("object={}", enc(v)));
        }
        if let Some(v) = &self.id {
            path.push(format!(
                "id={}",
                v.iter().map(|b| format!("%{b:02X}")).collect::<String>()
            ));
        }
        if let Some(v) = &self.object_type {
            path.push(format!("type={v}"));
        }
        let mut query: Vec<String> = Vec::new();
        if let Some(v) = &self.module_path {
            query.push(format!("module-path={}", enc(&v.to_string_lossy())));
        }
        if let Some(v) = &self.pin_source {
            query.push(format!("pin-source={}", enc(v).replace("%3A", ":")));
        }
        if self.pin_value.is_some() {
            query.push("pin-value=***".into());
        }
        write!(f, "pkcs11:{}", path.join(";"))?;
        if !query.is_empty() {
            write!(f, "?{}", query.join("&"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p11(s: &str) -> Pkcs11Uri {
        match KeyUri::parse(s).unwrap() {
            KeyUri::Pkcs11(u) => *u,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_daemon_may_hold_local_keys_but_not_a_clear_pin_or_a_remote_key() {
        let refusal = |s: &str| KeyUri::parse(s).unwrap().daemon_refusal();
        assert_eq!(
            refusal("pkcs11:token=a;object=k?pin-source=file:/run/pin"),
            None
        );
        assert_eq!(refusal("file:/keys/ts.p8"), None);
        assert_eq!(refusal("yubikey:slot=9c"), None);
        assert_eq!(
            refusal("pkcs11:token=a;object=k?pin-value=1234"),
            Some(DaemonRefusal::ClearPin)
        );
        let remote = format!("https://signer.example:7443/keys/{}", "ab".repeat(32));
        assert_eq!(refusal(&remote), Some(DaemonRefusal::Remote));
    }

    #[test]
    fn a_file_path_starting_with_two_slashes_is_shown_so_that_it_parses_back() {
        // Found by the key_uri fuzz target: `file:////x` showed as `file://x`, a URI with
        // a host that `file:` refuses.
        let uri = KeyUri::parse("file:////:s-yubikey5%erial=5%n").unwrap();
        let shown = uri.to_string();
        assert_eq!(shown, "file:////:s-yubikey5%erial=5%n");
        match KeyUri::parse(&shown).unwrap() {
            KeyUri::File(f) => assert_eq!(f.path, PathBuf::from("//:s-yubikey5%erial=5%n")),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            KeyUri::parse("file:/k.p8").unwrap().to_string(),
            "file:/k.p8"
        );
    }

    #[test]
    fn the_design_example_parses() {
        let u = p11("pkcs11:token=root-a;object=root;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin");
        assert_eq!(u.token.as_deref(), Some("root-a"));
        assert_eq!(u.object.as_deref(), Some("root"));
        assert_eq!(u.id.as_deref(), Some(&[1u8][..]));
        assert_eq!(
            u.module_path,
            Some(PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"))
        );
        assert_eq!(u.pin_source.as_deref(), Some("file:/run/pin"));
        assert_eq!(
            u.to_string(),
            "pkcs11:token=root-a;object=root;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin"
        );
    }

    #[test]
    fn percent_encoding_and_serial_and_slot_id() {
        let u = p11("pkcs11:token=My%20Token;serial=ab12;slot-id=7;id=%DE%AD");
        assert_eq!(u.token.as_deref(), Some("My Token"));
        assert_eq!(u.serial.as_deref(), Some("ab12"));
        assert_eq!(u.slot_id, Some(7));
        assert_eq!(u.id.as_deref(), Some(&[0xde, 0xad][..]));
    }

    #[test]
    fn pin_value_is_never_displayed() {
        let u = p11("pkcs11:token=a?pin-value=123456");
        assert_eq!(u.pin_value.as_ref().map(|p| p.expose()), Some("123456"));
        assert!(!u.to_string().contains("123456"));
        assert!(!format!("{u:?}").contains("123456"));
        let err = KeyUri::parse("pkcs11:tokn=a?pin-value=123456")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("123456"), "{err}");
    }

    #[test]
    fn malformed_uris_quote_the_bad_part() {
        for (uri, part) in [
            ("pkcs11:token=a;objekt=b", "objekt=b"),
            ("pkcs11:token=a;token=b", "token=b"),
            ("pkcs11:token", "token"),
            ("pkcs11:slot-id=x", "slot-id=x"),
            ("pkcs11:token=a?modul-path=/x", "modul-path=/x"),
            ("yubikey9c", "yubikey9c"),
            ("gcpkms:projects/x", "gcpkms"),
            ("file:", "file:"),
        ] {
            let err = KeyUri::parse(uri).unwrap_err().to_string();
            assert!(err.contains(&format!("`{part}`")), "{uri}: {err}");
        }
    }

    #[test]
    fn yubikey_and_remote_uris() {
        match KeyUri::parse("yubikey:serial=5437251;slot=9c").unwrap() {
            KeyUri::YubiKey(u) => assert_eq!(
                u,
                YubiKeyUri {
                    serial: Some(5437251),
                    slot: 0x9c
                }
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            KeyUri::parse("yubikey:slot=9a").unwrap().to_string(),
            "yubikey:slot=9a"
        );
        for (bad, part) in [
            ("yubikey:slot=9b", "slot=9b"),
            ("yubikey:serial=x;slot=9c", "serial=x"),
            ("yubikey:pin=1;slot=9c", "pin=1"),
        ] {
            let e = KeyUri::parse(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("`{part}`")), "{e}");
        }
        let id = "a".repeat(64);
        match KeyUri::parse(&format!("https://signer.example:7443/keys/{id}")).unwrap() {
            KeyUri::Remote(r) => assert_eq!(
                (r.base.as_str(), r.keyid.as_str()),
                ("https://signer.example:7443", id.as_str())
            ),
            other => panic!("{other:?}"),
        }
        assert!(KeyUri::parse("https://signer.example/keys/abc").is_err());
    }

    #[test]
    fn file_uris() {
        for (s, p) in [
            ("file:/a/b.p8", "/a/b.p8"),
            ("file:///a/b.p8", "/a/b.p8"),
            ("file:keys/x.p8", "keys/x.p8"),
        ] {
            match KeyUri::parse(s).unwrap() {
                KeyUri::File(f) => assert_eq!(f.path, PathBuf::from(p)),
                other => panic!("{other:?}"),
            }
        }
        assert!(KeyUri::parse("file://host/a").is_err());
    }
}
