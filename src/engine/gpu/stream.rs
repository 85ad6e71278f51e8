//! Moving bytes between the host and the device: the pending submission with its ring of
//! reusable upload buffers, and the map state shared by upload and readback buffers.
//!
//! Uploads never go through `Queue::write_buffer` (which allocates a fresh staging buffer per
//! call). [`Stream`] holds `slots` upload buffers of `slot_bytes` each, `MAP_WRITE | COPY_SRC`,
//! created mapped, and one command encoder being recorded. An upload writes its bytes (from the
//! memory-mapped checkpoint, or host data) into the mapped memory of the current slot, packing
//! several uploads into a slot, and records a copy into the destination in the encoder. The
//! kernels and the readback copy of a chunk are recorded in the same encoder, so a chunk is
//! normally one submission. At submission the slots written are unmapped, and mapped again by
//! `map_buffer_on_submit` when the submission completes. Reusing a slot waits (bounded) for
//! that: by then the device has consumed its bytes. If an upload needs a slot that the pending
//! submission already uses (the ring wrapped), the pending work is submitted first.
//!
//! Submissions go to a submitter thread (`submit.rs`), in order. There is no separate poll
//! thread: a wait first waits for the submission it needs to be made, then polls the device
//! for exactly that submission (`PollType::Wait` with a timeout), which also runs the map
//! callbacks that are due. The device keeps executing what was submitted meanwhile, so the
//! host prepares chunk k + 1 and writes chunk k - 1 while the device computes chunk k.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use super::device::Gpu;
use super::submit::{Submitter, Ticket};
use crate::error::{Error, GpuFailure, Result};

/// Map state of an upload or readback buffer, set by its map callback.
const PENDING: u8 = 0;
const MAPPED: u8 = 1;
const FAILED: u8 = 2;

/// Offsets into a mapped range are multiples of this (`wgpu::MAP_ALIGNMENT`).
const ALIGN: u64 = wgpu::MAP_ALIGNMENT;

/// A buffer that goes back and forth between the host (mapped) and the device.
pub(crate) struct Mappable {
    pub(crate) buffer: wgpu::Buffer,
    state: Arc<AtomicU8>,
    /// The submission after which the buffer is mapped again.
    submission: Option<Arc<Ticket>>,
}

impl Mappable {
    pub(crate) fn new(buffer: wgpu::Buffer, mapped: bool) -> Self {
        Mappable {
            buffer,
            state: Arc::new(AtomicU8::new(if mapped { MAPPED } else { PENDING })),
            submission: None,
        }
    }

    /// Records in `encoder` that the buffer is to be mapped (for `mode`) once the submission
    /// of `encoder` completes.
    pub(crate) fn map_on_submit(&mut self, encoder: &wgpu::CommandEncoder, mode: wgpu::MapMode) {
        let state = self.state.clone();
        state.store(PENDING, Ordering::Release);
        self.submission = None;
        encoder.map_buffer_on_submit(&self.buffer, mode, .., move |r| {
            state.store(if r.is_ok() { MAPPED } else { FAILED }, Ordering::Release);
        });
    }

    /// Remembers the submission that `map_on_submit`'s encoder went into.
    pub(crate) fn submitted(&mut self, submission: Arc<Ticket>) {
        self.submission = Some(submission);
    }

    /// Whether the buffer is mapped, after one poll that does not wait (for cleaning up after a
    /// failure without waiting on a device that may be stuck).
    pub(crate) fn settled(&self, gpu: &Gpu) -> bool {
        let _ = gpu.device.poll(wgpu::PollType::Poll);
        self.state.load(Ordering::Acquire) == MAPPED
    }

