//! The bodies of the daemon's `POST /v1/sign` and `POST /v1/sign-raw`, read as the daemon
//! reads them (tufkey::fuzzing::sign_request_body calls the daemon's own request types).
//! `/v1/sign-batch` gets its own target once it is in main (docs/testing.md, Fuzzing).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tufkey::fuzzing::sign_request_body(data);
});
