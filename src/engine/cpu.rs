//! The CPU engine.
//!
//! A job is computed a chunk of rows at a time, straight into the sink's memory (for a file,
//! the writer's staging buffers, which a background thread writes to disk while the next
//! ones are filled): rows are gathered from the memory-mapped checkpoint or initialised in
//! parallel (rayon), each output byte written once.
//!
//! `fill_row` is the reference semantics of a [`RemapJob`]; the GPU engine is tested
//! against it.

use rayon::prelude::*;

use super::{Engine, Sink};
use crate::checkpoint::RowView;
use crate::error::Result;
use crate::plan::RemapJob;
use crate::vocab::MISSING;

/// The CPU engine.
#[derive(Clone, Debug)]
pub struct CpuEngine {
    chunk_bytes: usize,
}

impl Default for CpuEngine {
    fn default() -> Self {
        CpuEngine {
            chunk_bytes: 16 << 20,
        }
    }
}

impl CpuEngine {
    /// An engine with the default chunk size (16 MiB of output handed to the sink at a time).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the chunk size in bytes (at least one row is handed over at a time). Results do
    /// not depend on it.
    pub fn with_chunk_bytes(mut self, bytes: usize) -> Self {
        self.chunk_bytes = bytes.max(1);
        self
    }
}

impl Engine for CpuEngine {
    fn name(&self) -> String {
        "cpu".into()
    }

    fn remap(&mut self, job: &RemapJob, sink: &mut dyn Sink) -> Result<()> {
        let row_bytes = job.row_bytes();
        let Some(old) = job.old.rows() else {
            unreachable!("remap jobs have float dtypes");
        };
        if job.rows.is_empty() || row_bytes == 0 {
            return Ok(());
        }
        let chunk_rows = (self.chunk_bytes / row_bytes).clamp(1, job.rows.len());
        for first in job.rows.clone().step_by(chunk_rows) {
            let rows = chunk_rows.min(job.rows.end - first);
            sink.append(rows * row_bytes, &mut |at, out| {
                fill_bytes(job, &old, first, at, out)
            })?;
        }
        Ok(())
    }
}

/// Computes bytes `at..at + out.len()` of the variable rows that start at row `first` of
/// `job`, in parallel; a piece may start or end inside a row.
pub(crate) fn fill_bytes(
    job: &RemapJob,
    old: &RowView<'_>,
    first: usize,
    at: usize,
    out: &mut [u8],
) {
    let row_bytes = job.row_bytes();
    let mut row = first + at / row_bytes;
    let mut out = out;
    // A partial row at either end is computed whole beside and cut.
    let partial = |g: usize, skip: usize, out: &mut [u8]| {
        let mut whole = vec![0u8; row_bytes];
        fill_row(job, old, g, &mut whole);
        out.copy_from_slice(&whole[skip..skip + out.len()]);
    };
    let skip = at % row_bytes;
    if skip > 0 {
        let n = (row_bytes - skip).min(out.len());
        let (head, rest) = out.split_at_mut(n);
        partial(row, skip, head);
        row += 1;
        out = rest;
    }
    let whole = out.len() / row_bytes * row_bytes;
    let (body, tail) = out.split_at_mut(whole);
    body.par_chunks_mut(row_bytes)
        .with_min_len((64 << 10) / row_bytes + 1)
        .enumerate()
        .for_each(|(i, out)| fill_row(job, old, row + i, out));
    if !tail.is_empty() {
        partial(row + whole / row_bytes, 0, tail);
    }
}

/// Variable row `g` of `job`.
#[inline]
fn fill_row(job: &RemapJob, old: &RowView<'_>, g: usize, out: &mut [u8]) {
    let first = (g * job.cols) as u64;
    let Some(r) = job.source_row(g) else {
        job.init.fill(job.dtype, first, out);
        return;
    };
    let src = old.row(r);
    let Some(col_map) = &job.col_map else {
        out.copy_from_slice(src);
        return;
    };
    let size = job.dtype.size();
    for (c, (cell, &oc)) in out.chunks_exact_mut(size).zip(col_map.iter()).enumerate() {
        if oc == MISSING {
            job.init.fill(job.dtype, first + c as u64, cell);
        } else {
            let at = oc as usize * size;
            cell.copy_from_slice(&src[at..at + size]);
        }
    }
}
