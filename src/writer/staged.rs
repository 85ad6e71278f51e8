//! Staged output: bytes are produced straight into page-aligned staging buffers, and a
//! background thread writes each full buffer to the file while the producer fills the next.
//!
//! On Linux the writes use direct I/O (`O_DIRECT`): from the staging buffers straight to the
//! disk. Writing a new file through the page cache costs a kernel copy into freshly
//! allocated pages for every byte, which on some machines is slower than the disk itself and
//! varies from run to run; the output is flushed to disk before it is renamed anyway, and a
//! table of tens of GB written through the cache would evict everything else. Where direct
//! I/O is unavailable (other systems, tmpfs, some network filesystems) the same buffers are
//! written through the page cache, with early writeback on Linux.

use std::fs::File;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

/// Alignment of offsets and lengths for `O_DIRECT` (covers 512-byte and 4 KiB
/// logical blocks).
const ALIGN: usize = 4096;
/// Size of one staging buffer, and of one write: disks take requests of a few MiB at least as
/// fast as larger ones (measured: 1 GB written 4 MiB at a time, with as much in flight, was
/// faster than 16 MiB at a time).
const BUFFER: usize = 4 << 20;
/// Staging buffers: one being filled, the rest in flight.
const BUFFERS: usize = 8;

/// Alignment of the staging buffers in memory: a huge page (2 MiB on x86-64 and most
/// aarch64 systems), so that each buffer can be backed by huge pages.
const HUGE_PAGE: usize = 2 << 20;

/// A buffer of [`BUFFER`] bytes aligned to [`HUGE_PAGE`]: an anonymous memory map of
/// `BUFFER + HUGE_PAGE` bytes, used from its first aligned offset (only that part is ever
/// touched). On Linux the kernel is asked to back it with transparent huge pages, which the
/// output's direct writes are much faster from: each 4 MiB write then pins two pages instead
/// of 1024 (measured on the 1 GB table: the same direct copy in 0.49-0.57 s against
/// 0.64-0.87 s). Where the kernel gives no huge pages the buffer is an ordinary one.
struct Aligned {
    map: memmap2::MmapMut,
    start: usize,
}

impl Aligned {
    fn new() -> std::io::Result<Self> {
        let map = memmap2::MmapMut::map_anon(BUFFER + HUGE_PAGE)?;
        let start = map.as_ptr().align_offset(HUGE_PAGE);
        // A hint: refused (no THP in this kernel) it changes nothing.
        #[cfg(target_os = "linux")]
        let _ = map.advise_range(memmap2::Advice::HugePage, start, BUFFER);
        Ok(Aligned { map, start })
    }

    fn bytes(&mut self) -> &mut [u8] {
        &mut self.map[self.start..self.start + BUFFER]
    }
}

/// A full buffer to write: `len` bytes at file offset `at`.
struct Block {
    buffer: Aligned,
    at: u64,
    len: usize,
}

/// Streams bytes to a file through staging buffers and a background thread.
pub(super) struct StagedWriter {
    current: Aligned,
    filled: usize,
    /// File offset of `current`.
    at: u64,
    to_thread: Option<SyncSender<Block>>,
    from_thread: Receiver<std::io::Result<Aligned>>,
    thread: Option<JoinHandle<()>>,
    spare: usize,
}

impl StagedWriter {
    /// Starts writing to `file` at offset 0, with direct I/O if `direct` and the system
    /// allows it.
    pub(super) fn start(file: &File, direct: bool) -> std::io::Result<Self> {
        let clone = file.try_clone()?;
        let direct = direct && set_direct(&clone, true);
        let (to_thread, blocks) = sync_channel::<Block>(BUFFERS);
        let (done, from_thread) = sync_channel(BUFFERS);
        let thread = std::thread::Builder::new()
            .name("warmstart-writer".into())
            .spawn(move || write_blocks(clone, direct, blocks, done))?;
        Ok(StagedWriter {
            current: Aligned::new()?,
            filled: 0,
            at: 0,
            to_thread: Some(to_thread),
            from_thread,
            thread: Some(thread),
            spare: BUFFERS - 1,
        })
    }

    /// Appends `len` bytes that `fill` writes in place, piece by piece (see
    /// [`crate::engine::Sink::append`]).
    pub(super) fn append(
        &mut self,
        len: usize,
        fill: &mut dyn FnMut(usize, &mut [u8]),
    ) -> std::io::Result<()> {
        let mut done = 0;
        while done < len {
            let n = (len - done).min(BUFFER - self.filled);
            fill(
                done,
                &mut self.current.bytes()[self.filled..self.filled + n],
            );
            self.filled += n;
            done += n;
            if self.filled == BUFFER {
                self.send()?;
            }
        }
        Ok(())
    }

    /// Hands the current buffer to the thread and takes an empty one.
    fn send(&mut self) -> std::io::Result<()> {
        let next = if self.spare > 0 {
            self.spare -= 1;
            Aligned::new()?
        } else {
            match self.from_thread.recv() {
                Ok(buffer) => buffer?,
                Err(_) => return Err(broken()),
            }
        };
        let buffer = std::mem::replace(&mut self.current, next);
        let block = Block {
            buffer,
            at: self.at,
            len: self.filled,
        };
        self.at += self.filled as u64;
        self.filled = 0;
        match &self.to_thread {
            Some(tx) if tx.send(block).is_ok() => Ok(()),
            _ => Err(self.failure()),
        }
    }

