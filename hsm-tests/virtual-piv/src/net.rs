//! vpcd's socket without the 40 ms stalls.
//!
//! vpcd (the pcscd reader driver) sends each message as two writes, the 2-byte length and
//! then the bytes, with Nagle's algorithm on: the second write waits until the card ACKs
//! the first, and Linux delays that ACK by its 40 ms minimum. Every APDU, power-on and ATR
//! request thus took 40-44 ms (strace of the card: docs/testing.md, "CI time"). Asking for
//! quick ACKs before each message makes the card ACK the length at once; vpcd is unchanged.
//!
//! Opt-in (`VIRTUAL_PIV_QUICKACK=1`) for now: it took the YubiKey tests from 167 s to 82 s,
//! but the two tests that unplug the second card and start it again then failed (pcscd
//! never saw the card come back). Not understood yet.

use std::net::TcpStream;
use std::os::fd::AsRawFd;

/// Sets TCP_QUICKACK on `stream` (Linux clears it again on its own, so call it before each
/// read). A failure only costs time, so it is logged, not returned.
pub fn quick_ack(stream: &TcpStream) {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket descriptor that `stream` owns, and a c_int option value of
    // the size given.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        log::debug!("TCP_QUICKACK: {}", std::io::Error::last_os_error());
    }
}
