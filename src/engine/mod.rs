//! Engines execute the remap jobs of a [`Plan`](crate::Plan): the CPU engine (rayon) and the
//! GPU engine (wgpu compute shaders). Both produce the same bytes.

use std::io::IoSlice;

use crate::error::Result;
use crate::plan::RemapJob;

pub mod cpu;
pub mod gpu;

pub use cpu::CpuEngine;
pub use gpu::GpuEngine;

/// Where an engine hands the bytes of a tensor: consecutive pieces, in order. A call's slices
/// are written one after the other; they may point into memory-mapped checkpoints, so that
/// rows are copied once, by the kernel, straight into the output (`writev`).
pub type Sink<'a> = dyn FnMut(&[IoSlice<'_>]) -> Result<()> + Send + 'a;

/// Something that computes remap jobs.
pub trait Engine {
    /// What computes the results, for reports: `cpu`, or `gpu: <adapter name>`.
    fn name(&self) -> String;

    /// Produces the bytes of `job`'s output tensor, in order, handing consecutive pieces to
    /// `sink`. Stops at the first error of the sink.
    fn remap(&mut self, job: &RemapJob, sink: &mut Sink<'_>) -> Result<()>;
}
