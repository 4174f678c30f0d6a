//! [`Secret`]: a PIN or passphrase in a zeroizing buffer. A leaf, so that the PIN sources
//! (`pin.rs`) and the keyring cache (`pin_cache.rs`) both use it without importing
//! each other both ways.

use std::fmt;

use zeroize::Zeroizing;

/// A PIN or passphrase. Its `Debug` and `Display` print `***`.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(Zeroizing::new(s))
    }

    /// The secret itself, for handing to a device or KDF; never print it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}
