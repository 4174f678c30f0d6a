//! Which target paths a delegation allows, exactly as python-tuf's
//! `DelegatedRole.is_delegated_path` decides: `paths` are matched part by part
//! (split on `/`, the same number of parts, each part by Python's `fnmatch`), and
//! `path_hash_prefixes` against the hex SHA-256 of the path.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The target paths a delegated role may list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathRule {
    Paths(Vec<String>),
    HashPrefixes(Vec<String>),
    /// One bin of succinct hash-bin delegations (TAP 15): the paths that hash into it.
    Bin {
        bins: Succinct,
        name: String,
    },
}

/// Succinct hash-bin delegations (TAP 15), as python-tuf's `SuccinctRoles` names and
/// fills the bins: `2^bit_length` roles `PREFIX-<hex index>`, a path going to the bin
/// numbered by the first `bit_length` bits of its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Succinct {
    pub bit_length: u32,
    pub name_prefix: String,
}

impl Succinct {
    /// Reads `bit_length` (1 to 32) and `name_prefix` from `succinct_roles`.
    pub fn from_value(v: &Value) -> Result<Succinct, String> {
        let bit_length = v
            .get("bit_length")
            .and_then(Value::as_u64)
            .filter(|b| (1..=32).contains(b))
            .ok_or("`bit_length` must be an integer from 1 to 32")?;
        let name_prefix = v
            .get("name_prefix")
            .and_then(Value::as_str)
            .ok_or("`name_prefix` must be a string")?
            .to_owned();
        Ok(Succinct {
            bit_length: bit_length as u32,
            name_prefix,
        })
    }

    /// How many bins there are.
    pub fn count(&self) -> u64 {
        1u64 << self.bit_length
    }

    fn name(&self, index: u64) -> String {
        let width = format!("{:x}", self.count() - 1).len();
        format!("{}-{index:0width$x}", self.name_prefix)
    }

    /// Every bin's role name, in order.
    pub fn names(&self) -> impl Iterator<Item = String> + '_ {
        (0..self.count()).map(|i| self.name(i))
    }

    /// The bin a target path belongs to.
    pub fn role_for(&self, target: &str) -> String {
        let digest = Sha256::digest(target.as_bytes());
        let first = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        self.name(u64::from(first >> (32 - self.bit_length)))
    }
}

impl PathRule {
    /// Reads `paths` or `path_hash_prefixes` from a delegated role entry; python-tuf
    /// requires exactly one of them.
    pub fn from_role(entry: &Value) -> Result<PathRule, String> {
        let list = |field: &str| -> Result<Option<Vec<String>>, String> {
            match entry.get(field) {
                None => Ok(None),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| format!("`{field}` must hold strings"))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some),
                Some(_) => Err(format!("`{field}` must be an array of strings")),
            }
        };
        match (list("paths")?, list("path_hash_prefixes")?) {
            (Some(p), None) => Ok(PathRule::Paths(p)),
            (None, Some(h)) => Ok(PathRule::HashPrefixes(h)),
            _ => {
                Err("a delegated role needs exactly one of `paths` and `path_hash_prefixes`".into())
            }
        }
    }

    /// Whether `target` is a path this rule delegates.
    pub fn allows(&self, target: &str) -> bool {
        match self {
            PathRule::Paths(patterns) => patterns.iter().any(|p| path_matches(target, p)),
            PathRule::HashPrefixes(prefixes) => {
                let hash = hex::encode(Sha256::digest(target.as_bytes()));
                prefixes.iter().any(|p| hash.starts_with(p.as_str()))
            }
            PathRule::Bin { bins, name } => bins.role_for(target) == *name,
        }
    }

    /// The rule as a user wrote it, for messages.
    pub fn describe(&self) -> String {
        match self {
            PathRule::Paths(p) => format!("paths {p:?}"),
            PathRule::HashPrefixes(h) => format!("path_hash_prefixes {h:?}"),
            PathRule::Bin { bins, name } => format!(
                "the paths whose SHA-256 puts them in hash bin `{name}` (succinct_roles, bit_length {})",
                bins.bit_length
            ),
        }
    }
}

