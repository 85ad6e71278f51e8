//! The GPU engine: remap jobs as WGSL compute shaders through wgpu, streaming tables of any
//! size, bit-identical to the CPU engine ([`super::cpu`]) for copies, constants and uniform
//! fills, and within 1e-4 for normal and truncated normal fills (see `shaders/init.wgsl`).
//!
//! # Design
//!
//! **Data as words.** Every table is a flat little-endian element stream in `array<u32>`
//! buffers: no `shader-f16` feature, copies are bit-exact (NaN payloads, subnormals). A kernel
//! thread owns one output word. F16/bf16 rows of odd width are 2 mod 4 bytes: such rows are
//! never padded; instead output chunks hold an even number of rows (so they start on a word),
//! each dispatch takes rows of one parity, and a thread that owns only half of a word merges it
//! (`shaders/rows.wgsl`). The last word of an odd-length output is padded with zeros, and the
//! padding is stripped on readback.
//!
//! **Kernels** (`shaders/`, one Rust module each): `gather_rows` (axis 0), `remap_cols`
//! (axis 1) and `fill_missing` (the initializers, on the same Philox counters as the CPU).
//!
//! **Windows and budget.** One storage binding holds at most `max_storage_buffer_binding_size`
//! bytes (128 MiB on lavapipe, under 2 GiB on Vulkan GPUs), and device memory is limited, so:
//! - the output is produced in *chunks* of whole rows, each at most one binding
//!   ([`GpuOptions::chunk_bytes`], default 16 MiB);
//! - the old table is cut into *windows* of whole rows, each at most one binding
//!   ([`GpuOptions::window_bytes`]), kept in an LRU cache that owns whatever the VRAM budget
//!   leaves after the transfer ring ([`GpuOptions::vram_budget`]; see `windows.rs`);
//! - for each chunk the host sorts the rows by the window that holds their source and records
//!   one gather dispatch per window (plus fills), so the gather runs on the device whatever
//!   the window layout (see `chunk.rs`). A chunk whose windows do not all fit the cache runs in
//!   batches of windows that do.
//!
//! Budget arithmetic: `output_slots` chunk buffers and as many readback buffers, plus
//! `staging_slots` upload buffers of one chunk each, form the *ring*; the ring is shrunk to at
//! most half the budget; the window cache gets the rest (at least one window, whatever the
//! budget). Every dispatch uses at most the device's workgroup limit per dimension and loops
//! with a grid stride over the rest, so dispatches of any size work.
//!
//! **Streaming** (`stream.rs`): uploads go through a ring of reusable mapped `MAP_WRITE` buffers;
//! chunk `k` uses output slot `k % output_slots`, whose `MAP_READ` readback buffer is mapped
//! with `map_buffer_on_submit` and drained into the sink just before the slot is reused, so
//! the device computes chunk `k` while the host writes chunk `k - 1` and uploads the windows of
//! chunk `k + 1`. Every wait is bounded by [`GpuOptions::timeout`].
//!
//! **Embedding.** A caller with its own `wgpu::Device` hands it in ([`GpuEngine::from_device`])
//! and receives warm-started tensors as device buffers ([`GpuEngine::remap_to_buffer`],
//! [`GpuEngine::remap_into`], [`GpuEngine::to_device`]): chunks are copied on the device into
//! the destination, and the output never goes through the host.
//!
//! **Failures** (no adapter, device lost, out of memory, validation errors, timeouts) are
//! `Error::Gpu`; the writer then leaves nothing behind. Operations run inside error scopes, so
//! a caller's device keeps its own error handlers.
//!
//! GPU speed is unmeasured: development had only Mesa's software Vulkan driver (lavapipe).

mod chunk;
mod device;
mod fill_missing;
mod gather_rows;
mod kernels;
mod remap_cols;
mod stream;
mod windows;

use std::io::IoSlice;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

pub use device::{hardware_adapter_available, ADAPTER_NAME_VAR};

