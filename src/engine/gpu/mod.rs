//! The GPU engine: remap jobs as WGSL compute shaders through wgpu, streaming tables of any
//! size, bit-identical to the CPU engine ([`super::cpu`]) for copies, constants and uniform
//! fills, and within 1e-4 for normal and truncated normal fills (see `shaders/init.wgsl`).
//!
//! # Design
//!
//! **Data as words.** Every table is a flat little-endian element stream in `array<u32>`
//! buffers: no `shader-f16` feature, copies are bit-exact (NaN payloads, subnormals). Kernel
//! threads own whole output words. F16/bf16 rows of odd width are 2 mod 4 bytes: such rows are
//! never padded; instead output chunks hold an even number of rows (so they start on a word),
//! each dispatch takes rows of one parity, and a thread that owns only half of a word merges it
//! (`shaders/rows.wgsl`). The last word of an odd-length output is padded with zeros, and the
//! padding is stripped on readback.
//!
//! **Kernels** (`shaders/`, one Rust module each, owning its bind group layout and `Params`):
//! `gather_rows` (axis 0, rows moved in `u32` or 16-byte units: `vec4<u32>`, or `vec2<u64>` on
//! a software adapter with 64-bit integers), `remap_cols` (axis 1,
//! and odd-width f16/bf16 rows, element by element) and `fill_missing` (the initializers, on
//! the same Philox counters as the CPU; uniform values computed in integer arithmetic so that
//! no fused multiply-add or flushed subnormal can change a bit). A thread handles a span of
//! words of one row per item: one word on a GPU, up to 64 on a software adapter.
//!
//! **Windows and budget.** One storage binding holds at most `max_storage_buffer_binding_size`
//! bytes (128 MiB on lavapipe, under 2 GiB on Vulkan GPUs), and device memory is limited, so:
//! - the output is produced in *chunks* of whole rows, each at most one binding
//!   ([`GpuOptions::chunk_bytes`]);
//! - the old table is cut into *windows* of whole rows, each at most one binding
//!   ([`GpuOptions::window_bytes`]), kept in a cache within what the VRAM budget leaves
//!   after the transfer ring ([`GpuOptions::vram_budget`]; eviction policy in `windows.rs`);
//! - for each chunk the host sorts the rows by the window that holds their source and records
//!   one gather dispatch per window (plus fills), so the gather runs on the device whatever
//!   the layout (`chunk.rs`). A chunk whose windows do not all fit the cache runs in batches
//!   of windows that do.
//! - A chunk makes one gather dispatch per window it reads. Over many imported windows a
//!   scattered map would make them small; chunks then grow (up to 8 times the default) until
//!   each dispatch moves about 512 KiB (`chunk.rs`), as every dispatch has a fixed cost.
//! - A row map that reads all over the old table (a shuffled vocabulary) makes every chunk
//!   touch every window. If the table fits the cache (always, when its windows are imported
//!   from the mapped files, which takes no device memory; see below), its windows are then
//!   made as large as a binding (fewer dispatches); if it does not, chunks are processed in
//!   *groups* that share each pass over the table, so the table is streamed once per group
//!   instead of once per chunk. The group's outputs (and their control blobs) stay on the
//!   device until the pass ends and take three quarters of the cache (chunks grow, up to a
//!   binding, so that at most 256 of them fill it); the windows, at most an eighth of the
//!   cache each, stream through the rest. A table of T bytes over a cache of C thus makes
//!   about T / 0.75 C passes (a little more for narrow rows, whose row lists, 12 bytes a
//!   row, share the outputs' part; `Layout::group`). The next group reuses the same output
//!   buffers, so it is computed once the last one is read back (two sets would halve what a
//!   pass serves).
//!
//! The budget ([`GpuOptions::vram_budget`]) defaults to half of a discrete GPU's own memory,
//! which the engine asks the Vulkan driver for (wgpu has no query for it): with a fixed
//! default of a few GiB, a shuffled table of tens of GB would be streamed to a large GPU
//! several times, once per group. Budget arithmetic: `output_slots` chunk buffers and as
//! many readback buffers, plus `staging_slots` upload buffers of one chunk each, form the
//! *ring*; the ring is shrunk to at most half the budget; the window cache gets the rest (at
//! least one window is held, whatever the budget), less a group's outputs. Every dispatch
//! uses at most the device's workgroup limit per dimension and loops with a grid stride
//! over the rest, so dispatches of any size work.
//!
//! **Streaming** (`stream.rs`): uploads are packed into a ring of reusable mapped `MAP_WRITE`
//! buffers and recorded, with the chunk's dispatches and its readback copy, in one command
//! buffer per chunk (a chunk larger than a readback buffer submits each further piece of its
//! readback on its own), which a submitter thread submits (`submit.rs`: the software driver runs
//! the work inside `Queue::submit`). Chunk `k` uses output slot `k % output_slots` (or one of a
//! group's slots), and is copied into a ring of `output_slots` `MAP_READ` readback buffers
//! of a chunk's size each (a grown chunk in pieces, each submitted at once), mapped with
//! `map_buffer_on_submit`; a ring buffer is drained into the sink just before it is used
//! again, so the device computes chunk `k` while the host writes chunk `k - 1` and prepares
//! chunk `k + 1` (in a group, copies piece `k` while the host writes piece `k - 1`). With
//! unified memory the chunk buffer is mapped itself, and drained before its slot is reused.
//! Every wait is bounded by [`GpuOptions::timeout`].
//!
//! **Software adapters** (Mesa's lavapipe, whose device memory is host memory and whose
//! "device" shares the host's cores): windows of the old table are not copied at all where the
//! driver imports host memory (`VK_EXT_external_memory_host`, which lavapipe has): the mapped
//! checkpoint file's own pages become the window buffers (`host_memory.rs`; a window then
//! starts a few bytes, its *lead*, into its buffer, which the kernels skip). Output chunks are
//! read, and windows that cannot be imported written, in place (`MAPPABLE_PRIMARY_BUFFERS`)
//! instead of through transfer buffers; chunks (4 MiB) and windows (8 MiB) are smaller, so that
//! little fresh memory is faulted in; a batch's new window buffers are created on several
//! threads at once (wgpu zeroes a mapped buffer on the creating thread, which there is
//! first-touch page faulting); the budget defaults to a quarter of the host's memory (or of
//! the process's cgroup limit). Rows in runs of 2 KiB or more on average (long rows, or
//! consecutive rows from consecutive old rows) are moved by transfer commands, one per run,
//! instead of the gather kernel ([`GpuOptions::row_copies`]): there a copy is one `memcpy` on
//! the driver's queue thread, while llvmpipe's gather moves words lane by lane.
//!
//! **Embedding.** A caller with its own `wgpu::Device` hands it in ([`GpuEngine::from_device`])
//! and receives warm-started tensors as device buffers ([`GpuEngine::remap_to_buffer`],
//! [`GpuEngine::remap_into`], [`GpuEngine::to_device`]): chunks are copied on the device into
//! the destination, and the output never goes through the host.
//!
//! **Failures** (no adapter, device lost, out of memory, validation errors, timeouts) are
//! [`Error::Gpu`], whose [`GpuFailure`] says which; the writer then leaves nothing behind. A job the device cannot take (a row,
//! an old row or a column map larger than one storage binding) is a refusal, `Error::Variable`, found by
//! [`Engine::check`] before anything is written. Operations run inside error scopes, so
//! a caller's device keeps its own error handlers.
//!
//! GPU speed is unmeasured: development had only Mesa's software Vulkan driver (lavapipe), on
//! which the engine takes 1.42x-1.65x the CPU engine's time end to end on a bf16 LM table and
//! 1.63x-2.19x on f32 recommender tables (BENCHMARKS.md).

mod chunk;
mod device;
mod fill_missing;
mod gather_rows;
mod host_memory;
mod kernels;
mod options;
mod remap_cols;
mod stream;
mod submit;
mod windows;

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

pub use device::{hardware_adapter_available, ADAPTER_NAME_VAR};