    /// Why the thread stopped: the error of the write that failed.
    fn failure(&self) -> std::io::Error {
        self.from_thread
            .try_iter()
            .find_map(Result::err)
            .unwrap_or_else(broken)
    }

    /// Writes what is left (the last block padded to the alignment), waits for every write,
    /// and returns the number of bytes appended (the caller truncates the padding away).
    pub(super) fn finish(mut self) -> std::io::Result<u64> {
        let len = self.filled;
        let total = self.at + len as u64;
        if len > 0 {
            let padded = len.next_multiple_of(ALIGN);
            self.current.bytes()[len..padded].fill(0);
            self.filled = padded;
            self.send()?;
        }
        self.to_thread = None;
        let mut result = Ok(total);
        while let Ok(r) = self.from_thread.recv() {
            if let Err(e) = r {
                result = Err(e);
            }
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        result
    }
}

impl Drop for StagedWriter {
    fn drop(&mut self) {
        self.to_thread = None;
        while self.from_thread.recv().is_ok() {}
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn broken() -> std::io::Error {
    std::io::Error::other("the output writer thread stopped")
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The staging buffers are aligned to a huge page and, where the kernel offers
    /// transparent huge pages to those who ask, backed by them.
    #[test]
    fn staging_buffers_are_huge_pages_where_the_kernel_offers_them() {
        let mut buffer = Aligned::new().unwrap();
        assert_eq!(buffer.bytes().as_ptr() as usize % HUGE_PAGE, 0);
        buffer.bytes().fill(1);
        let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .unwrap_or_default();
        if thp.contains("[always]") || thp.contains("[madvise]") {
            let huge = crate::mmap::tests::smaps_bytes(buffer.bytes().as_ptr(), "AnonHugePages");
            assert!(huge >= HUGE_PAGE, "{huge} bytes in huge pages (THP: {thp})");
        }
    }

    #[test]
    fn a_failed_write_is_reported_as_itself() {
        // A descriptor open for reading only: every write fails with EBADF.
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let file = File::open(tmp.path()).unwrap();
        let mut writer = StagedWriter::start(&file, false).unwrap();
        let mut result = Ok(());
        for _ in 0..2 * BUFFERS {
            result = writer.append(BUFFER, &mut |_, out| out.fill(7));
            if result.is_err() {
                break;
            }
        }
        let error = result
            .err()
            .or_else(|| writer.finish().err())
            .expect("writes fail");
        assert_eq!(error.raw_os_error(), Some(libc::EBADF), "{error}");
    }
}

/// The thread: writes blocks in order and hands their buffers back. A filesystem that
/// refuses a direct write (`EINVAL`) gets ordinary writes from then on.
fn write_blocks(
    file: File,
    mut direct: bool,
    blocks: Receiver<Block>,
    done: SyncSender<std::io::Result<Aligned>>,
) {
    for mut block in blocks {
        let (at, len) = (block.at, block.len);
        let bytes = &block.buffer.bytes()[..len];
        let mut result = write_all_at(&file, bytes, at);
        if direct && matches!(&result, Err(e) if e.raw_os_error() == Some(EINVAL)) {
            direct = false;
            set_direct(&file, false);
            result = write_all_at(&file, bytes, at);
        }
        if !direct {
            start_writeback(&file, at, len);
        }
        let failed = result.is_err();
        if done.send(result.map(|()| block.buffer)).is_err() || failed {
            return;
        }
    }
}

#[cfg(unix)]
fn write_all_at(file: &File, bytes: &[u8], at: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, bytes, at)
}

#[cfg(windows)]
fn write_all_at(file: &File, mut bytes: &[u8], mut at: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !bytes.is_empty() {
        match file.seek_write(bytes, at)? {
            0 => return Err(std::io::ErrorKind::WriteZero.into()),
            n => {
                bytes = &bytes[n..];
                at += n as u64;
            }
        }
    }
    Ok(())
}

/// The error of a direct write that the filesystem refuses.
#[cfg(target_os = "linux")]
const EINVAL: i32 = libc::EINVAL;
#[cfg(not(target_os = "linux"))]
const EINVAL: i32 = 22;

/// Turns `O_DIRECT` on or off for `file`; `false` if the system refuses.
#[cfg(target_os = "linux")]
pub(super) fn set_direct(file: &File, on: bool) -> bool {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own, with integer arguments only.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 {
            return false;
        }
        let flags = if on {
            flags | libc::O_DIRECT
        } else {
            flags & !libc::O_DIRECT
        };
        libc::fcntl(fd, libc::F_SETFL, flags) == 0
    }
}

#[cfg(not(target_os = "linux"))]
pub(super) fn set_direct(_: &File, _: bool) -> bool {
    false
}

/// Starts writing bytes `at..at + len` of the page cache to disk without waiting for it, so
/// that the final flush only waits for the tail (the idea of RocksDB's `bytes_per_sync`). A
/// hint whose failure is ignored.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, at: u64, len: usize) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range only reads its integer arguments; the descriptor is open.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            at as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_: &File, _: u64, _: usize) {}