use self::chunk::{ChunkPlan, Layout, Limits, Mover};
use self::device::{Gpu, Scopes};
use self::fill_missing::FillMissing;
use self::gather_rows::GatherRows;
use self::kernels::Control;
use self::remap_cols::RemapCols;
use self::stream::{copy_pieces, Mappable, Stream};
use self::windows::{TensorKey, Windows};
use super::{Engine, Sink};
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::plan::{Job, Plan, RemapJob};

const MIB: u64 = 1 << 20;

/// Words of a row a kernel thread handles per item on a software adapter (1 on a GPU).
const CPU_ADAPTER_SPAN: u32 = 64;

/// Default VRAM budget on a hardware adapter.
pub const DEFAULT_VRAM_BUDGET: u64 = 4 << 30;
/// Default budget on a software (CPU) adapter, whose "device memory" is host memory.
pub const DEFAULT_CPU_ADAPTER_BUDGET: u64 = 512 * MIB;
/// Default output chunk (and upload buffer) on a hardware adapter.
pub const DEFAULT_CHUNK: u64 = 16 * MIB;
/// Default chunk on a software adapter: fewer fresh pages to fault in (slow on a CPU), and
/// the two cores it shares with the host gain nothing from larger transfers.
pub const DEFAULT_CPU_ADAPTER_CHUNK: u64 = 4 * MIB;
/// Default window on a software adapter: small windows stream through a few reused buffers.
/// On a GPU a window is one storage binding, so that a chunk with rows from all over the old
/// table needs few dispatches.
pub const DEFAULT_CPU_ADAPTER_WINDOW: u64 = 8 * MIB;

/// Settings of the GPU engine. Results never depend on them; memory use and speed do.
#[derive(Clone, Debug)]
pub struct GpuOptions {
    vram_budget: Option<u64>,
    chunk_bytes: Option<u64>,
    window_bytes: Option<u64>,
    staging_slots: usize,
    output_slots: usize,
    max_binding_bytes: Option<u64>,
    max_workgroups: Option<u32>,
    timeout: Duration,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions {
            vram_budget: None,
            chunk_bytes: None,
            window_bytes: None,
            staging_slots: 3,
            output_slots: 3,
            max_binding_bytes: None,
            max_workgroups: None,
            timeout: Duration::from_secs(120),
        }
    }
}

impl GpuOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Device memory the engine may hold, in bytes: transfer buffers and the cache of
    /// old-table windows (default [`DEFAULT_VRAM_BUDGET`], or [`DEFAULT_CPU_ADAPTER_BUDGET`]
    /// on a software adapter). At least one window and one chunk are held whatever the budget.
    pub fn vram_budget(mut self, bytes: u64) -> Self {
        self.vram_budget = Some(bytes);
        self
    }

    /// Target size of an output chunk and of an upload buffer (default [`DEFAULT_CHUNK`], or
    /// [`DEFAULT_CPU_ADAPTER_CHUNK`] on a software adapter; at most one storage binding, at
    /// least one row).
    pub fn chunk_bytes(mut self, bytes: u64) -> Self {
        self.chunk_bytes = Some(bytes.max(4));
        self
    }

    /// Target size of an old-table window (default: one storage binding, or
    /// [`DEFAULT_CPU_ADAPTER_WINDOW`] on a software adapter; at least one row).
    pub fn window_bytes(mut self, bytes: u64) -> Self {
        self.window_bytes = Some(bytes.max(4));
        self
    }

    /// Number of upload buffers in the ring (default 3).
    pub fn staging_slots(mut self, slots: usize) -> Self {
        self.staging_slots = slots.max(1);
        self
    }

    /// Number of output chunks in flight (default 3).
    pub fn output_slots(mut self, slots: usize) -> Self {
        self.output_slots = slots.max(1);
        self
    }

    /// Caps the storage binding size below the device's limit: tests use it to cross binding
    /// boundaries with small tables.
    pub fn max_binding_bytes(mut self, bytes: u64) -> Self {
        self.max_binding_bytes = Some(bytes.max(16));
        self
    }

    /// Caps the workgroups of one dispatch below the device's limit (65,535 per dimension
    /// usually): tests use it to exercise the grid-stride loops.
    pub fn max_workgroups(mut self, groups: u32) -> Self {
        self.max_workgroups = Some(groups.max(1));
        self
    }

    /// Longest wait for the device before giving up with an error (default 120 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Parses a byte count: `1073741824`, `512MiB`, `2GiB`, `1.5GB`, `64k` (k/M/G/T are powers of
