//! Host-side planning: the layout of a job on the device, and the dispatches of one output
//! chunk.
//!
//! A job's output is produced in chunks of whole rows (at most one storage binding each). For a
//! chunk the host looks up every row's source once and groups the rows by the window of the old
//! table that holds their source: each window with rows in the chunk gets one gather dispatch
//! (two for odd-width f16/bf16, one per row parity, see `shaders/rows.wgsl`), whose rows are a
//! list of (output row, window row) pairs, or an arithmetic range when the rows map one to one
//! (no row map). Rows without a source, and the new columns of an axis-1 remap, get fill
//! dispatches. Every dispatch's uniform parameters and all lists go into one control blob per
//! chunk: parameter entries at a fixed stride (a multiple of the uniform offset alignment),
//! then the list words; it is uploaded once and each dispatch binds its own entry.
//!
//! On the software driver, a job whose runs of rows (consecutive rows from consecutive old
//! rows) are long enough on average moves them with transfer commands instead: a chunk then
//! lists, per window, one copy per run ([`Mover::Copies`]).

use std::collections::HashMap;
use std::ops::Range;

use bytemuck::Pod;

use super::kernels::{InitUniform, RowSet, ROWS_LIST, ROWS_RANGE};
use super::{fill_missing, gather_rows, remap_cols};
use crate::error::{Error, Result};
use crate::initializer::Fill;
use crate::plan::RemapJob;
use crate::vocab::MISSING;

/// List bytes a chunk may need per row: a gather pair and a fill entry.
pub(crate) const LIST_BYTES_PER_ROW: usize = 12;

/// Rows a gather dispatch should move at least, in bytes, where chunks may grow for it.
const DISPATCH_BYTES: u64 = 512 << 10;

/// Most chunks in a group (see [`Layout::group`]): chunks grow rather than be more.
pub(crate) const MAX_GROUP: u64 = 256;

/// Device sizes a job is laid out with (see the module docs of `gpu` for their origin).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Largest storage binding, bytes.
    pub binding: u64,
    /// Target bytes of an output chunk.
    pub chunk: u64,
    /// Bytes an output chunk may grow to (see `Layout::new`): at most one binding, and
    /// `chunk` when the caller set the chunk size.
    pub chunk_max: u64,
    /// Target bytes of an old-table window.
    pub window: u64,
    /// Bytes the window cache may hold.
    pub window_budget: u64,
    /// Distance between parameter entries in the control blob.
    pub params_stride: u64,
    /// Most words of a row a thread handles per item: 1 on GPUs (neighbouring threads touch
    /// neighbouring words), more on the software driver (every item has a fixed cost).
    pub span: u32,
    /// Windows start this many bytes (a multiple of 4), or fewer, into their buffers: the
    /// address of a window's first byte modulo this is its *lead*, so that the buffer can
    /// be the checkpoint file's own pages (`host_memory.rs`). 1: no leads.
    pub lead_align: u64,
    /// Move whole rows with transfer commands instead of the gather kernel where a job's runs
    /// of consecutive rows (consecutive old rows too) average at least this many bytes: on
    /// the software driver a copy is one `memcpy`, a gather a shader loop over words. `None`
    /// on GPUs, where a gather dispatch beats thousands of small copies.
    pub copy_runs: Option<u64>,
}

/// The kernel that moves cells with a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mover {
    /// `gather_rows`, whole rows in units of `unit` bytes (4 or 16).
    Rows { unit: usize },
    /// `remap_cols`, element by element: through the column map, or with identity columns
    /// (odd-width f16/bf16 rows, which are not whole words).
    Elements { identity: bool },
    /// Transfer commands (`copy_buffer_to_buffer`), one per run of whole rows whose sources
    /// are consecutive rows of one window (see [`Limits::copy_runs`]).
    Copies,
}

/// How one job is laid out on the device.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    pub esize: usize,
    pub cols: usize,
    pub old_cols: usize,
    pub row_bytes: usize,
    pub old_row_bytes: usize,
    pub words_per_row: u32,
    /// Odd-width f16/bf16: rows 2i and 2i + 1 share a word, so each dispatch takes one parity.
    pub parity: bool,
    /// The kernel that moves rows with a source.
    pub mover: Mover,
    pub old_rows: usize,
    pub window_rows: usize,
    pub chunk_rows: usize,
    /// Some column is MISSING: rows with a source also need the fill.
    pub col_gaps: bool,
    /// Some column has a source: rows with a source need a gather.
    pub col_sources: bool,
    /// The row map reads all over the old table: chunks need many windows each.
    pub scattered: bool,
    /// The old table fits the window cache.
    pub fits: bool,
    /// Chunks that share each pass over the old table: 1, unless the map is scattered and
    /// the table does not fit the cache (see `Layout::new`).
    pub group: usize,
    pub init: InitUniform,
    pub params_stride: u64,
    /// See [`Limits::span`].
    pub span: u32,
    /// Per window, the bytes its buffer holds before its first row (see [`Limits::lead_align`]).
    pub leads: Vec<u32>,
}

/// Odd-width f16/bf16 rows: rows 2i and 2i + 1 share a word.
fn paired_rows(job: &RemapJob) -> bool {
    job.dtype.size() == 2 && job.cols % 2 == 1
}

/// Refuses a job whose smallest unit of work does not fit one storage binding of `binding`
/// bytes: a row, an old row, a pair of odd-width f16/bf16 rows (which share words), or the
/// column map. The engine checks every job this way before anything is written
/// ([`Engine::check`](crate::engine::Engine::check)).
pub(crate) fn check_fits(job: &RemapJob, binding: u64) -> Result<()> {
    let parity = paired_rows(job);
    let units = [
        ("a row", job.row_bytes()),
        ("an old row", job.old_row_bytes()),
        (
            "a pair of rows",
            if parity { 2 * job.row_bytes() } else { 0 },
        ),
        (
            "the column map",
            job.col_map.as_ref().map_or(0, |m| m.len() * 4),
        ),
    ];
    match units.into_iter().find(|&(_, bytes)| bytes as u64 > binding) {
        Some((what, bytes)) => Err(Error::variable(
            &job.variable,
            format!(
                "{what} of {bytes} bytes does not fit one GPU storage binding ({binding} bytes); \
                 use the CPU engine"
            ),
        )),
        None => Ok(()),
    }
}

