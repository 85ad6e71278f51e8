//! The CPU engine: rows gathered from the memory-mapped checkpoint and missing cells
//! initialised, in parallel (rayon), one chunk while the previous one is being written.
//!
//! [`fill_rows`] is the reference semantics of a [`RemapJob`]; the GPU engine is tested
//! against it.

use std::ops::Range;

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
            chunk_bytes: 8 << 20,
        }
    }
}

impl CpuEngine {
    /// An engine with the default chunk size (8 MiB; two chunks are in memory at a time).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the chunk size in bytes (at least one row is computed at a time). Results do not
    /// depend on it.
    pub fn with_chunk_bytes(mut self, bytes: usize) -> Self {
        self.chunk_bytes = bytes.max(1);
        self
    }
}

impl Engine for CpuEngine {
    fn name(&self) -> String {
        "cpu".into()
    }

    fn remap(&mut self, job: &RemapJob, sink: &mut Sink<'_>) -> Result<()> {
        let row_bytes = job.row_bytes();
        let Some(old) = job.old.rows() else {
            unreachable!("remap jobs have float dtypes");
        };
        if job.rows.is_empty() || row_bytes == 0 {
            return Ok(());
        }
        let chunk_rows = (self.chunk_bytes / row_bytes).clamp(1, job.rows.len());
        let next_chunk = |start: usize| start..(start + chunk_rows).min(job.rows.end);
        let mut front = vec![0u8; chunk_rows * row_bytes];
        let mut back = vec![
            0u8;
            if chunk_rows < job.rows.len() {
                front.len()
            } else {
                0
            }
        ];
        let mut current = next_chunk(job.rows.start);
        fill_rows(
            job,
            &old,
            current.clone(),
            &mut front[..current.len() * row_bytes],
        );
        loop {
            let next = next_chunk(current.end);
            let (written, ()) = rayon::join(
                || sink(&front[..current.len() * row_bytes]),
                || {
                    if !next.is_empty() {
                        fill_rows(job, &old, next.clone(), &mut back[..next.len() * row_bytes]);
                    }
                },
            );
            written?;
            if next.is_empty() {
                return Ok(());
            }
            std::mem::swap(&mut front, &mut back);
            current = next;
        }
    }
}

/// Computes variable rows `rows` of `job` into `out` (exactly those rows), in parallel.
pub(crate) fn fill_rows(job: &RemapJob, old: &RowView<'_>, rows: Range<usize>, out: &mut [u8]) {
    let row_bytes = job.row_bytes();
    debug_assert_eq!(out.len(), rows.len() * row_bytes);
    out.par_chunks_mut(row_bytes)
        .with_min_len((64 << 10) / row_bytes.max(1) + 1)
        .enumerate()
        .for_each(|(i, row)| fill_row(job, old, rows.start + i, row));
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
