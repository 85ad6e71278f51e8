//! The GPU engine against the CPU engine (the reference semantics), on the same `RemapJob`s.
//!
//! Jobs are built over small safetensors checkpoints written to a temporary directory (old
//! tables split into `/part_<k>` tensors, in one file or several, so a table spans several
//! segments), with random row or column maps, every initializer, odd widths, f16/bf16/f32/f64,
//! and partitions (several jobs over sub-ranges of a variable). Engines are configured with tiny
//! bindings, chunks, windows, budgets and workgroup counts, so that every boundary is crossed
//! with small data.
//!
//! Expectations: bit-identical bytes for copies, constants and uniform fills; normal and
//! truncated normal within 1e-4 absolute (or one unit in the last place of f16/bf16), and
//! truncated values inside mean ± 2·stddev.
//!
//! `GPU_TEST_CASES=n` sets the number of random cases (default 400), `GPU_TEST_CASE=k` runs
//! only case k, and `GPU_DEBUG=1` prints the rows that differ.
//!
//! Without a usable adapter these tests print a notice and pass, unless
//! `WARMSTART_REQUIRE_GPU=1` (CI) makes them fail. The software Vulkan driver (lavapipe) counts;
//! `WGPU_BACKEND=vulkan` and `VK_DRIVER_FILES` select it when several drivers are installed.

mod common;

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use safetensors::tensor::TensorView;
use safetensors::Dtype;
use warmstart::dtype::FloatType;
use warmstart::engine::gpu::{DeviceTensor, GpuOptions};
use warmstart::engine::Sink;
use warmstart::initializer::{Distribution, FanMode, Fill};
use warmstart::vocab::MISSING;
use warmstart::{
    Checkpoint, CpuEngine, Engine, GpuEngine, GpuFailure, Initializer, Job, Model, Plan, RemapJob,
    TensorData, Variable, VarsToWarmStart, VocabInfo, WarmStartSettings,
};

// ------------------------------------------------------------------------------------------
// Harness
// ------------------------------------------------------------------------------------------

/// A GPU engine, or `None` (with a notice) when there is no adapter and CI does not require one.
fn gpu(options: GpuOptions) -> Option<GpuEngine> {
    match GpuEngine::new(options) {
        Ok(engine) => Some(engine),
        Err(e) => {
            if std::env::var("WARMSTART_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("WARMSTART_REQUIRE_GPU=1 but the GPU engine is unavailable: {e}");
            }
            eprintln!("NOTICE: skipping GPU test, no usable GPU adapter: {e}");
            None
        }
    }
}

/// Engines that cross every boundary with small tables: tiny bindings, chunks and windows, a
/// budget of a few windows (evictions, batches), one or two workgroups (grid-stride loops).
/// This one compiles no initialisation kernel at its start, each element type's on first
/// use; the grouped engine compiles only bf16's at its start, the others all.
fn tiny_engine() -> Option<GpuEngine> {
    gpu(GpuOptions::new()
        .element_types(&[])
        .max_binding_bytes(4096)
        .chunk_bytes(1000)
        .window_bytes(700)
        .vram_budget(10_000)
        .staging_slots(2)
        .output_slots(2)
        .max_workgroups(1))
}

/// Small chunks within a budget of many chunks, for old tables that do not fit it: a
/// scattered row map then makes the engine process groups of chunks per pass over the table.
/// Windows are copied, not imported from the files (the tiny engine imports them where the
/// driver can), so that both ways of loading a window run on the software driver.
fn grouped_engine() -> Option<GpuEngine> {
    gpu(GpuOptions::new()
        .element_types(&[FloatType::BF16])
        .import_host_memory(false)
        .max_binding_bytes(8192)
        .chunk_bytes(600)
        .window_bytes(100)
        .vram_budget(10_000)
        .output_slots(1)
        .staging_slots(1)
        .max_workgroups(2))
}

/// Also the transfer path of a GPU (upload and readback buffers) on the software driver,
/// which otherwise reads and writes device memory in place.
fn small_engine() -> Option<GpuEngine> {
    gpu(GpuOptions::new()
        .max_binding_bytes(64 << 10)
        .chunk_bytes(16 << 10)
        .vram_budget(256 << 10)
        .max_workgroups(3)
        .unified_memory(false))
}

/// Runs `job` on `engine`, collecting the bytes.
fn run(engine: &mut dyn Engine, job: &RemapJob) -> Vec<u8> {
    let mut out = Vec::new();
    engine
        .remap(job, &mut out)
        .unwrap_or_else(|e| panic!("{} failed: {e}", engine.name()));
    out
}

/// Deterministic pseudo-random numbers (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    fn float(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next() >> 11) as f64 / (1u64 << 53) as f64)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn dtype_of(t: FloatType) -> Dtype {
    t.dtype()
}

/// Writes an old table of `rows` x `cols` elements of `dtype` as tensors `old/part_<k>` (rows
/// split as `parts`), in one file or one file per part, and opens it as one logical tensor.
fn old_table(
    dir: &Path,
    name: &str,
    dtype: FloatType,
    cols: usize,
    parts: &[usize],
    bytes: &[u8],
    one_file: bool,
) -> TensorData {
    let ckpt = dir.join(name);
    std::fs::create_dir_all(&ckpt).unwrap();
    let row_bytes = cols * dtype.size();
    let mut views = Vec::new();
    let mut at = 0;
    for (k, &r) in parts.iter().enumerate() {
        let data = &bytes[at * row_bytes..(at + r) * row_bytes];
        at += r;
        views.push((
            format!("old/part_{k}"),
            TensorView::new(dtype_of(dtype), vec![r, cols], data).unwrap(),
        ));
    }
    if one_file {
        let file = safetensors::serialize(views, None).unwrap();
        std::fs::write(ckpt.join("a.safetensors"), file).unwrap();
    } else {
        for (k, v) in views.into_iter().enumerate() {
            let file = safetensors::serialize([v], None).unwrap();
            std::fs::write(ckpt.join(format!("{k:03}.safetensors")), file).unwrap();
        }
    }
    Checkpoint::open(&ckpt)
        .unwrap()
        .tensor("old")
        .unwrap()
        .unwrap()
}

/// Splits `n` into 1..=max_parts positive parts (or fewer when n is small).
fn split(rng: &mut Rng, n: usize, max_parts: usize) -> Vec<usize> {
    let parts = (1 + rng.below(max_parts)).min(n.max(1));
    let mut cuts: Vec<usize> = (0..parts - 1)
        .map(|_| 1 + rng.below(n.max(2) - 1))
        .collect();
    cuts.push(0);
    cuts.push(n);
    cuts.sort_unstable();
    cuts.dedup();
    cuts.windows(2).map(|w| w[1] - w[0]).collect()
}

/// `len` rows from anywhere in `bound` old rows, one in ten missing.
fn scattered_map(rng: &mut Rng, len: usize, bound: usize) -> Vec<u32> {
    (0..len)
        .map(|_| {
            if rng.chance(0.1) {
                MISSING
            } else {
                rng.below(bound) as u32
            }
        })
        .collect()
}

/// An axis-0 job over `old` (a table of `cols` columns): variable `rows` through `map` (the
/// identity for `None`), rows without a source from `init`.
fn row_job(
    old: &TensorData,
    rows: Range<usize>,
    map: Option<Vec<u32>>,
    init: Initializer,
) -> RemapJob {
    let (name, cols) = (old.name().to_string(), old.shape()[1]);
    let dtype = FloatType::from_dtype(old.dtype()).unwrap();
    let len = map.as_ref().map_or(old.shape()[0], |m| m.len());
    RemapJob {
        init: init.resolve(&name, &[len, cols], "test").unwrap(),
        variable: name,
        old: old.clone(),
        dtype,
        rows,
        cols,
        old_cols: cols,
        row_map: map.map(Into::into),
        col_map: None,
    }
}

/// A shuffled table: `rows` x `cols` random values of `dtype` in one file of `dir`, and the
/// job that remaps all of them through a scattered map (new rows zeros).
fn shuffled_job(dir: &Path, rng: &mut Rng, dtype: FloatType, rows: usize, cols: usize) -> RemapJob {
    let bytes = rng.bytes(rows * cols * dtype.size());
    let name = format!("s{dtype:?}_{rows}x{cols}");
    let old = old_table(dir, &name, dtype, cols, &[rows], &bytes, true);
    let map = scattered_map(rng, rows, rows);
    row_job(&old, 0..rows, Some(map), Initializer::Zeros {})
}

/// A one-file f32 table `name` of `rows x cols` random values in `dir`, and the job that
/// reverses its rows (new rows, if any, zeros).
fn reversed_f32_job(dir: &Path, name: &str, rows: usize, cols: usize, seed: u64) -> RemapJob {
    let bytes = Rng(seed).bytes(rows * cols * 4);
    let old = old_table(dir, name, FloatType::F32, cols, &[rows], &bytes, true);
    let map = (0..rows as u32).rev().collect();
    row_job(&old, 0..rows, Some(map), Initializer::Zeros {})
}