impl Layout {
    /// Checks `job` and lays it out within `limits`.
    pub(crate) fn new(job: &RemapJob, limits: &Limits) -> Result<Layout> {
        job.check()?;
        check_fits(job, limits.binding)?;
        let esize = job.dtype.size();
        let old_rows = job.old.shape().first().copied().unwrap_or(1);
        let row_bytes = job.row_bytes();
        let old_row_bytes = job.old_row_bytes();
        let (col_map, col_gaps, col_sources) = match &job.col_map {
            None => (false, false, job.cols > 0),
            Some(m) => (true, m.contains(&MISSING), m.iter().any(|&c| c != MISSING)),
        };
        let parity = paired_rows(job);
        let mover = match (col_map, row_bytes % 16, row_bytes % 4) {
            (true, _, _) => Mover::Elements { identity: false },
            (false, 0, _) => Mover::Rows { unit: 16 },
            (false, _, 0) => Mover::Rows { unit: 4 },
            (false, _, _) => Mover::Elements { identity: true },
        };
        let mover = match (mover, limits.copy_runs) {
            (Mover::Rows { .. }, Some(min)) if run_bytes(job, row_bytes) >= min as f64 => {
                Mover::Copies
            }
            (mover, _) => mover,
        };
        let mut chunk_rows = (limits.chunk as usize / (row_bytes + LIST_BYTES_PER_ROW)).max(1);
        if parity {
            // chunks must start on a word: an even number of rows
            chunk_rows = (chunk_rows & !1).max(2);
        }
        // windows with their leads within a binding
        let lead_align = match limits.lead_align {
            a if a > 1 && old_row_bytes as u64 + a <= limits.binding => a,
            _ => 1,
        };
        let binding = limits.binding - if lead_align > 1 { lead_align } else { 0 };
        // Windows imported from the mapped files (leads on) take no device memory: the table
        // fits, however large. Not a table whose windows cannot be imported (they are copied).
        let imported = lead_align > 1 && importable(job, old_row_bytes);
        let budget = if imported {
            u64::MAX
        } else {
            limits.window_budget
        };
        let fits = (old_rows * old_row_bytes) as u64 <= budget;
        let mut scattered = false;
        let window_rows = match old_row_bytes {
            0 => old_rows.max(1),
            b => {
                let rows = (limits.window.min(binding) as usize / b).max(1);
                // Scattered: a chunk reads more windows than are worth a dispatch each, or
                // more than the cache holds (with half a window to spare, for a chunk of
                // consecutive rows that straddles two), which every chunk would load again.
                let held = budget / (rows as u64 * b as u64).max(1);
                let limit = SPREAD_LIMIT.min(held.max(1) as f64 + 0.5);
                scattered = spread(job, chunk_rows, rows) > limit;
                // A row map that reads all over the old table makes every chunk touch every
                // window: when the whole table fits the cache anyway, use windows as large as
                // a binding, so that a chunk needs few dispatches.
                let widest = (binding.min(budget) as usize / b).max(1);
                if scattered && fits && widest > rows {
                    widest
                } else if scattered && !fits {
                    // windows stream through a quarter of the cache, two at a time (see the
                    // groups below)
                    rows.min((budget / 8) as usize / b).max(1)
                } else {
                    rows
                }
            }
        };
        // Each chunk makes one gather dispatch per window it reads, and a dispatch has a fixed
        // cost (high on the software driver, which wakes its threads for each one). A scattered
        // map over many imported windows would make them tiny: chunks then grow, up to
        // `limits.chunk_max`, until each window's dispatch has about DISPATCH_BYTES of rows.
        // (Not for odd-width f16/bf16 outputs, whose chunks hold pairs of rows.)
        let per_row = (row_bytes + LIST_BYTES_PER_ROW) as u64;
        if scattered && imported && !parity && old_row_bytes > 0 {
            let windows = old_rows.div_ceil(window_rows) as u64;
            let wanted = (windows * DISPATCH_BYTES)
                .min(8 * limits.chunk)
                .min(limits.chunk_max);
            chunk_rows = chunk_rows.max((wanted / per_row) as usize);
        }
        // A scattered map over a table that does not fit the cache makes every chunk read the
        // whole table: chunks then go in groups that share each pass over it, their outputs
        // (and control blobs) held on the device until the pass ends. They take what the cache
        // can spare, three quarters of it (but one window), and the windows stream through
        // the rest, so that a table of T bytes over a cache of C makes about T / (0.75 C)
        // passes. Chunks grow (up to a binding) where MAX_GROUP of them would not fill that
        // share.
        let mut group = 1;
        if scattered && !fits {
            let window = (window_rows * old_row_bytes) as u64 + lead_align;
            let outputs = budget.saturating_sub((budget / 4).max(window));
            let windows = old_rows.div_ceil(window_rows);
            let params = params_bound(usize::MAX, windows, parity, limits.params_stride);
            let wanted = (outputs / MAX_GROUP)
                .saturating_sub(params)
                .min(limits.chunk_max);
            let mut rows = chunk_rows.max((wanted / per_row) as usize);
            if parity {
                rows = (rows & !1).max(2);
            }
            chunk_rows = rows;
            let ctrl = ctrl_bound(rows, windows, parity, limits.params_stride);
            let chunk = (rows * row_bytes) as u64 + ctrl;
            group = (outputs / chunk).clamp(1, MAX_GROUP) as usize;
        }
        let leads = leads(job, old_row_bytes, window_rows, lead_align);
        Ok(Layout {
            esize,
            cols: job.cols,
            old_cols: job.old_cols,
            row_bytes,
            old_row_bytes,
            words_per_row: row_bytes.div_ceil(4) as u32,
            parity,
            mover,
            old_rows,
            window_rows,
            chunk_rows,
            col_gaps,
            col_sources,
            scattered,
            fits,
            group,
            init: init_uniform(job),
            params_stride: limits.params_stride,
            span: limits.span,
            leads,
        })
    }

