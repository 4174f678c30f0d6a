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

use std::os::raw::{c_char, c_void};

mod consts;
pub use consts::*;

#[cfg(not(any(windows, target_os = "macos")))]
mod dynamic;
#[cfg(not(any(windows, target_os = "macos")))]
pub use dynamic::*;

#[cfg(any(windows, target_os = "macos"))]
mod linked;
#[cfg(any(windows, target_os = "macos"))]
pub use linked::*;

#[cfg(not(any(windows, target_os = "macos")))]
pub type DWORD = std::os::raw::c_ulong;
#[cfg(not(any(windows, target_os = "macos")))]
pub type LONG = std::os::raw::c_long;
#[cfg(not(any(windows, target_os = "macos")))]
pub type ULONG = std::os::raw::c_ulong;

#[cfg(windows)]
pub type DWORD = std::os::raw::c_ulong;
#[cfg(windows)]
pub type LONG = std::os::raw::c_long;
#[cfg(windows)]
pub type ULONG = std::os::raw::c_ulong;

#[cfg(target_os = "macos")]
pub type DWORD = u32;
#[cfg(target_os = "macos")]
pub type LONG = i32;
#[cfg(target_os = "macos")]
pub type ULONG = u32;

#[cfg(windows)]
pub type SCARDCONTEXT = usize;
#[cfg(windows)]
pub type SCARDHANDLE = usize;
#[cfg(not(windows))]
pub type SCARDCONTEXT = LONG;
#[cfg(not(windows))]
pub type SCARDHANDLE = LONG;

/// Protocol control information for `SCardTransmit`.
#[cfg_attr(not(target_os = "macos"), repr(C))]
#[cfg_attr(target_os = "macos", repr(C, packed))]
pub struct SCARD_IO_REQUEST {
    pub dwProtocol: DWORD,
    pub cbPciLength: DWORD,
}

/// One reader's state for `SCardGetStatusChange`.
#[cfg_attr(not(target_os = "macos"), repr(C))]
#[cfg_attr(target_os = "macos", repr(C, packed))]
pub struct SCARD_READERSTATE {
    pub szReader: *const c_char,
    pub pvUserData: *mut c_void,
    pub dwCurrentState: DWORD,
    pub dwEventState: DWORD,
    pub cbAtr: DWORD,
    pub rgbAtr: [u8; ATR_BUFFER_SIZE],
}

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