/// A device and queue opened as a trainer would, on the default adapter, with `limits`
/// applied to the adapter's.
fn callers_device(
    limits: impl FnOnce(wgpu::Limits) -> wgpu::Limits,
) -> (wgpu::Device, wgpu::Queue) {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter =
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
            .unwrap();
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: limits(adapter.limits()),
        ..Default::default()
    }))
    .unwrap();
    (device, queue)
}

/// An index vector of `len` entries into `0..bound`: random, monotonic with insertions, or
/// with every entry missing.
fn index_map(rng: &mut Rng, len: usize, bound: usize) -> Vec<u32> {
    let missing = [0.0, 0.1, 0.5, 1.0][rng.below(4)];
    let monotonic = rng.chance(0.5);
    let mut next = 0usize;
    (0..len)
        .map(|_| {
            if bound == 0 || rng.chance(missing) {
                return MISSING;
            }
            if monotonic {
                next = (next + rng.below(3)) % bound;
                next as u32
            } else {
                rng.below(bound) as u32
            }
        })
        .collect()
}

fn random_initializer(rng: &mut Rng) -> Initializer {
    let seed = rng.next();
    match rng.below(10) {
        0 => Initializer::Zeros {},
        1 => Initializer::Ones {},
        2 => Initializer::Constant {
            value: [0.1, -3.75, 1e-30, 65519.0, -0.0][rng.below(5)],
        },
        3 | 4 => {
            let a = rng.float(-4.0, 4.0);
            let b = rng.float(-4.0, 4.0);
            Initializer::RandomUniform {
                minval: a,
                maxval: b,
                seed,
            }
        }
        5 => Initializer::RandomNormal {
            mean: rng.float(-1.0, 1.0),
            stddev: rng.float(0.0, 1.0),
            seed,
        },
        6 => Initializer::TruncatedNormal {
            mean: rng.float(-1.0, 1.0),
            stddev: rng.float(0.0, 1.0),
            seed,
        },
        7 => Initializer::GlorotUniform { seed },
        8 => Initializer::GlorotNormal { seed },
        _ => Initializer::VarianceScaling {
            scale: rng.float(0.1, 3.0),
            mode: [FanMode::FanIn, FanMode::FanOut, FanMode::FanAvg][rng.below(3)],
            distribution: [
                Distribution::TruncatedNormal,
                Distribution::UntruncatedNormal,
                Distribution::Uniform,
            ][rng.below(3)],
            seed,
        },
    }
}

/// A random variable remap, as one job per partition.
fn random_jobs(rng: &mut Rng, dir: &Path, case: usize) -> Vec<RemapJob> {
    let dtype = FloatType::ALL[rng.below(4)];
    let axis1 = rng.chance(0.3);
    let cols = 1 + rng.below(if axis1 { 40 } else { 24 });
    let rows = 1 + rng.below(250);
    let (old_rows, old_cols) = if axis1 {
        (rows + rng.below(20), 1 + rng.below(40))
    } else {
        (1 + rng.below(250), cols)
    };
    let bytes = rng.bytes(old_rows * old_cols * dtype.size());
    let parts = split(rng, old_rows, 3);
    let old = old_table(
        dir,
        &format!("case{case}"),
        dtype,
        old_cols,
        &parts,
        &bytes,
        rng.chance(0.5),
    );
    let (row_map, col_map) = if axis1 {
        (None, Some(index_map(rng, cols, old_cols)))
    } else if old_rows >= rows && rng.chance(0.15) {
        (None, None) // identity rows: range dispatches
    } else {
        (Some(index_map(rng, rows, old_rows)), None)
    };
    let variable = format!("var{case}");
    let init = random_initializer(rng)
        .resolve(&variable, &[rows, cols], "test")
        .unwrap();
    let row_map: Option<Arc<[u32]>> = row_map.map(Into::into);
    let col_map: Option<Arc<[u32]>> = col_map.map(Into::into);
    let mut start = 0;
    split(rng, rows, 3)
        .into_iter()
        .map(|n| {
            let range = start..start + n;
            start += n;
            RemapJob {
                variable: variable.clone(),
                old: old.clone(),
                dtype,
                rows: range,
                cols,
                old_cols,
                row_map: row_map.clone(),
                col_map: col_map.clone(),
                init,
            }
        })
        .collect()
}

/// One unit in the last place of `x` in `dtype` (0 for f32/f64: the 1e-4 bound applies).
fn ulp(dtype: FloatType, x: f64) -> f64 {
    let (mantissa, min_exp) = match dtype {
        FloatType::F16 => (10, -14),
        FloatType::BF16 => (7, -126),
        _ => return 0.0,
    };
    let e = if x == 0.0 {
        min_exp
    } else {
        (x.abs().log2().floor() as i32).max(min_exp)
    };
    2f64.powi(e - mantissa)
}

/// Asserts that the GPU's bytes match the CPU's: exactly, except normal fills (tolerance).
fn assert_matches(job: &RemapJob, cpu: &[u8], gpu: &[u8], what: &str) {
    assert_eq!(cpu.len(), gpu.len(), "{what}: lengths differ");
    let approximate = match job.init.fill {
        Fill::Normal { mean, stddev } => Some((mean, stddev, false)),
        Fill::TruncatedNormal { mean, stddev } => Some((mean, stddev, true)),
        _ => None,
    };
    let Some((mean, stddev, truncated)) = approximate else {
        if let Some(i) = (0..cpu.len()).find(|&i| cpu[i] != gpu[i]) {
            let e = i / job.dtype.size();
            panic!(
                "{what}: byte {i} differs (element {e}, row {}, col {}): cpu {:?} gpu {:?}",
                job.rows.start + e / job.cols,
                e % job.cols,
                &cpu[e * job.dtype.size()..(e + 1) * job.dtype.size()],
                &gpu[e * job.dtype.size()..(e + 1) * job.dtype.size()],
            );
        }
        return;
    };
    let size = job.dtype.size();
    let bound = |x: f32| {
        job.dtype
            .decode(&job.dtype.bits_from_f32(x).to_le_bytes()[..size])
    };
    let (lo, hi) = (bound(mean - 2.0 * stddev), bound(mean + 2.0 * stddev));
    for (e, (c, g)) in cpu.chunks(size).zip(gpu.chunks(size)).enumerate() {
        let g_row = job.rows.start + e / job.cols;
        let col = e % job.cols;
        let initialised = job.source_row(g_row).is_none()
            || job.col_map.as_ref().is_some_and(|m| m[col] == MISSING);
        if !initialised {
            assert_eq!(c, g, "{what}: copied element ({g_row}, {col}) differs");
            continue;
        }
        let (c, g) = (job.dtype.decode(c), job.dtype.decode(g));
        let tolerance = (1e-4 * stddev.max(1.0) as f64).max(1.01 * ulp(job.dtype, c));
        assert!(
            (c - g).abs() <= tolerance,
            "{what}: element ({g_row}, {col}): cpu {c} gpu {g} (tolerance {tolerance})"
        );
        if truncated {
            assert!(
                g >= lo && g <= hi,
                "{what}: truncated element ({g_row}, {col}) = {g} outside [{lo}, {hi}]"
            );
        }
    }
}

fn describe(job: &RemapJob) -> String {
    format!(
        "{} {:?} rows {:?} cols {} old {:?} (cols {}) axis {} init {:?}",
        job.variable,
        job.dtype,
        job.rows,
        job.cols,
        job.old.shape(),
        job.old_cols,
        if job.col_map.is_some() { 1 } else { 0 },
        job.init.fill
    )
}

// ------------------------------------------------------------------------------------------
// Tests
// ------------------------------------------------------------------------------------------