/// 1024 with or without `iB`; `KB`/`MB`/`GB`/`TB` powers of 1000).
pub fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024f64.powi(2),
        "g" | "gib" => 1024f64.powi(3),
        "t" | "tib" => 1024f64.powi(4),
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        _ => return None,
    };
    let bytes = number * scale;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// A warm-started tensor in device memory ([`GpuEngine::to_device`]).
#[derive(Debug)]
pub struct DeviceTensor {
    /// Tensor name (a variable, or a partition `<var>/part_<k>`).
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// The bytes, little-endian and row-major, from offset 0. The buffer's size is rounded up
    /// to a multiple of 4 (at least 4); the padding is zeros.
    pub buffer: wgpu::Buffer,
    /// Bytes of the tensor (without padding).
    pub byte_len: u64,
}

/// The WGSL source of each kernel as compiled (library files concatenated), by name.
pub fn kernel_sources() -> [(&'static str, &'static str); 4] {
    [
        ("gather_rows (u32)", gather_rows::SOURCE_U32),
        ("gather_rows (vec4)", gather_rows::SOURCE_VEC4),
        ("remap_cols", remap_cols::SOURCE),
        ("fill_missing", fill_missing::SOURCE),
    ]
}

/// One output slot: the chunk buffer the kernels write, its readback buffer and the control
/// blob (dispatch parameters and row lists).
#[derive(Default)]
struct Slot {
    out: Option<wgpu::Buffer>,
    ctrl: Option<wgpu::Buffer>,
    readback: Option<Mappable>,
    /// Bytes of the chunk whose readback is requested and not yet drained.
    pending: Option<usize>,
}

/// Where chunks go.
enum Target<'a, 's> {
    /// To the host, in order.
    Sink(&'a mut Sink<'s>),
    /// Into a device buffer at a byte offset.
    Buffer(&'a wgpu::Buffer, u64),
}

/// The GPU engine.
pub struct GpuEngine {
    gpu: Gpu,
    adapter: String,
    limits: Limits,
    max_groups: u32,
    gather_rows: GatherRows,
    remap_cols: RemapCols,
    fill_missing: FillMissing,
    stream: Stream,
    slots: Vec<Slot>,
    windows: Windows,
    col_map: Option<(Arc<[u32]>, wgpu::Buffer)>,
    placeholder: wgpu::Buffer,
    /// Output chunks are mapped and read where the kernels wrote them (a software adapter
    /// with `MAPPABLE_PRIMARY_BUFFERS`: device memory is host memory), not copied to a
    /// readback buffer first.
    mapped_out: bool,
}

impl std::fmt::Debug for GpuEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuEngine")
            .field("adapter", &self.adapter)
            .field("binding", &self.limits.binding)
            .field("chunk", &self.limits.chunk)
            .field("window", &self.limits.window)
            .field("window_budget", &self.windows.budget())
            .finish()
    }
}

impl GpuEngine {
    /// Opens the adapter chosen from the environment (`WGPU_BACKEND`, `WGPU_ADAPTER_NAME`,
    /// `WGPU_POWER_PREF`; hardware before software) with its own limits.
    pub fn new(options: GpuOptions) -> Result<Self> {
        let adapter = device::select_adapter()?;
        let (device, queue) = device::request_device(&adapter)?;
        let gpu = Gpu::new(device, queue, options.timeout);
        gpu.install_handlers();
        Self::build(gpu, options)
    }

