//! The C API's integer types, whose widths differ between pcsc-lite, winscard and macOS.
//! A leaf: the constants, the structs and the functions all build on it.

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