/// Random remaps (axis 0 and 1, all dtypes and initializers, odd widths, partitions,
/// multi-segment old tables) on six engine configurations, against the CPU engine.
#[test]
fn random_jobs_match_the_cpu_engine() {
    let Some(tiny) = tiny_engine() else { return };
    let Some(small) = small_engine() else { return };
    let Some(default) = gpu(GpuOptions::new()) else {
        return;
    };
    let Some(grouped) = grouped_engine() else {
        return;
    };
    // on the software driver, the vec4<u32> gathers of GPUs too
    let Some(narrow) = gpu(GpuOptions::new().wide_units(false)) else {
        return;
    };
    assert!(!narrow.gathers_wide_units());
    // what a GPU runs: one word per thread item, its chunks and windows, transfer buffers
    let Some(hardware) = gpu(GpuOptions::new().hardware_layout(true)) else {
        return;
    };
    assert!(!hardware.gathers_wide_units() && !hardware.imports_host_memory());
    let mut engines = [tiny, small, default, grouped, narrow, hardware];
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x5EED_0001);
    let cases: usize = std::env::var("GPU_TEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    for case in 0..cases {
        let jobs = random_jobs(&mut rng, dir.path(), case);
        if std::env::var("GPU_TEST_CASE").is_ok_and(|c| c != case.to_string()) {
            continue;
        }
        let mut cpu = CpuEngine::new().with_chunk_bytes(1 + rng.below(3000));
        for job in &jobs {
            let expected = run(&mut cpu, job);
            // the tiny engine on every job; the others in turn
            for e in [0, 1 + case % 5] {
                let got = run(&mut engines[e], job);
                if std::env::var("GPU_DEBUG").is_ok() && got != expected {
                    let rb = job.row_bytes();
                    for r in 0..job.rows.len() {
                        if got[r * rb..(r + 1) * rb] != expected[r * rb..(r + 1) * rb] {
                            eprintln!(
                                "case {case} e{e} row {} src {:?} got {:?} want {:?}",
                                job.rows.start + r,
                                job.source_row(job.rows.start + r),
                                &got[r * rb..(r + 1) * rb],
                                &expected[r * rb..(r + 1) * rb]
                            );
                        }
                    }
                    eprintln!("{:?}", engines[e]);
                }
                let what = format!("case {case} engine {e}: {}", describe(job));
                assert_matches(job, &expected, &got, &what);
            }
        }
    }
}

/// On the software driver, windows of old tables are read in the mapped checkpoint files
/// (host-memory imports) instead of copied: at every lead (the table at every 4-byte offset
/// modulo 64 in its file, windows of odd sizes), for rows moved in 16-byte units (as
/// `vec2<u64>`, and as the `vec4<u32>` of GPUs), in u32 units and element by element (a
/// column map), matching the CPU engine; with imports off they are
/// copied. (Windows copied with a lead, where an import is refused, run in
/// `random_jobs_match_the_cpu_engine`: the tiny engine imports.)
#[test]
fn windows_are_read_in_the_mapped_files_on_the_software_driver() {
    let options = || GpuOptions::new().max_binding_bytes(4096).window_bytes(700);
    let Some(mut importing) = gpu(options()) else {
        return;
    };
    let Some(mut copying) = gpu(options().import_host_memory(false)) else {
        return;
    };
    let Some(mut narrow) = gpu(options().wide_units(false)) else {
        return;
    };
    assert!(!copying.imports_host_memory());
    if !importing.adapter_name().contains("llvmpipe") {
        eprintln!("NOTICE: host-memory imports are checked on lavapipe only");
        return;
    }
    assert!(
        importing.imports_host_memory(),
        "lavapipe offers VK_EXT_external_memory_host, but the engine does not import"
    );
    assert!(
        importing.gathers_wide_units() && !narrow.gathers_wide_units(),
        "lavapipe has 64-bit integers, but the engine does not gather vec2<u64> units"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x1EAD);
    // (dtype, columns): 16-byte rows (vec4 units), 12-byte rows (u32 units)
    let tables = [
        (FloatType::F32, 4),
        (FloatType::F32, 3),
        (FloatType::BF16, 8),
        (FloatType::F64, 2),
    ];
    for pad in 0..16 {
        for (t, &(dtype, cols)) in tables.iter().enumerate() {
            let old_rows = 150 + rng.below(50);
            let bytes = rng.bytes(old_rows * cols * dtype.size());
            let name = format!("p{pad}t{t}");
            let ckpt = dir.path().join(&name);
            std::fs::create_dir_all(&ckpt).unwrap();
            // "a" sorts first: the table starts 4 * pad bytes later in the data
            let padding = vec![0u8; 4 * pad];
            let views = vec![
                (
                    "a".to_string(),
                    TensorView::new(Dtype::F32, vec![pad], &padding).unwrap(),
                ),
                (
                    "old".to_string(),
                    TensorView::new(dtype_of(dtype), vec![old_rows, cols], &bytes).unwrap(),
                ),
            ];
            let file = safetensors::serialize(views, None).unwrap();
            std::fs::write(ckpt.join("a.safetensors"), file).unwrap();
            let old = Checkpoint::open(&ckpt)
                .unwrap()
                .tensor("old")
                .unwrap()
                .unwrap();
            let rows = 1 + rng.below(200);
            let axis1 = t == 0 && pad % 2 == 1;
            let (row_map, col_map) = if axis1 {
                (None, Some(index_map(&mut rng, cols, cols)))
            } else {
                (Some(index_map(&mut rng, rows, old_rows)), None)
            };
            let rows = if axis1 { old_rows } else { rows };
            let job = RemapJob {
                variable: name.clone(),
                old,
                dtype,
                rows: 0..rows,
                cols,
                old_cols: cols,
                row_map: row_map.map(Into::into),
                col_map: col_map.map(Into::into),
                init: Initializer::Zeros {}
                    .resolve(&name, &[rows, cols], "test")
                    .unwrap(),
            };
            let expected = run(&mut CpuEngine::new(), &job);
            let what = format!("pad {pad}: {}", describe(&job));
            assert_matches(&job, &expected, &run(&mut importing, &job), &what);
            assert_matches(&job, &expected, &run(&mut copying, &job), &what);
            assert_matches(&job, &expected, &run(&mut narrow, &job), &what);
        }
    }
    assert!(importing.imported_windows() > 0);
    assert_eq!(copying.imported_windows(), 0);
}

/// A scattered row map over an old table larger than the window cache: chunks are processed
/// in groups, each group streaming the table once (f32 rows of whole vec4 units, odd-width bf16
/// rows moved element by element).
#[test]
fn scattered_maps_over_tables_larger_than_the_budget() {
    for import in [false, true] {
        scattered_maps_over_tables_larger_than_the_budget_with(import);
    }
}

/// With `import` (on the software driver) windows come from the mapped files and take no
/// budget, so the table fits and no groups are needed; without, or for rows that are not
/// whole words (which are copied), the groups run, each a pass over the table that the
/// engine counts.
fn scattered_maps_over_tables_larger_than_the_budget_with(import: bool) {
    let Some(mut engine) = gpu(GpuOptions::new()
        .max_binding_bytes(8192)
        .chunk_bytes(600)
        .window_bytes(100)
        .vram_budget(10_000)
        .output_slots(1)
        .staging_slots(1)
        .import_host_memory(import))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(99);
    for (dtype, cols) in [
        (FloatType::F32, 8),
        (FloatType::BF16, 9),
        (FloatType::F64, 3),
    ] {
        let old_rows = 700;
        let bytes = rng.bytes(old_rows * cols * dtype.size());
        let name = format!("s{dtype:?}");
        let old = old_table(dir.path(), &name, dtype, cols, &[300, 400], &bytes, false);
        let rows = 800;
        let map = scattered_map(&mut rng, rows, old_rows);
        let map: Arc<[u32]> = map.into();
        let init = Initializer::RandomUniform {
            minval: -1.0,
            maxval: 1.0,
            seed: 4,
        }
        .resolve(&name, &[rows, cols], "test")
        .unwrap();
        for part in [0..rows, 0..333, 333..rows] {
            let job = RemapJob {
                variable: name.clone(),
                old: old.clone(),
                dtype,
                rows: part,
                cols,
                old_cols: cols,
                row_map: Some(map.clone()),
                col_map: None,
                init,
            };
            let expected = run(&mut CpuEngine::new(), &job);
            let before = engine.passes();
            assert_matches(&job, &expected, &run(&mut engine, &job), &describe(&job));
            let passes = engine.passes() - before;
            // (rows of 18 bytes, not whole words, cannot be imported: those are copied)
            if engine.imports_host_memory() && (cols * dtype.size()).is_multiple_of(4) {
                assert_eq!(passes, 0, "{}", describe(&job));
            } else {
                // chunks of 600 bytes, groups of a few: many passes over the table
                assert!(passes >= 2, "{passes} passes: {}", describe(&job));
            }
        }
    }
}

/// On a GPU (the software driver run as one) whose window cache holds fewer windows than a
/// shuffled map's chunks read (here one of three), the table is streamed in passes, each
/// window once per group of chunks, instead of every chunk loading its windows again.
#[test]
fn a_shuffled_table_over_more_windows_than_the_cache_holds_goes_in_passes() {
    // windows of 128 KiB; chunks of 16 KiB in a ring of 9 buffers (144 KiB), which leaves
    // the cache one window of the 300 KiB budget
    let Some(mut engine) = gpu(GpuOptions::new()
        .hardware_layout(true)
        .max_binding_bytes(128 << 10)
        .chunk_bytes(16 << 10)
        .vram_budget(300 << 10))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // 384 KB: three windows
    let job = shuffled_job(dir.path(), &mut Rng(21), FloatType::F32, 3000, 32);
    let expected = run(&mut CpuEngine::new(), &job);
    assert_matches(&job, &expected, &run(&mut engine, &job), &describe(&job));
    assert!(engine.passes() >= 1, "{} passes", engine.passes());
}

