//! The PC/SC C API (winscard / pcsc-lite) for the `pcsc` crate, with `libpcsclite`
//! opened at run time on Linux and other Unix systems.
//!
//! Why: the crates.io `pcsc-sys` links libpcsclite at build time, so a fresh machine
//! cannot build tufkey without `libpcsclite-dev` + `pkg-config`, and the binary would not
//! start where `libpcsclite1` is missing. Here every function is a thin wrapper that
//! loads the library once ([`library_error`] says why it could not) and answers
//! `SCARD_E_NO_SERVICE` when it is absent, which callers already treat as "no PC/SC".
//!
//! The names, types and values are the PC/SC API's (pcsclite.h / winscard.h), so the
//! `pcsc` crate compiles against this crate unchanged.
#![allow(non_snake_case, non_camel_case_types, non_upper_case_globals)]
#![allow(overflowing_literals)]
#![allow(clippy::missing_safety_doc)]

mod consts;
mod structs;
mod types;
pub use consts::*;
pub use structs::*;
pub use types::*;

#[cfg(not(any(windows, target_os = "macos")))]
mod dynamic;
#[cfg(not(any(windows, target_os = "macos")))]
pub use dynamic::*;

#[cfg(any(windows, target_os = "macos"))]
mod linked;
#[cfg(any(windows, target_os = "macos"))]
pub use linked::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_structs_have_the_c_layout_pcsc_lite_uses() {
        // pcsc-lite on LP64: two unsigned longs; a reader state of 2 pointers,
        // 3 unsigned longs and a 33-byte ATR, padded to 8.
        #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
        {
            assert_eq!(std::mem::size_of::<SCARD_IO_REQUEST>(), 16);
            assert_eq!(std::mem::size_of::<SCARD_READERSTATE>(), 16 + 24 + 33 + 7);
        }
        assert_eq!(g_rgSCardT0Pci.dwProtocol, SCARD_PROTOCOL_T0);
        assert_eq!(g_rgSCardT1Pci.dwProtocol, SCARD_PROTOCOL_T1);
        assert_eq!(
            g_rgSCardT1Pci.cbPciLength as usize,
            std::mem::size_of::<SCARD_IO_REQUEST>()
        );
    }

    #[cfg(not(any(windows, target_os = "macos")))]
    #[test]
    fn a_library_that_cannot_be_opened_gives_no_service_and_says_why() {
        let loaded = dynamic::Library::open_path(std::path::Path::new(
            "/nonexistent/tufkey-test/libpcsclite.so.1",
        ));
        let err = loaded.err().expect("a missing file cannot load");
        assert!(
            err.contains("/nonexistent/tufkey-test/libpcsclite.so.1"),
            "{err}"
        );
    }
}
