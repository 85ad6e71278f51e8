//! The crate's only `unsafe` access to input files: read-only memory maps of them, and asking
//! which of their pages are in the page cache.

use std::fs::File;
use std::ops::{Deref, Range};
use std::path::Path;

use crate::error::{Error, Result};

/// Opens an input file for reading, refusing what is not a regular file: a directory, and a
/// FIFO, socket or device, which cannot be mapped (mapping one fails with "No such device",
/// which does not say what is wrong) and whose opening could block forever (a FIFO that no
/// process writes). The file is opened non-blocking for that reason, which changes nothing
/// for a regular file.
pub(crate) fn open_regular(path: &Path) -> Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(|e| Error::input(path, e))?;
    let meta = file.metadata().map_err(|e| Error::input(path, e))?;
    let refuse = |kind, what| Err(Error::input(path, std::io::Error::new(kind, what)));
    if meta.is_dir() {
        return refuse(std::io::ErrorKind::IsADirectory, "is a directory");
    }
    if !meta.is_file() {
        return refuse(
            std::io::ErrorKind::InvalidInput,
            "not a regular file (a FIFO, socket or device): inputs are memory-mapped",
        );
    }
    Ok(file)
}

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
        let file = open_regular(path)?;
        // SAFETY: read-only map of a file the caller promises not to modify or truncate
        // while the map lives (documented on the type and in the crate docs).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::input(path, e))?;
        Ok(MappedFile { map })
    }

    /// Drops this process's page-table entries for the pages of `range`, as if they had never
    /// been read; the next read of one maps it again from the page cache.
    ///
    /// Unmapping a table of 1 GB mapped page by page takes tens of milliseconds. The writer
    /// releases each input after the last tensor that reads it, so that this work overlaps
    /// the output's last disk writes instead of following them at exit. Pages only partly in
    /// `range` go too (they fault back in if read). Does nothing where unsupported: it only
    /// moves work earlier.
    pub(crate) fn release(&self, range: Range<usize>) {
        let range = range.start.min(self.map.len())..range.end.min(self.map.len());
        #[cfg(target_os = "linux")]
        // SAFETY: `MADV_DONTNEED` on a shared, read-only file map changes no byte a reader
        // can see: the pages stay in the page cache and fault back in on the next read (it
        // is `unsafe` in memmap2 because on private or anonymous maps it discards data).
        let _ = unsafe {
            self.map.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                range.start,
                range.len(),
            )
        };
        #[cfg(not(target_os = "linux"))]
        let _ = range;
    }

    /// Whether most of `range` is in the page cache, judged from up to 64 pages spread evenly
    /// over it (`mincore`). Where this cannot be asked (not Linux, or the call fails) the
    /// answer is yes: it only decides whether to read a table ahead.
    pub(crate) fn mostly_resident(&self, range: Range<usize>) -> bool {
        let range = range.start.min(self.map.len())..range.end.min(self.map.len());
        if range.is_empty() {
            return true;
        }
        #[cfg(target_os = "linux")]
        {
            // SAFETY: `sysconf` only reads a system constant.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            let page = usize::try_from(page).unwrap_or(4096).max(1);
            let base = self.map.as_ptr() as usize;
            let samples = range.len().div_ceil(page).min(64);
            let mut resident = 0;
            for k in 0..samples {
                // The start of the page holding the sample (the map itself is page-aligned).
                let at = base + range.start + range.len() / samples * k;
                let start = at - at % page;
                let mut state = 0u8;
                // SAFETY: `start` lies inside this live mapping (the map starts on a page
                // boundary and `at` inside it), and `mincore` writes one byte for the one
                // page asked about into `state`.
                let asked = unsafe { libc::mincore(start as *mut libc::c_void, 1, &mut state) };
                if asked != 0 {
                    return true;
                }
                resident += (state & 1) as usize;
            }
            2 * resident > samples
        }
        #[cfg(not(target_os = "linux"))]
        true
    }

    /// Asks the kernel to read `range` into the page cache from start to end, in large
    /// sequential reads, and returns at once while the reads go on (`MADV_WILLNEED`); a
    /// reader of a page not yet read waits for it. Does nothing where unsupported.
    pub(crate) fn prefetch(&self, range: Range<usize>) {
        let range = range.start.min(self.map.len())..range.end.min(self.map.len());
        #[cfg(unix)]
        let _ = self
            .map
            .advise_range(memmap2::Advice::WillNeed, range.start, range.len());
        #[cfg(not(unix))]
        let _ = range;
    }
}