/// A shuffled table larger than the VRAM budget, on a GPU (the software driver run as one):
/// each pass over the table serves output chunks that take most of the budget (the windows
/// stream through the rest), so the passes number about the output over the budget, not
/// eight times that, and each is streamed to the device once. To the host and into a device
/// buffer alike.
#[test]
fn passes_over_a_table_larger_than_the_budget_serve_most_of_the_budget() {
    // an 8 MiB budget, chunks of 64 KiB, windows of about 1 MiB, a 12 MiB table and output
    let budget = 8u64 << 20;
    let Some(mut engine) = gpu(GpuOptions::new()
        .hardware_layout(true)
        .max_binding_bytes(1 << 20)
        .chunk_bytes(64 << 10)
        .vram_budget(budget))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let job = shuffled_job(dir.path(), &mut Rng(77), FloatType::F32, 98_304, 32);
    let expected = run(&mut CpuEngine::new(), &job);
    // at least half the budget of output per pass
    let bound = (expected.len() as u64).div_ceil(budget / 2);

    assert_matches(&job, &expected, &run(&mut engine, &job), &describe(&job));
    let passes = engine.passes();
    assert!(
        (1..=bound).contains(&passes),
        "{passes} passes, at most {bound} wanted"
    );

    let buffer = engine.remap_to_buffer(&job).unwrap();
    let on_device = read_buffer(&engine, &buffer);
    assert_matches(
        &job,
        &expected,
        &on_device[..expected.len()],
        "into a device buffer",
    );
    let passes = engine.passes() - passes;
    assert!(
        (1..=bound).contains(&passes),
        "{passes} passes, at most {bound} wanted"
    );
}

/// Groups of chunks on both ways to the host (chunk buffers mapped where the kernels wrote
/// them, or copied into the readback ring), for whole-word rows and odd-width bf16 rows
/// (pairs of rows share a word): the output to the sink and into a device buffer is the
/// CPU engine's; a sink that fails mid-group has received a prefix of it, and the engine
/// then runs the job again correctly.
#[test]
fn groups_of_chunks_survive_a_failing_sink() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(515);
    let jobs = [
        shuffled_job(dir.path(), &mut rng, FloatType::F32, 49_152, 32),
        shuffled_job(dir.path(), &mut rng, FloatType::BF16, 50_000, 63),
    ];
    for unified in [true, false] {
        // a 4 MiB budget: tables of 6 MiB go in passes
        let Some(mut engine) = gpu(GpuOptions::new()
            .unified_memory(unified)
            .import_host_memory(false)
            .max_binding_bytes(1 << 20)
            .chunk_bytes(64 << 10)
            .vram_budget(4 << 20))
        else {
            return;
        };
        for job in &jobs {
            let what = format!("unified {unified}: {}", describe(job));
            let expected = run(&mut CpuEngine::new(), job);
            let before = engine.passes();
            assert_matches(job, &expected, &run(&mut engine, job), &what);
            assert!(engine.passes() - before >= 2, "{what}: not in passes");
            let mut failing = PrefixSink {
                fail_at: 3,
                calls: 0,
                got: Vec::new(),
            };
            assert!(engine.remap(job, &mut failing).is_err(), "{what}");
            assert!(expected.starts_with(&failing.got), "{what}: not a prefix");
            assert_matches(job, &expected, &run(&mut engine, job), &what);
            let buffer = engine.remap_to_buffer(job).unwrap();
            let on_device = read_buffer(&engine, &buffer);
            assert_matches(job, &expected, &on_device[..expected.len()], &what);
        }
    }
}

/// A sink that keeps what it receives and refuses its `fail_at`-th piece.
struct PrefixSink {
    fail_at: usize,
    calls: usize,
    got: Vec<u8>,
}

impl Sink for PrefixSink {
    fn append(
        &mut self,
        len: usize,
        fill: &mut dyn FnMut(usize, &mut [u8]),
    ) -> warmstart::Result<()> {
        self.calls += 1;
        if self.calls == self.fail_at {
            return Err(warmstart::Error::Gpu {
                kind: GpuFailure::Internal,
                message: "sink refuses".into(),
            });
        }
        let at = self.got.len();
        self.got.resize(at + len, 0);
        fill(0, &mut self.got[at..]);
        Ok(())
    }
}

/// On the software driver, where the kernels read old tables in the mapped files, a table not
/// in the page cache is first read ahead whole, as the CPU engine does (else a shuffled map
/// faults it in from disk a few pages at a time); the output is the same. Not on a GPU,
/// whose windows are copied in order.
#[test]
fn cold_tables_are_read_ahead_where_windows_are_the_mapped_files() {
    let Some(mut engine) = gpu(GpuOptions::new()) else {
        return;
    };
    if !engine.imports_host_memory() {
        eprintln!("NOTICE: this adapter copies windows; nothing is read ahead");
        return;
    }
    // 64 MiB of table (reading the header reads a few MiB of the file ahead), on a disk,
    // where pages can be dropped (not a tmpfs).
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (rows, cols) = (16_384, 1024);
    let mut rng = Rng(5);
    let bytes = rng.bytes(rows * cols * 4);
    let map = scattered_map(&mut rng, rows, rows);
    let job = |old: &TensorData| row_job(old, 0..rows, Some(map.clone()), Initializer::Zeros {});
    let old = old_table(
        dir.path(),
        "cold",
        FloatType::F32,
        cols,
        &[rows],
        &bytes,
        true,
    );
    let expected = run(&mut CpuEngine::new(), &job(&old));
    assert!(run(&mut engine, &job(&old)) == expected);
    assert_eq!(
        Engine::read_ahead_bytes(&engine),
        0,
        "just written: in the page cache"
    );

    // (the cached windows map the file: unmapped pages only can be dropped)
    engine.clear_cache();
    drop(old);
    common::evict(&dir.path().join("cold/a.safetensors"));
    let old = Checkpoint::open(dir.path().join("cold"))
        .unwrap()
        .tensor("old")
        .unwrap()
        .unwrap();
    assert!(run(&mut engine, &job(&old)) == expected);
    assert_eq!(Engine::read_ahead_bytes(&engine), (rows * cols * 4) as u64);
}

