//! The CPU engine.
//!
//! A job is computed a chunk of rows at a time, straight into the sink's memory (for a file,
//! the writer's staging buffers, which a background thread writes to disk while the next
//! ones are filled): rows are gathered from the memory-mapped checkpoint or initialised in
//! parallel (rayon), each output byte written once.
//!
//! **Old tables larger than memory.** The old table is memory-mapped and read where the rows
//! lie, which the page cache serves as long as the pages a chunk reads fit in memory. A row
//! map that reads all over a table (a shuffled vocabulary) makes every chunk read the whole
//! table; if the table does not fit in memory, every chunk would read it from disk again, a
//! few pages per row. Such a job is computed in *passes* instead: a pass fills a buffer of
//! many chunks (half the memory budget) with its rows taken in the order of their old rows,
//! so that it reads the table once from start to end, hands the buffer to the sink, and
//! releases the table's pages. The budget is the memory available when the job starts
//! (Linux's `MemAvailable`, within the process's cgroup limit), or
//! [`CpuEngine::with_memory_budget`]. A pass holds its buffer in memory: half the budget, over
//! the usual few chunks.
//!
//! **Cold caches.** A table that is not in the page cache (a checkpoint just copied from
//! elsewhere, or evicted) would come from disk a few pages at a time, in the order the row map
//! reads it: all over the table for a shuffled vocabulary, at the disk's speed for small
//! random reads. When most of an old table is not in the page cache and it fits the memory
//! budget, the engine first asks the kernel to read the whole table ahead, from start to end
//! (`MADV_WILLNEED`), and computes while the reads go on. (A table larger than the budget is
//! read in passes, each in the order of the old rows.)
//!
//! `fill_row` is the reference semantics of a [`RemapJob`]; the GPU engine is tested
//! against it.

use rayon::prelude::*;

use super::{memory, Engine, Sink};
use crate::checkpoint::RowView;
use crate::error::Result;
use crate::plan::RemapJob;
use crate::vocab::MISSING;

/// The CPU engine.
#[derive(Clone, Debug)]
pub struct CpuEngine {
    chunk_bytes: usize,
    memory_budget: Option<u64>,
    passes: u64,
    read_ahead_bytes: u64,
}