fn path_matches(target: &str, pattern: &str) -> bool {
    let t: Vec<&str> = target.split('/').collect();
    let p: Vec<&str> = pattern.split('/').collect();
    t.len() == p.len() && t.iter().zip(&p).all(|(t, p)| fnmatch(t, p))
}

/// Python's `fnmatch.fnmatchcase` (what `fnmatch` is on POSIX): `*` any run, `?` one
/// character, `[seq]`/`[!seq]` a set with ranges; a `[` without a closing `]` is literal.
pub fn fnmatch(name: &str, pattern: &str) -> bool {
    let n: Vec<char> = name.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    matches_atoms(&n, &atoms(&p))
}

/// One pattern element: `*`, or something that matches exactly one character.
enum Atom {
    Star,
    Any,
    Set(CharSet),
    Char(char),
}

impl Atom {
    fn matches(&self, c: char) -> bool {
        match self {
            Atom::Star => false,
            Atom::Any => true,
            Atom::Set(set) => set.contains(c),
            Atom::Char(want) => *want == c,
        }
    }
}

fn atoms(p: &[char]) -> Vec<Atom> {
    let mut out = Vec::new();
    let mut j = 0;
    while j < p.len() {
        let (atom, used) = match p[j] {
            '*' => (Atom::Star, 1),
            '?' => (Atom::Any, 1),
            '[' => match parse_set(&p[j..]) {
                Some((set, used)) => (Atom::Set(set), used),
                None => (Atom::Char('['), 1),
            },
            c => (Atom::Char(c), 1),
        };
        out.push(atom);
        j += used;
    }
    out
}

/// Matching without recursion and in O(name × pattern) time: every atom but `*` takes
/// one character, so on a mismatch only the latest `*` needs to take one more. (A
/// backtracking matcher took exponential time on `*a*a*a…b` — a delegation in hostile
/// metadata could hang `repo verify` — and deep recursion on long patterns.)
fn matches_atoms(n: &[char], a: &[Atom]) -> bool {
    let (mut i, mut j) = (0, 0);
    // After the latest `*`: the next atom and the name position that `*` stopped at.
    let mut star: Option<(usize, usize)> = None;
    while i < n.len() {
        match a.get(j) {
            Some(Atom::Star) => {
                star = Some((j + 1, i));
                j += 1;
            }
            Some(atom) if atom.matches(n[i]) => {
                i += 1;
                j += 1;
            }
            _ => match star {
                Some((after, at)) => {
                    star = Some((after, at + 1));
                    j = after;
                    i = at + 1;
                }
                None => return false,
            },
        }
    }
    a[j..].iter().all(|atom| matches!(atom, Atom::Star))
}

struct CharSet {
    negated: bool,
    ranges: Vec<(char, char)>,
}

impl CharSet {
    fn contains(&self, c: char) -> bool {
        self.ranges.iter().any(|(lo, hi)| *lo <= c && c <= *hi) != self.negated
    }
}