/// A scattered row map over a table read in several imported windows (the software driver):
/// output chunks grow so that each window's dispatch moves more rows, making far fewer
/// dispatches than chunks of the same starting size held fixed, with the same output.
#[test]
fn chunks_grow_over_imported_windows() {
    // A budget of 1 MiB shrinks the default chunk to about 171 KiB; grown chunks may reach
    // the 1 MiB binding.
    let options = || {
        GpuOptions::new()
            .max_binding_bytes(1 << 20)
            .vram_budget(1 << 20)
            .output_slots(1)
            .staging_slots(1)
    };
    let Some(mut grown) = gpu(options()) else {
        return;
    };
    let Some(mut fixed) = gpu(options().chunk_bytes(174_760)) else {
        return;
    };
    if !grown.imports_host_memory() {
        eprintln!("NOTICE: chunk growth needs host-memory imports (the software driver)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x6204);
    // 256-byte rows (vec4 units) and 12-byte rows (u32 units), five windows each
    for (t, (cols, old_rows, rows)) in [(64, 16_384, 20_000), (3, 400_000, 60_000)]
        .into_iter()
        .enumerate()
    {
        let bytes = rng.bytes(old_rows * cols * 4);
        let name = format!("g{t}");
        let old = old_table(
            dir.path(),
            &name,
            FloatType::F32,
            cols,
            &[old_rows],
            &bytes,
            true,
        );
        let map = scattered_map(&mut rng, rows, old_rows);
        let job = row_job(
            &old,
            0..rows,
            Some(map),
            Initializer::Constant { value: 0.5 },
        );
        let expected = run(&mut CpuEngine::new(), &job);
        let (before_grown, before_fixed) = (grown.dispatches(), fixed.dispatches());
        assert_matches(&job, &expected, &run(&mut grown, &job), &describe(&job));
        assert_matches(&job, &expected, &run(&mut fixed, &job), &describe(&job));
        let (by_grown, by_fixed) = (
            grown.dispatches() - before_grown,
            fixed.dispatches() - before_fixed,
        );
        assert!(
            3 * by_grown < by_fixed,
            "{cols} columns: {by_grown} dispatches with growth, {by_fixed} without"
        );
    }
    assert!(grown.imported_windows() >= 10);
}

/// On the software driver, rows in runs averaging 2 KiB or more are moved by transfer
/// commands rather than the gather kernel: long rows shuffled, short rows in long runs, identity
/// rows; over windows and chunks that split the runs, with windows imported or copied, and
/// for partitions. The output is the CPU engine's; a job whose rows all have a source makes no
/// dispatch at all, and makes gathers with copies turned off.
#[test]
fn long_runs_of_rows_are_copied_on_the_software_driver() {
    let options = |import: bool| {
        GpuOptions::new()
            .max_binding_bytes(64 << 10)
            .window_bytes(40 << 10)
            .chunk_bytes(48 << 10)
            .import_host_memory(import)
    };
    let Some(probe) = gpu(options(true)) else {
        return;
    };
    if !probe.adapter_name().contains("llvmpipe") {
        eprintln!("NOTICE: row copies are checked on lavapipe only");
        return;
    }
    drop(probe);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0xC0B1);
    let shuffled = |rng: &mut Rng, n: usize| {
        let mut v: Vec<u32> = (0..n as u32).collect();
        for i in (1..n).rev() {
            v.swap(i, rng.below(i + 1));
        }
        v
    };
    // (dtype, columns, old rows): 2 KiB rows of vec4 units, 2052-byte rows of u32 units,
    // 64-byte rows
    let tables = [
        (FloatType::F32, 512, 300),
        (FloatType::BF16, 1026, 200),
        (FloatType::F64, 8, 5000),
    ];
    for import in [true, false] {
        let Some(mut copying) = gpu(options(import)) else {
            return;
        };
        let Some(mut gathering) = gpu(options(import).row_copies(false)) else {
            return;
        };
        for (t, &(dtype, cols, old_rows)) in tables.iter().enumerate() {
            let bytes = rng.bytes(old_rows * cols * dtype.size());
            let name = format!("c{t}{import}");
            let parts = split(&mut rng, old_rows, 3);
            let old = old_table(dir.path(), &name, dtype, cols, &parts, &bytes, t != 1);
            let long_rows = cols * dtype.size() >= 2048;
            // long rows: a shuffle; short rows: runs of 64 old rows in a shuffled order
            let full: Vec<u32> = if long_rows {
                shuffled(&mut rng, old_rows)
            } else {
                shuffled(&mut rng, old_rows / 64)
                    .into_iter()
                    .flat_map(|b| b * 64..(b + 1) * 64)
                    .collect()
            };
            let mut gappy = full.clone();
            for m in gappy.iter_mut() {
                if rng.chance(0.01) {
                    *m = MISSING;
                }
            }
            let rows = full.len();
            for (map, part) in [
                (None, 0..old_rows),
                (Some(full), 0..rows),
                (Some(gappy.clone()), 0..rows),
                (Some(gappy), rows / 3..rows - 7),
            ] {
                let complete = map.as_ref().is_none_or(|m| !m.contains(&MISSING));
                let init = Initializer::RandomUniform {
                    minval: -1.0,
                    maxval: 1.0,
                    seed: 7,
                };
                let job = row_job(&old, part, map, init);
                let what = format!("import {import}, table {t}: {}", describe(&job));
                let expected = run(&mut CpuEngine::new(), &job);
                let before = copying.dispatches();
                assert_matches(&job, &expected, &run(&mut copying, &job), &what);
                if complete {
                    assert_eq!(copying.dispatches(), before, "{what}: rows were gathered");
                }
                let before = gathering.dispatches();
                assert_matches(&job, &expected, &run(&mut gathering, &job), &what);
                assert!(gathering.dispatches() > before, "{what}: no gather");
            }
        }
        assert_eq!(copying.imported_windows() > 0, import);
    }
}

/// Uniform fills with awkward parameters are bit-identical: negative and zero ranges, signed
/// zeros, subnormal ranges and sums, cancellation to zero, every dtype.
#[test]
fn uniform_fills_are_bit_exact_on_edge_parameters() {
    let Some(mut engine) = small_engine() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let old = old_table(dir.path(), "u", FloatType::F32, 1, &[1], &[0; 4], true);
    let tiny = f32::from_bits(1) as f64; // smallest subnormal
    let cases: &[(f64, f64)] = &[
        (0.0, 1.0),
        (-1.0, 1.0),
        (1.0, -1.0),
        (-0.0, 1.0),
        (-0.0, -1.0),
        (0.0, -0.0),
        (-1.5, -1.5),
        (3.0, 3.000_000_2),
        (1e-38, 1.1e-38),
        (-1e-38, 1e-38),
        (-tiny, tiny),
        (tiny, 0.0),
        (-1.17e-38, 1e-45),
        (1e30, 3e38),
        (-3.0e38, 0.0),
        (-2.5, 7.0),
        (0.1, 0.2),
    ];
    for dtype in FloatType::ALL {
        let old = if dtype == FloatType::F32 {
            old.clone()
        } else {
            let zero = vec![0u8; dtype.size()];
            old_table(
                dir.path(),
                &format!("u{dtype:?}"),
                dtype,
                1,
                &[1],
                &zero,
                true,
            )
        };
        for (i, &(minval, maxval)) in cases.iter().enumerate() {
            let rows = 3001;
            let init = Initializer::RandomUniform {
                minval,
                maxval,
                seed: i as u64,
            }
            .resolve("u", &[rows, 7], "test")
            .unwrap();
            let job = RemapJob {
                variable: "u".into(),
                old: old.clone(),
                dtype,
                rows: 0..rows,
                cols: 1,
                old_cols: 1,
                row_map: Some(vec![MISSING; rows].into()),
                col_map: None,
                init,
            };
            let expected = run(&mut CpuEngine::new(), &job);
            let got = run(&mut engine, &job);
            assert_matches(
                &job,
                &expected,
                &got,
                &format!("uniform({minval}, {maxval}) {dtype:?}"),
            );
        }
    }
}

/// The integer float arithmetic of `shaders/float.wgsl`, on the device, against Rust's f32
/// operators and the `half` crate, on a million random inputs (subnormals, zeros, both signs,
/// every exponent): the uniform product and sum, and the f16, bf16 and f64 encodings.
#[test]
fn wgsl_float_library_matches_rust() {
    let Some(engine) = tiny_engine() else { return };
    const HARNESS: &str = r#"
@group(0) @binding(0) var<storage, read> input: array<vec4<u32>>; // (k, range, minval, x)
@group(0) @binding(1) var<storage, read_write> output: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> wide: array<vec2<u32>>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * 64u;
    if (i >= arrayLength(&input)) { return; }
    let v = input[i];
    let product = f32_mul_unit(v.x, v.y);
    output[i] = vec4<u32>(product, f32_add(product, v.z), f32_to_f16(v.w), f32_to_bf16(v.w));
    wide[i] = f32_to_f64(v.w);
}
"#;
    let source = format!(
        "{}\n{}\n{HARNESS}",
        include_str!("../shaders/philox.wgsl"),
        include_str!("../shaders/float.wgsl")
    );
    let mut rng = Rng(2024);
    // random f32 bits: any sign, exponent and mantissa, finite (exponents 0..=254)
    let finite = |rng: &mut Rng| loop {
        let bits = rng.next() as u32;
        let bits = match rng.below(4) {
            0 => bits & 0x807F_FFFF,                 // subnormal or zero
            1 => bits & 0x80FF_FFFF,                 // tiny exponents
            2 => (bits & 0x83FF_FFFF) | 0x3C00_0000, // around 1
            _ => bits,
        };
        if (bits >> 23) & 0xFF != 0xFF {
            return bits;
        }
    };
    let n = 1 << 20;
    let input: Vec<u32> = (0..n)
        .flat_map(|_| {
            let k = (rng.next() as u32) & 0x7F_FFFF;
            let k = [k, 0, 1, 0x7F_FFFF][rng.below(8).min(3)];
            [k, finite(&mut rng), finite(&mut rng), finite(&mut rng)]
        })
        .collect();
    let device = engine.device();
    let queue = engine.queue();
    let buffer = |size: u64, usage| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size,
            usage,
            mapped_at_creation: false,
        })
    };
    use wgpu::BufferUsages as U;
    let inputs = buffer(16 * n as u64, U::STORAGE | U::COPY_DST);
    queue.write_buffer(&inputs, 0, bytemuck::cast_slice(&input));
    let outputs = buffer(16 * n as u64, U::STORAGE | U::COPY_SRC);
    let wides = buffer(8 * n as u64, U::STORAGE | U::COPY_SRC);
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("float harness"),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: None,
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: inputs.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: outputs.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 2,
                resource: wides.as_entire_binding(),
            },
        ],
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(1024, (n / 64 / 1024) as u32, 1);
    }
    queue.submit([encoder.finish()]);
    let out: Vec<u32> = bytemuck::cast_slice(&read_buffer(&engine, &outputs)).to_vec();
    let wide: Vec<u32> = bytemuck::cast_slice(&read_buffer(&engine, &wides)).to_vec();
    for i in 0..n {
        let [k, range, minval, x] = [
            input[4 * i],
            input[4 * i + 1],
            input[4 * i + 2],
            input[4 * i + 3],
        ];
        let unit = k as f32 * (1.0 / 8_388_608.0);
        let product = unit * f32::from_bits(range);
        let sum = product + f32::from_bits(minval);
        let x = f32::from_bits(x);
        let want = [
            product.to_bits(),
            sum.to_bits(),
            half::f16::from_f32(x).to_bits() as u32,
            half::bf16::from_f32(x).to_bits() as u32,
        ];
        assert_eq!(
            out[4 * i..4 * i + 4],
            want,
            "input {i}: k {k:#x} range {range:#x} minval {minval:#x} x {:#x}",
            x.to_bits()
        );
        let w = (x as f64).to_bits();
        assert_eq!(
            wide[2 * i..2 * i + 2],
            [w as u32, (w >> 32) as u32],
            "f64 of {x:e}"
        );
    }
}

