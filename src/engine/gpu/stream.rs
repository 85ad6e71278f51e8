//! Moving bytes between the host and the device: a ring of reusable upload (staging) buffers,
//! and the readback buffers of the output slots.
//!
//! Uploads never go through `Queue::write_buffer` (which allocates a fresh staging buffer per
//! call). The ring holds `slots` buffers of `slot_bytes` each, `MAP_WRITE | COPY_SRC`, created
//! mapped. An upload fills the next slot's mapped memory from the source (the memory-mapped
//! checkpoint, or host data), unmaps it, submits a copy into the destination, and asks for the
//! slot to be mapped again when that submission completes (`map_buffer_on_submit`). Reusing a
//! slot waits (bounded) for that submission: by then the device has consumed its bytes and
//! the map callback has marked it writable. Since wgpu has a single queue, everything submitted
//! later (kernels reading the destination) runs after the copy; while the device copies one
//! slot, the host fills the next.
//!
//! There is no separate poll thread: a wait polls the device for exactly the submission it
//! needs (`PollType::Wait` with a timeout), which also runs the map callbacks that are due. The
//! device keeps executing later submissions meanwhile, so uploads, kernels and readbacks of
//! different chunks still overlap.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use super::device::Gpu;
use crate::error::{Error, Result};

/// Map state of a staging or readback buffer, set by its map callback.
pub(crate) const PENDING: u8 = 0;
pub(crate) const MAPPED: u8 = 1;
pub(crate) const FAILED: u8 = 2;

/// A buffer that goes back and forth between the host (mapped) and the device.
pub(crate) struct Mappable {
    pub(crate) buffer: wgpu::Buffer,
    state: Arc<AtomicU8>,
    /// The submission after which the buffer is mapped again.
    submission: Option<wgpu::SubmissionIndex>,
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
        encoder.map_buffer_on_submit(&self.buffer, mode, .., move |r| {
            state.store(if r.is_ok() { MAPPED } else { FAILED }, Ordering::Release);
        });
    }

    /// Remembers the submission that `map_on_submit`'s encoder went into.
    pub(crate) fn submitted(&mut self, submission: wgpu::SubmissionIndex) {
        self.submission = Some(submission);
    }

    /// Waits (bounded) until the buffer is mapped again.
    pub(crate) fn wait_mapped(&self, gpu: &Gpu) -> Result<()> {
        if self.state.load(Ordering::Acquire) == PENDING {
            if let Some(s) = &self.submission {
                gpu.wait(s)?;
            }
        }
        match self.state.load(Ordering::Acquire) {
            MAPPED => Ok(()),
            FAILED => Err(Error::Gpu("mapping a transfer buffer failed".into())),
            _ => {
                // The callback runs in the poll that notices completion; one more poll settles it.
                let _ = gpu.device.poll(wgpu::PollType::Poll);
                match self.state.load(Ordering::Acquire) {
                    MAPPED => Ok(()),
                    _ => Err(Error::Gpu(
                        "a transfer buffer was not mapped back after its submission".into(),
                    )),
                }
            }
        }
    }
}

/// The ring of upload buffers.
pub(crate) struct Staging {
    slots: Vec<Mappable>,
    next: usize,
    slot_bytes: u64,
    count: usize,
}

impl Staging {
    /// A ring of `count` buffers of `slot_bytes` (a multiple of 4), created lazily.
    pub(crate) fn new(count: usize, slot_bytes: u64) -> Self {
        Staging {
            slots: Vec::new(),
            next: 0,
            slot_bytes,
            count: count.max(1),
        }
    }

    /// The next slot, mapped and ready to be written.
    fn acquire(&mut self, gpu: &Gpu) -> Result<usize> {
        let i = self.next;
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
        Ok(i)
    }

    /// Copies `len` bytes into `dst` at `dst_offset` (a multiple of 4), in pieces of at most
    /// one slot. `write(start, view)` fills `view` with bytes `start..start + view.len()` of
    /// the data. A length that is not a multiple of 4 is padded with zeros to the next
    /// multiple (copies move whole words), so `dst` must have room for it.
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
            let piece = (len - done).min(self.slot_bytes);
            let padded = piece.next_multiple_of(4);
            let i = self.acquire(gpu)?;
            let slot = &mut self.slots[i];
            {
                let mut view = slot
                    .buffer
                    .get_mapped_range_mut(..padded)
                    .map_err(|e| Error::Gpu(format!("upload buffer: {e}")))?;
                let (data, pad) = view.slice(..).split_at(piece as usize);
                write(done as usize, data);
                let mut pad = pad;
                pad.fill(0);
            }
            slot.buffer.unmap();
            let mut encoder = gpu
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("upload"),
                });
            encoder.copy_buffer_to_buffer(&slot.buffer, 0, dst, dst_offset + done, padded);
            slot.map_on_submit(&encoder, wgpu::MapMode::Write);
            let submission = gpu.queue.submit([encoder.finish()]);
            slot.submitted(submission);
            done += piece;
        }
        Ok(())
    }

    /// Uploads host bytes.
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

    /// After a failure: slots that are not mapped back (their submission failed or never
    /// completed) are dropped and recreated on next use.
    pub(crate) fn recover(&mut self, gpu: &Gpu) {
        let broken = self.slots.iter().position(|s| s.wait_mapped(gpu).is_err());
        if let Some(first) = broken {
            self.slots.truncate(first);
            self.next = 0;
        }
    }
}

/// Copies `pieces` (consecutive byte slices, e.g. of a memory-mapped file) into `view`, which
/// must be exactly as long as they are together.
pub(crate) fn copy_pieces<'a>(
    pieces: impl Iterator<Item = &'a [u8]>,
    mut view: wgpu::WriteOnly<'_, [u8]>,
) {
    let mut at = 0;
    for piece in pieces {
        view.slice(at..at + piece.len()).copy_from_slice(piece);
        at += piece.len();
    }
}