use self::chunk::{ChunkPlan, Layout, Limits, Mover};
use self::device::{Fault, Gpu, Scopes};
use self::fill_missing::{FillMissing, Variant};
use self::gather_rows::GatherRows;
use self::host_memory::HostMemory;
use self::kernels::Control;
use self::options::{cpu_adapter_budget, hardware_budget, CPU_ADAPTER_SPAN};
pub use self::options::{
    parse_bytes, GpuOptions, CPU_ADAPTER_COPY_RUNS, DEFAULT_CHUNK, DEFAULT_CPU_ADAPTER_BUDGET,
    DEFAULT_CPU_ADAPTER_CHUNK, DEFAULT_CPU_ADAPTER_WINDOW, DEFAULT_VRAM_BUDGET, MAX_SLOTS,
};
use self::remap_cols::RemapCols;
use self::stream::{copy_tensor_parallel, Mappable, Stream};
use self::windows::{TensorKey, Windows};
use super::{memory, Engine, Sink};
use crate::checkpoint::TensorData;
use crate::dtype::Dtype;
use crate::error::{Error, GpuFailure, Result};
use crate::plan::{Job, OutputTensor, Plan, RemapJob};

/// A warm-started tensor in device memory ([`GpuEngine::to_device`]).
#[derive(Clone, Debug)]
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
/// The two `vec2<u64>` gathers need 64-bit integers (`SHADER_INT64`) and are only used where
/// the device has them; every other kernel runs on any WebGPU device.
pub fn kernel_sources() -> [(&'static str, &'static str); 7] {
    [
        ("gather_rows (u32)", gather_rows::SOURCE_U32),
        ("gather_rows (vec4)", gather_rows::SOURCE_VEC4),
        ("gather_rows (vec4, split)", gather_rows::SOURCE_VEC4_SPLIT),
        ("gather_rows (vec2<u64>)", gather_rows::SOURCE_U64X2),
        (
            "gather_rows (vec2<u64>, split)",
            gather_rows::SOURCE_U64X2_SPLIT,
        ),
        ("remap_cols", remap_cols::SOURCE),
        ("fill_missing", fill_missing::SOURCE),
    ]
}

/// Refuses a destination that cannot take `bytes` (rounded up to a multiple of 4) at
/// `offset`: an offset off 4, a buffer without `COPY_DST`, or one too small.
fn check_destination(buffer: &wgpu::Buffer, offset: u64, bytes: u64) -> Result<()> {
    let padded = bytes.next_multiple_of(4);
    if !offset.is_multiple_of(4) {
        return Err(Error::gpu(
            GpuFailure::Usage,
            format!("destination offset {offset} is not a multiple of 4"),
        ));
    }
    if !buffer.usage().contains(wgpu::BufferUsages::COPY_DST) {
        return Err(Error::gpu(
            GpuFailure::Usage,
            "destination buffer lacks COPY_DST usage",
        ));
    }
    if offset
        .checked_add(padded)
        .is_none_or(|end| end > buffer.size())
    {
        return Err(Error::gpu(
            GpuFailure::Usage,
            format!(
                "destination buffer of {} bytes cannot hold {padded} bytes at offset {offset}",
                buffer.size()
            ),
        ));
    }
    Ok(())
}

/// The largest storage binding the engine uses: the device's, capped by the option and by
/// 4 GiB (the kernels index a binding's words and elements with `u32`s, and wgpu's Metal
/// backend reports bindings as large as a buffer), in whole `vec4<u32>`s (window buffers are
/// rounded up to one, `windows.rs`, and must still fit).
fn binding_limit(device: &wgpu::Limits, cap: Option<u64>) -> u64 {
    device
        .max_storage_buffer_binding_size
        .min(device.max_buffer_size)
        .min(cap.unwrap_or(u64::MAX))
        .min((1 << 32) - 16)
        & !15
}

/// The compiled kernels. Compiling takes a while (about 0.1 s on the software driver, most of
/// it `fill_missing`), so it runs on two background threads from the engine's creation and is
/// waited for when the first dispatch is recorded, after the first chunk's uploads.
/// `fill_missing` has a pipeline per element type and kind of fill: those of
/// [`GpuOptions::element_types`] and [`GpuOptions::initializers`] are compiled there, any
/// other when a job first needs it. A compile that ran out of device memory fails the job
/// that needed it, not the engine: the next job compiles again, since that failure may pass.
/// Any other failure (a lost device, a bug) is kept and returned to every later job.
enum Kernels {
    Compiling {
        rows: std::thread::JoinHandle<Result<(GatherRows, RemapCols)>>,
        fill: std::thread::JoinHandle<Result<FillMissing>>,
        source: KernelSource,
    },
    Ready(Arc<(GatherRows, RemapCols, FillMissing)>),
    Failed {
        source: KernelSource,
        fault: Fault,
    },
}

/// What [`Kernels`] compiles: for which device, which `fill_missing` pipelines, and whether
/// the gathers move 16-byte units as `vec2<u64>`.
#[derive(Clone)]
struct KernelSource {
    device: wgpu::Device,
    variants: Vec<Variant>,
    wide: bool,
}

impl KernelSource {
    /// Compiles the gathers of rows and of columns.
    fn rows(&self) -> Result<(GatherRows, RemapCols)> {
        let wide = self.wide;
        compile_checked(&self.device, |d| {
            (GatherRows::new(d, wide), RemapCols::new(d))
        })
        .map_err(Error::from)
    }

    /// Compiles the `fill_missing` pipelines of `variants`.
    fn fill(&self) -> Result<FillMissing> {
        FillMissing::new(&self.device, &self.variants)
    }
}

/// What a compile thread that panicked reports.
const COMPILE_PANICKED: &str = "compiling the kernels panicked";

/// Test hook: each entry makes the next kernel compile on its device (see [`device_key`];
/// the entry keeps the device alive, so that no other takes its handle) fail with its kind.
#[cfg(test)]
static FAIL_NEXT_COMPILE: std::sync::Mutex<Vec<(u64, wgpu::Device, GpuFailure)>> =
    std::sync::Mutex::new(Vec::new());

/// A device's identity for [`FAIL_NEXT_COMPILE`]: its Vulkan handle, unique among the devices
/// alive (`wgpu::Device`'s equality compares ids, which devices of different instances share);
/// `None` on other backends.
#[cfg(test)]
fn device_key(device: &wgpu::Device) -> Option<u64> {
    use ash::vk::Handle;
    // SAFETY: the hal device is only read, and dropped before this returns.
    unsafe { device.as_hal::<wgpu::hal::api::Vulkan>() }.map(|d| d.raw_device().handle().as_raw())
}

/// Runs `make` (which compiles kernels on `device`) and returns what it made, or the first
/// device error it raised. Error scopes are per thread: each thread captures its own.
fn compile_checked<T>(
    device: &wgpu::Device,
    make: impl FnOnce(&wgpu::Device) -> T,
) -> std::result::Result<T, Fault> {
    #[cfg(test)]
    {
        let mut failing = FAIL_NEXT_COMPILE.lock().unwrap_or_else(|e| e.into_inner());
        let key = device_key(device);
        if let Some(i) = failing.iter().position(|(k, _, _)| Some(*k) == key) {
            let (_, _, kind) = failing.swap_remove(i);
            let message = "cannot compile the kernels: failure injected by a test";
            return Err(Fault::new(kind, message));
        }
    }
    let scopes = Scopes::push(device);
    let made = make(device);
    match scopes.pop() {
        None => Ok(made),
        Some(f) => Err(Fault::new(
            f.kind,
            format!("cannot compile the kernels: {}", f.message),
        )),
    }
}

impl Kernels {
    /// Starts compiling every kernel of `source` on two background threads.
    fn compile(source: KernelSource) -> Kernels {
        let (a, b) = (source.clone(), source.clone());
        let rows = std::thread::spawn(move || a.rows());
        let fill = std::thread::spawn(move || b.fill());
        Kernels::Compiling { rows, fill, source }
    }

