//! Engines execute the remap jobs of a [`Plan`](crate::Plan): the CPU engine (rayon) and the
//! GPU engine (wgpu compute shaders). Both produce the same bytes.

use crate::error::Result;
use crate::plan::RemapJob;

pub mod cpu;

pub use cpu::CpuEngine;

/// Where an engine hands the bytes of a tensor: consecutive chunks, in order.
pub type Sink<'a> = dyn FnMut(&[u8]) -> Result<()> + Send + 'a;

/// Something that computes remap jobs.
pub trait Engine {
    /// What computes the results, for reports: `cpu`, or `gpu: <adapter name>`.
    fn name(&self) -> String;

    /// Produces the bytes of `job`'s output tensor, in order, handing consecutive chunks to
    /// `sink`. Stops at the first error of the sink.
    fn remap(&mut self, job: &RemapJob, sink: &mut Sink<'_>) -> Result<()>;
}
