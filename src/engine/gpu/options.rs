//! The GPU engine's settings ([`GpuOptions`]) and the defaults they start from: the VRAM
//! budget, chunk and window sizes, on hardware and on software adapters.

use std::time::Duration;

use super::fill_missing::Variant;
use crate::dtype::FloatType;
use crate::engine::memory;
use crate::initializer::Initializer;

pub(super) const MIB: u64 = 1 << 20;

/// Words of a row a kernel thread handles per item on a software adapter (1 on a GPU).
pub(super) const CPU_ADAPTER_SPAN: u32 = 64;

/// On a software adapter, runs of rows averaging at least this many bytes are moved by
/// transfer commands rather than the gather kernel (see [`GpuOptions::row_copies`]). Measured
/// on lavapipe: a copy costs about 1.3 µs plus a `memcpy` on one core, the gather moves about
/// 1 GB/s on two; rows of 2 KiB copy at 1.1 GB/s, of 8 KiB at 3.7 GB/s, of 512 bytes at 0.25.
pub const CPU_ADAPTER_COPY_RUNS: u64 = 2048;

/// Default VRAM budget on a hardware adapter whose own memory is not known (an integrated GPU,
/// a backend other than Vulkan, or a hardware device the caller opened; a software one gets
/// [`DEFAULT_CPU_ADAPTER_BUDGET`]'s quarter of memory, as when the engine opens it); a discrete GPU that the engine
/// opens itself gets half of its memory (see [`GpuOptions::vram_budget`]).
pub const DEFAULT_VRAM_BUDGET: u64 = 4 << 30;
/// Default budget on a software (CPU) adapter, whose "device memory" is host memory: a
/// quarter of the machine's memory where it can be read (Linux), within these bounds.
pub const DEFAULT_CPU_ADAPTER_BUDGET: std::ops::RangeInclusive<u64> = (512 * MIB)..=(16 << 30);

/// Most upload buffers, or output chunks in flight, the ring may have
/// ([`GpuOptions::staging_slots`], [`GpuOptions::output_slots`]).
pub const MAX_SLOTS: usize = 64;

/// Default output chunk (and upload buffer) on a hardware adapter.
pub const DEFAULT_CHUNK: u64 = 16 * MIB;
/// Default chunk on a software adapter: fewer fresh pages to fault in (slow on a CPU), and
/// the two cores it shares with the host gain nothing from larger transfers.
pub const DEFAULT_CPU_ADAPTER_CHUNK: u64 = 4 * MIB;
/// Default window on a software adapter: small windows stream through a few reused buffers.
/// On a GPU a window is one storage binding, so that a chunk with rows from all over the old
/// table needs few dispatches.
pub const DEFAULT_CPU_ADAPTER_WINDOW: u64 = 8 * MIB;

/// A quarter of the memory the process may use (Linux `MemTotal`, or its cgroup's limit if
/// lower), within [`DEFAULT_CPU_ADAPTER_BUDGET`]; its lower bound where it cannot be read.
pub(super) fn cpu_adapter_budget() -> u64 {
    let (lo, hi) = DEFAULT_CPU_ADAPTER_BUDGET.into_inner();
    memory::total().map_or(lo, |t| (t / 4).clamp(lo, hi))
}

/// The default budget of an engine on a hardware adapter of type `kind` whose largest
/// device-local heap holds `own` bytes: half of a discrete GPU's own memory, else
/// [`DEFAULT_VRAM_BUDGET`] (an integrated GPU's device-local heap is the host's memory).
pub(super) fn hardware_budget(kind: wgpu::DeviceType, own: Option<u64>) -> u64 {
    match (kind, own) {
        (wgpu::DeviceType::DiscreteGpu, Some(bytes)) if bytes > 0 => (bytes / 2).max(MIB),
        _ => DEFAULT_VRAM_BUDGET,
    }
}

/// Settings of the GPU engine. Results never depend on them; memory use and speed do.
#[derive(Clone, Debug)]
pub struct GpuOptions {
    pub(super) vram_budget: Option<u64>,
    pub(super) chunk_bytes: Option<u64>,
    pub(super) window_bytes: Option<u64>,
    pub(super) staging_slots: usize,
    pub(super) output_slots: usize,
    pub(super) max_binding_bytes: Option<u64>,
    pub(super) max_workgroups: Option<u32>,
    pub(super) timeout: Duration,
    pub(super) unified: bool,
    pub(super) import: bool,
    pub(super) copies: bool,
    pub(super) wide_units: bool,
    pub(super) hardware_layout: bool,
    pub(super) element_types: Option<Vec<FloatType>>,
    pub(super) initializers: Option<Vec<Initializer>>,
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
            unified: true,
            import: true,
            copies: true,
            wide_units: true,
            hardware_layout: false,
            element_types: None,
            initializers: None,
        }
    }
}