    /// The kernels, once compiled.
    fn get(&mut self) -> Result<Arc<(GatherRows, RemapCols, FillMissing)>> {
        let source = match self {
            Kernels::Ready(k) => return Ok(k.clone()),
            Kernels::Failed { fault, .. } if fault.kind != GpuFailure::OutOfMemory => {
                return Err(fault.clone().into());
            }
            Kernels::Compiling { source, .. } | Kernels::Failed { source, .. } => source.clone(),
        };
        let compiled = match std::mem::replace(
            self,
            Kernels::Failed {
                source: source.clone(),
                fault: Fault::new(GpuFailure::Internal, COMPILE_PANICKED),
            },
        ) {
            Kernels::Compiling { rows, fill, .. } => {
                fn joined<T>(r: std::thread::Result<Result<T>>) -> Result<T> {
                    r.unwrap_or_else(|_| Err(Error::gpu(GpuFailure::Internal, COMPILE_PANICKED)))
                }
                let (rows, fill) = (joined(rows.join()), joined(fill.join()));
                rows.and_then(|(g, r)| Ok((g, r, fill?)))
            }
            // after running out of memory: again, on this thread
            _ => source.rows().and_then(|(g, r)| Ok((g, r, source.fill()?))),
        };
        match compiled {
            Ok(k) => {
                let k = Arc::new(k);
                *self = Kernels::Ready(k.clone());
                Ok(k)
            }
            Err(e) => {
                let fault = match &e {
                    Error::Gpu { kind, message } => Fault::new(*kind, message.clone()),
                    other => Fault::new(GpuFailure::Internal, other.to_string()),
                };
                *self = Kernels::Failed { source, fault };
                Err(e)
            }
        }
    }
}

/// Window `w` of `job`'s old table as its file's own pages (`host_memory.rs`), when it lies
/// in one file and the driver takes it; `None`: the window is copied.
fn import_window(
    host: &HostMemory,
    gpu: &Gpu,
    job: &RemapJob,
    layout: &Layout,
    w: usize,
) -> Option<wgpu::Buffer> {
    let rows = layout.window(w);
    let (bytes, mapping) = job
        .old
        .mapped(rows.start * layout.old_row_bytes..rows.end * layout.old_row_bytes)?;
    // SAFETY: `bytes` lies in `mapping`, a read-only map of a whole input file (`mmap.rs`),
    // kept alive by the tensor's clone; the buffer is only bound for reading (the window
    // cache never reuses an adopted buffer, `windows.rs`).
    unsafe {
        host.import(
            &gpu.device,
            bytes,
            layout.lead(w),
            mapping,
            Box::new(job.old.clone()),
        )
    }
}

/// One output slot: the chunk buffer the kernels write and the control blob (dispatch
/// parameters and row lists); with unified memory the chunk buffer is also the one mapped
/// and read (`readback`).
#[derive(Default)]
struct Slot {
    out: Option<wgpu::Buffer>,
    ctrl: Option<wgpu::Buffer>,
    readback: Readback,
}

/// A buffer the host reads output from, and the bytes of output in it not yet handed to the
/// sink (requested: mapped, or to be mapped, after its submission).
#[derive(Default)]
struct Readback {
    buffer: Option<Mappable>,
    pending: Option<usize>,
}

impl Readback {
    /// Hands the pending output to `sink`, waiting (bounded) for its mapping. After a failed
    /// wait the buffer is dropped (its map request may still complete): a new one is made on
    /// next use.
    fn drain(&mut self, gpu: &Gpu, sink: &mut dyn Sink) -> Result<()> {
        let Some(bytes) = self.pending.take() else {
            return Ok(());
        };
        let Some(rb) = &self.buffer else {
            return Err(Error::gpu(GpuFailure::Internal, "readback buffer missing"));
        };
        if let Err(e) = rb.wait_mapped(gpu) {
            self.buffer = None;
            return Err(e);
        }
        let result = match rb
            .buffer
            .get_mapped_range(..(bytes as u64).next_multiple_of(4))
        {
            Ok(view) => sink.write(&view[..bytes]),
            Err(e) => Err(Error::gpu(
                GpuFailure::Internal,
                format!("reading back: {e}"),
            )),
        };
        rb.buffer.unmap();
        result
    }

    /// After a failure: a pending buffer that came back is unmapped; one that did not (or
    /// never will) is dropped. Returns whether it was dropped.
    fn recover(&mut self, gpu: &Gpu) -> bool {
        if self.pending.take().is_none() {
            return false;
        }
        match &self.buffer {
            Some(rb) if rb.settled(gpu) => {
                rb.buffer.unmap();
                false
            }
            _ => {
                self.buffer = None;
                true
            }
        }
    }
}

/// Where chunks go.
enum Target<'a, 's> {
    /// To the host, in order.
    Sink(&'a mut (dyn Sink + 's)),
    /// Into a device buffer at a byte offset.
    Buffer(&'a wgpu::Buffer, u64),
}

/// The GPU engine.
pub struct GpuEngine {
    gpu: Gpu,
    adapter: String,
    limits: Limits,
    max_groups: u32,
    kernels: Kernels,
    stream: Stream,
    /// Output slots: at least `output_slots`, as many as a group of chunks has.
    slots: Vec<Slot>,
    output_slots: usize,
    /// Without unified memory: the ring of readback buffers, of one chunk each, that output
    /// goes through to the sink, and the next one to use (the oldest pending).
    readbacks: Vec<Readback>,
    next_readback: usize,
    windows: Windows,
    col_map: Option<(Arc<[u32]>, wgpu::Buffer)>,
    placeholder: wgpu::Buffer,
    /// Device memory the engine may hold ([`GpuOptions::vram_budget`]).
    budget: u64,
    /// Bytes of the budget the window cache may use (the rest is the transfer ring).
    window_budget: u64,
    /// Device memory is host memory (a software adapter with `MAPPABLE_PRIMARY_BUFFERS`):
    /// output chunks are mapped and read where the kernels wrote them, not copied to readback
    /// buffers first (new windows are written in place too, see `windows.rs`).
    unified: bool,
    /// 16-byte units are gathered as `vec2<u64>` ([`GpuOptions::wide_units`]).
    wide: bool,
    /// Kernel dispatches recorded so far.
    dispatches: u64,
    /// Passes over old tables streamed once per group of chunks ([`Engine::passes`]).
    passes: u64,
    /// Bytes of old tables read ahead into the page cache ([`Engine::read_ahead_bytes`]).
    read_ahead_bytes: u64,
}

impl std::fmt::Debug for GpuEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuEngine")
            .field("adapter", &self.adapter)
            .field("binding", &self.limits.binding)
            .field("chunk", &self.limits.chunk)
            .field("window", &self.limits.window)
            .field("window_budget", &self.windows.budget())
            .field("wide", &self.wide)
            .finish()
    }
}

impl GpuEngine {
    /// Opens the adapter chosen from the environment (`WGPU_BACKEND`, `WGPU_ADAPTER_NAME`,
    /// `WGPU_POWER_PREF`; hardware before software) with its own limits.
    pub fn new(mut options: GpuOptions) -> Result<Self> {
        let adapter = device::select_adapter()?;
        let kind = adapter.get_info().device_type;
        if options.vram_budget.is_none() && kind != wgpu::DeviceType::Cpu {
            let own = device::device_local_memory(&adapter);
            options.vram_budget = Some(hardware_budget(kind, own));
        }
        let (device, queue, host) = device::request_device(&adapter)?;
        let mut gpu = Gpu::new(device, queue, options.timeout);
        gpu.host = host;
        gpu.install_handlers();
        Self::build(gpu, options)
    }

    /// Uses a device the caller already has (a wgpu-based trainer), with default options.
    /// The caller's error handlers stay in place: the engine captures its own errors with
    /// error scopes. The device's limits bound the engine: its buffers (`max_buffer_size`,
    /// wgpu's default 256 MiB caps a tensor of [`GpuEngine::to_device`]) and bindings;
    /// request the adapter's own (`adapter.limits()`). A device whose limits cannot run
    /// compute kernels is refused ([`GpuFailure::Usage`]). On a software adapter the engine
    /// uses `SHADER_INT64` and `MAPPABLE_PRIMARY_BUFFERS` where the device was opened with
    /// them (see `examples/embed_in_trainer.rs`).
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

