//! Repository files: `repo.toml` (first byte 0) or, otherwise, a target path (first line)
//! and a JSON value read as `repo verify` reads delegations, succinct bins and file info.
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tufkey::repo::RepoConfig;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if kind == 0 {
        let _ = RepoConfig::parse(Path::new("repo.toml"), text);
        return;
    }
    let (target, json) = text.split_once('\n').unwrap_or((text, "{}"));
    if let Ok(value) = serde_json::from_str(json) {
        tufkey::fuzzing::repo_metadata_value(&value, target);
    }
});