    /// Uses a device the caller already has (a wgpu-based trainer), with default options.
    /// The caller's error handlers stay in place: the engine captures its own errors with
    /// error scopes.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Result<Self> {
        Self::from_device_with_options(device, queue, GpuOptions::default())
    }

    /// [`GpuEngine::from_device`] with options.
    pub fn from_device_with_options(
        device: wgpu::Device,
        queue: wgpu::Queue,
        options: GpuOptions,
    ) -> Result<Self> {
        Self::build(Gpu::new(device, queue, options.timeout), options)
    }

    fn build(gpu: Gpu, options: GpuOptions) -> Result<Self> {
        let info = gpu.device.adapter_info();
        let device_limits = gpu.device.limits();
        let scopes = Scopes::push(&gpu.device);
        let gather_rows = GatherRows::new(&gpu.device);
        let remap_cols = RemapCols::new(&gpu.device);
        let fill_missing = FillMissing::new(&gpu.device);
        if let Some(e) = scopes.pop() {
            return Err(Error::Gpu(format!("cannot compile the kernels: {e}")));
        }
        let placeholder = gpu.buffer("placeholder", 16, wgpu::BufferUsages::STORAGE, false)?;

        let binding = device_limits
            .max_storage_buffer_binding_size
            .min(device_limits.max_buffer_size)
            .min(options.max_binding_bytes.unwrap_or(u64::MAX))
            & !3;
        let budget = options
            .vram_budget
            .unwrap_or(if info.device_type == wgpu::DeviceType::Cpu {
                DEFAULT_CPU_ADAPTER_BUDGET
            } else {
                DEFAULT_VRAM_BUDGET
            });
        // The ring: a chunk and its readback per output slot, plus the upload buffers; at
        // most half the budget.
        let ring_buffers = (2 * options.output_slots + options.staging_slots) as u64;
        let is_cpu = info.device_type == wgpu::DeviceType::Cpu;
        let mut chunk = options
            .chunk_bytes
            .unwrap_or(if is_cpu {
                DEFAULT_CPU_ADAPTER_CHUNK
            } else {
                DEFAULT_CHUNK
            })
            .min(binding);
        if chunk * ring_buffers > budget / 2 {
            chunk = chunk.min((budget / 2 / ring_buffers).max(64 << 10));
        }
        let chunk = (chunk & !3).max(16);
        let window_budget = budget.saturating_sub(chunk * ring_buffers);
        let window = options
            .window_bytes
            .unwrap_or(if is_cpu {
                DEFAULT_CPU_ADAPTER_WINDOW
            } else {
                binding
            })
            .min(binding)
            .min(window_budget.max(64 << 10))
            .max(4);
        let limits = Limits {
            binding,
            chunk,
            window,
            params_stride: u64::from(device_limits.min_uniform_buffer_offset_alignment).max(256),
            span: if is_cpu { CPU_ADAPTER_SPAN } else { 1 },
        };
        let max_groups = device_limits
            .max_compute_workgroups_per_dimension
            .min(options.max_workgroups.unwrap_or(u32::MAX))
            .max(1);
        Ok(GpuEngine {
            adapter: info.name,
            limits,
            max_groups,
            gather_rows,
            remap_cols,
            fill_missing,
            stream: Stream::new(options.staging_slots, chunk),
            slots: (0..options.output_slots).map(|_| Slot::default()).collect(),
            windows: Windows::new(window_budget),
            col_map: None,
            placeholder,
            mapped_out: is_cpu
                && gpu
                    .device
                    .features()
                    .contains(wgpu::Features::MAPPABLE_PRIMARY_BUFFERS),
            gpu,
        })
    }

    /// The device the engine runs on.
    pub fn device(&self) -> &wgpu::Device {
        &self.gpu.device
    }

    /// The engine's queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.gpu.queue
    }

    /// The adapter's name.
    pub fn adapter_name(&self) -> &str {
        &self.adapter
    }

    /// Releases the cached windows of old tables (they are otherwise kept for the next job,
    /// within the budget).
    pub fn clear_cache(&mut self) {
        self.windows.clear();
        self.col_map = None;
    }

    /// Computes `job` into a new device buffer (`STORAGE | COPY_SRC | COPY_DST`, size rounded
    /// up to a multiple of 4 with zeros). The work is submitted to the engine's queue; later
    /// submissions to that queue see the result.
    pub fn remap_to_buffer(&mut self, job: &RemapJob) -> Result<wgpu::Buffer> {
        let bytes = (job.rows.len() as u64) * job.row_bytes() as u64;
        let buffer = self.gpu.buffer(
            &format!("warm-started {}", job.variable),
            bytes.next_multiple_of(4).max(4),
            wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            false,
        )?;
        self.remap_into(job, &buffer, 0)?;
        Ok(buffer)
    }

    /// Computes `job` into `buffer` (of the engine's device, with `COPY_DST` usage) at byte
    /// `offset` (a multiple of 4). Writes the output's bytes rounded up to a multiple of 4:
    /// an f16/bf16 output of odd element count is followed by two zero bytes.
    pub fn remap_into(&mut self, job: &RemapJob, buffer: &wgpu::Buffer, offset: u64) -> Result<()> {
        let bytes = (job.rows.len() as u64) * job.row_bytes() as u64;
        let padded = bytes.next_multiple_of(4);
        if !offset.is_multiple_of(4) {
            return Err(Error::Gpu(format!(
                "destination offset {offset} is not a multiple of 4"
            )));
        }
        if !buffer.usage().contains(wgpu::BufferUsages::COPY_DST) {
            return Err(Error::Gpu("destination buffer lacks COPY_DST usage".into()));
        }
        if offset
            .checked_add(padded)
            .is_none_or(|end| end > buffer.size())
        {
            return Err(Error::Gpu(format!(
                "destination buffer of {} bytes cannot hold {padded} bytes at offset {offset}",
                buffer.size()
            )));
        }
        self.guarded(|e| e.run(job, &mut Target::Buffer(buffer, offset)))
    }

    /// Every warm-started tensor of `plan` (copied or remapped; kept tensors are not
    /// returned) as a device buffer, in the plan's order.
    pub fn to_device(&mut self, plan: &Plan) -> Result<Vec<DeviceTensor>> {
        let mut out = Vec::new();
        for t in plan.tensors().iter().filter(|t| t.is_warm_started()) {
            let (buffer, byte_len) = match &t.job {
                Job::Keep(_) => continue,
                Job::Copy { source, bytes } => {
                    let len = bytes.len() as u64;
                    let buffer = self.gpu.buffer(
                        &format!("warm-started {}", t.name),
                        len.next_multiple_of(4).max(4),
                        wgpu::BufferUsages::STORAGE
                            | wgpu::BufferUsages::COPY_SRC
                            | wgpu::BufferUsages::COPY_DST,
                        false,
                    )?;
                    let range = bytes.clone();
                    self.guarded(|e| {
                        e.stream.upload(&e.gpu, &buffer, 0, len, |start, view| {
                            let from = range.start + start;
                            copy_pieces(source.pieces(from..from + view.len()), view)
                        })?;
                        e.stream.submit(&e.gpu);
                        Ok(())
                    })?;
                    (buffer, len)
                }
                Job::Remap(job) => (
                    self.remap_to_buffer(job)?,
                    (job.rows.len() * job.row_bytes()) as u64,
                ),
            };
            out.push(DeviceTensor {
                name: t.name.clone(),
                dtype: t.dtype,
                shape: t.shape.clone(),
                buffer,
                byte_len,
            });
        }
        Ok(out)
    }

    /// Runs `f` inside error scopes; device errors become `Error::Gpu`, and after any error
    /// the transfer buffers are brought back to a reusable state.
    fn guarded<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.gpu.check()?;
        let scopes = Scopes::push(&self.gpu.device);
        let result = f(self);
        if result.is_err() {
            self.recover();
        }
        let scoped = scopes.pop();
        let fault = self.gpu.check().err();
        let result = match (result, scoped, fault) {
            (Err(e), _, _) if !matches!(e, Error::Gpu(_)) => Err(e),
            (_, Some(message), _) => Err(Error::Gpu(message)),
            (_, None, Some(e)) => Err(e),
            (r, None, None) => r,
        };
        if result.is_err() {
            self.recover();
        }
        result
    }

    /// After a failure: unmaps or drops readback buffers left mapped or pending, and upload
    /// buffers that did not come back.
    fn recover(&mut self) {
        for slot in &mut self.slots {
            if slot.pending.take().is_some() {
                match &slot.readback {
                    Some(rb) if rb.wait_mapped(&self.gpu).is_ok() => rb.buffer.unmap(),
                    _ => slot.readback = None,
                }
            }
        }
        self.stream.recover(&self.gpu);
    }

    /// The col_map buffer of `job` (uploaded once per index vector), or a placeholder.
    fn col_map_buffer(&mut self, job: &RemapJob) -> Result<wgpu::Buffer> {
        let Some(map) = &job.col_map else {
            return Ok(self.placeholder.clone());
        };
        if let Some((cached, buffer)) = &self.col_map {
            if Arc::ptr_eq(cached, map) {
                return Ok(buffer.clone());
            }
        }
        let bytes: &[u8] = bytemuck::cast_slice(map);
        let buffer = self.gpu.buffer(
            "col_map",
            (bytes.len() as u64).max(4),
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            false,
        )?;
        self.stream.upload_bytes(&self.gpu, &buffer, 0, bytes)?;
        self.col_map = Some((map.clone(), buffer.clone()));
        Ok(buffer)
    }

    /// Streams `job` to `target`, chunk by chunk.
    fn run(&mut self, job: &RemapJob, target: &mut Target<'_, '_>) -> Result<()> {
        if job.rows.is_empty() || job.row_bytes() == 0 {
            return Ok(());
        }
        let layout = Layout::new(job, &self.limits)?;
        let tensor = self.windows.key(&job.old);
        let col_map = self.col_map_buffer(job)?;
        let chunks: Vec<Range<usize>> = layout.chunks(job.rows.clone()).collect();
        let last_use = layout.last_use(job, job.rows.clone());
        let n = self.slots.len();
        for (k, rows) in chunks.iter().enumerate() {
            let s = k % n;
            if let Target::Sink(sink) = target {
                self.drain(s, sink)?;
            }
            let plan = chunk::plan(job, &layout, rows.clone())?;
            let offset = ((rows.start - job.rows.start) * layout.row_bytes) as u64;
            let dead = |w: usize| last_use[w].is_none_or(|last| (last as usize) < k);
            let chunk = Chunk {
                job,
                layout: &layout,
                tensor: &tensor,
                col_map: &col_map,
                plan: &plan,
                offset,
                dead: &dead,
            };
            self.run_chunk(&chunk, s, target)?;
        }
        if let Target::Sink(sink) = target {
            for k in chunks.len().saturating_sub(n)..chunks.len() {
                self.drain(k % n, sink)?;
            }
        }
        Ok(())
    }

    /// Hands the pending chunk of slot `s` to the sink.
    fn drain(&mut self, s: usize, sink: &mut Sink<'_>) -> Result<()> {
        let slot = &mut self.slots[s];
        let Some(bytes) = slot.pending.take() else {
            return Ok(());
        };
        let Some(rb) = &slot.readback else {
            return Err(Error::Gpu("readback buffer missing".into()));
        };
        if let Err(e) = rb.wait_mapped(&self.gpu) {
            slot.readback = None;
            return Err(e);
        }
        let result = match rb
            .buffer
            .get_mapped_range(..(bytes as u64).next_multiple_of(4))
        {
            Ok(view) => sink(&[IoSlice::new(&view[..bytes])]),
            Err(e) => Err(Error::Gpu(format!("reading back: {e}"))),
        };
        rb.buffer.unmap();
        result
    }

    /// Records one chunk: its control blob, the windows it reads (batch by batch when they do
    /// not all fit the cache), its dispatches and the copy to the target, then submits.
    fn run_chunk(&mut self, c: &Chunk<'_>, s: usize, target: &mut Target<'_, '_>) -> Result<()> {
        use wgpu::BufferUsages as U;
        let GpuEngine {
            gpu,
            max_groups,
            gather_rows,
            remap_cols,
            fill_missing,
            stream,
            slots,
            windows,
            mapped_out,
            ..
        } = self;
        let (layout, plan) = (c.layout, c.plan);
        let slot = &mut slots[s];
        let bytes = plan.rows.len() * layout.row_bytes;
        let padded = (bytes as u64).next_multiple_of(4);
        let out = match &slot.out {
            Some(b) if b.size() >= padded => b.clone(),
            _ => {
                let size = layout.chunk_bytes().max(padded);
                let mut usage = U::STORAGE | U::COPY_SRC | U::COPY_DST;
                if *mapped_out {
                    usage |= U::MAP_READ;
                }
                let b = gpu.buffer("output chunk", size, usage, false)?;
                slot.out = Some(b.clone());
                b
            }
        };
        let ctrl = match &slot.ctrl {
            Some(b) if b.size() >= plan.ctrl.len() as u64 => b.clone(),
            _ => {
                let size = (plan.ctrl.len() as u64).next_power_of_two().max(1024);
                let b = gpu.buffer(
                    "dispatch control",
                    size,
                    U::UNIFORM | U::STORAGE | U::COPY_DST,
                    false,
                )?;
                slot.ctrl = Some(b.clone());
                b
            }
        };
        stream.upload_bytes(gpu, &ctrl, 0, &plan.ctrl)?;
        if padded != bytes as u64 {
            // zeros after an odd number of 16-bit elements
            stream.encoder(gpu).clear_buffer(&out, padded - 4, Some(4));
        }

        let control = |d: &chunk::Dispatch| Control {
            buffer: &ctrl,
            params: d.params,
            list: plan.list,
        };

        // Windows already resident first, so that loading the others never evicts them.
        let mut order: Vec<usize> = (0..plan.windows.len()).collect();
        order.sort_by_key(|&i| {
            (
                !windows.is_resident(c.tensor, plan.windows[i].0),
                plan.windows[i].0,
            )
        });
        let window_bytes = |w: usize| (layout.window(w).len() * layout.old_row_bytes) as u64;
        let mut next = 0;
        loop {
            // The next batch: windows that fit the cache together (at least one).
            let mut batch = Vec::new();
            let mut held = 0;
            while next < order.len() {
                let w = plan.windows[order[next]].0;
                if !batch.is_empty() && held + window_bytes(w) > windows.budget() {
                    break;
                }
                held += window_bytes(w);
                batch.push(order[next]);
                next += 1;
            }
            let keep: Vec<usize> = batch.iter().map(|&i| plan.windows[i].0).collect();
            for &w in &keep {
                let rows = layout.window(w);
                let from = rows.start * layout.old_row_bytes;
                let len = (rows.len() * layout.old_row_bytes) as u64;
                // Uploads are recorded after the dispatches of earlier batches, so a buffer
                // evicted here is overwritten only once those have read it.
                windows.ensure(gpu, c.tensor, w, len, &keep, c.dead, |buffer| {
                    stream.upload(gpu, buffer, 0, len, |start, view| {
                        let at = from + start;
                        copy_pieces(c.job.old.pieces(at..at + view.len()), view)
                    })
                })?;
            }
            let last = next >= order.len();

            let mut groups = Vec::new();
            for &i in &batch {
                let (w, dispatches) = &plan.windows[i];
                let Some(window) = windows.buffer(c.tensor, *w) else {
                    return Err(Error::Gpu("window evicted before use".into()));
                };
                for d in dispatches {
                    let (kernel, bg) = match layout.mover {
                        Mover::Elements { .. } => (
                            remap_cols.kernel(),
                            remap_cols.bind(&gpu.device, control(d), window, c.col_map, &out),
                        ),
                        Mover::Rows { unit } => (
                            gather_rows.kernel(unit),
                            gather_rows.bind(&gpu.device, unit, control(d), window, &out),
                        ),
                    };
                    groups.push((kernel, bg, d.threads));
                }
            }
            if last {
                for d in &plan.fills {
                    let bg = fill_missing.bind(&gpu.device, control(d), c.col_map, &out);
                    groups.push((fill_missing.kernel(), bg, d.threads));
                }
            }
            {
                let mut pass =
                    stream
                        .encoder(gpu)
                        .begin_compute_pass(&wgpu::ComputePassDescriptor {
                            label: Some("remap chunk"),
                            timestamp_writes: None,
                        });
                for (kernel, bg, threads) in &groups {
                    kernel.dispatch(&mut pass, bg, *threads, *max_groups);
                }
            }
            if last {
                break;
            }
        }

        match target {
            Target::Buffer(dst, at) => {
                stream
                    .encoder(gpu)
                    .copy_buffer_to_buffer(&out, 0, dst, *at + c.offset, padded);
                stream.submit(gpu);
            }
            Target::Sink(_) => {
                if *mapped_out {
                    // the chunk buffer itself is mapped and read
                    if slot.readback.as_ref().is_none_or(|r| r.buffer != out) {
                        slot.readback = Some(Mappable::new(out.clone(), false));
                    }
                } else if slot
                    .readback
                    .as_ref()
                    .is_none_or(|r| r.buffer.size() < padded)
                {
                    let size = layout.chunk_bytes().max(padded);
                    let b = gpu.buffer("readback", size, U::MAP_READ | U::COPY_DST, false)?;
                    slot.readback = Some(Mappable::new(b, false));
                }
                let Some(rb) = slot.readback.as_mut() else {
                    return Err(Error::Gpu("readback buffer missing".into()));
                };
                let encoder = stream.encoder(gpu);
                if !*mapped_out {
                    encoder.copy_buffer_to_buffer(&out, 0, &rb.buffer, 0, padded);
                }
                rb.map_on_submit(encoder, wgpu::MapMode::Read);
                if let Some(submission) = stream.submit(gpu) {
                    rb.submitted(submission);
                }
                slot.pending = Some(bytes);
            }
        }
        Ok(())
    }
}