    /// The bytes window `w`'s buffer holds before its first row.
    pub(crate) fn lead(&self, w: usize) -> u64 {
        self.leads.get(w).copied().unwrap_or(0) as u64
    }

    /// The transfer of `count` rows from window row `src` to chunk row `dst`.
    fn copy(&self, dst: usize, src: usize, count: usize) -> RowCopy {
        RowCopy {
            src: (src * self.old_row_bytes) as u64,
            dst: (dst * self.row_bytes) as u64,
            len: (count * self.row_bytes) as u64,
        }
    }

    /// Old row `m` from the row map, refused past the old table's end.
    fn check_source(&self, job: &RemapJob, m: u32) -> Result<usize> {
        let m = m as usize;
        if m >= self.old_rows {
            return Err(Error::variable(
                &job.variable,
                format!(
                    "row map names old row {m} of a tensor of {} rows",
                    self.old_rows
                ),
            ));
        }
        Ok(m)
    }

    /// The chunks of `rows`, in order.
    pub(crate) fn chunks(&self, rows: Range<usize>) -> impl Iterator<Item = Range<usize>> {
        let step = self.chunk_rows;
        (rows.start..rows.end)
            .step_by(step)
            .map(move |s| s..(s + step).min(rows.end))
    }

    /// Old rows of window `w`.
    pub(crate) fn window(&self, w: usize) -> Range<usize> {
        let start = w * self.window_rows;
        start..(start + self.window_rows).min(self.old_rows)
    }

    /// Number of windows of the old table.
    pub(crate) fn windows(&self) -> usize {
        self.old_rows.div_ceil(self.window_rows)
    }

    /// For each window of the old table, the last chunk of `rows` that reads it (`None`: no
    /// chunk does). After that chunk the window's buffer can take another window.
    pub(crate) fn last_use(&self, job: &RemapJob, rows: Range<usize>) -> Vec<Option<u32>> {
        let mut last = vec![None; self.windows()];
        if !self.col_sources {
            return last;
        }
        let start = rows.start;
        let chunk_of = |g: usize| ((g - start) / self.chunk_rows) as u32;
        match &job.row_map {
            None => {
                for (w, slot) in last.iter_mut().enumerate() {
                    let win = self.window(w);
                    let end = win.end.min(rows.end);
                    if win.start.max(rows.start) < end {
                        *slot = Some(chunk_of(end - 1));
                    }
                }
            }
            Some(map) => {
                for g in rows {
                    let m = map[g];
                    if m != MISSING && (m as usize) < self.old_rows {
                        last[m as usize / self.window_rows] = Some(chunk_of(g));
                    }
                }
            }
        }
        last
    }

    /// Device bytes that `chunks` chunks of a group hold (at most [`Layout::group`] of them):
    /// output buffers and control blobs.
    pub(crate) fn group_bytes(&self, chunks: usize) -> u64 {
        (self.group.min(chunks) as u64) * (self.chunk_bytes() + self.ctrl_bytes())
    }

    /// Bytes a chunk's control blob may take (see `ctrl_bound`).
    pub(crate) fn ctrl_bytes(&self) -> u64 {
        ctrl_bound(
            self.chunk_rows,
            self.windows(),
            self.parity,
            self.params_stride,
        )
    }

    /// Bytes of an output chunk buffer.
    pub(crate) fn chunk_bytes(&self) -> u64 {
        (self.chunk_rows * self.row_bytes)
            .next_multiple_of(4)
            .max(4) as u64
    }
}

/// Bytes of the control blob of a chunk of `rows` rows over an old table of `windows`
/// windows, at most (see `plan`): its parameter entries, then the lists, at most
/// LIST_BYTES_PER_ROW per row (a gather pair and a fill entry), or one word.
fn ctrl_bound(rows: usize, windows: usize, parity: bool, params_stride: u64) -> u64 {
    params_bound(rows, windows, parity, params_stride) + (rows * LIST_BYTES_PER_ROW).max(4) as u64
}

/// Bytes of the parameter entries of such a chunk, at most: one per dispatch, which is at
/// most two per window the chunk reads (one per parity) and four fills.
fn params_bound(rows: usize, windows: usize, parity: bool, params_stride: u64) -> u64 {
    let dispatches = rows.min(windows) * (1 + parity as usize) + 4;
    dispatches as u64 * params_stride
}

/// The lead of each window of `job`'s old table: the address of its first byte modulo
/// `align`. None (all zero) when `align` is 1, or when some window could start off a word
/// (the kernels skip leads in whole words).
fn leads(job: &RemapJob, row_bytes: usize, window_rows: usize, align: u64) -> Vec<u32> {
    let old = &job.old;
    if align <= 1 || !importable(job, row_bytes) {
        return Vec::new();
    }
    let window_bytes = window_rows * row_bytes;
    (0..old.byte_len().div_ceil(window_bytes))
        .map(|w| {
            let at = w * window_bytes;
            let first = old
                .pieces(at..at + 1)
                .next()
                .map_or(0, |p| p.as_ptr() as u64);
            (first % align) as u32
        })
        .collect()
}

/// Whether windows of `job`'s old table, rows of `row_bytes`, can be the mapped files' own
/// pages: rows of whole words, starting on a word in memory (the kernels skip leads in whole
/// words). Windows that also lie in one file each are imported, the others copied.
fn importable(job: &RemapJob, row_bytes: usize) -> bool {
    row_bytes > 0
        && row_bytes.is_multiple_of(4)
        && (job.old.pieces(0..job.old.byte_len())).all(|p| (p.as_ptr() as usize).is_multiple_of(4))
}

