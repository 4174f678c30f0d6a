//! The client's config file for remote keys: which CA, client certificate and key
//! (and default repository and role) to use for which signer, so a pipeline or a
//! keyholder's machine can be set up once instead of exporting variables in every
//! shell — what Notary users kept in `~/.notary/config.json`.
//!
//! ```toml
//! # ~/.config/tufkey/remote.toml (or the file TUFKEY_REMOTE_CONFIG names)
//! [[signer]]
//! url = "https://signer.example:7443"    # the https://host:port of the key URIs
//! ca = "/etc/tufkey/signer-ca.pem"
//! cert = "ci-main.pem"                   # relative paths: from this file's folder
//! key = "ci-main.key"
//! repository = "acme"                     # optional defaults for the sign requests
//! role = "targets"
//! audience = "https://signer.example:7443" # OIDC tokens fetched in GitHub Actions
//! ```
//!
//! Flags and environment variables (`TUFKEY_REMOTE_*`) win over the file, one
//! setting at a time. The first `[[signer]]` whose `url` equals the key URI's
//! `https://host:port` applies.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Names the config file instead of the per-user default.
pub const ENV_CONFIG: &str = "TUFKEY_REMOTE_CONFIG";

/// One signer's client settings, paths already made absolute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignerEntry {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub repository: Option<String>,
    pub role: Option<String>,
    /// The audience of OIDC tokens fetched for this signer (GitHub Actions).
    pub audience: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    signer: Vec<RawSigner>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSigner {
    url: String,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    repository: Option<String>,
    role: Option<String>,
    audience: Option<String>,
}

/// The file to read: `TUFKEY_REMOTE_CONFIG`, else `$XDG_CONFIG_HOME/tufkey/remote.toml`,
/// else `~/.config/tufkey/remote.toml`. The explicit one must exist; the default may not.
fn config_path() -> Option<(PathBuf, bool)> {
    let var = |n: &str| std::env::var_os(n).filter(|v| !v.is_empty());
    if let Some(p) = var(ENV_CONFIG) {
        return Some((PathBuf::from(p), true));
    }
    let base = var("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some((base.join("tufkey").join("remote.toml"), false))
}

/// `url` without a trailing slash and with the default port spelled out, so that
/// `https://h`, `https://h/` and `https://h:443` name the same signer.
fn normalise(url: &str) -> String {
    let u = url.trim().trim_end_matches('/').to_ascii_lowercase();
    match u.strip_prefix("https://") {
        Some(rest) if !rest.contains(':') || rest.ends_with(']') => format!("https://{rest}:443"),
        _ => u,
    }
}

/// Every `[[signer]]` of a config file's text, in order, with its `url` as written;
/// `path` is for messages and relative paths.
pub fn parse_all(path: &Path, text: &str) -> Result<Vec<(String, SignerEntry)>, String> {
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        // toml's message starts with "TOML parse error at line N, column M".
        format!("{}: {}", path.display(), e.to_string().trim_end())
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    for s in raw.signer {
        if !s.url.starts_with("https://") {
            return Err(format!(
                "{}: signer url {:?} must start with https://",
                path.display(),
                s.url
            ));
        }
        let abs = |p: Option<PathBuf>| p.map(|p| if p.is_absolute() { p } else { dir.join(p) });
        out.push((
            s.url,
            SignerEntry {
                ca: abs(s.ca),
                cert: abs(s.cert),
                key: abs(s.key),
                repository: s.repository,
                role: s.role,
                audience: s.audience,
            },
        ));
    }
    Ok(out)
}

/// The entry of a config file's text for the signer at `base`; `path` is for messages
/// and relative paths.
pub fn parse(path: &Path, text: &str, base: &str) -> Result<Option<SignerEntry>, String> {
    let want = normalise(base);
    Ok(parse_all(path, text)?
        .into_iter()
        .find(|(url, _)| normalise(url) == want)
        .map(|(_, e)| e))
}

/// What the client config file says about a signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// There is no config file (the default one may be missing).
    NoFile,
    /// The file's entry for the signer.
    Entry(PathBuf, SignerEntry),
    /// The file exists, but no `[[signer]]` has the signer's url; these are its urls.
    NoMatch { path: PathBuf, urls: Vec<String> },
}