impl GpuOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Device memory the engine may hold, in bytes: transfer buffers and the cache of
    /// old-table windows. At least one window and one chunk are held whatever the budget.
    ///
    /// Default: on a discrete GPU that [`GpuEngine::new`](super::GpuEngine::new) opens on Vulkan, half of its own
    /// memory (the largest device-local heap, which wgpu cannot report but the Vulkan driver
    /// can), leaving the rest to the driver and to other processes; on a software adapter a
    /// quarter of the host's memory or of the process's cgroup limit (see
    /// [`DEFAULT_CPU_ADAPTER_BUDGET`]), the caller's own software device included; otherwise,
    /// and on a caller's hardware device ([`GpuEngine::from_device`](super::GpuEngine::from_device),
    /// whose memory the caller's own work shares), [`DEFAULT_VRAM_BUDGET`]. An old table read all over (a shuffled vocabulary) that does
    /// not fit the budget is streamed to the device once per group of output chunks, which
    /// take about three quarters of the window cache (the budget less the transfer buffers,
    /// a few chunks): about `T / 0.75 C` passes for a table of `T` bytes and a cache of `C`
    /// (more for narrow rows, whose row lists, 12 bytes a row, share that part; counted by [`Engine::passes`](crate::engine::Engine::passes)); a budget that holds
    /// the table streams it once.
    pub fn vram_budget(mut self, bytes: u64) -> Self {
        self.vram_budget = Some(bytes);
        self
    }

    /// Target size of an output chunk and of an upload buffer (default [`DEFAULT_CHUNK`], or
    /// [`DEFAULT_CPU_ADAPTER_CHUNK`] on a software adapter; at most one storage binding, at
    /// least one row). By default, chunks over a scattered map of a table read in many
    /// imported windows grow, up to 8 times this, so that each window's dispatch moves about
    /// 512 KiB (see [`GpuEngine::dispatches`](super::GpuEngine::dispatches)), and chunks
    /// grouped over a table larger than the budget grow, up to a binding, so that 256 of them
    /// fill their share of it; a size set here is kept as it is.
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

    /// Number of upload buffers in the ring (default 3, at most [`MAX_SLOTS`]).
    pub fn staging_slots(mut self, slots: usize) -> Self {
        self.staging_slots = slots.clamp(1, MAX_SLOTS);
        self
    }

    /// Number of output chunks in flight (default 3, at most [`MAX_SLOTS`]).
    pub fn output_slots(mut self, slots: usize) -> Self {
        self.output_slots = slots.clamp(1, MAX_SLOTS);
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

    /// On a software adapter (device memory is host memory), read output chunks and write
    /// new windows in place instead of through transfer buffers (default true). Tests turn it
    /// off to run the transfer path a GPU takes.
    pub fn unified_memory(mut self, unified: bool) -> Self {
        self.unified = unified;
        self
    }

    /// On a software adapter with unified memory (see [`GpuOptions::unified_memory`]) whose
    /// driver can import host memory, read old tables in the mapped checkpoint files instead
    /// of copying them into device memory (default true). Tests turn it off to run the copy.
    pub fn import_host_memory(mut self, import: bool) -> Self {
        self.import = import;
        self
    }

    /// On a software adapter, move runs of whole rows averaging at least
    /// [`CPU_ADAPTER_COPY_RUNS`] bytes with transfer commands instead of the gather kernel
    /// (default true): there a copy is a `memcpy`, and a gather a shader loop over words.
    /// Tests turn it off to run the gather on long rows.
    pub fn row_copies(mut self, copies: bool) -> Self {
        self.copies = copies;
        self
    }

    /// On a software adapter with 64-bit integers (`SHADER_INT64`, which the engine requests
    /// there), gather 16-byte units as two `u64` rather than four `u32` (default true): the
    /// software driver moves each component on its own. Tests turn it off to run the
    /// `vec4<u32>` gathers that GPUs use.
    pub fn wide_units(mut self, wide: bool) -> Self {
        self.wide_units = wide;
        self
    }

    /// Run a software adapter as a hardware GPU (default false): one word of a row per thread
    /// item, a GPU's default chunk, window and VRAM budget, and none of the software driver's
    /// paths (unified memory, imports, row copies, wide units). Tests and benchmarks turn it on
    /// to run, on the software driver, what a GPU runs.
    pub fn hardware_layout(mut self, hardware: bool) -> Self {
        self.hardware_layout = hardware;
        self
    }

    /// Longest wait for the device before giving up with an error (default 120 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The element types of the tables to come (default: all four). The initialisation
    /// kernel is compiled, as the engine starts, for these types and the kinds of fill of
    /// [`GpuOptions::initializers`] only; a job needing another pipeline compiles it when it
    /// first needs it. Results do not depend on it. On a software driver each pipeline takes
    /// 25-50 ms of CPU to compile, on the cores that plan the job: the CLI names the model's
    /// types and the plan's initializers.
    pub fn element_types(mut self, types: &[FloatType]) -> Self {
        self.element_types = Some(types.to_vec());
        self
    }

    /// The backup initializers of the jobs to come (default: zeros, TensorFlow's): the
    /// initialisation kernel has a pipeline per element type and kind of fill (constant,
    /// uniform, normal, truncated normal). See [`GpuOptions::element_types`].
    pub fn initializers(mut self, initializers: &[Initializer]) -> Self {
        self.initializers = Some(initializers.to_vec());
        self
    }

    /// The initialisation pipelines to compile as the engine starts.
    pub(super) fn fill_variants(&self) -> Vec<Variant> {
        let types = self.element_types.as_deref().unwrap_or(&FloatType::ALL);
        let zeros = [Initializer::Zeros {}];
        Variant::all_of(types, self.initializers.as_deref().unwrap_or(&zeros))
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
    if unit.trim().is_empty() || unit.trim().eq_ignore_ascii_case("b") {
        if let Ok(bytes) = number.parse::<u64>() {
            return Some(bytes); // exactly, past 2^53 too
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Slot counts are capped: `usize::MAX` overflowed the ring's arithmetic.
    #[test]
    fn slot_counts_are_bounded() {
        let options = GpuOptions::new().output_slots(usize::MAX).staging_slots(0);
        assert_eq!(
            (options.output_slots, options.staging_slots),
            (MAX_SLOTS, 1)
        );
    }

    #[test]
    fn byte_counts_parse_with_units() {
        assert_eq!(parse_bytes("1073741824"), Some(1 << 30));
        assert_eq!(parse_bytes("512MiB"), Some(512 << 20));
        assert_eq!(parse_bytes("512m"), Some(512 << 20));
        assert_eq!(parse_bytes(" 2 GiB "), Some(2 << 30));
        assert_eq!(parse_bytes("1.5GB"), Some(1_500_000_000));
        assert_eq!(parse_bytes("64k"), Some(64 << 10));
        assert_eq!(parse_bytes("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_bytes("9007199254740993 B"), Some((1 << 53) + 1));
        for bad in ["", "MiB", "12 parsecs", "-1", "1e400"] {
            assert_eq!(parse_bytes(bad), None, "{bad}");
        }
    }

    /// A discrete GPU that reports its own memory gets half of it, however small or large;
    /// an integrated GPU (whose device-local heap is the host's memory) or one that reports
    /// nothing gets the fixed default.
    #[test]
    fn hardware_budgets_follow_a_discrete_gpus_own_memory() {
        use wgpu::DeviceType::{DiscreteGpu, IntegratedGpu, Other};
        let gib = 1u64 << 30;
        assert_eq!(hardware_budget(DiscreteGpu, Some(141 * gib)), 141 * gib / 2);
        assert_eq!(hardware_budget(DiscreteGpu, Some(2 * gib)), gib);
        assert_eq!(hardware_budget(DiscreteGpu, None), DEFAULT_VRAM_BUDGET);
        assert_eq!(hardware_budget(DiscreteGpu, Some(0)), DEFAULT_VRAM_BUDGET);
        assert_eq!(
            hardware_budget(IntegratedGpu, Some(64 * gib)),
            DEFAULT_VRAM_BUDGET
        );
        assert_eq!(hardware_budget(Other, Some(64 * gib)), DEFAULT_VRAM_BUDGET);
    }
}