/// The average bytes of a run of rows with a source whose sources are consecutive old rows:
/// what one transfer command would move.
fn run_bytes(job: &RemapJob, row_bytes: usize) -> f64 {
    let Some(map) = &job.row_map else {
        return f64::INFINITY; // identity rows: one run per window
    };
    let (mut rows, mut runs) = (0usize, 0usize);
    let mut prev = MISSING;
    for &m in &map[job.rows.clone()] {
        if m != MISSING {
            rows += 1;
            if prev == MISSING || m != prev.wrapping_add(1) {
                runs += 1;
            }
        }
        prev = m;
    }
    (rows * row_bytes) as f64 / runs.max(1) as f64
}

/// Above this many windows per chunk on average, a row map counts as scattered.
const SPREAD_LIMIT: f64 = 4.0;

/// The average number of distinct windows of `window_rows` rows that a chunk of `chunk_rows`
/// rows reads, estimated on up to 8 chunks spread over the job.
fn spread(job: &RemapJob, chunk_rows: usize, window_rows: usize) -> f64 {
    let Some(map) = &job.row_map else {
        return 1.0; // identity rows: one or two windows per chunk
    };
    let chunks = job.rows.len().div_ceil(chunk_rows);
    let step = chunks.div_ceil(8).max(1);
    let mut touched = 0usize;
    let mut sampled = 0usize;
    for k in (0..chunks).step_by(step) {
        let start = job.rows.start + k * chunk_rows;
        let end = (start + chunk_rows).min(job.rows.end);
        let mut windows: Vec<u32> = map[start..end]
            .iter()
            .filter(|&&m| m != MISSING)
            .map(|&m| m / window_rows as u32)
            .collect();
        windows.sort_unstable();
        windows.dedup();
        touched += windows.len();
        sampled += 1;
    }
    touched as f64 / sampled.max(1) as f64
}

/// The initializer as the fill kernel takes it (without the chunk's base index).
fn init_uniform(job: &RemapJob) -> InitUniform {
    let spec = &job.init;
    let (a, b, constant) = match spec.fill {
        Fill::Constant(_) => (0, 0, spec.constant_bits(job.dtype).unwrap_or(0)),
        Fill::Uniform { minval, range } => (minval.to_bits(), range.to_bits(), 0),
        Fill::Normal { mean, stddev } | Fill::TruncatedNormal { mean, stddev } => {
            (mean.to_bits(), stddev.to_bits(), 0)
        }
    };
    InitUniform {
        const_lo: constant as u32,
        const_hi: (constant >> 32) as u32,
        a,
        b,
        key_lo: spec.key[0],
        key_hi: spec.key[1],
        stream_lo: spec.stream[0],
        stream_hi: spec.stream[1],
        base_lo: 0,
        base_hi: 0,
        _pad: [0; 2],
    }
}

/// One dispatch of a chunk: where its parameters are in the control blob, and its threads.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dispatch {
    pub params: u64,
    pub threads: u32,
}

/// A transfer of `len` bytes from byte `src` of a window (after its lead) to byte `dst` of
/// the chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RowCopy {
    pub src: u64,
    pub dst: u64,
    pub len: u64,
}

/// How a chunk reads one window: gather dispatches, or transfers ([`Mover::Copies`]).
#[derive(Debug)]
pub(crate) struct Reads {
    pub gathers: Vec<Dispatch>,
    pub copies: Vec<RowCopy>,
}

impl Reads {
    fn gathers(gathers: Vec<Dispatch>) -> Reads {
        Reads {
            gathers,
            copies: Vec::new(),
        }
    }

    fn copies(copies: Vec<RowCopy>) -> Reads {
        Reads {
            gathers: Vec::new(),
            copies,
        }
    }
}

/// The work of one output chunk.
#[derive(Debug)]
pub(crate) struct ChunkPlan {
    /// Rows of the variable.
    pub rows: Range<usize>,
    /// What the chunk reads, per window of the old table (ascending).
    pub windows: Vec<(usize, Reads)>,
    /// Fills.
    pub fills: Vec<Dispatch>,
    /// Parameter entries, then the list words.
    pub ctrl: Vec<u8>,
    /// Offset and size in `ctrl` of the list binding.
    pub list: (u64, u64),
}

/// Accumulates parameter entries and list words.
struct Blob<'a> {
    layout: &'a Layout,
    params: Vec<u8>,
    list: Vec<u32>,
}

impl Blob<'_> {
    fn entry<P: Pod>(&mut self, params: &P) -> u64 {
        let at = self.params.len();
        self.params.extend_from_slice(bytemuck::bytes_of(params));
        self.params
            .resize(at + self.layout.params_stride as usize, 0);
        at as u64
    }

    fn listed(&mut self, entries: &[u32], width: usize) -> RowSet {
        let offset = self.list.len() as u32;
        self.list.extend_from_slice(entries);
        RowSet {
            count: (entries.len() / width) as u32,
            mode: ROWS_LIST,
            list_offset: offset,
            words_per_row: self.layout.words_per_row,
            ..RowSet::default()
        }
    }

    /// The ranges of rows `out0 + i` (source `src0 + i`), `i < count`: one, or one per parity.
    fn ranges(&self, out0: usize, src0: usize, count: usize) -> Vec<RowSet> {
        let range = |out0: usize, src0: usize, count: usize, step: usize| RowSet {
            count: count as u32,
            mode: ROWS_RANGE,
            step: step as u32,
            out_row0: out0 as u32,
            src_row0: src0 as u32,
            words_per_row: self.layout.words_per_row,
            ..RowSet::default()
        };
        let sets = if self.layout.parity {
            vec![
                range(out0, src0, count.div_ceil(2), 2),
                range(out0 + 1, src0 + 1, count / 2, 2),
            ]
        } else {
            vec![range(out0, src0, count, 1)]
        };
        sets.into_iter().filter(|s| s.count > 0).collect()
    }

    /// A gather from window `w`.
    fn gather(&mut self, mut rows: RowSet, w: usize) -> Dispatch {
        let l = self.layout;
        let lead = l.lead(w);
        let threads = items(&mut rows, l.span);
        let params = match l.mover {
            Mover::Elements { identity } => self.entry(&remap_cols::Params {
                rows,
                cols: l.cols as u32,
                old_cols: l.old_cols as u32,
                esize: l.esize as u32,
                identity: identity as u32,
                old_offset: (lead / 4) as u32,
                _pad: [0; 3],
            }),
            Mover::Rows { unit } => {
                rows.words_per_row = (l.row_bytes / unit) as u32;
                let threads = items(&mut rows, l.span);
                return Dispatch {
                    params: self.entry(&gather_rows::Params::new(rows, unit, lead)),
                    threads,
                };
            }
            Mover::Copies => unreachable!("rows moved by copies have no gather"),
        };
        Dispatch { params, threads }
    }

    fn fill(&mut self, mut rows: RowSet, whole: bool, base: u64) -> Dispatch {
        let l = self.layout;
        let threads = items(&mut rows, l.span);
        let params = self.entry(&fill_missing::Params {
            rows,
            cols: l.cols as u32,
            whole: whole as u32,
            _pad: [0; 2],
            init: InitUniform {
                base_lo: base as u32,
                base_hi: (base >> 32) as u32,
                ..l.init
            },
        });
        Dispatch { params, threads }
    }
}