/// A chunk larger than 65,535 workgroups of 256 threads: the dispatch is capped at the
/// device's limit and the kernel's grid-stride loop covers the rest. The table (100 MB) also
/// spans several default-size windows.
#[test]
fn dispatches_beyond_the_workgroup_limit() {
    let Some(mut engine) = gpu(GpuOptions::new()
        .chunk_bytes(96 << 20)
        .window_bytes(40 << 20)
        .vram_budget(1 << 30))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(7);
    let (rows, cols) = (400_000, 64);
    let bytes = rng.bytes(rows * cols * 4);
    let old = old_table(
        dir.path(),
        "big",
        FloatType::F32,
        cols,
        &[rows / 2, rows / 2],
        &bytes,
        false,
    );
    let map: Vec<u32> = (0..rows as u32)
        .map(|r| {
            if r % 97 == 3 {
                MISSING
            } else {
                (r * 7) % rows as u32
            }
        })
        .collect();
    let init = Initializer::RandomUniform {
        minval: -0.05,
        maxval: 0.05,
        seed: 3,
    };
    let job = row_job(&old, 0..rows, Some(map), init);
    let expected = run(&mut CpuEngine::new(), &job);
    let got = run(&mut engine, &job);
    assert_matches(&job, &expected, &got, "400k x 64 f32");
}

/// The device path: `remap_into` writes exactly the output's (padded) bytes at the offset and
/// nothing else, and `remap_to_buffer` holds the same bytes as the CPU's.
#[test]
fn remap_into_a_caller_buffer_at_an_offset() {
    let Some(mut engine) = tiny_engine() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(11);
    for (dtype, cols) in [
        (FloatType::BF16, 5),
        (FloatType::F32, 3),
        (FloatType::F64, 2),
    ] {
        let rows = 41;
        let bytes = rng.bytes(30 * cols * dtype.size());
        let old = old_table(
            dir.path(),
            &format!("o{dtype:?}"),
            dtype,
            cols,
            &[10, 20],
            &bytes,
            false,
        );
        let map: Vec<u32> = (0..rows)
            .map(|_| {
                if rng.chance(0.3) {
                    MISSING
                } else {
                    rng.below(30) as u32
                }
            })
            .collect();
        let job = RemapJob {
            variable: "o".into(),
            old,
            dtype,
            rows: 3..rows,
            cols,
            old_cols: cols,
            row_map: Some(map.into()),
            col_map: None,
            init: Initializer::RandomUniform {
                minval: 0.0,
                maxval: 1.0,
                seed: 1,
            }
            .resolve("o", &[rows, cols], "test")
            .unwrap(),
        };
        let expected = run(&mut CpuEngine::new(), &job);
        let padded = expected.len().next_multiple_of(4);

        let offset = 24u64;
        let size = offset + padded as u64 + 16;
        let device = engine.device().clone();
        let dst = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("caller's buffer"),
            size,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: true,
        });
        dst.get_mapped_range_mut(..).unwrap().slice(..).fill(0xAB);
        dst.unmap();
        engine.remap_into(&job, &dst, offset).unwrap();
        let got = read_buffer(&engine, &dst);
        let o = offset as usize;
        assert!(
            got[..o].iter().all(|&b| b == 0xAB),
            "{dtype:?}: bytes before the offset changed"
        );
        assert_eq!(
            &got[o..o + expected.len()],
            &expected[..],
            "{dtype:?}: output differs"
        );
        assert!(
            got[o + expected.len()..o + padded].iter().all(|&b| b == 0),
            "{dtype:?}: padding is not zero"
        );
        assert!(
            got[o + padded..].iter().all(|&b| b == 0xAB),
            "{dtype:?}: bytes after the output changed"
        );

        let buffer = engine.remap_to_buffer(&job).unwrap();
        assert_eq!(
            &read_buffer(&engine, &buffer)[..expected.len()],
            &expected[..]
        );

        // refused destinations are refusals (the caller's mistake), not panics
        let no_copy = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("caller's buffer without COPY_DST"),
            size,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        for refused in [
            engine.remap_into(&job, &dst, 2),
            engine.remap_into(&job, &dst, size - 4),
            engine.remap_into(&job, &no_copy, 0),
        ] {
            let e = refused.unwrap_err();
            assert_eq!(e.gpu_failure(), Some(GpuFailure::Usage), "{e}");
            assert!(e.is_refusal(), "{e}");
        }
    }
}

/// A warm-started tensor larger than any buffer of the caller's device (its
/// `max_buffer_size`) is refused before any work, as the caller's to fix (`Usage`), by
/// `to_device` and `remap_to_buffer` alike.
#[test]
fn tensors_larger_than_the_callers_buffers_are_refused() {
    let Some(probe) = tiny_engine() else { return };
    drop(probe);
    let dir = tempfile::tempdir().unwrap();
    // [64, 64] f32: 16 KiB, against buffers of at most 8 KiB
    let job = reversed_f32_job(dir.path(), "t", 64, 64, 11);
    let (device, queue) = callers_device(|limits| wgpu::Limits {
        max_buffer_size: 8192,
        ..limits
    });
    let mut engine = GpuEngine::from_device(device, queue).unwrap();
    let e = engine.remap_to_buffer(&job).unwrap_err();
    assert_eq!(e.gpu_failure(), Some(GpuFailure::Usage), "{e}");
    assert!(e.is_refusal());
    assert!(e.to_string().contains("max_buffer_size 8192"), "{e}");
    // a plan copying the same table
    let model = Model::new(vec![Variable::new("old", Dtype::F32, vec![64, 64])]).unwrap();
    let plan = Plan::new(&WarmStartSettings::new(dir.path().join("t")), &model).unwrap();
    assert!(matches!(plan.tensors()[0].job, Job::Copy { .. }));
    let e = engine.to_device(&plan).unwrap_err();
    assert_eq!(e.gpu_failure(), Some(GpuFailure::Usage), "{e}");
}

/// Reads a buffer back with its own staging buffer (as a caller would).
fn read_buffer(engine: &GpuEngine, buffer: &wgpu::Buffer) -> Vec<u8> {
    let device = engine.device();
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("test readback"),
        size: buffer.size(),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, buffer.size());
    let index = engine.queue().submit([encoder.finish()]);
    staging.map_async(wgpu::MapMode::Read, .., |r| r.unwrap());
    device
        .poll(wgpu::PollType::Wait {
            submission_index: Some(index),
            timeout: Some(std::time::Duration::from_secs(60)),
        })
        .unwrap();
    let data = staging.get_mapped_range(..).unwrap().to_vec();
    staging.unmap();
    data
}

/// Embedding in a trainer: a caller's device handed in, the plan's warm-started tensors
/// (copies and remaps) returned as device buffers equal to `Plan::to_host` on the CPU.
#[test]
fn to_device_on_a_callers_device_matches_to_host() {
    let Some(probe) = tiny_engine() else { return };
    drop(probe);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // old checkpoint: emb [4, 3] f32 (partitioned in two), bias [3] f16
    let emb: Vec<u8> = (0..12)
        .flat_map(|i| (i as f32 * 1.5).to_le_bytes())
        .collect();
    let bias: Vec<u8> = [1.0f32, -2.0, 0.5]
        .iter()
        .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
        .collect();
    let file = safetensors::serialize(
        [
            (
                "emb/part_0",
                TensorView::new(Dtype::F32, vec![1, 3], &emb[..12]).unwrap(),
            ),
            (
                "emb/part_1",
                TensorView::new(Dtype::F32, vec![3, 3], &emb[12..]).unwrap(),
            ),
            ("bias", TensorView::new(Dtype::F16, vec![3], &bias).unwrap()),
        ],
        None,
    )
    .unwrap();
    std::fs::write(d.join("old.safetensors"), file).unwrap();
    std::fs::write(d.join("old.txt"), "a\nb\nc\nd\n").unwrap();
    std::fs::write(d.join("new.txt"), "d\nx\nb\na\ny\n").unwrap();
    let model = Model::new(vec![
        Variable::partitioned("emb", Dtype::F32, vec![7, 3], &[4, 3]),
        Variable::new("bias", Dtype::F16, vec![3]),
    ])
    .unwrap();
    let settings = WarmStartSettings::new(d.join("old.safetensors")).vocab_info(
        "emb",
        VocabInfo::new(d.join("new.txt"), 5, 2, d.join("old.txt")).backup_initializer(
            Initializer::TruncatedNormal {
                mean: 0.0,
                stddev: 0.1,
                seed: 5,
            },
        ),
    );
    let plan = Plan::new(&settings, &model).unwrap();
    let expected = plan.to_host(&mut CpuEngine::new()).unwrap();

    // the caller's own device
    let (device, queue) = callers_device(|_| wgpu::Limits::default());
    let mut engine = GpuEngine::from_device(device, queue).unwrap();
    let tensors: Vec<DeviceTensor> = engine.to_device(&plan).unwrap();
    assert_eq!(tensors.len(), expected.len());
    for (t, e) in tensors.iter().zip(&expected) {
        assert_eq!(
            (t.name.as_str(), t.dtype, &t.shape),
            (e.name.as_str(), e.dtype, &e.shape)
        );
        assert_eq!(t.byte_len as usize, e.data.len());
        let got = read_buffer(&engine, &t.buffer);
        let job = plan.tensors().iter().find(|p| p.name == t.name).unwrap();
        match &job.job {
            Job::Remap(job) => assert_matches(job, &e.data, &got[..e.data.len()], &t.name),
            _ => assert_eq!(&got[..e.data.len()], &e.data[..], "{}", t.name),
        }
    }
}

