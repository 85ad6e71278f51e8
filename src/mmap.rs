//! The crate's only `unsafe` file access: read-only memory maps of input files.

use std::fs::File;
use std::ops::Deref;
use std::path::Path;

use crate::error::{Error, Result};

/// A read-only memory map of a whole input file (checkpoint shards, the model file).
///
/// Tables reach tens of GB: they are mapped, never read whole, and only the rows a job needs
/// are paged in. Mapping is `unsafe` in Rust because the bytes can change under the map if
/// another process modifies the file, and the process receives `SIGBUS` if the file is
/// truncated while mapped. `warmstart` therefore requires that its input files are not
/// modified while it runs (the same contract as every mmap-based checkpoint loader); it
/// never writes to an input (an output path equal to an input is refused while planning).
pub(crate) struct MappedFile {
    map: memmap2::Mmap,
}

impl MappedFile {
    /// Maps `path` read-only. The one place where the crate maps a file; see the type's docs
    /// for the contract the caller accepts.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::input(path, e))?;
        // SAFETY: read-only map of a file the caller promises not to modify or truncate
        // while the map lives (documented on the type and in the crate docs).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::input(path, e))?;
        Ok(MappedFile { map })
    }
}

impl Deref for MappedFile {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.map
    }
}
