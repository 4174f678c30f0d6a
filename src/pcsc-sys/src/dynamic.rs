//! Linux and the other Unix systems: libpcsclite opened with `dlopen` on first use.

use std::os::raw::{c_char, c_void};
use std::path::Path;
use std::sync::OnceLock;

use crate::consts::*;
use crate::structs::*;
use crate::types::*;

/// A library to load instead of the system's (a pcsc-lite installed elsewhere).
pub const LIBRARY_ENV: &str = "TUFKEY_PCSC_LIBRARY";

/// Tried in order: `.so.1` is what the runtime package installs (Debian's
/// `libpcsclite1`); the bare `.so` exists only where the -dev package is installed.
const CANDIDATES: &[&str] = &["libpcsclite.so.1", "libpcsclite.so"];

/// pcsc-lite's own protocol control blocks are plain constants; callers only read them.
pub static g_rgSCardT0Pci: SCARD_IO_REQUEST = pci(SCARD_PROTOCOL_T0);
pub static g_rgSCardT1Pci: SCARD_IO_REQUEST = pci(SCARD_PROTOCOL_T1);
pub static g_rgSCardRawPci: SCARD_IO_REQUEST = pci(SCARD_PROTOCOL_RAW);

const fn pci(protocol: DWORD) -> SCARD_IO_REQUEST {
    SCARD_IO_REQUEST {
        dwProtocol: protocol,
        cbPciLength: std::mem::size_of::<SCARD_IO_REQUEST>() as DWORD,
    }
}

/// Why the PC/SC library could not be loaded, or `None` when it is loaded (it is loaded
/// on the first call of this function or of any PC/SC function). Lets a caller tell
/// "libpcsclite is not installed" from "pcscd is not running": both make every PC/SC
/// call answer `SCARD_E_NO_SERVICE`.
pub fn library_error() -> Option<&'static str> {
    library().err()
}

static LIBRARY: OnceLock<Result<Library, String>> = OnceLock::new();

fn library() -> Result<&'static Library, &'static str> {
    LIBRARY.get_or_init(load).as_ref().map_err(String::as_str)
}

fn load() -> Result<Library, String> {
    if let Some(path) = std::env::var_os(LIBRARY_ENV).filter(|p| !p.is_empty()) {
        return Library::open_path(Path::new(&path))
            .map_err(|e| format!("{e} (named by {LIBRARY_ENV})"));
    }
    let mut errors = Vec::new();
    for name in CANDIDATES {
        match Library::open_path(Path::new(name)) {
            Ok(lib) => return Ok(lib),
            Err(e) => errors.push(e),
        }
    }
    Err(errors.join("; "))
}

/// Declares each PC/SC function once: a field of [`Library`] resolved at load, and a
/// public wrapper with the C API's signature that calls it.
macro_rules! pcsc_functions {
    ($( fn $name:ident ( $($arg:ident : $ty:ty),* $(,)? ); )*) => {
        /// libpcsclite's entry points, resolved when it is opened.
        pub(crate) struct Library {
            $( $name: unsafe extern "C" fn($($ty),*) -> LONG, )*
            /// Kept open for as long as the function pointers above are used.
            _library: libloading::Library,
        }

        impl Library {
            /// Opens a library by file name (searched as `dlopen` searches) or by path,
            /// and resolves every function; a missing one is an error.
            pub(crate) fn open_path(path: &Path) -> Result<Library, String> {
                let shown = path.display();
                // SAFETY: loading libpcsclite runs its (trivial) initialisers; the
                // symbols are the C API's functions with the signatures declared here.
                unsafe {
                    let library = libloading::Library::new(path)
                        .map_err(|e| format!("cannot load {shown}: {e}"))?;
                    Ok(Library {
                        $( $name: *library
                            .get::<unsafe extern "C" fn($($ty),*) -> LONG>(
                                concat!(stringify!($name), "\0").as_bytes(),
                            )
                            .map_err(|e| format!("{shown} has no {}: {e}", stringify!($name)))?, )*
                        _library: library,
                    })
                }
            }
        }

        $(
            /// The PC/SC function of the same name; `SCARD_E_NO_SERVICE` when
            /// libpcsclite cannot be loaded (see [`library_error`]).
            pub unsafe fn $name($($arg: $ty),*) -> LONG {
                match library() {
                    // SAFETY: the caller upholds the C API's contract for these
                    // arguments, exactly as with a linked libpcsclite.
                    Ok(lib) => unsafe { (lib.$name)($($arg),*) },
                    Err(_) => SCARD_E_NO_SERVICE,
                }
            }
        )*
    };
}

pcsc_functions! {
    fn SCardEstablishContext(
        dwScope: DWORD,
        pvReserved1: *const c_void,
        pvReserved2: *const c_void,
        phContext: *mut SCARDCONTEXT,
    );
    fn SCardReleaseContext(hContext: SCARDCONTEXT);
    fn SCardIsValidContext(hContext: SCARDCONTEXT);
    fn SCardCancel(hContext: SCARDCONTEXT);
    fn SCardConnect(
        hContext: SCARDCONTEXT,
        szReader: *const c_char,
        dwShareMode: DWORD,
        dwPreferredProtocols: DWORD,
        phCard: *mut SCARDHANDLE,
        pdwActiveProtocol: *mut DWORD,
    );
    fn SCardReconnect(
        hCard: SCARDHANDLE,
        dwShareMode: DWORD,
        dwPreferredProtocols: DWORD,
        dwInitialization: DWORD,
        pdwActiveProtocol: *mut DWORD,
    );
    fn SCardDisconnect(hCard: SCARDHANDLE, dwDisposition: DWORD);
    fn SCardGetStatusChange(
        hContext: SCARDCONTEXT,
        dwTimeout: DWORD,
        rgReaderStates: *mut SCARD_READERSTATE,
        cReaders: DWORD,
    );
    fn SCardListReaders(
        hContext: SCARDCONTEXT,
        mszGroups: *const c_char,
        mszReaders: *mut c_char,
        pcchReaders: *mut DWORD,
    );
    fn SCardBeginTransaction(hCard: SCARDHANDLE);
    fn SCardEndTransaction(hCard: SCARDHANDLE, dwDisposition: DWORD);
    fn SCardStatus(
        hCard: SCARDHANDLE,
        szReaderName: *mut c_char,
        pcchReaderLen: *mut DWORD,
        pdwState: *mut DWORD,
        pdwProtocol: *mut DWORD,
        pbAtr: *mut u8,
        pcbAtrLen: *mut DWORD,
    );
    fn SCardGetAttrib(hCard: SCARDHANDLE, dwAttrId: DWORD, pbAttr: *mut u8, pcbAttrLen: *mut DWORD);
    fn SCardSetAttrib(hCard: SCARDHANDLE, dwAttrId: DWORD, pbAttr: *const u8, cbAttrLen: DWORD);
    fn SCardTransmit(
        hCard: SCARDHANDLE,
        pioSendPci: *const SCARD_IO_REQUEST,
        pbSendBuffer: *const u8,
        cbSendLength: DWORD,
        pioRecvPci: *mut SCARD_IO_REQUEST,
        pbRecvBuffer: *mut u8,
        pcbRecvLength: *mut DWORD,
    );
    fn SCardControl(
        hCard: SCARDHANDLE,
        dwControlCode: DWORD,
        pbSendBuffer: *const u8,
        cbSendLength: DWORD,
        pbRecvBuffer: *mut u8,
        cbRecvLength: DWORD,
        lpBytesReturned: *mut DWORD,
    );
}