/// `tensor_into`: every tensor of a plan, whatever its job (a remap, a copy, a kept tensor's
/// initial value), written into one arena buffer of the caller's at offsets of its choosing,
/// equal to the CPU engine's bytes; nothing outside each tensor's padded bytes changes.
#[test]
fn tensor_into_one_arena_of_the_callers() {
    let Some(mut engine) = tiny_engine() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let f32s = |n: usize, k: f32| -> Vec<u8> {
        (0..n).flat_map(|i| (i as f32 * k).to_le_bytes()).collect()
    };
    let f16s: Vec<u8> = [1.0f32, -2.0, 0.5]
        .iter()
        .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
        .collect();
    let write = |name: &str, tensors: Vec<(&str, Dtype, Vec<usize>, &[u8])>| {
        let views = tensors
            .into_iter()
            .map(|(n, dt, shape, data)| (n, TensorView::new(dt, shape, data).unwrap()));
        std::fs::write(d.join(name), safetensors::serialize(views, None).unwrap()).unwrap();
    };
    let (old_emb, new_emb, step) = (f32s(12, 1.5), f32s(21, -1.0), 42i64.to_le_bytes());
    write(
        "old.safetensors",
        vec![
            ("emb", Dtype::F32, vec![4, 3], &old_emb),
            ("bias", Dtype::F16, vec![3], &f16s),
        ],
    );
    write(
        "model.safetensors",
        vec![
            ("emb", Dtype::F32, vec![7, 3], &new_emb),
            ("bias", Dtype::F16, vec![3], &[0; 6]),
            ("step", Dtype::I64, vec![], &step),
        ],
    );
    std::fs::write(d.join("old.txt"), "a\nb\nc\nd\n").unwrap();
    std::fs::write(d.join("new.txt"), "d\nx\nb\na\ny\n").unwrap();
    let mut model = Model::open(d.join("model.safetensors")).unwrap();
    model.mark_non_trainable(&["step".into()]).unwrap();
    let settings = WarmStartSettings::new(d.join("old.safetensors")).vocab_info(
        "emb",
        VocabInfo::new(d.join("new.txt"), 5, 2, d.join("old.txt"))
            .backup_initializer(Initializer::Constant { value: 0.25 }),
    );
    let plan = Plan::new(&settings, &model).unwrap();
    plan.write_file(&mut CpuEngine::new(), &d.join("cpu.safetensors"))
        .unwrap();
    let cpu = std::fs::read(d.join("cpu.safetensors")).unwrap();
    let expected = safetensors::SafeTensors::deserialize(&cpu).unwrap();

    let arena = engine.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("arena"),
        size: 1024,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: true,
    });
    arena.get_mapped_range_mut(..).unwrap().slice(..).fill(0xAB);
    arena.unmap();
    let tensors = plan.tensors();
    assert_eq!(tensors.len(), 3);
    let offsets = [0u64, 256, 512];
    for (t, &offset) in tensors.iter().zip(&offsets) {
        engine.tensor_into(t, &arena, offset).unwrap();
    }
    let got = read_buffer(&engine, &arena);
    for (t, &offset) in tensors.iter().zip(&offsets) {
        let want = expected.tensor(&t.name).unwrap().data().to_vec();
        let (at, padded) = (offset as usize, want.len().next_multiple_of(4));
        assert_eq!(&got[at..at + want.len()], &want[..], "{}", t.name);
        assert!(got[at + want.len()..at + padded].iter().all(|&b| b == 0));
        assert!(got[at + padded..at + 256].iter().all(|&b| b == 0xAB));
    }
    // a kept tensor of a model declared in code has no value to write
    let declared = Model::new(vec![Variable::new("step", Dtype::I64, vec![])]).unwrap();
    let none = WarmStartSettings::new(d.join("old.safetensors"))
        .vars_to_warm_start(VarsToWarmStart::Regexes(vec!["emb".into()]));
    let plan = Plan::new(&none, &declared).unwrap();
    let e = engine
        .tensor_into(&plan.tensors()[0], &arena, 0)
        .unwrap_err();
    assert_eq!(e.gpu_failure(), Some(GpuFailure::Usage), "{e}");
}

// The embedding example, compiled into this test so that it is exercised by `cargo test`.
#[path = "../examples/embed_in_trainer.rs"]
#[allow(dead_code)]
mod embed_in_trainer;

/// `examples/embed_in_trainer.rs`: a trainer's device, the plan's tensors as device buffers.
#[test]
fn the_embedding_example_works() {
    let Some(probe) = tiny_engine() else { return };
    drop(probe);
    let dir = tempfile::tempdir().unwrap();
    let (shape, values) = embed_in_trainer::run(dir.path()).unwrap();
    assert_eq!(shape, [5, 4]);
    // c and a keep their old rows; d, e and the OOV bucket are truncated normal (stddev 0.02)
    assert_eq!(values[..8], [8.0, 9.0, 10.0, 11.0, 0.0, 1.0, 2.0, 3.0]);
    assert!(
        values[8..].iter().all(|v| v.abs() < 0.04 && *v != 0.0),
        "{values:?}"
    );
}

/// Bad input and sink failures are errors, not panics, and the engine stays usable.
#[test]
fn errors_leave_the_engine_usable() {
    for unified in [true, false] {
        errors_leave_the_engine_usable_with(unified);
    }
}

fn errors_leave_the_engine_usable_with(unified: bool) {
    let options = GpuOptions::new()
        .max_binding_bytes(64)
        .chunk_bytes(32)
        .unified_memory(unified);
    let Some(mut engine) = gpu(options) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(3);
    let bytes = rng.bytes(40 * 5 * 4);
    let old = old_table(dir.path(), "e", FloatType::F32, 5, &[40], &bytes, true);
    let job = |cols: usize, map: Vec<u32>| RemapJob {
        variable: "e".into(),
        old: old.clone(),
        dtype: FloatType::F32,
        rows: 0..map.len(),
        cols,
        old_cols: cols,
        row_map: Some(map.into()),
        col_map: None,
        init: Initializer::Ones {}.resolve("e", &[40, cols], "t").unwrap(),
    };
    let good = job(5, (0..40).rev().collect());
    // an old row past the table
    let mut bad_map: Vec<u32> = (0..40).collect();
    bad_map[17] = 40;
    let mut sink = Vec::new();
    assert!(engine.remap(&job(5, bad_map), &mut sink).is_err());
    // the sink fails on its second chunk
    let mut failing = PrefixSink {
        fail_at: 2,
        calls: 0,
        got: Vec::new(),
    };
    let err = engine.remap(&good, &mut failing).unwrap_err();
    assert!(err.to_string().contains("sink refuses"), "{err}");
    // a row wider than one binding (64 bytes): refused with the CPU engine suggested
    let wide = RemapJob {
        old: old_table(
            dir.path(),
            "w",
            FloatType::F32,
            20,
            &[10],
            &rng.bytes(800),
            true,
        ),
        ..job(20, (0..10).collect())
    };
    let err = engine.remap(&wide, &mut sink).unwrap_err();
    assert!(err.to_string().contains("storage binding"), "{err}");
    // still fine afterwards
    let expected = run(&mut CpuEngine::new(), &good);
    assert_eq!(run(&mut engine, &good), expected);
}

