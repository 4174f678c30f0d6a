//! Audit log lines (the hash chain `tufkey audit verify` and the daemon read back),
//! ceremony transcripts (the same chain with ceremony entries), and an event read as
//! JSON written as its line both ways (`audit::line` against the tree path).
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tufkey::audit::verify_bytes(Path::new("audit.log"), data);
    tufkey::fuzzing::audit_line(data);
    if let Ok(text) = std::str::from_utf8(data) {
        tufkey::fuzzing::ceremony_transcript(Path::new("transcript.jsonl"), text);
    }
});
