//! Direct I/O for the output: bytes are copied into page-aligned staging buffers and written
//! with `O_DIRECT` by a background thread, straight from those buffers to the disk, while the
//! producer fills the next buffer.
//!
//! Why: writing a new file through the page cache costs a kernel copy into freshly allocated
//! pages for every byte, which on some machines is slower than the disk itself and varies from
//! run to run; the output is flushed to disk before it is renamed anyway, and a table of tens
//! of GB written through the cache would evict everything else. If the filesystem refuses
//! `O_DIRECT` (tmpfs, some network filesystems), the writer falls back to ordinary writes.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

/// Alignment of buffers, offsets and lengths for `O_DIRECT` (covers 512-byte and 4 KiB
/// logical blocks).
const ALIGN: usize = 4096;
/// Size of one staging buffer.
const BUFFER: usize = 16 << 20;
/// Staging buffers: one being filled, the rest in flight.
const BUFFERS: usize = 4;

/// A page-aligned buffer of [`BUFFER`] bytes (a larger vector, used from an aligned offset).
struct Aligned {
    storage: Vec<u8>,
    start: usize,
}

impl Aligned {
    fn new() -> Self {
        let storage = vec![0u8; BUFFER + ALIGN];
        let start = storage.as_ptr().align_offset(ALIGN);
        Aligned { storage, start }
    }

    fn bytes(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + BUFFER]
    }
}

/// A full buffer to write: `len` bytes at file offset `at`.
struct Block {
    buffer: Aligned,
    at: u64,
    len: usize,
}

/// Streams bytes to a file with `O_DIRECT` through a background thread.
pub(super) struct DirectWriter {
    current: Aligned,
    filled: usize,
    /// File offset of `current`.
    at: u64,
    to_thread: Option<SyncSender<Block>>,
    from_thread: Receiver<std::io::Result<Aligned>>,
    thread: Option<JoinHandle<()>>,
    spare: usize,
}

/// Turns `O_DIRECT` on for `file`; `false` if the system refuses.
fn enable(file: &File, on: bool) -> bool {
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

impl DirectWriter {
    /// Starts direct writes to `file` at offset 0, or `None` if `O_DIRECT` is unavailable.
    pub(super) fn start(file: &File) -> Option<Self> {
        let clone = file.try_clone().ok()?;
        if !enable(file, true) {
            return None;
        }
        let (to_thread, blocks) = sync_channel::<Block>(BUFFERS);
        let (done, from_thread) = sync_channel(BUFFERS);
        let thread = std::thread::Builder::new()
            .name("warmstart-writer".into())
            .spawn(move || write_blocks(clone, blocks, done))
            .ok()?;
        Some(DirectWriter {
            current: Aligned::new(),
            filled: 0,
            at: 0,
            to_thread: Some(to_thread),
            from_thread,
            thread: Some(thread),
            spare: BUFFERS - 1,
        })
    }

    /// Appends `bytes`.
    pub(super) fn write(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            let n = bytes.len().min(BUFFER - self.filled);
            self.current.bytes()[self.filled..self.filled + n].copy_from_slice(&bytes[..n]);
            self.filled += n;
            bytes = &bytes[n..];
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
            Aligned::new()
        } else {
            self.from_thread.recv().map_err(|_| broken())??
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
            Some(tx) => tx.send(block).map_err(|_| broken()),
            None => Err(broken()),
        }
    }

    /// Writes what is left (the last block padded to the alignment), waits for every write,
    /// and returns the number of bytes written (the caller truncates the padding away).
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

impl Drop for DirectWriter {
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

/// The thread: writes blocks in order and hands their buffers back. A filesystem that
/// refuses a direct write (`EINVAL`) gets ordinary writes from then on.
fn write_blocks(file: File, blocks: Receiver<Block>, done: SyncSender<std::io::Result<Aligned>>) {
    let mut direct = true;
    for mut block in blocks {
        let at = block.at;
        let len = block.len.next_multiple_of(if direct { ALIGN } else { 1 });
        let mut result = file.write_all_at(&block.buffer.bytes()[..len], at);
        if direct && matches!(&result, Err(e) if e.raw_os_error() == Some(libc::EINVAL)) {
            direct = false;
            enable(&file, false);
            result = file.write_all_at(&block.buffer.bytes()[..len], at);
        }
        let failed = result.is_err();
        if done.send(result.map(|()| block.buffer)).is_err() || failed {
            return;
        }
    }
}
