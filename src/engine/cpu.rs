//! The CPU engine.
//!
//! A chunk of output rows is handed to the sink as a list of slices: long runs of consecutive
//! old rows (an unchanged stretch of vocabulary) straight from the memory-mapped checkpoint,
//! so they are copied once, by the writer; everything else (scattered rows, initialised rows,
//! column remaps) gathered into a buffer in parallel (rayon). While one chunk is being
//! written, the next one is prepared on both cores.
//!
//! `fill_rows` is the reference semantics of a [`RemapJob`]; the GPU engine is tested
//! against it.

use std::io::IoSlice;
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
    mapped_run_bytes: usize,
}

impl Default for CpuEngine {
    fn default() -> Self {
        CpuEngine {
            chunk_bytes: 16 << 20,
            mapped_run_bytes: 1 << 20,
        }
    }
}

impl CpuEngine {
    /// An engine with the default chunk size (16 MiB of output per chunk; two chunks are in
    /// flight at a time).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the chunk size in bytes (at least one row is computed at a time). Results do not
    /// depend on it.
    pub fn with_chunk_bytes(mut self, bytes: usize) -> Self {
        self.chunk_bytes = bytes.max(1);
        self
    }

    /// Sets how long a run of consecutive old rows must be (in bytes) to be written straight
    /// from the memory map instead of through the buffer (default 1 MiB). Results do not
    /// depend on it.
    pub fn with_mapped_run_bytes(mut self, bytes: usize) -> Self {
        self.mapped_run_bytes = bytes.max(1);
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
        let chunks: Vec<Range<usize>> = (job.rows.start..job.rows.end)
            .step_by(chunk_rows)
            .map(|s| s..(s + chunk_rows).min(job.rows.end))
            .collect();
        if job.col_map.is_some() {
            pipeline(
                &chunks,
                Vec::new,
                |rows, buf| {
                    buf.resize(rows.len() * row_bytes, 0);
                    fill_rows(job, &old, rows, buf);
                },
                |buf, sink| sink(&[IoSlice::new(buf)]),
                sink,
            )
        } else {
            // Long runs go straight from the memory map; scattered small rows are gathered in
            // parallel (copying them one by one on the writer's thread is slower).
            let min_run = self.mapped_run_bytes.div_ceil(row_bytes);
            pipeline(
                &chunks,
                RowChunk::default,
                |rows, chunk| chunk.prepare(job, &old, rows, min_run),
                |chunk, sink| chunk.write(&old, sink),
                sink,
            )
        }
    }
}

/// Prepares chunk k+1 while chunk k is written: two states, swapped each step. The write runs
/// on a thread of its own, outside rayon's pool, so that while it waits for the disk both
/// cores prepare the next chunk.
fn pipeline<S: Send + Sync>(
    chunks: &[Range<usize>],
    new_state: impl Fn() -> S,
    prepare: impl Fn(Range<usize>, &mut S) + Sync,
    write: impl Fn(&S, &mut Sink<'_>) -> Result<()> + Sync,
    sink: &mut Sink<'_>,
) -> Result<()> {
    let (mut front, mut back) = (new_state(), new_state());
    prepare(chunks[0].clone(), &mut front);
    for k in 0..chunks.len() {
        let next = chunks.get(k + 1).cloned();
        let written = std::thread::scope(|scope| {
            let writer = scope.spawn(|| write(&front, sink));
            if let Some(rows) = next {
                prepare(rows, &mut back);
            }
            writer.join().expect("the writer does not panic")
        });
        written?;
        std::mem::swap(&mut front, &mut back);
    }
    Ok(())
}

/// A chunk of a row remap: pieces in output order, either long runs of old rows straight from
/// the memory map, or rows gathered (or initialised) into a buffer, in parallel.
#[derive(Default)]
struct RowChunk {
    pieces: Vec<Piece>,
    /// Variable rows that go through the buffer, in output order.
    buffered: Vec<usize>,
    buffer: Vec<u8>,
}

#[derive(Clone, Copy)]
enum Piece {
    /// `rows` old rows from `first` on, contiguous in one segment of the checkpoint.
    Mapped { first: usize, rows: usize },
    /// `len` bytes of the buffer from `at`.
    Buffered { at: usize, len: usize },
}

impl RowChunk {
    /// Lays out rows `rows`: runs of at least `min_run` consecutive old rows are mapped.
    fn prepare(&mut self, job: &RemapJob, old: &RowView<'_>, rows: Range<usize>, min_run: usize) {
        let row_bytes = job.row_bytes();
        self.pieces.clear();
        self.buffered.clear();
        let mut g = rows.start;
        while g < rows.end {
            // The longest run of consecutive old rows from g.
            let mut n = 0;
            if let Some(first) = job.source_row(g) {
                n = 1;
                while g + n < rows.end
                    && job.source_row(g + n) == Some(first + n)
                    && old.contiguous(first, first + n)
                {
                    n += 1;
                }
                if n >= min_run {
                    self.pieces.push(Piece::Mapped { first, rows: n });
                    g += n;
                    continue;
                }
            }
            let n = n.max(1);
            let at = self.buffered.len() * row_bytes;
            match self.pieces.last_mut() {
                Some(Piece::Buffered { len, .. }) => *len += n * row_bytes,
                _ => self.pieces.push(Piece::Buffered {
                    at,
                    len: n * row_bytes,
                }),
            }
            self.buffered.extend(g..g + n);
            g += n;
        }
        self.buffer.resize(self.buffered.len() * row_bytes, 0);
        self.buffer
            .par_chunks_mut(row_bytes)
            .with_min_len((64 << 10) / row_bytes + 1)
            .zip(self.buffered.par_iter())
            .for_each(|(out, &g)| fill_row(job, old, g, out));
    }

    fn write(&self, old: &RowView<'_>, sink: &mut Sink<'_>) -> Result<()> {
        let slices: Vec<IoSlice<'_>> = self
            .pieces
            .iter()
            .map(|piece| match *piece {
                Piece::Mapped { first, rows } => IoSlice::new(old.rows_slice(first..first + rows)),
                Piece::Buffered { at, len } => IoSlice::new(&self.buffer[at..at + len]),
            })
            .collect();
        sink(&slices)
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