/// Parses `[...]` at the start of `p`: the set and how many pattern characters it used.
fn parse_set(p: &[char]) -> Option<(CharSet, usize)> {
    let mut j = 1;
    let negated = p.get(j) == Some(&'!');
    if negated {
        j += 1;
    }
    // A `]` right after `[` or `[!` is a member, not the end.
    let start = j;
    if p.get(j) == Some(&']') {
        j += 1;
    }
    while j < p.len() && p[j] != ']' {
        j += 1;
    }
    if j >= p.len() {
        return None;
    }
    let body = &p[start..j];
    let mut ranges = Vec::new();
    let mut i = 0;
    while i < body.len() {
        if i + 2 < body.len() && body[i + 1] == '-' {
            // Python drops ranges whose ends are reversed (they match nothing).
            if body[i] <= body[i + 2] {
                ranges.push((body[i], body[i + 2]));
            }
            i += 3;
        } else {
            ranges.push((body[i], body[i]));
            i += 1;
        }
    }
    Some((CharSet { negated, ranges }, j + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fnmatch_follows_python() {
        // Each case checked against Python 3's fnmatch.fnmatchcase.
        for (name, pattern, expected) in [
            ("artifact", "*", true),
            ("a.tar.gz", "*.tar.gz", true),
            ("file1.txt", "file?.txt", true),
            ("file10.txt", "file?.txt", false),
            ("b", "[abc]", true),
            ("d", "[!abc]", true),
            ("a", "[!abc]", false),
            ("x5", "x[0-9]", true),
            ("[x", "[x", true),
            ("]", "[]]", true),
            ("README", "readme", false),
            ("", "*", true),
            ("abcd", "a*d", true),
            ("abcbd", "a*b?", true),
            ("ab", "a*b*", true),
            ("ab", "a*c*", false),
            ("", "", true),
            ("a", "", false),
            ("", "?", false),
        ] {
            assert_eq!(fnmatch(name, pattern), expected, "{name} ~ {pattern}");
        }
    }

    #[test]
    fn many_stars_against_a_long_name_answer_at_once() {
        // Seen while writing the repo_metadata fuzz target: the backtracking matcher took exponential
        // time here (and recursed once per character on long patterns).
        let name = "a".repeat(2000);
        let pattern = format!("{}b", "*a".repeat(40));
        assert!(!fnmatch(&name, &pattern));
        assert!(fnmatch(&name, &"*a".repeat(40)));
        assert!(fnmatch(&name, &name));
    }

    #[test]
    fn paths_match_part_by_part_so_star_does_not_cross_a_slash() {
        let rule = PathRule::from_role(&json!({"paths": ["team/*"]})).unwrap();
        assert!(rule.allows("team/tool.bin"));
        assert!(!rule.allows("team/sub/tool.bin"));
        assert!(!rule.allows("other/tool.bin"));
    }

    #[test]
    fn hash_prefixes_match_the_sha256_of_the_path() {
        // A prefix of the path's own hash matches; a different first digit does not.
        let hash = hex::encode(Sha256::digest(b"hello.txt"));
        let rule = PathRule::from_role(&json!({"path_hash_prefixes": [&hash[..2]]})).unwrap();
        assert!(rule.allows("hello.txt"));
        let other = if hash.starts_with('0') { "1" } else { "0" };
        let rule = PathRule::from_role(&json!({"path_hash_prefixes": [other]})).unwrap();
        assert!(!rule.allows("hello.txt"));
    }

    #[test]
    fn succinct_bins_are_named_and_filled_as_python_tuf_does() {
        let bins = Succinct::from_value(&json!({"bit_length": 10, "name_prefix": "bin"})).unwrap();
        let names: Vec<String> = bins.names().collect();
        assert_eq!(names.len(), 1024);
        assert_eq!(
            (names[0].as_str(), names[3].as_str(), names[1023].as_str()),
            ("bin-000", "bin-003", "bin-3ff")
        );
        // python-tuf 7: SuccinctRoles([], 1, 10, "bin").get_role_for_target("hello.txt")
        assert_eq!(bins.role_for("hello.txt"), "bin-1cd");
        let rule = PathRule::Bin {
            bins: bins.clone(),
            name: "bin-1cd".into(),
        };
        assert!(rule.allows("hello.txt"));
        let other = PathRule::Bin {
            bins: bins.clone(),
            name: "bin-1ce".into(),
        };
        assert!(!other.allows("hello.txt"));
        assert!(Succinct::from_value(&json!({"bit_length": 33, "name_prefix": "bin"})).is_err());
        assert!(Succinct::from_value(&json!({"bit_length": 0, "name_prefix": "bin"})).is_err());
    }

    #[test]
    fn a_role_needs_exactly_one_kind_of_rule() {
        assert!(PathRule::from_role(&json!({})).is_err());
        assert!(PathRule::from_role(&json!({"paths": [], "path_hash_prefixes": []})).is_err());
        assert!(PathRule::from_role(&json!({"paths": [1]})).is_err());
    }
}