    fn build(mut gpu: Gpu, options: GpuOptions) -> Result<Self> {
        let info = gpu.device.adapter_info();
        let device_limits = gpu.device.limits();
        kernels::check_limits(&device_limits)?;
        // (`hardware_layout`: a software adapter run as a GPU, for tests)
        let is_cpu = info.device_type == wgpu::DeviceType::Cpu && !options.hardware_layout;
        let wide = options.wide_units
            && is_cpu
            && gpu.device.features().contains(wgpu::Features::SHADER_INT64);
        let kernels = Kernels::compile(KernelSource {
            device: gpu.device.clone(),
            variants: options.fill_variants(),
            wide,
        });
        let placeholder = gpu.buffer("placeholder", 16, wgpu::BufferUsages::STORAGE, false)?;

        let binding = binding_limit(&device_limits, options.max_binding_bytes);
        let budget = options.vram_budget.unwrap_or(if is_cpu {
            cpu_adapter_budget()
        } else {
            DEFAULT_VRAM_BUDGET
        });
        // The ring: a chunk and its readback per output slot, plus the upload buffers; at
        // most half the budget.
        let ring_buffers = (2 * options.output_slots + options.staging_slots) as u64;
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
        // Device memory is host memory: chunks are read and new windows written in place,
        // or imported from the mapped files.
        let unified = options.unified
            && is_cpu
            && gpu
                .device
                .features()
                .contains(wgpu::Features::MAPPABLE_PRIMARY_BUFFERS);
        if !(unified && options.import) {
            gpu.host = None;
        }
        let limits = Limits {
            binding,
            chunk,
            // chunks grow (up to a binding) over imported windows, which take no device
            // memory, and in groups, whose share of the budget counts them
            chunk_max: match options.chunk_bytes {
                Some(_) => chunk,
                None => binding & !3,
            },
            window,
            window_budget,
            params_stride: u64::from(device_limits.min_uniform_buffer_offset_alignment).max(256),
            span: if is_cpu { CPU_ADAPTER_SPAN } else { 1 },
            lead_align: gpu.host.as_ref().map_or(1, |h| h.lead_align()),
            copy_runs: (is_cpu && options.copies).then_some(CPU_ADAPTER_COPY_RUNS),
        };
        let max_groups = device_limits
            .max_compute_workgroups_per_dimension
            .min(options.max_workgroups.unwrap_or(u32::MAX))
            .max(1);
        Ok(GpuEngine {
            adapter: info.name,
            limits,
            max_groups,
            kernels,
            stream: Stream::new(options.staging_slots, chunk),
            slots: (0..options.output_slots).map(|_| Slot::default()).collect(),
            output_slots: options.output_slots,
            readbacks: (0..options.output_slots)
                .map(|_| Readback::default())
                .collect(),
            next_readback: 0,
            windows: Windows::new(window_budget, unified),
            budget,
            window_budget,
            col_map: None,
            placeholder,
            unified,
            wide,
            gpu,
            dispatches: 0,
            passes: 0,
            read_ahead_bytes: 0,
        })
    }

    /// The device the engine runs on. On a device the engine opened ([`GpuEngine::new`]), an
    /// error of your own work on it outside an error scope goes to the engine's handler, which
    /// drops it (wgpu's default handler would panic) without failing the engine's next job:
    /// push an error scope around your work to see its errors.
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

    /// Whether old tables are read in the mapped checkpoint files rather than copied to the
    /// device (a software adapter whose driver imports host memory; see
    /// [`GpuOptions::import_host_memory`]).
    pub fn imports_host_memory(&self) -> bool {
        self.gpu.host.is_some()
    }

    /// Whether rows of 16-byte units are gathered as `vec2<u64>` (a software adapter with
    /// 64-bit integers; see [`GpuOptions::wide_units`]).
    pub fn gathers_wide_units(&self) -> bool {
        self.wide
    }

    /// Windows of old tables read in the mapped checkpoint files so far.
    pub fn imported_windows(&self) -> u64 {
        self.windows.adopted
    }

    /// Kernel dispatches recorded so far: each costs a fixed overhead (high on the software
    /// driver), so chunks are sized to need few (see [`GpuOptions::chunk_bytes`]).
    pub fn dispatches(&self) -> u64 {
        self.dispatches
    }

    /// Releases the cached windows of old tables (they are otherwise kept for the next job,
    /// within the budget): their device memory, and on a software adapter the mapped
    /// checkpoint files they were read in. Work of the engine's still running on the device
    /// holds the windows it reads, so this first waits (at most [`GpuOptions::timeout`]) for
    /// the engine's last submission, and so for the work queued before it.
    pub fn clear_cache(&mut self) {
        if let Some(index) = self.stream.flushed() {
            // (released whether or not the wait succeeds: a lost device is reported by the
            // next operation, which checks the device first)
            let _ = self.gpu.wait(&index.clone());
        }
        self.windows.clear();
        self.col_map = None;
        let _ = self.gpu.device.poll(wgpu::PollType::Poll);
    }

    /// Computes `job` into a new device buffer (`STORAGE | COPY_SRC | COPY_DST`, size rounded
    /// up to a multiple of 4 with zeros). The work is submitted to the engine's queue; later
    /// submissions to that queue see the result.
    pub fn remap_to_buffer(&mut self, job: &RemapJob) -> Result<wgpu::Buffer> {
        let bytes = (job.rows.len() as u64) * job.row_bytes() as u64;
        let buffer = self.tensor_buffer(&job.variable, bytes)?;
        self.remap_into(job, &buffer, 0)?;
        Ok(buffer)
    }

    /// A new device buffer for a warm-started tensor of `bytes` bytes (rounded up to a
    /// multiple of 4), usable as `STORAGE | COPY_SRC | COPY_DST`.
    fn tensor_buffer(&self, name: &str, bytes: u64) -> Result<wgpu::Buffer> {
        self.check_buffer_size(name, bytes)?;
        self.gpu.buffer(
            &format!("warm-started {name}"),
            bytes.next_multiple_of(4).max(4),
            wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            false,
        )
    }

    /// Refuses a tensor of `bytes` bytes that no buffer of the device can hold
    /// ([`GpuFailure::Usage`]: the device's `max_buffer_size` is the caller's to raise).
    fn check_buffer_size(&self, name: &str, bytes: u64) -> Result<()> {
        let max = self.gpu.device.limits().max_buffer_size;
        if bytes.next_multiple_of(4) > max {
            return Err(Error::gpu(
                GpuFailure::Usage,
                format!(
                    "tensor {name:?} of {bytes} bytes cannot be one buffer of this device \
                     (max_buffer_size {max}): open the device with higher limits, or use to_host"
                ),
            ));
        }
        Ok(())
    }

    /// Computes `job` into `buffer` (of the engine's device, with `COPY_DST` usage) at byte
    /// `offset` (a multiple of 4). Writes the output's bytes rounded up to a multiple of 4:
    /// an f16/bf16 output of odd element count is followed by two zero bytes. An offset off
    /// 4, a buffer without `COPY_DST` or one too small is refused before any work
    /// ([`GpuFailure::Usage`]). A buffer of another device cannot be told apart reliably
    /// (wgpu identifies buffers per device): passing one is a bug of the caller, which may
    /// fail the job or, with a device of another `wgpu::Instance`, write to a buffer of the
    /// engine's device.
    pub fn remap_into(&mut self, job: &RemapJob, buffer: &wgpu::Buffer, offset: u64) -> Result<()> {
        let bytes = (job.rows.len() as u64) * job.row_bytes() as u64;
        check_destination(buffer, offset, bytes)?;
        self.guarded(|e| e.run(job, &mut Target::Buffer(buffer, offset)))
    }

    /// Writes output tensor `tensor` of a plan into `buffer` at byte `offset`, whatever its
    /// job: remapped as [`GpuEngine::remap_into`] does, copied from the checkpoint, or a kept
    /// tensor's initial value from the model file (a model declared in code has none: refused
    /// with [`GpuFailure::Usage`]). The same rules for `buffer` and `offset`; the bytes are
    /// rounded up to a multiple of 4 with zeros. With it a trainer can place a plan's tensors
    /// in buffers of its own, one arena for all of them for instance.
    pub fn tensor_into(
        &mut self,
        tensor: &OutputTensor,
        buffer: &wgpu::Buffer,
        offset: u64,
    ) -> Result<()> {
        match &tensor.job {
            Job::Remap(job) => {
                self.check(job)?;
                self.remap_into(job, buffer, offset)
            }
            Job::Copy { source, bytes } => self.upload_into(source, bytes.clone(), buffer, offset),
            Job::Keep(Some(data)) => self.upload_into(data, 0..data.byte_len(), buffer, offset),
            Job::Keep(None) => Err(Error::gpu(
                GpuFailure::Usage,
                format!(
                    "tensor {:?} is kept, and a model declared in code has no value for it",
                    tensor.name
                ),
            )),
        }
    }

