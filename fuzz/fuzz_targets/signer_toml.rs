//! `signer.toml`, the daemon's config: any text gives a config or an error naming a line.
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tufkey::server::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Config::parse(Path::new("/nonexistent/tufkey-fuzz/signer.toml"), text) {
        let shown = e.to_string();
        assert!(
            shown.contains("signer.toml"),
            "the error does not name the file: {shown}"
        );
    }
});