/// Sets the span of `rows` (at most `cap` words per item) and returns its number of items.
fn items(rows: &mut RowSet, cap: u32) -> u32 {
    rows.span = rows.words_per_row.min(cap).max(1);
    rows.count * rows.words_per_row.div_ceil(rows.span)
}

/// Plans chunk `rows` (variable rows) of `job`.
pub(crate) fn plan(job: &RemapJob, layout: &Layout, rows: Range<usize>) -> Result<ChunkPlan> {
    let mut blob = Blob {
        layout,
        params: Vec::new(),
        list: Vec::new(),
    };
    let parity = |r: usize| if layout.parity { r & 1 } else { 0 };
    let c0 = rows.start;
    let gathers = layout.col_sources;
    let mut windows: Vec<(usize, Reads)> = Vec::new();
    let mut fills = Vec::new();
    let base = (c0 as u64) * layout.cols as u64;

    match &job.row_map {
        None => {
            // Row r of the chunk is old row c0 + r: one range per window it crosses.
            if gathers {
                let mut g = c0;
                while g < rows.end {
                    let w = g / layout.window_rows;
                    let end = rows.end.min(layout.window(w).end);
                    let src = g - layout.window(w).start;
                    let reads = if layout.mover == Mover::Copies {
                        Reads::copies(vec![layout.copy(g - c0, src, end - g)])
                    } else {
                        let sets = blob.ranges(g - c0, src, end - g);
                        Reads::gathers(sets.into_iter().map(|s| blob.gather(s, w)).collect())
                    };
                    windows.push((w, reads));
                    g = end;
                }
            }
            if layout.col_gaps || !gathers {
                for s in blob.ranges(0, 0, rows.len()) {
                    fills.push(blob.fill(s, !gathers, base));
                }
            }
        }
        Some(map) if layout.mover == Mover::Copies => {
            // Runs of rows from consecutive rows of one window, per window.
            let mut copies: HashMap<usize, Vec<RowCopy>> = HashMap::new();
            let mut missing = Vec::new();
            let mut run: Option<(usize, RowCopy)> = None;
            for (r, &m) in map[rows.clone()].iter().enumerate() {
                if m == MISSING {
                    missing.push(r as u32);
                    continue;
                }
                let m = layout.check_source(job, m)?;
                let w = m / layout.window_rows;
                let copy = layout.copy(r, m - layout.window(w).start, 1);
                match &mut run {
                    Some((rw, c))
                        if *rw == w && c.src + c.len == copy.src && c.dst + c.len == copy.dst =>
                    {
                        c.len += copy.len;
                    }
                    _ => {
                        if let Some((rw, c)) = run.replace((w, copy)) {
                            copies.entry(rw).or_default().push(c);
                        }
                    }
                }
            }
            if let Some((rw, c)) = run {
                copies.entry(rw).or_default().push(c);
            }
            let mut copies: Vec<(usize, Vec<RowCopy>)> = copies.into_iter().collect();
            copies.sort_unstable_by_key(|c| c.0);
            windows = copies
                .into_iter()
                .map(|(w, copies)| (w, Reads::copies(copies)))
                .collect();
            if !missing.is_empty() {
                let rows = blob.listed(&missing, 1);
                fills.push(blob.fill(rows, true, base));
            }
        }
        Some(map) => {
            // Buckets of (output row, window row) pairs per window and parity.
            let mut index: HashMap<usize, usize> = HashMap::new();
            let mut buckets: Vec<(usize, [Vec<u32>; 2])> = Vec::new();
            let mut missing: [Vec<u32>; 2] = Default::default();
            let mut present: [Vec<u32>; 2] = Default::default();
            let mut last = (usize::MAX, 0usize);
            for (r, &m) in map[rows.clone()].iter().enumerate() {
                let p = parity(r);
                if m == MISSING || !gathers {
                    missing[p].push(r as u32);
                    continue;
                }
                let m = layout.check_source(job, m)?;
                let w = m / layout.window_rows;
                if last.0 != w {
                    let next = buckets.len();
                    let b = *index.entry(w).or_insert(next);
                    if b == next {
                        buckets.push((w, Default::default()));
                    }
                    last = (w, b);
                }
                let bucket = &mut buckets[last.1].1[p];
                bucket.push(r as u32);
                bucket.push((m - w * layout.window_rows) as u32);
                if layout.col_gaps {
                    present[p].push(r as u32);
                }
            }
            buckets.sort_unstable_by_key(|b| b.0);
            for (w, lists) in buckets {
                let mut gathers = Vec::new();
                for list in lists.iter().filter(|l| !l.is_empty()) {
                    let rows = blob.listed(list, 2);
                    gathers.push(blob.gather(rows, w));
                }
                windows.push((w, Reads::gathers(gathers)));
            }
            for (list, whole) in missing
                .iter()
                .map(|l| (l, true))
                .chain(present.iter().map(|l| (l, false)))
            {
                if !list.is_empty() {
                    let rows = blob.listed(list, 1);
                    fills.push(blob.fill(rows, whole, base));
                }
            }
        }
    }

    if blob.list.is_empty() {
        blob.list.push(0); // bindings cannot be empty
    }
    let list_offset = blob.params.len() as u64;
    let mut ctrl = blob.params;
    ctrl.extend_from_slice(bytemuck::cast_slice(&blob.list));
    let list_len = ctrl.len() as u64 - list_offset;
    Ok(ChunkPlan {
        rows,
        windows,
        fills,
        ctrl,
        list: (list_offset, list_len),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::initializer::Initializer;

    const LIMITS: Limits = Limits {
        binding: 1 << 20,
        chunk: 4096,
        chunk_max: 4096,
        window: 100,
        window_budget: 1000,
        params_stride: 256,
        span: 1,
        lead_align: 1,
        copy_runs: None,
    };

    /// A job over an old f16 table of `old_rows` x `cols`, written to a temporary file.
    fn job(dir: &std::path::Path, cols: usize, old_rows: usize, map: Option<Vec<u32>>) -> RemapJob {
        let old = crate::checkpoint::test_tensor(
            dir,
            &format!("old{cols}x{old_rows}.safetensors"),
            safetensors::Dtype::F16,
            vec![old_rows, cols],
            &vec![0; old_rows * cols * 2],
        );
        RemapJob::test_rows(old, map, Initializer::Zeros {})
    }

    #[test]
    fn layout_picks_the_mover_and_keeps_chunks_on_words() {
        let dir = tempfile::tempdir().unwrap();
        // 8 f16 = 16 bytes: vec4 units; 2 f16: u32 units; 3 f16 (6 bytes): elements, by parity
        let l = Layout::new(&job(dir.path(), 8, 10, None), &LIMITS).unwrap();
        assert_eq!((l.mover, l.parity), (Mover::Rows { unit: 16 }, false));
        let l = Layout::new(&job(dir.path(), 2, 10, None), &LIMITS).unwrap();
        assert_eq!((l.mover, l.parity), (Mover::Rows { unit: 4 }, false));
        let l = Layout::new(&job(dir.path(), 3, 40, None), &LIMITS).unwrap();
        assert_eq!(
            (l.mover, l.parity),
            (Mover::Elements { identity: true }, true)
        );
        assert_eq!(
            l.chunk_rows % 2,
            0,
            "odd-width chunks hold whole word pairs of rows"
        );
        assert_eq!(l.words_per_row, 2);
        // 100-byte windows of 6-byte rows
        assert_eq!(l.window_rows, 16);
        assert_eq!((l.windows(), l.window(0), l.window(2)), (3, 0..16, 32..40));
    }

    /// Windows imported from the mapped files (leads on) take no budget: a table larger than
    /// the budget fits, and a scattered map gets windows as wide as a binding (less the lead),
    /// with each window's lead its first byte's address modulo the alignment.
    #[test]
    fn imported_tables_fit_any_budget() {
        let dir = tempfile::tempdir().unwrap();
        // 8 f16 = 16-byte rows, 2000 rows (32000 bytes, over the 1000-byte budget), reversed
        let j = job(dir.path(), 8, 2000, Some((0..2000).rev().collect()));
        let copied = Layout::new(&j, &LIMITS).unwrap();
        assert!(copied.scattered && !copied.fits);
        assert_eq!((copied.window_rows, copied.lead(0)), (6, 0));
        let leads = Limits {
            lead_align: 64,
            ..LIMITS
        };
        let imported = Layout::new(&j, &leads).unwrap();
        assert!(imported.scattered && imported.fits);
        assert_eq!(imported.window_rows, ((1 << 20) - 64) / 16);
        let first = j.old.pieces(0..1).next().unwrap().as_ptr() as u64;
        assert_eq!(imported.lead(0), first % 64);
    }

    /// A scattered map over a table larger than the cache: chunks go in groups whose outputs
    /// and control blobs fill three quarters of the cache, at most MAX_GROUP chunks, which
    /// grow (up to `chunk_max`) where that many would not fill the share; windows shrink to
    /// an eighth of the cache. Not over a table that fits.
    #[test]
    fn groups_take_three_quarters_of_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        // 16-byte rows, 200,000 of them shuffled: 3.2 MB of table
        let map = (0..200_000u32).map(|r| (r * 7919) % 200_000).collect();
        let j = job(dir.path(), 8, 200_000, Some(map));
        let per_row = 16 + LIST_BYTES_PER_ROW;
        let share = |budget: u64| budget - budget / 4;
        let footprint = |l: &Layout| l.chunk_bytes() + l.ctrl_bytes();
        // fixed chunks of 16 KiB (585 rows), 64 windows of 3125 rows
        let fixed = Limits {
            window_budget: 1_000_000,
            chunk: 16 << 10,
            chunk_max: 16 << 10,
            window: 50_000,
            ..LIMITS
        };
        let l = Layout::new(&j, &fixed).unwrap();
        assert!(l.scattered && !l.fits);
        assert_eq!((l.chunk_rows, l.window_rows), ((16 << 10) / per_row, 3125));
        assert!(l.group > 1);
        assert!(l.group_bytes(usize::MAX) <= share(1_000_000));
        assert!(l.group_bytes(usize::MAX) + footprint(&l) > share(1_000_000));
        // a job of fewer chunks than a group holds only those
        assert_eq!(l.group_bytes(3), 3 * footprint(&l));

        // chunks of 4 KiB that may grow: MAX_GROUP of them grow to fill the share, and
        // windows of a binding shrink to an eighth of the cache (9 windows)
        let growing = Limits {
            window_budget: 3_000_000,
            chunk: 4096,
            chunk_max: 1 << 20,
            window: 1 << 20,
            ..LIMITS
        };
        let l = Layout::new(&j, &growing).unwrap();
        assert!(l.scattered && !l.fits);
        assert_eq!(l.window_rows, 3_000_000 / 8 / 16);
        assert!(l.chunk_rows > 4096 / per_row, "{} rows", l.chunk_rows);
        assert_eq!(l.group, MAX_GROUP as usize);
        assert!(l.group_bytes(usize::MAX) <= share(3_000_000));
        assert!(l.group_bytes(usize::MAX) + MAX_GROUP * per_row as u64 > share(3_000_000));

        // a table that fits: one chunk at a time, not grown
        let fits = Limits {
            window_budget: 4_000_000,
            ..growing
        };
        let l = Layout::new(&j, &fits).unwrap();
        assert!(l.fits);
        assert_eq!((l.chunk_rows, l.group), (4096 / per_row, 1));
    }

    /// A table whose windows cannot be imported (rows of 6 bytes, not whole words) is
    /// budgeted as copied even where leads are on: over the budget it does not fit, and a
    /// scattered map then streams it once per group of chunks rather than once per chunk.
    #[test]
    fn tables_that_cannot_be_imported_are_budgeted() {
        let dir = tempfile::tempdir().unwrap();
        // 3 f16 = 6-byte rows, 2000 rows (12000 bytes, over the 1000-byte budget), reversed
        let j = job(dir.path(), 3, 2000, Some((0..2000).rev().collect()));
        let leads = Limits {
            lead_align: 64,
            ..LIMITS
        };
        let l = Layout::new(&j, &leads).unwrap();
        assert!(l.scattered && !l.fits);
        assert_eq!(l.lead(0), 0);
    }

    /// A scattered map over many imported windows grows chunks (one dispatch per window
    /// each) up to `chunk_max`; not when the windows are copied, nor when `chunk_max` is the
    /// chunk.
    #[test]
    fn chunks_grow_over_many_imported_windows() {
        let dir = tempfile::tempdir().unwrap();
        // 16-byte rows; bindings of 4096 bytes: 8 windows of 252 rows
        let j = job(dir.path(), 8, 2000, Some((0..2000).rev().collect()));
        let limits = Limits {
            binding: 4096,
            chunk: 1024,
            chunk_max: 4096,
            lead_align: 64,
            ..LIMITS
        };
        let per_row = 16 + LIST_BYTES_PER_ROW;
        let grown = Layout::new(&j, &limits).unwrap();
        assert_eq!((grown.windows(), grown.chunk_rows), (8, 4096 / per_row));
        let fixed = Layout::new(
            &j,
            &Limits {
                chunk_max: 1024,
                ..limits
            },
        )
        .unwrap();
        assert_eq!(fixed.chunk_rows, 1024 / per_row);
        let copied = Layout::new(
            &j,
            &Limits {
                lead_align: 1,
                ..limits
            },
        )
        .unwrap();
        assert_eq!(copied.chunk_rows, 1024 / per_row);
    }

    /// Where runs of rows average `copy_runs` bytes, rows move by transfers: one per run of
    /// consecutive sources within a window and a chunk; rows without a source are filled.
    #[test]
    fn long_runs_of_rows_are_copied() {
        let dir = tempfile::tempdir().unwrap();
        let copies = Limits {
            copy_runs: Some(64),
            ..LIMITS
        };
        // 8 f16 = 16-byte rows, 100-byte windows of 6 rows; runs: 2..9 (crosses window 0|1),
        // 20..22, then a missing row, 30
        let map = vec![2, 3, 4, 5, 6, 7, 8, 20, 21, MISSING, 30];
        let j = job(dir.path(), 8, 40, Some(map.clone()));
        // 10 rows in 3 runs: 53 bytes a run, under 64
        assert_eq!(
            Layout::new(&j, &copies).unwrap().mover,
            Mover::Rows { unit: 16 }
        );
        let copies = Limits {
            copy_runs: Some(48),
            ..copies
        };
        let l = Layout::new(&j, &copies).unwrap();
        assert_eq!(l.mover, Mover::Copies);
        let p = plan(&j, &l, 1..11).unwrap();
        let got: Vec<(usize, Vec<RowCopy>)> = p
            .windows
            .iter()
            .map(|(w, r)| {
                assert!(r.gathers.is_empty());
                (*w, r.copies.clone())
            })
            .collect();
        let copy = |src: u64, dst: u64, rows: u64| RowCopy {
            src: src * 16,
            dst: dst * 16,
            len: rows * 16,
        };
        // chunk rows 0..10 are variable rows 1..11: sources 3..9 | 20, 21 | - | 30
        assert_eq!(
            got,
            [
                (0, vec![copy(3, 0, 3)]),
                (1, vec![copy(0, 3, 3)]),
                (3, vec![copy(2, 6, 2)]),
                (5, vec![copy(0, 9, 1)]),
            ]
        );
        assert_eq!(p.fills.len(), 1);
        // identity rows: one copy per window the chunk crosses
        let j = job(dir.path(), 8, 40, None);
        let l = Layout::new(&j, &copies).unwrap();
        let p = plan(&j, &l, 4..14).unwrap();
        let got: Vec<(usize, Vec<RowCopy>)> = p
            .windows
            .iter()
            .map(|(w, r)| (*w, r.copies.clone()))
            .collect();
        assert_eq!(
            got,
            [
                (0, vec![copy(4, 0, 2)]),
                (1, vec![copy(0, 2, 6)]),
                (2, vec![copy(0, 8, 2)])
            ]
        );
        assert!(p.fills.is_empty());
        // never without the limit (GPUs)
        assert_eq!(
            Layout::new(&j, &LIMITS).unwrap().mover,
            Mover::Rows { unit: 16 }
        );
    }

    #[test]
    fn rows_are_grouped_by_window_and_parity() {
        let dir = tempfile::tempdir().unwrap();
        // 3 f16 per row (odd): 16 rows per window; rows 0..6 map to windows 0, 1 and missing
        let map = vec![17, 2, MISSING, 30, 5, MISSING];
        let j = job(dir.path(), 3, 40, Some(map));
        let l = Layout::new(&j, &LIMITS).unwrap();
        let p = plan(&j, &l, 0..6).unwrap();
        let windows: Vec<usize> = p.windows.iter().map(|w| w.0).collect();
        assert_eq!(windows, [0, 1]);
        // window 0: rows 1 (odd) and 4 (even) -> one dispatch per parity
        assert_eq!(p.windows[0].1.gathers.len(), 2);
        // window 1: rows 0 and 3 (17 -> 1, 30 -> 14), also one even and one odd
        assert_eq!(p.windows[1].1.gathers.len(), 2);
        // missing rows 2 and 5: even and odd
        assert_eq!(p.fills.len(), 2);
        let list: &[u8] = &p.ctrl[p.list.0 as usize..];
        let words: Vec<u32> = list
            .chunks(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        // window 0 pairs (even first), then window 1 pairs, then the missing rows
        assert_eq!(words, [4, 5, 1, 2, 0, 1, 3, 14, 2, 5]);
    }

    #[test]
    fn last_use_marks_windows_the_job_no_longer_needs() {
        let dir = tempfile::tempdir().unwrap();
        let j = job(dir.path(), 8, 60, None);
        let l = Layout {
            chunk_rows: 10,
            ..Layout::new(&j, &LIMITS).unwrap()
        };
        // 16-byte rows, 100-byte windows: 6 rows each; identity rows, chunks of 10 rows
        assert_eq!(l.window_rows, 6);
        let last = l.last_use(&j, 0..60);
        assert_eq!(last[0], Some(0));
        assert_eq!(last[1], Some(1)); // rows 6..12 end in chunk 1
        assert_eq!(last[9], Some(5));
        let last = l.last_use(&j, 20..30);
        assert_eq!((last[0], last[3], last[4]), (None, Some(0), Some(0)));
    }

    #[test]
    fn bad_maps_are_refused_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let j = job(dir.path(), 2, 5, Some(vec![0, 7]));
        assert!(Layout::new(&j, &LIMITS).is_err());
        let l = Layout::new(&job(dir.path(), 2, 5, Some(vec![0, 4])), &LIMITS).unwrap();
        assert!(plan(&j, &l, 0..2).is_err());
        let mut wide = job(dir.path(), 2, 5, None);
        wide.cols = 3; // no column map, but the old table has 2 columns
        assert!(Layout::new(&wide, &LIMITS).is_err());
        let narrow = Limits {
            binding: 2,
            ..LIMITS
        };
        assert!(Layout::new(&job(dir.path(), 2, 5, None), &narrow).is_err());
    }

    /// A chunk's control blob never outgrows `Layout::ctrl_bytes` (the size a group's share of
    /// the budget counts and its control buffers are made with), and a group's chunks fit
    /// their share: random jobs over every mover (rows, elements through a column map with and
    /// without gaps, copies), identity and listed rows, odd-width f16/bf16 rows, sub-ranges of
    /// rows, fixed and grown chunks, tiny windows and budgets.
    #[test]
    fn control_blobs_stay_within_their_bound() {
        let dir = tempfile::tempdir().unwrap();
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut below = move |n: usize| {
            // SplitMix64
            seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) % n.max(1) as u64) as usize
        };
        let (mut grouped, mut chunks) = (0, 0);
        for case in 0..2000 {
            let (dtype, esize) = match below(3) {
                0 => (safetensors::Dtype::F32, 4),
                1 => (safetensors::Dtype::F16, 2),
                _ => (safetensors::Dtype::BF16, 2),
            };
            let (old_cols, old_rows) = (1 + below(9), 1 + below(4000));
            let old = crate::checkpoint::test_tensor(
                dir.path(),
                &format!("t{case}.safetensors"),
                dtype,
                vec![old_rows, old_cols],
                &vec![0; old_rows * old_cols * esize],
            );
            let rows = 1 + below(3000);
            let map = match below(4) {
                0 => None,
                1 => Some(
                    (0..rows)
                        .map(|r| ((r + below(2)) % old_rows) as u32)
                        .collect(),
                ),
                k => Some(
                    (0..rows)
                        .map(|_| match below(10) < 3 * (k - 1) {
                            true => MISSING,
                            false => below(old_rows) as u32,
                        })
                        .collect(),
                ),
            };
            let mut j = RemapJob::test_rows(old, map, Initializer::Zeros {});
            j.rows = below(rows / 2 + 1)..rows;
            if below(3) == 0 {
                j.cols = 1 + below(9);
                let cols = (0..j.cols).map(|_| match below(4) {
                    0 => MISSING,
                    _ => below(old_cols) as u32,
                });
                j.col_map = Some(cols.collect::<Vec<u32>>().into());
            }
            let binding = 1024u64 << below(8);
            let chunk = ((16 + below(8192) as u64) & !3).min(binding);
            let limits = Limits {
                binding,
                chunk,
                chunk_max: [chunk, binding & !3][below(2)],
                window: 4 + below(4096) as u64,
                window_budget: below(2 * old_rows * old_cols * esize) as u64,
                params_stride: 256,
                span: 1 + below(4) as u32,
                lead_align: [1, 64][below(2)],
                copy_runs: [None, Some(8 + below(128) as u64)][below(2)],
            };
            let Ok(l) = Layout::new(&j, &limits) else {
                continue;
            };
            if l.group > 1 {
                grouped += 1;
                let share = limits.window_budget - limits.window_budget / 4;
                assert!(l.group_bytes(usize::MAX) <= share, "case {case}: {l:?}");
            }
            for rows in l.chunks(j.rows.clone()) {
                let blob = plan(&j, &l, rows.clone()).unwrap().ctrl.len() as u64;
                assert!(blob <= l.ctrl_bytes(), "case {case}, chunk {rows:?}: {l:?}");
                chunks += 1;
            }
        }
        assert!(
            grouped > 20 && chunks > 10_000,
            "{grouped} grouped, {chunks} chunks"
        );
    }
}