    /// Uploads bytes `range` of `source` into `buffer` at `offset`.
    fn upload_into(
        &mut self,
        source: &TensorData,
        range: Range<usize>,
        buffer: &wgpu::Buffer,
        offset: u64,
    ) -> Result<()> {
        let len = range.len() as u64;
        check_destination(buffer, offset, len)?;
        self.guarded(|e| {
            e.stream
                .upload(&e.gpu, buffer, offset, len, |start, view| {
                    copy_tensor_parallel(source, range.start + start, view)
                })?;
            e.stream.submit(&e.gpu);
            Ok(())
        })
    }

    /// Every warm-started tensor of `plan` (copied or remapped; kept tensors are not
    /// returned) as a device buffer, in the plan's order. A tensor larger than the device's
    /// `max_buffer_size` is refused ([`GpuFailure::Usage`]); on NVIDIA's Vulkan driver, whose
    /// largest allocation is about 4 GiB, that is any larger table. Such a table goes to
    /// several buffers of the caller's: a [`RemapJob`]'s `rows` split into ranges that fit,
    /// each computed with [`GpuEngine::remap_into`].
    pub fn to_device(&mut self, plan: &Plan) -> Result<Vec<DeviceTensor>> {
        plan.check_engine(self)?;
        let warm: Vec<&OutputTensor> = (plan.tensors().iter())
            .filter(|t| t.is_warm_started())
            .collect();
        for t in &warm {
            self.check_buffer_size(&t.name, t.byte_len() as u64)?;
        }
        let mut out = Vec::new();
        for t in warm {
            let byte_len = t.byte_len() as u64;
            let buffer = self.tensor_buffer(&t.name, byte_len)?;
            self.tensor_into(t, &buffer, 0)?;
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
        self.gpu.check_before_job()?;
        let scopes = Scopes::push(&self.gpu.device);
        // (everything recorded is submitted before the scopes close or the caller goes on)
        let result = f(self).and_then(|value| self.stream.flush(&self.gpu).map(|()| value));
        if result.is_err() {
            self.recover();
        }
        let scoped = scopes.pop();
        let fault = self.gpu.check().err();
        // a lost device explains whatever errors followed it
        let lost = fault
            .as_ref()
            .is_some_and(|e| e.gpu_failure() == Some(GpuFailure::DeviceLost));
        let result = match (result, scoped, fault) {
            (Err(e), _, _) if e.gpu_failure().is_none() => Err(e),
            (_, _, Some(e)) if lost => Err(e),
            (_, Some(f), _) => Err(f.into()),
            (_, None, Some(e)) => Err(e),
            (r, None, None) => r,
        };
        if result.is_err() {
            self.recover();
        }
        result
    }

    /// After a failure: unmaps or drops readback buffers left mapped or pending, and upload
    /// buffers that did not come back; forgets cached windows and column maps, whose uploads
    /// may have been recorded in the work that was dropped.
    fn recover(&mut self) {
        self.windows.clear();
        self.col_map = None;
        for slot in &mut self.slots {
            if slot.readback.recover(&self.gpu) {
                // the chunk buffer was the mapped one
                slot.out = None;
            }
        }
        for rb in &mut self.readbacks {
            rb.recover(&self.gpu);
        }
        self.next_readback = 0;
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

    /// Streams `job` to `target`, a group of chunks at a time (usually one; see
    /// [`GpuEngine::run_chunks`]).
    fn run(&mut self, job: &RemapJob, target: &mut Target<'_, '_>) -> Result<()> {
        if job.rows.is_empty() || job.row_bytes() == 0 {
            return Ok(());
        }
        let layout = Layout::new(job, &self.limits)?;
        // Windows read in the mapped files (a software adapter) are read where the rows lie:
        // a table not in the page cache is read ahead first, as the CPU engine does, or a
        // shuffled map would fault it in from disk a few pages at a time. (On the development
        // VM, whose disk serves small random reads almost as fast as large ones, `2m` dropped
        // from the page cache took 2.1-2.6 s either way, but once 15.7 s without.)
        if self.gpu.host.is_some()
            && memory::available().is_some_and(|b| job.old.read_ahead_if_cold(b))
        {
            self.read_ahead_bytes += job.old.byte_len() as u64;
        }
        let tensor = self.windows.key(&job.old, layout.window_rows);
        let col_map = self.col_map_buffer(job)?;
        // A group's buffers are all counted in its share of the budget: none larger are
        // carried in from earlier jobs, and they go back to the budget at its end (all
        // drained, or dropped after a failure).
        if layout.group > 1 {
            self.reset_slots();
        }
        let result = self.run_chunks(job, &layout, &tensor, &col_map, target);
        if layout.group > 1 {
            self.reset_slots();
        }
        result
    }

    /// Drops every output slot's buffers (none is pending: each job drains its own).
    fn reset_slots(&mut self) {
        self.slots.clear();
        self.slots.resize_with(self.output_slots, Slot::default);
    }

    /// Streams the chunks of `job` (see [`GpuEngine::run`]), a group at a time: one chunk,
    /// unless the row map reads all over an old table that does not fit the cache, where
    /// every chunk would stream the whole table again. Then a group of chunks shares each
    /// pass over the table ([`Layout::group`]): their outputs take most of the window
    /// cache's budget while the windows stream through the rest.
    fn run_chunks(
        &mut self,
        job: &RemapJob,
        layout: &Layout,
        tensor: &Arc<TensorKey>,
        col_map: &wgpu::Buffer,
        target: &mut Target<'_, '_>,
    ) -> Result<()> {
        let chunks: Vec<Range<usize>> = layout.chunks(job.rows.clone()).collect();
        let last_use = layout.last_use(job, job.rows.clone());
        let group = layout.group;
        let outputs = if group > 1 {
            layout.group_bytes(chunks.len())
        } else {
            0
        };
        self.windows
            .set_budget(self.window_budget.saturating_sub(outputs));
        if self.slots.len() < group {
            self.slots.resize_with(group, Slot::default);
        }
        // (a group uses its own number of slots, all counted)
        let n = if group > 1 { group } else { self.slots.len() };
        for first in (0..chunks.len()).step_by(group) {
            let ks = first..(first + group).min(chunks.len());
            if let (Target::Sink(sink), true) = (&mut *target, self.unified) {
                // the chunks that used these slots before, in order: their buffers are the
                // mapped ones (else the readback ring holds their output)
                for k in ks.clone() {
                    self.drain_slot(k % n, &mut **sink)?;
                }
            }
            let mut members = Vec::with_capacity(ks.len());
            for k in ks {
                let rows = chunks[k].clone();
                members.push(Member {
                    slot: k % n,
                    offset: ((rows.start - job.rows.start) * layout.row_bytes) as u64,
                    plan: chunk::plan(job, layout, rows)?,
                });
            }
            let dead = |w: usize| last_use[w].is_none_or(|last| (last as usize) < first);
            let g = Group {
                job,
                layout,
                tensor,
                col_map,
                members: &members,
                dead: &dead,
            };
            self.run_group(&g, target)?;
            if layout.scattered && !layout.fits {
                self.passes += 1;
            }
        }
        if let Target::Sink(sink) = target {
            if self.unified {
                for k in chunks.len().saturating_sub(n)..chunks.len() {
                    self.drain_slot(k % n, &mut **sink)?;
                }
            } else {
                let ring = self.readbacks.len();
                for i in 0..ring {
                    let r = (self.next_readback + i) % ring;
                    self.readbacks[r].drain(&self.gpu, &mut **sink)?;
                }
            }
        }
        Ok(())
    }

    /// Hands the output of slot `s` (unified memory: its chunk buffer is the one mapped) to
    /// the sink. After a failed wait the chunk buffer is dropped with its mapping.
    fn drain_slot(&mut self, s: usize, sink: &mut dyn Sink) -> Result<()> {
        let slot = &mut self.slots[s];
        let result = slot.readback.drain(&self.gpu, sink);
        if result.is_err() && slot.readback.buffer.is_none() {
            slot.out = None;
        }
        result
    }

    /// Records a group of chunks and submits it: their output and control buffers, the
    /// windows they read with each window's dispatches (`load_and_dispatch`), the fills, and
    /// the copies to the target.
    fn run_group(&mut self, g: &Group<'_>, target: &mut Target<'_, '_>) -> Result<()> {
        let buffers = self.chunk_buffers(g)?;
        self.load_and_dispatch(g, &buffers)?;
        self.hand_over(g, &buffers, target)
    }

    /// Each chunk's output and control buffers (its slot's, grown when too small), with the
    /// control blob uploaded.
    fn chunk_buffers(&mut self, g: &Group<'_>) -> Result<Vec<ChunkBuffers>> {
        use wgpu::BufferUsages as U;
        let GpuEngine {
            gpu,
            stream,
            slots,
            unified,
            ..
        } = self;
        let layout = g.layout;
        let mut buffers = Vec::with_capacity(g.members.len());
        for m in g.members {
            let slot = &mut slots[m.slot];
            let bytes = m.plan.rows.len() * layout.row_bytes;
            let padded = (bytes as u64).next_multiple_of(4);
            let out = match &slot.out {
                Some(b) if b.size() >= padded => b.clone(),
                _ => {
                    let size = layout.chunk_bytes().max(padded);
                    let mut usage = U::STORAGE | U::COPY_SRC | U::COPY_DST;
                    if *unified {
                        usage |= U::MAP_READ;
                    }
                    let b = gpu.buffer("output chunk", size, usage, false)?;
                    slot.out = Some(b.clone());
                    b
                }
            };
            let ctrl = match &slot.ctrl {
                Some(b) if b.size() >= m.plan.ctrl.len() as u64 => b.clone(),
                _ => {
                    let len = m.plan.ctrl.len() as u64;
                    let size = if layout.group > 1 {
                        // what the group's share of the budget counts
                        layout.ctrl_bytes().max(len)
                    } else {
                        len.next_power_of_two().max(1024)
                    };
                    let usage = U::UNIFORM | U::STORAGE | U::COPY_DST;
                    let b = gpu.buffer("dispatch control", size, usage, false)?;
                    slot.ctrl = Some(b.clone());
                    b
                }
            };
            stream.upload_bytes(gpu, &ctrl, 0, &m.plan.ctrl)?;
            if padded != bytes as u64 {
                // zeros after an odd number of 16-bit elements
                stream.encoder(gpu).clear_buffer(&out, padded - 4, Some(4));
            }
            buffers.push(ChunkBuffers {
                out,
                ctrl,
                bytes,
                padded,
            });
        }
        Ok(buffers)
    }

    /// Loads the windows the group reads, batch by batch when they do not all fit the cache,
    /// and records after each batch's loads the dispatches that read it: per window, the
    /// gathers (or copies) of every chunk reading it; after the last batch, the fills.
    fn load_and_dispatch(&mut self, g: &Group<'_>, buffers: &[ChunkBuffers]) -> Result<()> {
        let GpuEngine {
            gpu,
            max_groups,
            kernels,
            stream,
            windows,
            dispatches: dispatched,
            ..
        } = self;
        let layout = g.layout;
        let control = |i: usize, d: &chunk::Dispatch| Control {
            buffer: &buffers[i].ctrl,
            params: d.params,
            list: g.members[i].plan.list,
        };

        // The windows the group reads, and per window the chunks reading it (gathers or
        // copies); windows already resident first, so that loading the others never evicts
        // them.
        let mut readers: BTreeMap<usize, Vec<(usize, &chunk::Reads)>> = BTreeMap::new();
        for (i, m) in g.members.iter().enumerate() {
            for (w, reads) in &m.plan.windows {
                readers.entry(*w).or_default().push((i, reads));
            }
        }
        let mut order: Vec<usize> = readers.keys().copied().collect();
        if let Some(host) = &gpu.host {
            // windows the kernels can read in the mapped files need no copy and no memory
            for &w in &order {
                if !windows.is_resident(g.tensor, w) {
                    if let Some(buffer) = import_window(host, gpu, g.job, layout, w) {
                        windows.adopt(g.tensor, w, buffer);
                    }
                }
            }
        }
        order.sort_by_key(|&w| (!windows.is_resident(g.tensor, w), w));
        // a window's buffer: its lead, then its rows
        let window_bytes =
            |w: usize| layout.lead(w) + (layout.window(w).len() * layout.old_row_bytes) as u64;
        let mut next = 0;
        loop {
            // The next batch: windows that fit the cache together (at least one).
            let mut batch = Vec::new();
            let mut held = 0;
            while next < order.len() {
                let w = order[next];
                let bytes = if windows.is_adopted(g.tensor, w) {
                    0
                } else {
                    window_bytes(w)
                };
                if !batch.is_empty() && held + bytes > windows.budget() {
                    break;
                }
                held += bytes;
                batch.push(w);
                next += 1;
            }
            let sizes: Vec<(usize, u64)> = batch.iter().map(|&w| (w, window_bytes(w))).collect();
            windows.make_ahead(gpu, g.tensor, &sizes, g.dead)?;
            for &w in &batch {
                load_window(gpu, stream, windows, g, &batch, w)?;
            }
            let last = next >= order.len();

            let compiled = kernels.get()?;
            let (gather_rows, remap_cols) = (&compiled.0, &compiled.1);
            let mut dispatches = Vec::new();
            for &w in &batch {
                let Some(window) = windows.buffer(g.tensor, w) else {
                    return Err(Error::gpu(
                        GpuFailure::Internal,
                        "window evicted before use",
                    ));
                };
                let lead = layout.lead(w);
                for &(i, reads) in &readers[&w] {
                    let out = &buffers[i].out;
                    // (recorded before this batch's pass, after its windows' uploads)
                    for c in &reads.copies {
                        stream.encoder(gpu).copy_buffer_to_buffer(
                            window,
                            lead + c.src,
                            out,
                            c.dst,
                            c.len,
                        );
                    }
                    for d in &reads.gathers {
                        let (kernel, bg) = match layout.mover {
                            Mover::Elements { .. } => (
                                remap_cols.kernel(),
                                remap_cols.bind(&gpu.device, control(i, d), window, g.col_map, out),
                            ),
                            Mover::Rows { unit } => (
                                gather_rows.kernel(unit, lead),
                                gather_rows.bind(
                                    &gpu.device,
                                    (unit, lead),
                                    control(i, d),
                                    window,
                                    out,
                                ),
                            ),
                            Mover::Copies => unreachable!("rows moved by copies have no gather"),
                        };
                        dispatches.push((kernel, bg, d.threads));
                    }
                }
            }
            if last && g.members.iter().any(|m| !m.plan.fills.is_empty()) {
                let fill_missing = compiled
                    .2
                    .kernel(Variant::new(g.job.dtype, &g.job.init.fill))?;
                for (i, m) in g.members.iter().enumerate() {
                    for d in &m.plan.fills {
                        let bg = FillMissing::bind(
                            fill_missing,
                            &gpu.device,
                            control(i, d),
                            g.col_map,
                            &buffers[i].out,
                        );
                        dispatches.push((fill_missing, bg, d.threads));
                    }
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
                for (kernel, bg, threads) in &dispatches {
                    kernel.dispatch(&mut pass, bg, *threads, *max_groups);
                }
            }
            *dispatched += dispatches.iter().filter(|d| d.2 > 0).count() as u64;
            if last {
                return Ok(());
            }
        }
    }

    /// Records each chunk's way to the target, and submits the group: a copy into the
    /// caller's buffer; or for the sink, with unified memory the chunk buffer itself mapped,
    /// else copies into the readback ring, a chunk's worth of bytes at a time, each ring
    /// buffer drained to the sink before it is used again.
    fn hand_over(
        &mut self,
        g: &Group<'_>,
        buffers: &[ChunkBuffers],
        target: &mut Target<'_, '_>,
    ) -> Result<()> {
        use wgpu::BufferUsages as U;
        let GpuEngine {
            gpu,
            stream,
            slots,
            readbacks,
            next_readback,
            limits,
            unified,
            ..
        } = self;
        let (ring, unified) = (readbacks.len(), *unified);
        // readbacks in the pending submission: slots with unified memory, else ring buffers
        let mut mapped: Vec<usize> = Vec::new();
        let submit = |stream: &mut Stream,
                      slots: &mut [Slot],
                      readbacks: &mut [Readback],
                      mapped: &mut Vec<usize>| {
            let ticket = stream.submit(gpu);
            for i in mapped.drain(..) {
                let rb = if unified {
                    &mut slots[i].readback
                } else {
                    &mut readbacks[i]
                };
                if let (Some(rb), Some(t)) = (rb.buffer.as_mut(), &ticket) {
                    rb.submitted(t.clone());
                }
            }
        };
        for (m, b) in g.members.iter().zip(buffers) {
            match target {
                Target::Buffer(dst, at) => {
                    stream.encoder(gpu).copy_buffer_to_buffer(
                        &b.out,
                        0,
                        dst,
                        *at + m.offset,
                        b.padded,
                    );
                }
                Target::Sink(_) if unified => {
                    let readback = &mut slots[m.slot].readback;
                    if readback.buffer.as_ref().is_none_or(|r| r.buffer != b.out) {
                        readback.buffer = Some(Mappable::new(b.out.clone(), false));
                    }
                    if let Some(rb) = readback.buffer.as_mut() {
                        rb.map_on_submit(stream.encoder(gpu), wgpu::MapMode::Read);
                    }
                    readback.pending = Some(b.bytes);
                    mapped.push(m.slot);
                }
                Target::Sink(sink) => {
                    let piece = limits.chunk;
                    for at in (0..b.padded).step_by(piece as usize) {
                        let r = *next_readback;
                        *next_readback = (r + 1) % ring;
                        readbacks[r].drain(gpu, &mut **sink)?;
                        let readback = &mut readbacks[r];
                        if readback.buffer.is_none() {
                            let rb =
                                gpu.buffer("readback", piece, U::MAP_READ | U::COPY_DST, false)?;
                            readback.buffer = Some(Mappable::new(rb, false));
                        }
                        let Some(rb) = readback.buffer.as_mut() else {
                            return Err(Error::gpu(
                                GpuFailure::Internal,
                                "readback buffer missing",
                            ));
                        };
                        let len = (b.padded - at).min(piece);
                        let encoder = stream.encoder(gpu);
                        encoder.copy_buffer_to_buffer(&b.out, at, &rb.buffer, 0, len);
                        rb.map_on_submit(encoder, wgpu::MapMode::Read);
                        readback.pending = Some((len as usize).min(b.bytes - at as usize));
                        mapped.push(r);
                        // submitted at once, so that the device copies this piece while the
                        // host writes the ones before it
                        submit(stream, slots, readbacks, &mut mapped);
                    }
                }
            }
        }
        submit(stream, slots, readbacks, &mut mapped);
        Ok(())
    }
}

/// Makes window `w` of the group's old table resident (one of `batch`, which the cache holds
/// together): uploaded, or written in place into a new mapped buffer, unless it is already.
fn load_window(
    gpu: &Gpu,
    stream: &mut Stream,
    windows: &mut Windows,
    g: &Group<'_>,
    batch: &[usize],
    w: usize,
) -> Result<()> {
    let layout = g.layout;
    let rows = layout.window(w);
    let from = rows.start * layout.old_row_bytes;
    let len = (rows.len() * layout.old_row_bytes) as u64;
    let lead = layout.lead(w);
    // Uploads are recorded after the dispatches of earlier batches, so a buffer evicted here
    // is overwritten only once those have read it.
    windows.ensure(
        gpu,
        g.tensor,
        w,
        lead + len,
        batch,
        g.dead,
        |buffer, mapped| {
            if !mapped {
                return stream.upload(gpu, buffer, lead, len, |start, view| {
                    copy_tensor_parallel(&g.job.old, from + start, view)
                });
            }
            // a new buffer, created mapped: written in place
            {
                let mut view = buffer
                    .get_mapped_range_mut(..(lead + len).next_multiple_of(4))
                    .map_err(|e| Error::gpu(GpuFailure::Internal, format!("window buffer: {e}")))?;
                let (mut head, rest) = view.slice(..).split_at(lead as usize);
                head.fill(0);
                let (data, mut pad) = rest.split_at(len as usize);
                copy_tensor_parallel(&g.job.old, from, data);
                pad.fill(0);
            }
            buffer.unmap();
            Ok(())
        },
    )
}

/// A chunk's buffers on the device: its output (`bytes` of it, `padded` to whole words) and
/// its control blob.
struct ChunkBuffers {
    out: wgpu::Buffer,
    ctrl: wgpu::Buffer,
    bytes: usize,
    padded: u64,
}

/// One chunk of a [`Group`]: its plan, its output slot, and its byte offset in the job's
/// output.
struct Member {
    plan: ChunkPlan,
    slot: usize,
    offset: u64,
}

/// What [`GpuEngine::run_group`] needs to know about a group of chunks and their job.
struct Group<'a> {
    job: &'a RemapJob,
    layout: &'a Layout,
    tensor: &'a Arc<TensorKey>,
    col_map: &'a wgpu::Buffer,
    members: &'a [Member],
    /// Whether a window of the old table is no longer needed by this or a later group.
    dead: &'a dyn Fn(usize) -> bool,
}

impl Engine for GpuEngine {
    fn name(&self) -> String {
        format!("gpu: {}", self.adapter)
    }

    /// Passes over old tables read all over (a scattered row map) that do not fit the
    /// window cache: such a table is streamed to the device once per group of output chunks
    /// that share the cache (see [`GpuOptions::vram_budget`]).
    fn passes(&self) -> u64 {
        self.passes
    }

    /// Bytes of old tables read ahead because they were not in the page cache: on a
    /// software adapter, where the kernels read the mapped files.
    fn read_ahead_bytes(&self) -> u64 {
        self.read_ahead_bytes
    }

    /// [`GpuOptions::vram_budget`], or its default for this adapter.
    fn vram_budget(&self) -> Option<u64> {
        Some(self.budget)
    }

    fn remap(&mut self, job: &RemapJob, sink: &mut dyn Sink) -> Result<()> {
        self.guarded(|e| e.run(job, &mut Target::Sink(sink)))
    }

    /// [`RemapJob::check`], and every unit of the job's work (a row, an old row, a pair of
    /// odd-width f16/bf16 rows, the column map) within one storage binding of the device.
    fn check(&self, job: &RemapJob) -> Result<()> {
        job.check()?;
        chunk::check_fits(job, self.limits.binding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::FloatType;

    /// Bindings are whole vec4s of at most 4 GiB, so that a window rounded up to one still fits
    /// and the kernels' u32 indices do not overflow: a device
    /// limit of u32::MAX (what a Vulkan driver may report; wgpu 30 clamps it to i32::MAX) or a
    /// cap off 16 are rounded down.
    #[test]
    fn bindings_are_whole_vec4s() {
        let limits = |binding: u64, buffer: u64| wgpu::Limits {
            max_storage_buffer_binding_size: binding,
            max_buffer_size: buffer,
            ..wgpu::Limits::default()
        };
        let vulkan = limits(u32::MAX as u64, 1 << 40);
        assert_eq!(binding_limit(&vulkan, None), (1 << 32) - 16);
        assert_eq!(binding_limit(&vulkan, Some(4100)), 4096);
        assert_eq!(binding_limit(&limits(128 << 20, 1 << 30), None), 128 << 20);
        assert_eq!(binding_limit(&limits(1 << 30, 1000), None), 992);
        // Metal: bindings as large as a buffer, here 64 GiB
        let metal = limits(1 << 36, 1 << 36);
        assert_eq!(binding_limit(&metal, None), (1 << 32) - 16);
    }

    /// The f32 table [[0, 1], [2, 3], [4, 5], [6, 7]] in a file of `dir`, and the job whose
    /// output rows are old rows `map` (`MISSING`: the constant 0.5).
    fn job(dir: &std::path::Path, map: Vec<u32>) -> RemapJob {
        let data: Vec<u8> = (0..8).flat_map(|v| (v as f32).to_le_bytes()).collect();
        let old =
            crate::checkpoint::test_tensor(dir, "old.safetensors", Dtype::F32, vec![4, 2], &data);
        RemapJob::test_rows(old, Some(map), crate::Initializer::Constant { value: 0.5 })
    }

    fn remap(engine: &mut GpuEngine, job: &RemapJob) -> Result<Vec<f32>> {
        let mut out = Vec::new();
        engine.remap(job, &mut out)?;
        Ok(out
            .chunks(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect())
    }

    const M: u32 = crate::vocab::MISSING;

    /// Makes the next kernel compile on `device` fail with `kind` (Vulkan devices only).
    fn fail_next_compile(device: &wgpu::Device, kind: GpuFailure) {
        let key = device_key(device).expect("the compile hook needs a Vulkan device");
        FAIL_NEXT_COMPILE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((key, device.clone(), kind));
    }

    /// Grouped chunks grown past the size of a readback buffer (chunks may grow where no chunk
    /// size was set, which the test arranges on a small budget) reach the sink through the
    /// readback ring a piece at a time, in order, as the CPU engine writes them; the table
    /// (20 MB over a cache of about 16 MB) is streamed in passes.
    #[test]
    fn grouped_chunks_larger_than_a_readback_buffer_are_read_back_in_pieces() {
        let Some((device, queue)) = device::test_device() else {
            return;
        };
        let options = GpuOptions::new()
            .hardware_layout(true)
            .element_types(&[FloatType::F32])
            .max_binding_bytes(1 << 20)
            .chunk_bytes(16 << 10)
            .vram_budget(16 << 20);
        let mut engine = GpuEngine::from_device_with_options(device, queue, options).unwrap();
        engine.limits.chunk_max = engine.limits.binding; // as if no chunk size were set
        let (rows, cols) = (160_000u32, 32);
        let data: Vec<u8> = (0..rows * cols)
            .flat_map(|v| (v as f32).to_le_bytes())
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let shape = vec![rows as usize, cols as usize];
        let old =
            crate::checkpoint::test_tensor(dir.path(), "t.safetensors", Dtype::F32, shape, &data);
        // every seventh row new, the others from all over the table
        let map = (0..rows)
            .map(|r| if r % 7 == 0 { M } else { (r * 7919) % rows })
            .collect();
        let job = RemapJob::test_rows(old, Some(map), crate::Initializer::Constant { value: 0.5 });
        let layout = Layout::new(&job, &engine.limits).unwrap();
        assert!(layout.group > 1 && layout.chunk_bytes() > engine.limits.chunk);

        let mut want = Vec::new();
        crate::engine::cpu::CpuEngine::new()
            .remap(&job, &mut want)
            .unwrap();
        let mut got = Vec::new();
        engine.remap(&job, &mut got).unwrap();
        assert!(got == want, "the output differs from the CPU engine's");
        assert!(engine.passes() >= 2, "{} passes", engine.passes());
    }

    /// An f32 engine on its own device whose first kernel compile fails with `kind`.
    fn engine_whose_first_compile_fails(kind: GpuFailure) -> Option<GpuEngine> {
        let (device, queue) = device::test_device()?;
        fail_next_compile(&device, kind);
        let options = GpuOptions::new().element_types(&[FloatType::F32]);
        Some(GpuEngine::from_device_with_options(device, queue, options).unwrap())
    }

    /// A compile that fails for a reason that may pass (out of memory) fails the job that
    /// needed it, not the engine: the next job compiles the kernels again and runs.
    #[test]
    fn kernels_that_failed_to_compile_are_compiled_again() {
        let Some(mut engine) = engine_whose_first_compile_fails(GpuFailure::OutOfMemory) else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let job = job(dir.path(), vec![3, M, 0]);
        let e = remap(&mut engine, &job).unwrap_err();
        assert_eq!(e.gpu_failure(), Some(GpuFailure::OutOfMemory), "{e}");
        assert_eq!(
            remap(&mut engine, &job).unwrap(),
            [6., 7., 0.5, 0.5, 0., 1.]
        );
    }

    /// The same for a pipeline of the initialisation kernel compiled when a job first needs
    /// it (here f32's, the engine having compiled f64's at its start).
    #[test]
    fn a_fill_pipeline_that_failed_to_compile_is_compiled_again() {
        let Some((device, queue)) = device::test_device() else {
            return;
        };
        let options = GpuOptions::new().element_types(&[FloatType::F64]);
        let mut engine =
            GpuEngine::from_device_with_options(device.clone(), queue, options).unwrap();
        let dir = tempfile::tempdir().unwrap();
        // no missing row: the kernels compiled at the start, and no f32 fill
        assert_eq!(
            remap(&mut engine, &job(dir.path(), vec![1, 2])).unwrap(),
            [2., 3., 4., 5.]
        );
        fail_next_compile(&device, GpuFailure::OutOfMemory);
        let job = job(dir.path(), vec![M, 2]);
        let e = remap(&mut engine, &job).unwrap_err();
        assert_eq!(e.gpu_failure(), Some(GpuFailure::OutOfMemory), "{e}");
        assert_eq!(remap(&mut engine, &job).unwrap(), [0.5, 0.5, 4., 5.]);
    }

    /// An error of the caller's own work on the engine's device, outside any error scope (here
    /// an invalid copy), which the engine's handler takes in place of wgpu's panic, is not
    /// charged to the engine: its jobs before and after it run.
    #[test]
    fn the_callers_errors_on_the_device_do_not_fail_the_engine() {
        let Some((device, queue)) = device::test_device() else {
            return;
        };
        let mut engine = GpuEngine::from_device(device.clone(), queue.clone()).unwrap();
        engine.gpu.install_handlers(); // as on a device of GpuEngine::new
        let dir = tempfile::tempdir().unwrap();
        let job = job(dir.path(), vec![3, M, 0]);
        let want = [6., 7., 0.5, 0.5, 0., 1.];
        assert_eq!(remap(&mut engine, &job).unwrap(), want);
        let buffer = |usage| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: 16,
                usage,
                mapped_at_creation: false,
            })
        };
        let (a, b) = (
            buffer(wgpu::BufferUsages::COPY_SRC),
            buffer(wgpu::BufferUsages::COPY_DST),
        );
        let mut encoder = device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(&a, 0, &b, 0, 3); // not a multiple of 4
        queue.submit([encoder.finish()]);
        assert!(
            engine.gpu.fault.lock().unwrap().is_some(),
            "the error reached the handler"
        );
        for _ in 0..2 {
            assert_eq!(remap(&mut engine, &job).unwrap(), want);
        }
    }

    /// A caller's device whose limits cannot run the kernels (no compute: WebGL2's) is refused
    /// when the engine is made, not each job later for its rows.
    #[test]
    fn a_device_without_compute_is_refused() {
        let Some((device, queue)) = device::test_device() else {
            return;
        };
        let adapter_limits = device.limits();
        assert!(kernels::check_limits(&adapter_limits).is_ok());
        assert!(kernels::check_limits(&wgpu::Limits::default()).is_ok());
        let e = kernels::check_limits(&wgpu::Limits::downlevel_webgl2_defaults()).unwrap_err();
        assert_eq!(e.gpu_failure(), Some(GpuFailure::Usage), "{e}");
        assert!(
            e.to_string().contains("max_compute_workgroup_size_x 0"),
            "{e}"
        );
        let Some(adapter) = device::select_adapter().ok() else {
            return;
        };
        let desc = wgpu::DeviceDescriptor {
            required_limits: wgpu::Limits::downlevel_webgl2_defaults(),
            ..Default::default()
        };
        drop((device, queue));
        let (device, queue) = pollster::block_on(adapter.request_device(&desc)).unwrap();
        let Err(e) = GpuEngine::from_device(device, queue) else {
            panic!("a device without compute was taken");
        };
        assert_eq!(e.gpu_failure(), Some(GpuFailure::Usage), "{e}");
    }

    /// Any other failure (here `Internal`, as a shader the driver refuses) is kept: the next job
    /// fails with it too, without compiling again (which would succeed, the hook being spent).
    #[test]
    fn kernels_that_failed_otherwise_stay_failed() {
        let Some(mut engine) = engine_whose_first_compile_fails(GpuFailure::Internal) else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let job = job(dir.path(), vec![3, M, 0]);
        for _ in 0..2 {
            let e = remap(&mut engine, &job).unwrap_err();
            assert_eq!(e.gpu_failure(), Some(GpuFailure::Internal), "{e}");
        }
    }
}