/// A device lost under the engine (here destroyed) ends its work in `DeviceLost`, whatever
/// errors the lost device raised after it, and never in a panic; the writer then leaves
/// nothing behind.
#[test]
fn a_lost_device_is_reported_as_lost() {
    let Some(mut engine) = gpu(GpuOptions::new().chunk_bytes(256)) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let job = reversed_f32_job(dir.path(), "e", 64, 8, 5);
    run(&mut engine, &job);
    // lost while the job runs: the sink destroys the device when handed the first chunk
    struct Destroys(wgpu::Device, Vec<u8>);
    impl Sink for Destroys {
        fn append(
            &mut self,
            len: usize,
            fill: &mut dyn FnMut(usize, &mut [u8]),
        ) -> warmstart::Result<()> {
            self.0.destroy();
            self.1.resize(len, 0);
            fill(0, &mut self.1);
            Ok(())
        }
    }
    let mut sink = Destroys(engine.device().clone(), Vec::new());
    let e = engine.remap(&job, &mut sink).unwrap_err();
    assert_eq!(e.gpu_failure(), Some(GpuFailure::DeviceLost), "{e}");
    // and lost before the next one
    let e = engine.remap(&job, &mut Vec::new()).unwrap_err();
    assert_eq!(e.gpu_failure(), Some(GpuFailure::DeviceLost), "{e}");
    assert_eq!(e.exit_code(), 1);
}

/// `clear_cache` releases the windows read in the mapped checkpoint files at once: with the
/// job's own handle gone too, the file is no longer mapped in the process. After a remap into
/// a device buffer, whose submission the engine does not wait for, the windows stayed mapped
/// until the device was next polled; and while that work still ran (on a loaded machine,
/// one run in three), until it finished.
#[cfg(target_os = "linux")]
#[test]
fn clear_cache_unmaps_imported_windows() {
    let Some(mut engine) = gpu(GpuOptions::new().max_binding_bytes(4096).window_bytes(700)) else {
        return;
    };
    if !engine.imports_host_memory() {
        eprintln!("NOTICE: host-memory imports are checked on lavapipe only");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let job = reversed_f32_job(dir.path(), "c", 300, 4, 0xC1EA);
    let _warm = engine.remap_to_buffer(&job).unwrap();
    assert!(engine.imported_windows() > 0);
    drop(job);
    let file = dir.path().join("c/a.safetensors");
    let mapped = || {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        maps.contains(file.to_str().unwrap())
    };
    assert!(mapped(), "the cached windows keep the file mapped");
    engine.clear_cache();
    assert!(!mapped(), "the file is still mapped after clear_cache");
}

/// A plan with a row wider than one storage binding is refused before anything is written:
/// `write_file` creates no file, and `to_host` and `to_device` compute nothing (the first
/// tensor, a plain copy, would come first), with the CPU engine suggested.
#[test]
fn rows_wider_than_a_binding_are_refused_before_writing() {
    let Some(mut engine) = gpu(GpuOptions::new().max_binding_bytes(64)) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let table = |rows: usize| -> Vec<u8> {
        (0..rows * 20)
            .flat_map(|i| (i as f32).to_le_bytes())
            .collect()
    };
    // a small tensor first, then emb: [rows, 20] f32 (80-byte rows)
    let write = |name: &str, rows: usize| {
        let (emb, bias) = (table(rows), [1u8; 8]);
        let file = safetensors::serialize(
            [
                (
                    "a_bias",
                    TensorView::new(Dtype::F32, vec![2], &bias).unwrap(),
                ),
                (
                    "emb",
                    TensorView::new(Dtype::F32, vec![rows, 20], &emb).unwrap(),
                ),
            ],
            None,
        )
        .unwrap();
        std::fs::write(d.join(name), file).unwrap();
    };
    write("old.safetensors", 3);
    write("model.safetensors", 4);
    std::fs::write(d.join("old.txt"), "a\nb\nc\n").unwrap();
    std::fs::write(d.join("new.txt"), "c\nx\na\n").unwrap();
    let model = Model::open(d.join("model.safetensors")).unwrap();
    let settings = WarmStartSettings::new(d.join("old.safetensors")).vocab_info(
        "emb",
        VocabInfo::new(d.join("new.txt"), 3, 1, d.join("old.txt")),
    );
    let plan = Plan::new(&settings, &model).unwrap();
    plan.check_engine(&CpuEngine::new()).unwrap();
    let refused = |e: warmstart::Error| {
        let text = e.to_string();
        assert!(
            text.contains("emb") && text.contains("storage binding"),
            "{text}"
        );
        assert!(text.contains("CPU engine"), "{text}");
        assert_eq!(e.exit_code(), 2, "{text}");
    };
    refused(plan.check_engine(&engine).unwrap_err());
    let out = d.join("warm.safetensors");
    let wrote = std::sync::atomic::AtomicBool::new(false);
    let progress = |_| wrote.store(true, std::sync::atomic::Ordering::Relaxed);
    refused(
        plan.write_file_with_progress(&mut engine, &out, &progress)
            .unwrap_err(),
    );
    assert!(!wrote.into_inner(), "bytes were written before the refusal");
    let left: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 4, "{left:?}");
    refused(plan.to_host(&mut engine).unwrap_err());
    refused(engine.to_device(&plan).unwrap_err());
    // the CPU engine computes it
    plan.write_file(&mut CpuEngine::new(), &out).unwrap();
}

/// The CLI: `--backend gpu` with `WGPU_ADAPTER_NAME` naming no adapter fails with exit code 1,
/// a message, and no output file; `--backend gpu` otherwise names the adapter in the report.
#[test]
fn cli_gpu_backend_and_adapter_errors() {
    let Some(probe) = tiny_engine() else { return };
    drop(probe);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data: Vec<u8> = (0..8).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let file = safetensors::serialize(
        [(
            "emb",
            TensorView::new(Dtype::F32, vec![4, 2], &data).unwrap(),
        )],
        None,
    )
    .unwrap();
    std::fs::write(d.join("old.safetensors"), &file).unwrap();
    std::fs::write(d.join("model.safetensors"), &file).unwrap();
    std::fs::write(d.join("old.txt"), "a\nb\nc\nd\n").unwrap();
    std::fs::write(d.join("new.txt"), "d\nc\nz\na\n").unwrap();
    std::fs::write(
        d.join("plan.toml"),
        "checkpoint = \"old.safetensors\"\nmodel = \"model.safetensors\"\n\
         [vocab.emb]\nnew_vocab = \"new.txt\"\nnew_vocab_size = 4\nnum_oov_buckets = 0\nold_vocab = \"old.txt\"\n",
    )
    .unwrap();
    let cli = env!("CARGO_BIN_EXE_warmstart");
    let out = d.join("out.safetensors");
    let run = |adapter: Option<&str>| {
        let mut cmd = std::process::Command::new(cli);
        cmd.args([
            "run",
            "plan.toml",
            "--backend",
            "gpu",
            "--quiet",
            "--output",
        ])
        .arg(&out)
        .arg("--report")
        .arg(d.join("report.json"))
        .current_dir(d);
        if let Some(name) = adapter {
            cmd.env("WGPU_ADAPTER_NAME", name);
        }
        cmd.output().unwrap()
    };
    let failed = run(Some("no such adapter anywhere"));
    assert_eq!(failed.status.code(), Some(1), "{failed:?}");
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("WGPU_ADAPTER_NAME"), "{stderr}");
    assert!(!out.exists());
    // the report names the kind of failure, for a job runner to react to
    let report = std::fs::read_to_string(d.join("report.json")).unwrap();
    assert!(
        report.contains("\"gpu_failure\": \"no_device\""),
        "{report}"
    );

    // `auto` uses the GPU engine only on a hardware adapter, never on the software driver
    let auto = std::process::Command::new(cli)
        .args([
            "run",
            "plan.toml",
            "--backend",
            "auto",
            "--dry-run",
            "--quiet",
            "--report",
        ])
        .arg(d.join("auto.json"))
        .arg("--output")
        .arg(&out)
        .current_dir(d)
        .output()
        .unwrap();
    assert_eq!(auto.status.code(), Some(0), "{auto:?}");
    let report = std::fs::read_to_string(d.join("auto.json")).unwrap();
    if warmstart::engine::gpu::hardware_adapter_available() {
        assert!(report.contains("\"backend\": \"gpu: "), "{report}");
    } else {
        assert!(report.contains("\"backend\": \"cpu\""), "{report}");
    }

    let ok = run(None);
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    let report = std::fs::read_to_string(d.join("report.json")).unwrap();
    assert!(report.contains("\"backend\": \"gpu: "), "{report}");
    let written = std::fs::read(&out).unwrap();
    let st = safetensors::SafeTensors::deserialize(&written).unwrap();
    let emb: Vec<f32> = st
        .tensor("emb")
        .unwrap()
        .data()
        .chunks(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(emb, [6.0, 7.0, 4.0, 5.0, 0.0, 0.0, 0.0, 1.0]);
}

/// `random_jobs` covers `split` and `index_map` edge cases; keep the helpers honest.
#[test]
fn helpers_split_and_map() {
    let mut rng = Rng(1);
    for n in 1..50 {
        let parts = split(&mut rng, n, 3);
        assert_eq!(parts.iter().sum::<usize>(), n);
        assert!(parts.iter().all(|&p| p > 0));
    }
    let m = index_map(&mut rng, 100, 7);
    assert!(m.iter().all(|&x| x == MISSING || x < 7));
    let _: Range<usize> = 0..1;
}