impl Found {
    /// Words for a message about missing settings: where else they could have come
    /// from, and why the file did not give them.
    pub fn hint(&self, base: &str) -> String {
        match self {
            Found::NoFile => format!(
                " (or in a [[signer]] entry of ~/.config/tufkey/remote.toml or the file {ENV_CONFIG} names)"
            ),
            Found::Entry(p, _) => format!(" (or in {})", p.display()),
            Found::NoMatch { path, urls } => format!(
                " (or in {p}: no [[signer]] in {p} has url {base}; it has: {})",
                if urls.is_empty() {
                    "none".to_string()
                } else {
                    urls.join(", ")
                },
                p = path.display()
            ),
        }
    }
}

/// What the config file says about the signer at `base` (`https://host:port`). A config
/// file that exists but cannot be read or parsed is an error.
pub fn find(base: &str) -> Result<Found, String> {
    let Some((path, explicit)) = config_path() else {
        return Ok(Found::NoFile);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            return Ok(Found::NoFile)
        }
        Err(e) => return Err(format!("{}: {e} (named by {ENV_CONFIG})", path.display())),
    };
    let all = parse_all(&path, &text)?;
    let want = normalise(base);
    match all.iter().find(|(url, _)| normalise(url) == want) {
        Some((_, e)) => Ok(Found::Entry(path, e.clone())),
        None => Ok(Found::NoMatch {
            path,
            urls: all.into_iter().map(|(url, _)| url).collect(),
        }),
    }
}

/// The settings for the signer at `base` (`https://host:port`), if a config file has
/// them. A config file that exists but cannot be read or parsed is an error.
pub fn lookup(base: &str) -> Result<Option<(PathBuf, SignerEntry)>, String> {
    Ok(match find(base)? {
        Found::Entry(p, e) => Some((p, e)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
[[signer]]
url = "https://other.example:7443"
ca = "/nowhere/ca.pem"

[[signer]]
url = "https://Signer.example:7443/"
ca = "ca.pem"
cert = "/abs/ci.pem"
key = "keys/ci.key"
repository = "acme"
"#;

    #[test]
    fn the_entry_for_the_uris_signer_applies_with_paths_from_the_files_folder() {
        let e = parse(
            Path::new("/etc/tufkey/remote.toml"),
            TEXT,
            "https://signer.example:7443",
        )
        .unwrap()
        .unwrap();
        assert_eq!(e.ca, Some(PathBuf::from("/etc/tufkey/ca.pem")));
        assert_eq!(e.cert, Some(PathBuf::from("/abs/ci.pem")));
        assert_eq!(e.key, Some(PathBuf::from("/etc/tufkey/keys/ci.key")));
        assert_eq!(e.repository.as_deref(), Some("acme"));
        assert_eq!(e.role, None);
        let none = parse(Path::new("r.toml"), TEXT, "https://signer.example:7444").unwrap();
        assert_eq!(none, None);
    }

    #[test]
    fn default_ports_and_trailing_slashes_name_the_same_signer() {
        let text = "[[signer]]\nurl = \"https://s.example/\"\nca = \"c\"\n";
        assert!(parse(Path::new("r.toml"), text, "https://s.example:443")
            .unwrap()
            .is_some());
    }

    #[test]
    fn mistakes_name_the_file_and_line() {
        let e = parse(
            Path::new("/x/remote.toml"),
            "[[signer]]\nurl = \"https://s\"\ncert_file = \"c\"\n",
            "https://s:443",
        )
        .unwrap_err();
        assert!(e.starts_with("/x/remote.toml:"), "{e}");
        assert!(e.contains("line 3") && e.contains("cert_file"), "{e}");
        let e = parse(
            Path::new("/x/remote.toml"),
            "[[signer]]\nurl = \"http://s\"\n",
            "https://s:443",
        )
        .unwrap_err();
        assert!(e.contains("https://"), "{e}");
    }

    #[test]
    fn a_file_without_the_signers_entry_says_which_urls_it_has() {
        let urls: Vec<String> = parse_all(Path::new("/etc/tufkey/remote.toml"), TEXT)
            .unwrap()
            .into_iter()
            .map(|(u, _)| u)
            .collect();
        assert_eq!(
            urls,
            ["https://other.example:7443", "https://Signer.example:7443/"]
        );
        let found = Found::NoMatch {
            path: PathBuf::from("/etc/tufkey/remote.toml"),
            urls,
        };
        let hint = found.hint("https://third.example:7443");
        assert!(
            hint.contains("no [[signer]] in /etc/tufkey/remote.toml has url https://third.example:7443; it has: https://other.example:7443, https://Signer.example:7443/"),
            "{hint}"
        );
        let empty = Found::NoMatch {
            path: PathBuf::from("r.toml"),
            urls: vec![],
        };
        assert!(empty.hint("https://s:443").ends_with("it has: none)"));
    }
}