impl Default for CpuEngine {
    fn default() -> Self {
        CpuEngine {
            chunk_bytes: 16 << 20,
            memory_budget: None,
            passes: 0,
            read_ahead_bytes: 0,
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

    /// Sets the memory, in bytes, that an old table may take while it is read; by default
    /// what the host has available when a job starts. A table larger than this, which the
    /// row map reads all over, is read in passes (see the module docs), each filling a
    /// buffer of half this size. Results do not depend on it.
    pub fn with_memory_budget(mut self, bytes: u64) -> Self {
        self.memory_budget = Some(bytes.max(1));
        self
    }

    /// Output rows per pass for a job that reads all over an old table larger than the memory
    /// `budget` (see the module docs); `None` for a job computed chunk by chunk, `chunk_rows`
    /// output rows at a time.
    fn pass_rows(job: &RemapJob, budget: u64, chunk_rows: usize) -> Option<usize> {
        let map = job.row_map.as_ref()?;
        if job.old.byte_len() as u64 <= budget {
            return None;
        }
        // The part of the table a chunk reads: from its first to its last old row.
        let spread = map[job.rows.clone()]
            .chunks(chunk_rows)
            .map(|chunk| {
                let rows = chunk.iter().filter(|&&m| m != MISSING);
                match (rows.clone().min(), rows.max()) {
                    (Some(&lo), Some(&hi)) => (hi - lo) as u64 + 1,
                    _ => 0,
                }
            })
            .max()?;
        if spread * job.old_row_bytes() as u64 <= budget / 2 {
            return None;
        }
        // The pass's buffer and its list of rows (old row, row, destination) share half the
        // budget.
        let per_row = (job.row_bytes() + size_of::<(usize, usize, &mut [u8])>()) as u64;
        Some(((budget / 2 / per_row) as usize).max(chunk_rows))
    }

    /// Computes `job` a pass of `pass_rows` rows at a time (see the module docs).
    fn remap_in_passes(
        &mut self,
        job: &RemapJob,
        old: &RowView<'_>,
        pass_rows: usize,
        sink: &mut dyn Sink,
    ) -> Result<()> {
        let row_bytes = job.row_bytes();
        let mut buffer = vec![0u8; pass_rows.min(job.rows.len()) * row_bytes];
        for first in job.rows.clone().step_by(pass_rows) {
            let rows = pass_rows.min(job.rows.end - first);
            let out = &mut buffer[..rows * row_bytes];
            // Each row with its old row, in the order of the old rows (rows without one
            // last): each thread reads its part of the table from start to end.
            let mut order: Vec<(usize, usize, &mut [u8])> = out
                .chunks_exact_mut(row_bytes)
                .enumerate()
                .map(|(i, out)| {
                    let g = first + i;
                    (job.source_row(g).unwrap_or(usize::MAX), g, out)
                })
                .collect();
            order.par_sort_unstable_by_key(|&(source, g, _)| (source, g));
            order
                .par_iter_mut()
                .with_min_len((64 << 10) / row_bytes + 1)
                .for_each(|(_, g, out)| fill_row(job, old, *g, out));
            drop(order);
            sink.write(out)?;
            job.old.release_pages();
            self.passes += 1;
        }
        Ok(())
    }
}

impl Engine for CpuEngine {
    fn name(&self) -> String {
        "cpu".into()
    }

    /// Passes made so far over old tables too large for the memory budget (0 while every
    /// table fitted).
    fn passes(&self) -> u64 {
        self.passes
    }

    /// Bytes of old tables read ahead so far because they were not in the page cache.
    fn read_ahead_bytes(&self) -> u64 {
        self.read_ahead_bytes
    }

    fn remap(&mut self, job: &RemapJob, sink: &mut dyn Sink) -> Result<()> {
        job.check()?;
        let row_bytes = job.row_bytes();
        let Some(old) = job.old.rows() else {
            unreachable!("checked jobs have float dtypes");
        };
        if job.rows.is_empty() || row_bytes == 0 {
            return Ok(());
        }
        let chunk_rows = (self.chunk_bytes / row_bytes).clamp(1, job.rows.len());
        // The memory budget, read once per job (`None` where it cannot be known: neither
        // passes nor read-ahead then).
        let budget = self.memory_budget.or_else(memory::available);
        if let Some(pass_rows) = budget.and_then(|b| Self::pass_rows(job, b, chunk_rows)) {
            return self.remap_in_passes(job, &old, pass_rows, sink);
        }
        if budget.is_some_and(|b| job.old.read_ahead_if_cold(b)) {
            self.read_ahead_bytes += job.old.byte_len() as u64;
        }
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
    // Tasks of at least 64 KiB, each computing its rows in order with the old row a few rows
    // ahead already on its way into the cache: the old rows of a shuffled vocabulary lie all
    // over the table, where the hardware's own prefetching cannot guess them.
    let task_rows = (64 << 10) / row_bytes + 1;
    body.par_chunks_mut(task_rows * row_bytes)
        .enumerate()
        .for_each(|(t, block)| {
            let first = row + t * task_rows;
            let rows = block.len() / row_bytes;
            for (i, out) in block.chunks_exact_mut(row_bytes).enumerate() {
                if i + PREFETCH_ROWS < rows {
                    prefetch_row(job, old, first + i + PREFETCH_ROWS);
                }
                fill_row(job, old, first + i, out);
            }
        });
    if !tail.is_empty() {
        partial(row + whole / row_bytes, 0, tail);
    }
}

/// How many rows ahead of the row being computed its old row is prefetched.
const PREFETCH_ROWS: usize = 8;

/// Asks the cache for the start of the old row of variable row `g` (up to 512 bytes: the
/// hardware follows a row on its own once it is being read). A hint: it faults nothing in,
/// and does nothing on targets without a prefetch instruction.
#[inline]
fn prefetch_row(job: &RemapJob, old: &RowView<'_>, g: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(r) = job.source_row(g) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let src = old.row(r);
        for line in src.chunks(64).take(8) {
            // SAFETY: a prefetch reads nothing and faults nothing; SSE is part of x86-64.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (job, old, g);
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
    match job.dtype.size() {
        2 => remap_cells::<2>(job, src, col_map, first, out),
        4 => remap_cells::<4>(job, src, col_map, first, out),
        _ => remap_cells::<8>(job, src, col_map, first, out),
    }
}

/// One row of a column remap, elements of `SIZE` bytes: each cell copied from the old row
/// `src` at the column `col_map` names (a move of known size, not a `memcpy` call per
/// cell), and each run of new columns filled by one call, which draws its values on vector
/// registers.
#[inline]
fn remap_cells<const SIZE: usize>(
    job: &RemapJob,
    src: &[u8],
    col_map: &[u32],
    first: u64,
    out: &mut [u8],
) {
    let mut c = 0;
    while c < col_map.len() {
        let oc = col_map[c];
        if oc == MISSING {
            let run = col_map[c..].iter().take_while(|&&oc| oc == MISSING).count();
            let cells = &mut out[c * SIZE..(c + run) * SIZE];
            job.init.fill(job.dtype, first + c as u64, cells);
            c += run;
        } else {
            let at = oc as usize * SIZE;
            let cell: &[u8; SIZE] = src[at..at + SIZE].try_into().expect("SIZE bytes");
            out[c * SIZE..(c + 1) * SIZE].copy_from_slice(cell);
            c += 1;
        }
    }
}
