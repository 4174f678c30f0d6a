//! Where PINs and passphrases come from, in order: the URI (`pin-value`,
//! `pin-source`), environment variables, the opt-in OS keyring cache, and a hidden
//! prompt. Secrets are zeroized on drop and never displayed.

use std::fmt;
use std::io::IsTerminal;

use super::error::KeyError;
use super::pin_cache;
pub use super::secret::Secret;
use zeroize::Zeroizing;

/// How a command may obtain and spend PINs.
#[derive(Debug, Clone, Copy, Default)]
pub struct PinPolicy {
    /// Allow spending a PIN's final try (`--force`).
    pub force: bool,
    /// Store a PIN that worked in the OS keyring (`--remember-pin`).
    pub remember: bool,
    /// Whether a hidden prompt may be shown (stdin is a terminal and `--no-prompt` is absent).
    pub interactive: bool,
}

impl PinPolicy {
    /// Interactive when stdin is a terminal.
    pub fn from_flags(force: bool, remember: bool, no_prompt: bool) -> PinPolicy {
        PinPolicy {
            force,
            remember,
            interactive: !no_prompt && std::io::stdin().is_terminal(),
        }
    }
}

/// Where a secret came from; decides whether it may be cached and what to say on failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinOrigin {
    UriValue,
    UriSource(String),
    Env(String),
    Cache,
    Prompt,
}

impl fmt::Display for PinOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PinOrigin::UriValue => f.write_str("the URI's pin-value"),
            PinOrigin::UriSource(s) => write!(f, "pin-source {s}"),
            PinOrigin::Env(v) => write!(f, "environment variable {v}"),
            PinOrigin::Cache => f.write_str("the OS keyring cache"),
            PinOrigin::Prompt => f.write_str("the prompt"),
        }
    }
}

/// What to ask for and where to look.
pub struct PinRequest<'a> {
    /// Shown in the prompt and errors, e.g. `user PIN for token "root-a"`.
    pub what: String,
    pub uri_value: Option<&'a Secret>,
    pub uri_source: Option<&'a str>,
    /// Environment variables to try, most specific first.
    pub env: Vec<String>,
    /// Keyring entry name, when caching applies to this secret.
    pub cache_key: Option<String>,
}

/// Finds the secret from the first source that has one. Does not verify it.
pub fn obtain(req: &PinRequest<'_>, policy: &PinPolicy) -> Result<(Secret, PinOrigin), KeyError> {
    if let Some(v) = req.uri_value {
        return Ok((v.clone(), PinOrigin::UriValue));
    }
    if let Some(src) = req.uri_source {
        return Ok((read_pin_source(src)?, PinOrigin::UriSource(src.to_string())));
    }
    for var in &req.env {
        if let Ok(v) = std::env::var(var) {
            return Ok((Secret::new(v), PinOrigin::Env(var.clone())));
        }
    }
    if let Some(key) = &req.cache_key {
        if let Some(pin) = pin_cache::get(key) {
            return Ok((pin, PinOrigin::Cache));
        }
    }
    if policy.interactive {
        let pin = dialoguer::Password::new()
            .with_prompt(format!("Enter {}", req.what))
            .allow_empty_password(false)
            .interact()
            .map_err(|e| KeyError::Prompt(e.to_string()))?;
        return Ok((Secret::new(pin), PinOrigin::Prompt));
    }
    Err(KeyError::NoPin {
        what: req.what.clone(),
        env: req.env.first().cloned().unwrap_or_default(),
    })
}

/// Reads `pin-source`: `file:/path`, a plain path, or `env:NAME`. One trailing newline is
/// dropped, as editors add one.
pub fn read_pin_source(src: &str) -> Result<Secret, KeyError> {
    if let Some(var) = src.strip_prefix("env:") {
        return std::env::var(var)
            .map(Secret::new)
            .map_err(|_| KeyError::PinSource {
                source_name: src.into(),
                reason: format!("environment variable {var} is not set"),
            });
    }
    let path = src
        .strip_prefix("file://")
        .or_else(|| src.strip_prefix("file:"))
        .unwrap_or(src);
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| KeyError::PinSource {
        source_name: src.into(),
        reason: e.to_string(),
    })?);
    let mut s = String::from_utf8(bytes.to_vec()).map_err(|_| KeyError::PinSource {
        source_name: src.into(),
        reason: "the file is not UTF-8 text".into(),
    })?;
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    Ok(Secret::new(s))
}

/// `TUFKEY_PIN_<LABEL>` with the label upper-cased and non-alphanumerics as `_`.
pub fn token_env_var(label: &str) -> String {
    let norm: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("TUFKEY_PIN_{norm}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2".into());
        assert_eq!(format!("{s:?}"), "***");
    }

    #[test]
    fn pin_source_files_lose_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pin");
        std::fs::write(&p, "1234\n").unwrap();
        assert_eq!(
            read_pin_source(&format!("file:{}", p.display()))
                .unwrap()
                .expose(),
            "1234"
        );
        std::fs::write(&p, " 12 34 \r\n").unwrap();
        assert_eq!(
            read_pin_source(p.to_str().unwrap()).unwrap().expose(),
            " 12 34 "
        );
        let err = read_pin_source("file:/nonexistent/pin")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/pin"), "{err}");
    }

    #[test]
    fn env_names_are_derived_from_labels() {
        assert_eq!(token_env_var("root-a"), "TUFKEY_PIN_ROOT_A");
    }

    #[test]
    fn without_a_source_or_terminal_it_says_what_to_set() {
        let req = PinRequest {
            what: "user PIN for token \"t\"".into(),
            uri_value: None,
            uri_source: None,
            env: vec!["TUFKEY_TEST_UNSET_VAR".into()],
            cache_key: None,
        };
        let err = obtain(&req, &PinPolicy::default()).unwrap_err().to_string();
        assert!(err.contains("TUFKEY_TEST_UNSET_VAR"), "{err}");
    }
}