    /// Waits (bounded) until the buffer is mapped again.
    pub(crate) fn wait_mapped(&self, gpu: &Gpu) -> Result<()> {
        let lost = || {
            Error::gpu(
                GpuFailure::Internal,
                "a transfer buffer was not mapped back after its submission",
            )
        };
        if self.state.load(Ordering::Acquire) == PENDING {
            let ticket = self.submission.as_ref().ok_or_else(lost)?;
            let submission = ticket.wait(gpu.timeout)?;
            // (the software driver has done the work by now, and its callback has usually run:
            // a poll would wait for the locks of the submission being made meanwhile)
            if self.state.load(Ordering::Acquire) == PENDING {
                gpu.wait(&submission)?;
            }
        }
        // The submission is done, so its map callback is due. It runs in the poll that notices
        // completion, which may be the submitter thread's (every submission ends with one)
        // and then fires there a moment later: wait for it, bounded (yielding at first, then
        // sleeping, so that a callback that never comes does not keep a core busy).
        let since = std::time::Instant::now();
        let bound = gpu.timeout.min(std::time::Duration::from_secs(10));
        loop {
            match self.state.load(Ordering::Acquire) {
                MAPPED => return Ok(()),
                FAILED => {
                    return Err(Error::gpu(
                        GpuFailure::Internal,
                        "mapping a transfer buffer failed",
                    ))
                }
                _ if since.elapsed() > bound => return Err(lost()),
                _ => {
                    let _ = gpu.device.poll(wgpu::PollType::Poll);
                    if since.elapsed() < std::time::Duration::from_millis(1) {
                        std::thread::yield_now();
                    } else {
                        std::thread::sleep(std::time::Duration::from_micros(200));
                    }
                }
            }
        }
    }
}

/// The submission being recorded, and the ring of upload buffers it draws from.
pub(crate) struct Stream {
    slots: Vec<Mappable>,
    count: usize,
    slot_bytes: u64,
    /// The slot the next upload goes to.
    next: usize,
    /// Slots written for the pending submission; the last one may have room left.
    open: Vec<usize>,
    /// Bytes used in the last open slot.
    used: u64,
    encoder: Option<wgpu::CommandEncoder>,
    /// Started with the first submission.
    submitter: Option<Submitter>,
}

impl Stream {
    /// A ring of `count` upload buffers of `slot_bytes` (a multiple of 8), created lazily.
    pub(crate) fn new(count: usize, slot_bytes: u64) -> Self {
        Stream {
            slots: Vec::new(),
            count: count.max(1),
            slot_bytes: slot_bytes.next_multiple_of(ALIGN),
            next: 0,
            open: Vec::new(),
            used: 0,
            encoder: None,
            submitter: None,
        }
    }

