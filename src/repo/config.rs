//! `repo.toml`: which keys sign which role (so a pipeline types nothing), how long each
//! role's signatures last, when `refresh` re-signs, and what snapshot states.
//! Defaults are what a tuf-on-ci user expects: targets and delegated roles 365 days,
//! snapshot 365 days, timestamp 1 day, re-signing at half the lifetime.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::Duration;
use serde::Deserialize;

use super::error::RepoError;

/// The default lifetime of a role's signatures.
pub fn default_expiry(role: &str) -> Duration {
    match role {
        "timestamp" => Duration::days(1),
        _ => Duration::days(365),
    }
}

/// The file `repo init` writes; every setting shown with its default.
pub fn default_text(keys: &BTreeMap<String, Vec<String>>) -> String {
    let mut t = String::from(
        "# tufkey repository settings (see docs/repository.md).\n\n\
# Keys per role: a key URI or a list of them. `tufkey repo commit --key ROLE=URI` replaces\n\
# the list of that role for one run. Never put a PIN here (pin-value=): use pin-source=.\n\
[keys]\n",
    );
    if keys.is_empty() {
        t.push_str(
            "# targets = \"yubikey:slot=9c\"\n\
# snapshot = \"https://signer.example:7443/keys/<keyid>\"\n\
# timestamp = \"https://signer.example:7443/keys/<keyid>\"\n\
# \"team-a\" = [\"pkcs11:token=team;object=a\", \"pkcs11:token=team;object=b\"]\n",
        );
    }
    for (role, uris) in keys {
        let list: Vec<String> = uris.iter().map(|u| toml_string(u)).collect();
        t.push_str(&format!("{} = [{}]\n", toml_string(role), list.join(", ")));
    }
    t.push_str(
        "\n# How long a new signature of each role lasts (s, m, h, d, w, y). `delegated` is\n\
# every delegated role without a line of its own.\n\
[expiry]\n\
targets = \"365d\"\n\
delegated = \"365d\"\n\
snapshot = \"365d\"\n\
timestamp = \"1d\"\n\n\
# `repo refresh` re-signs a role once it expires within this period (default: half\n\
# of the role's expiry above).\n\
[signing_period]\n\
# timestamp = \"12h\"\n\
# snapshot = \"182d\"\n\n\
[snapshot]\n\
# State the length and SHA-256 of every targets role in snapshot (clients then check\n\
# them; without, they check versions only, as python-tuf's repository tools do).\n\
meta_lengths_and_hashes = false\n",
    );
    t
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    keys: BTreeMap<String, OneOrMany>,
    #[serde(default)]
    expiry: BTreeMap<String, String>,
    #[serde(default)]
    signing_period: BTreeMap<String, String>,
    #[serde(default)]
    snapshot: RawSnapshot,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSnapshot {
    #[serde(default)]
    meta_lengths_and_hashes: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// A parsed `repo.toml`.
#[derive(Debug, Clone, Default)]
pub struct RepoConfig {
    pub path: PathBuf,
    /// Key URIs per role name.
    pub keys: BTreeMap<String, Vec<String>>,
    expiry: BTreeMap<String, Duration>,
    signing_period: BTreeMap<String, Duration>,
    /// Whether snapshot states `length` and `hashes` of each targets role.
    pub snapshot_meta_hashes: bool,
}

impl RepoConfig {
    /// Reads `path`; errors name the file, the setting and (from the TOML parser) the line.
    pub fn load(path: &Path) -> Result<RepoConfig, RepoError> {
        let text = std::fs::read_to_string(path).map_err(RepoError::io(path))?;
        RepoConfig::parse(path, &text)
    }

    /// Parses the text of a `repo.toml` read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<RepoConfig, RepoError> {
        let bad = |reason: String| RepoError::Config {
            path: path.to_path_buf(),
            reason,
        };
        let raw: Raw = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        let mut keys = BTreeMap::new();
        for (role, v) in raw.keys {
            let list = match v {
                OneOrMany::One(s) => vec![s],
                OneOrMany::Many(l) => l,
            };
            if let Some(u) = list.iter().find(|u| u.contains("pin-value=")) {
                return Err(bad(format!(
                    "[keys] {role}: {} holds a PIN (pin-value=); a repository file must not: use pin-source=file:… or TUFKEY_PIN_<TOKEN>",
                    crate::keys::uri::redact(u)
                )));
            }
            keys.insert(role, list);
        }
        let durations = |table: &str, m: BTreeMap<String, String>| {
            m.into_iter()
                .map(|(role, s)| {
                    parse_duration(&s)
                        .map(|d| (role.clone(), d))
                        .ok_or_else(|| bad(format!("[{table}] {role} = \"{s}\" is not a duration; write e.g. \"12h\", \"7d\", \"52w\" or \"1y\"")))
                })
                .collect::<Result<BTreeMap<_, _>, _>>()
        };
        Ok(RepoConfig {
            path: path.to_path_buf(),
            keys,
            expiry: durations("expiry", raw.expiry)?,
            signing_period: durations("signing_period", raw.signing_period)?,
            snapshot_meta_hashes: raw.snapshot.meta_lengths_and_hashes,
        })
    }

    /// How long a new signature of `role` lasts.
    pub fn expiry(&self, role: &str) -> Duration {
        if let Some(d) = self.expiry.get(role) {
            return *d;
        }
        if !is_top_level(role) {
            if let Some(d) = self.expiry.get("delegated") {
                return *d;
            }
        }
        default_expiry(role)
    }

    /// `refresh` re-signs `role` once it expires within this.
    pub fn signing_period(&self, role: &str) -> Duration {
        self.signing_period
            .get(role)
            .copied()
            .unwrap_or_else(|| self.expiry(role) / 2)
    }
}

/// The four roles every root defines.
pub fn is_top_level(role: &str) -> bool {
    matches!(role, "root" | "targets" | "snapshot" | "timestamp")
}

/// A duration such as `30s`, `15m`, `12h`, `7d`, `52w`, `1y` (a year is 365 days).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let unit_at = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(unit_at);
    let n: i64 = num.parse().ok().filter(|n| *n > 0 && *n < 100_000_000)?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "y" => 365 * 86_400,
        _ => return None,
    };
    n.checked_mul(secs).map(Duration::seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_defaults_parse_and_give_tuf_on_ci_lifetimes() {
        let mut keys = BTreeMap::new();
        keys.insert("targets".to_string(), vec!["file:/k/t.p8".to_string()]);
        let c = RepoConfig::parse(Path::new("repo.toml"), &default_text(&keys)).unwrap();
        assert_eq!(c.keys["targets"], ["file:/k/t.p8"]);
        assert_eq!(c.expiry("timestamp"), Duration::days(1));
        assert_eq!(c.expiry("team-a"), Duration::days(365));
        assert_eq!(c.signing_period("timestamp"), Duration::hours(12));
        assert!(!c.snapshot_meta_hashes);
    }

    #[test]
    fn per_role_settings_and_errors_name_the_setting() {
        let text = "[keys]\nsnapshot = \"file:/s.p8\"\n[expiry]\ndelegated = \"90d\"\nteam = \"30d\"\n[signing_period]\ntimestamp = \"2h\"\n";
        let c = RepoConfig::parse(Path::new("r.toml"), text).unwrap();
        assert_eq!(c.keys["snapshot"], ["file:/s.p8"]);
        assert_eq!(c.expiry("other"), Duration::days(90));
        assert_eq!(c.expiry("team"), Duration::days(30));
        assert_eq!(c.signing_period("timestamp"), Duration::hours(2));
        let e = RepoConfig::parse(Path::new("r.toml"), "[expiry]\ntimestamp = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("r.toml") && e.contains("timestamp"), "{e}");
        let e = RepoConfig::parse(Path::new("r.toml"), "[expirey]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("expirey"), "{e}");
        let e = RepoConfig::parse(
            Path::new("r.toml"),
            "[keys]\ntargets = \"pkcs11:token=a?pin-value=1234\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("pin-source") && !e.contains("1234"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Some(Duration::seconds(90)));
        assert_eq!(parse_duration("1y"), Some(Duration::days(365)));
        assert_eq!(parse_duration("0d"), None);
        assert_eq!(parse_duration("d"), None);
        assert_eq!(parse_duration("5x"), None);
    }
}
