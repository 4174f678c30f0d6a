//! File-backed littlefs storage for the card's internal filesystem.
//!
//! trussed's own `StorageConfig::filesystem` is fixed at 64 KiB, which
//! piv-authenticator fills after about twenty RSA-2048 keys with
//! certificates (it then panics). This one is 1 MiB.

use std::{
    fs::{File, OpenOptions},
    os::unix::fs::FileExt as _,
    path::Path,
};

use littlefs2::{consts, driver::Storage};
use littlefs2_core::{Error, Result};
use trussed::virt::StorageConfig;

const BLOCK_SIZE: usize = 512;
const BLOCK_COUNT: usize = 2048;
pub const SIZE: u64 = (BLOCK_SIZE * BLOCK_COUNT) as u64;

pub struct FileStorage(File);

impl Storage for FileStorage {
    const READ_SIZE: usize = 16;
    const WRITE_SIZE: usize = 16;
    const BLOCK_SIZE: usize = BLOCK_SIZE;
    const BLOCK_COUNT: usize = BLOCK_COUNT;
    const BLOCK_CYCLES: isize = -1;
    type CACHE_SIZE = consts::U512;
    type LOOKAHEAD_SIZE = consts::U16;

    fn read(&mut self, off: usize, buf: &mut [u8]) -> Result<usize> {
        self.0
            .read_exact_at(buf, off as u64)
            .map_err(|_| Error::IO)?;
        Ok(buf.len())
    }

    fn write(&mut self, off: usize, data: &[u8]) -> Result<usize> {
        if off + data.len() > SIZE as usize {
            return Err(Error::NO_SPACE);
        }
        self.0
            .write_all_at(data, off as u64)
            .map_err(|_| Error::IO)?;
        Ok(data.len())
    }

    fn erase(&mut self, off: usize, len: usize) -> Result<usize> {
        if off + len > SIZE as usize {
            return Err(Error::NO_SPACE);
        }
        self.0
            .write_all_at(&vec![0xFF; len], off as u64)
            .map_err(|_| Error::IO)?;
        Ok(len)
    }
}

/// Opens (or creates and formats) the storage file at `path`.
pub fn open(path: &Path) -> std::io::Result<StorageConfig<'static>> {
    let exists = path.exists();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    if exists {
        let len = file.metadata()?.len();
        if len != SIZE {
            return Err(std::io::Error::other(format!(
                "{} has {len} bytes, expected {SIZE}: not a virtual-piv card image",
                path.display()
            )));
        }
    } else {
        file.set_len(SIZE)?;
    }
    Ok(StorageConfig {
        storage: Box::new(FileStorage(file)),
        format: !exists,
    })
}