impl Deref for MappedFile {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.map
    }
}

#[cfg(all(test, target_os = "linux"))]
pub(crate) mod tests {
    use super::*;

    /// Resident bytes of the mapping that contains `addr`, from `/proc/self/smaps`.
    pub(crate) fn mapped_rss(addr: *const u8) -> usize {
        smaps_bytes(addr, "Rss")
    }

    /// The size `field` (`Rss`, `AnonHugePages`, ...) of the mapping that contains `addr`, in
    /// bytes, from `/proc/self/smaps`.
    pub(crate) fn smaps_bytes(addr: *const u8, field: &str) -> usize {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let addr = addr as usize;
        let mut inside = false;
        for line in smaps.lines() {
            let range = line
                .split_whitespace()
                .next()
                .and_then(|r| r.split_once('-'));
            if let Some((lo, hi)) = range.filter(|_| !line.starts_with(char::is_uppercase)) {
                let lo = usize::from_str_radix(lo, 16).unwrap();
                let hi = usize::from_str_radix(hi, 16).unwrap();
                inside = (lo..hi).contains(&addr);
            } else if let Some(kb) = line
                .strip_prefix(field)
                .and_then(|l| l.strip_prefix(':'))
                .filter(|_| inside)
            {
                return kb
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<usize>()
                    .unwrap()
                    * 1024;
            }
        }
        panic!("no mapping holds {addr:#x}, or it has no {field}");
    }

    #[test]
    fn release_drops_the_pages_mapped_and_keeps_the_bytes() {
        let bytes: Vec<u8> = (0..4u32 << 20).map(|i| (i * 7 + i / 4096) as u8).collect();
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &bytes).unwrap();
        let map = MappedFile::open(file.path()).unwrap();
        let read = |m: &[u8]| m.iter().step_by(4096).map(|&b| b as u64).sum::<u64>();
        std::hint::black_box(read(&map));
        assert!(mapped_rss(map.as_ptr()) >= 4 << 20);

        map.release(0..map.len());
        let rss = mapped_rss(map.as_ptr());
        assert!(rss < 1 << 20, "{rss} bytes still mapped");
        assert!(map[..] == bytes[..]);
        map.release(1..1 << 40); // out of range: clamped
    }

    /// Drops `path`'s pages from the page cache (written back first), as if it had never
    /// been read.
    pub(crate) fn evict(path: &Path) {
        use std::os::fd::AsRawFd;
        let file = File::open(path).unwrap();
        file.sync_all().unwrap();
        // SAFETY: advice on a file descriptor that `file` keeps open for the call.
        let done =
            unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(done, 0);
    }

    #[test]
    fn pages_not_in_the_page_cache_are_seen_and_read_ahead() {
        // In the build directory: on a disk, where pages can be dropped (not a tmpfs).
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
        std::fs::create_dir_all(&base).unwrap();
        let dir = tempfile::tempdir_in(base).unwrap();
        let path = dir.path().join("table");
        let bytes: Vec<u8> = (0..8u32 << 20).map(|i| (i / 4096 + i) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let map = MappedFile::open(&path).unwrap();
        assert!(map.mostly_resident(0..map.len()), "just written");
        drop(map);
        evict(&path);
        let map = MappedFile::open(&path).unwrap();
        assert!(!map.mostly_resident(0..map.len()), "the pages were dropped");
        assert!(map.mostly_resident(0..0));
        map.prefetch(0..map.len());
        // The reads go on after the call returns.
        let start = std::time::Instant::now();
        while !map.mostly_resident(0..map.len()) {
            assert!(start.elapsed().as_secs() < 30, "never read ahead");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(map[..] == bytes[..]);
    }
}
