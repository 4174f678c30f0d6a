//! What a PIV card answers and tufkey parses itself: GET METADATA TLVs, the PIN-protected
//! management key object, attested public keys' TLVs and attestation certificates. A card
//! that is not ours (or a broken one) must get an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tufkey::fuzzing::piv_answers(data);
    let _ = tufkey::keys::yubikey::attestation::parse_certs(data);
});