    /// The encoder of the pending submission.
    pub(crate) fn encoder(&mut self, gpu: &Gpu) -> &mut wgpu::CommandEncoder {
        self.encoder.get_or_insert_with(|| {
            gpu.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("warmstart"),
                })
        })
    }

    /// Hands the pending work, if any, to the submitter. The upload buffers it read come back
    /// mapped when it completes.
    pub(crate) fn submit(&mut self, gpu: &Gpu) -> Option<Arc<Ticket>> {
        let encoder = self.encoder.take()?;
        for &i in &self.open {
            let slot = &mut self.slots[i];
            slot.buffer.unmap();
            slot.map_on_submit(&encoder, wgpu::MapMode::Write);
        }
        let submitter =
            (self.submitter).get_or_insert_with(|| Submitter::new(&gpu.device, &gpu.queue));
        let ticket = submitter.submit(encoder.finish());
        for i in self.open.drain(..) {
            self.slots[i].submitted(ticket.clone());
        }
        Some(ticket)
    }

    /// Waits (bounded) until all work handed over has been submitted; the first error those
    /// submissions raised.
    pub(crate) fn flush(&mut self, gpu: &Gpu) -> Result<()> {
        match &mut self.submitter {
            Some(submitter) => submitter.flush(gpu.timeout),
            None => Ok(()),
        }
    }

    /// The last submission the last [`Stream::flush`] saw made, if any: all the engine's work
    /// handed over by then is in it or before it.
    pub(crate) fn flushed(&self) -> Option<&wgpu::SubmissionIndex> {
        self.submitter.as_ref().and_then(Submitter::flushed)
    }

    /// An upload slot with at least `ALIGN` free bytes; returns its index and free offset.
    fn space(&mut self, gpu: &Gpu) -> Result<(usize, u64)> {
        if let Some(&i) = self.open.last() {
            if self.used + ALIGN <= self.slot_bytes {
                return Ok((i, self.used));
            }
            // The slot is full: the work recorded so far goes to the device now, so that it
            // copies this slot while the next is filled (a window's upload spans many slots;
            // submitted only when the ring wrapped, the copies of all of them and the
            // filling of the next waited for each other).
            self.submit(gpu);
        }
        let i = self.next;
        if self.open.contains(&i) {
            // (not reached while every full slot is submitted, but a slot still open must
            // never be filled again before it was)
            self.submit(gpu);
        }
        self.next = (i + 1) % self.count;
        if i == self.slots.len() {
            let buffer = gpu.buffer(
                "upload",
                self.slot_bytes,
                wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
                true,
            )?;
            self.slots.push(Mappable::new(buffer, true));
        }
        self.slots[i].wait_mapped(gpu)?;
        self.open.push(i);
        self.used = 0;
        Ok((i, 0))
    }

    /// Records the upload of `len` bytes into `dst` at `dst_offset` (a multiple of 4).
    /// `write(start, view)` fills `view` with bytes `start..start + view.len()` of the data.
    /// A length that is not a multiple of 4 is padded with zeros to the next multiple (copies
    /// move whole words), so `dst` must have room for it.
    pub(crate) fn upload(
        &mut self,
        gpu: &Gpu,
        dst: &wgpu::Buffer,
        dst_offset: u64,
        len: u64,
        mut write: impl FnMut(usize, wgpu::WriteOnly<'_, [u8]>),
    ) -> Result<()> {
        let mut done = 0u64;
        while done < len {
            let (i, at) = self.space(gpu)?;
            let piece = (len - done).min(self.slot_bytes - at);
            let padded = piece.next_multiple_of(4);
            let buffer = self.slots[i].buffer.clone();
            {
                let mut view = buffer
                    .get_mapped_range_mut(at..at + padded)
                    .map_err(|e| Error::gpu(GpuFailure::Internal, format!("upload buffer: {e}")))?;
                let (data, mut pad) = view.slice(..).split_at(piece as usize);
                write(done as usize, data);
                pad.fill(0);
            }
            self.used = (at + padded).next_multiple_of(ALIGN);
            self.encoder(gpu)
                .copy_buffer_to_buffer(&buffer, at, dst, dst_offset + done, padded);
            done += piece;
        }
        Ok(())
    }

    /// Records the upload of host bytes.
    pub(crate) fn upload_bytes(
        &mut self,
        gpu: &Gpu,
        dst: &wgpu::Buffer,
        dst_offset: u64,
        bytes: &[u8],
    ) -> Result<()> {
        self.upload(
            gpu,
            dst,
            dst_offset,
            bytes.len() as u64,
            |start, mut view| {
                let n = view.len();
                view.copy_from_slice(&bytes[start..start + n]);
            },
        )
    }

    /// After a failure: the pending work is dropped, and upload buffers that are not mapped
    /// back (their submission failed or never completed) are recreated on next use.
    pub(crate) fn recover(&mut self, gpu: &Gpu) {
        let _ = self.flush(gpu);
        self.encoder = None;
        self.open.clear();
        self.used = 0;
        let broken = self.slots.iter().position(|s| !s.settled(gpu));
        if let Some(first) = broken {
            self.slots.truncate(first);
        }
        self.next = 0;
    }
}

/// Copies bytes `from..from + view.len()` of `tensor` into `view` (an upload buffer, or a new
/// window buffer on a software adapter), in 2 MiB pieces on the rayon pool: one core copies
/// a few GB/s out of the page cache, less into fresh memory, whose page faults also proceed
/// in parallel, and a table of tens of GB crosses this copy on its way to a GPU.
pub(crate) fn copy_tensor_parallel(
    tensor: &crate::checkpoint::TensorData,
    from: usize,
    mut view: wgpu::WriteOnly<'_, [u8]>,
) {
    use rayon::prelude::*;
    const PIECE: usize = 2 << 20;
    /// The start of the mapped range, shared by the threads that write disjoint parts of it.
    struct Dest(std::ptr::NonNull<u8>);
    // SAFETY: the threads write disjoint byte ranges of one mapping that outlives them.
    unsafe impl Send for Dest {}
    unsafe impl Sync for Dest {}
    impl Dest {
        fn at(&self, offset: usize) -> *mut u8 {
            // SAFETY (of callers): offsets stay inside the view.
            unsafe { self.0.as_ptr().add(offset) }
        }
    }
    let len = view.len();
    let dest = Dest(view.as_raw_ptr().cast::<u8>());
    (0..len.div_ceil(PIECE)).into_par_iter().for_each(|k| {
        let start = k * PIECE;
        let mut at = start;
        for piece in tensor.pieces(from + start..from + (start + PIECE).min(len)) {
            // SAFETY: `at..at + piece.len()` lies in this task's part of the view (the pieces
            // of the tensor's range are exactly as long as it), and `view` is borrowed for the
            // whole loop, so the mapping stays valid and no one else writes there.
            unsafe {
                std::ptr::copy_nonoverlapping(piece.as_ptr(), dest.at(at), piece.len());
            }
            at += piece.len();
        }
    });
}
