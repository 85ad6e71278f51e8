//! Engines execute the remap jobs of a [`Plan`](crate::Plan): the CPU engine (rayon) and the
//! GPU engine (wgpu compute shaders). Both produce the same bytes, but for normal and
//! truncated normal fills, which agree within 1e-4 (see [`gpu`]).

use crate::error::Result;
use crate::plan::RemapJob;

pub mod cpu;
pub mod gpu;
mod memory;

pub use cpu::CpuEngine;
pub use gpu::GpuEngine;

/// Where an engine hands the bytes of a tensor, in order.
///
/// The sink owns the memory: [`Sink::append`] lends the engine the destination, so that rows
/// are computed straight into the output's buffers (the file writer's page-aligned staging
/// buffers, or a vector in host memory) and copied no further.
pub trait Sink {
    /// Appends `len` bytes, which `fill` writes in place: it is called with consecutive
    /// pieces `(offset, out)` that cover `0..len` in order, `out` receiving bytes
    /// `offset..offset + out.len()` of the `len`. A piece may end inside a row. Stops at
    /// the first error.
    fn append(&mut self, len: usize, fill: &mut dyn FnMut(usize, &mut [u8])) -> Result<()>;

    /// Appends a copy of `bytes`.
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.append(bytes.len(), &mut |at, out| {
            copy(&bytes[at..at + out.len()], out)
        })
    }
}

/// Host memory: the bytes are appended to the vector.
impl Sink for Vec<u8> {
    fn append(&mut self, len: usize, fill: &mut dyn FnMut(usize, &mut [u8])) -> Result<()> {
        let at = self.len();
        self.resize(at + len, 0);
        fill(0, &mut self[at..]);
        Ok(())
    }
}

/// Copies `src` into `dst` (of the same length), on several threads when it is large.
pub(crate) fn copy(src: &[u8], dst: &mut [u8]) {
    use rayon::prelude::*;
    const PIECE: usize = 1 << 20;
    if src.len() <= PIECE {
        dst.copy_from_slice(src);
    } else {
        dst.par_chunks_mut(PIECE)
            .zip(src.par_chunks(PIECE))
            .for_each(|(d, s)| d.copy_from_slice(s));
    }
}

/// Something that computes remap jobs.
pub trait Engine {
    /// What computes the results, for reports: `cpu`, or `gpu: <adapter name>`.
    fn name(&self) -> String;

    /// Produces the bytes of `job`'s output tensor, in order, into `sink`. Stops at the
    /// first error of the sink. On an error, what the sink has received is incomplete and,
    /// from a GPU (whose failures surface when its queue is next checked), possibly wrong:
    /// discard it, as the file writer does.
    fn remap(&mut self, job: &RemapJob, sink: &mut dyn Sink) -> Result<()>;

    /// Refuses a job that this engine cannot compute, without computing anything: the GPU
    /// engine, a row wider than one storage binding of its device. Plans call it for every
    /// job before they write a byte ([`Plan::check_engine`](crate::Plan::check_engine)).
    fn check(&self, job: &RemapJob) -> Result<()> {
        job.check()
    }

    /// Passes made so far over old tables too large for the engine's memory budget (see
    /// [`CpuEngine`], and [`GpuEngine`]'s implementation); 0 for an engine that makes none.
    fn passes(&self) -> u64 {
        0
    }

    /// The device memory a GPU engine may hold, in bytes; `None` for the CPU engine.
    fn vram_budget(&self) -> Option<u64> {
        None
    }

    /// Bytes of old tables read ahead from disk because they were not in the page cache (see
    /// [`CpuEngine`]); 0 for an engine that reads none ahead.
    fn read_ahead_bytes(&self) -> u64 {
        0
    }
}
