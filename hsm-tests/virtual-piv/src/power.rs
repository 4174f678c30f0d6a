//! What pcscd did to the card's power, counted so tests can see it.
//!
//! vpcd forwards three power events from pcscd to the card: power on, power off and
//! (warm) reset. A client's `SCardDisconnect`/`SCardReconnect` with `SCARD_RESET_CARD`
//! (the pcsc crate's default when a `Card` is dropped) arrives as a reset;
//! `SCARD_UNPOWER_CARD` and pcscd's own power-down of an idle card arrive as a power off.
//! `SCARD_LEAVE_CARD` sends nothing. Each event rewrites `<state>/power.txt`:
//!
//! ```text
//! resets 2
//! power-offs 1
//! power-ons 1
//! ```
//!
//! The counts start at 0 when the runner starts. The file is written (atomically, by
//! rename) while the event is handled, before the card answers vpcd's next message; in
//! practice a client's resets are in the file once the client has exited.

use std::path::{Path, PathBuf};

pub struct PowerLog {
    path: PathBuf,
    resets: u64,
    power_offs: u64,
    power_ons: u64,
}

impl PowerLog {
    /// A log with zero counts, written at once so the file exists from the start.
    pub fn new(state: &Path) -> Self {
        let log = Self {
            path: state.join("power.txt"),
            resets: 0,
            power_offs: 0,
            power_ons: 0,
        };
        log.save();
        log
    }

    pub fn reset(&mut self) {
        self.resets += 1;
        log::debug!("reset #{}", self.resets);
        self.save();
    }

    pub fn power_off(&mut self) {
        self.power_offs += 1;
        log::debug!("power off #{}", self.power_offs);
        self.save();
    }

    pub fn power_on(&mut self) {
        self.power_ons += 1;
        self.save();
    }

    fn save(&self) {
        let text = format!(
            "resets {}\npower-offs {}\npower-ons {}\n",
            self.resets, self.power_offs, self.power_ons
        );
        let tmp = self.path.with_extension("txt.tmp");
        if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &self.path))
        {
            log::warn!("cannot write {}: {e}", self.path.display());
        }
    }
}
