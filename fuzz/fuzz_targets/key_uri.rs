//! Key URIs (pkcs11:, yubikey:, file:, https:): parsing never panics, a parsed URI shows
//! in a form that parses back to the same URI, and a clear `pin-value` is never shown.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tufkey::keys::KeyUri;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = tufkey::keys::uri::redact(text);
    let Ok(uri) = KeyUri::parse(text) else {
        return;
    };
    let shown = uri.to_string();
    let again = KeyUri::parse(&shown)
        .unwrap_or_else(|e| panic!("{text:?} shows as {shown:?}, which does not parse: {e}"));
    assert_eq!(
        again.to_string(),
        shown,
        "display of parse of display of {text:?}"
    );
    if let KeyUri::Pkcs11(p) = &uri {
        if p.pin_value.is_some() {
            // The only pin-value in the shown form is the mask.
            let values: Vec<&str> = shown.split("pin-value=").skip(1).collect();
            assert!(
                values.len() == 1 && values[0].split('&').next() == Some("***"),
                "{shown:?} shows a pin-value other than ***"
            );
        }
    }
    let _ = uri.daemon_refusal();
});