/// What [`GpuEngine::run_chunk`] needs to know about a chunk and its job.
struct Chunk<'a> {
    job: &'a RemapJob,
    layout: &'a Layout,
    tensor: &'a Arc<TensorKey>,
    col_map: &'a wgpu::Buffer,
    plan: &'a ChunkPlan,
    /// Byte offset of the chunk in the job's output.
    offset: u64,
    /// Whether a window of the old table is no longer needed by this job.
    dead: &'a dyn Fn(usize) -> bool,
}

impl Engine for GpuEngine {
    fn name(&self) -> String {
        format!("gpu: {}", self.adapter)
    }

    fn remap(&mut self, job: &RemapJob, sink: &mut Sink<'_>) -> Result<()> {
        self.guarded(|e| e.run(job, &mut Target::Sink(sink)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_parse_with_units() {
        assert_eq!(parse_bytes("1073741824"), Some(1 << 30));
        assert_eq!(parse_bytes("512MiB"), Some(512 << 20));
        assert_eq!(parse_bytes("512m"), Some(512 << 20));
        assert_eq!(parse_bytes(" 2 GiB "), Some(2 << 30));
        assert_eq!(parse_bytes("1.5GB"), Some(1_500_000_000));
        assert_eq!(parse_bytes("64k"), Some(64 << 10));
        for bad in ["", "MiB", "12 parsecs", "-1", "1e400"] {
            assert_eq!(parse_bytes(bad), None, "{bad}");
        }
    }
}
