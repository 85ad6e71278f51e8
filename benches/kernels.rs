//! Criterion benchmarks of the kernels: vocabulary remapping, row remap and each initializer,
//! on the CPU engine and, where an adapter is found, the GPU engine.
//!
//! ```text
//! cargo bench --bench kernels                 # all
//! cargo bench --bench kernels -- initializer  # one group
//! ```

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use safetensors::tensor::TensorView;
use warmstart::dtype::{Dtype, FloatType};
use warmstart::engine::gpu::GpuOptions;
use warmstart::engine::Sink;
use warmstart::initializer::{Distribution, FanMode};
use warmstart::vocab::{self, Vocab};
use warmstart::{
    CpuEngine, Engine, Initializer, Job, Model, Plan, RemapJob, Variable, VocabInfo,
    WarmStartSettings,
};

/// Old vocabulary `tok0..n`; the new one keeps 90% in a shuffled order and adds 10%.
fn write_vocabs(dir: &Path, n: usize) {
    let mut kept: Vec<usize> = (0..n).collect();
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..n).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        kept.swap(i, (s % (i as u64 + 1)) as usize);
    }
    let old: String = (0..n).map(|i| format!("tok{i}\n")).collect();
    let mut new: String = kept[..n * 9 / 10]
        .iter()
        .map(|i| format!("tok{i}\n"))
        .collect();
    new.extend((0..n - n * 9 / 10).map(|i| format!("new{i}\n")));
    std::fs::write(dir.join("old.txt"), old).unwrap();
    std::fs::write(dir.join("new.txt"), new).unwrap();
}

fn vocab_remap(c: &mut Criterion) {
    let mut g = c.benchmark_group("vocab_remap");
    g.sample_size(10);
    for n in [1usize << 20, 2 << 20] {
        let dir = tempfile::tempdir().unwrap();
        write_vocabs(dir.path(), n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter(|| {
                let new = Vocab::read(&dir.path().join("new.txt"), None).unwrap();
                let old = Vocab::read(&dir.path().join("old.txt"), None).unwrap();
                black_box(vocab::remap(&new, n, &old).unwrap())
            })
        });
    }
    g.finish();
}

/// A planned row remap of an `rows x cols` f32 table with the given backup initializer.
fn row_remap_job(dir: &Path, rows: usize, cols: usize, init: Initializer) -> RemapJob {
    remap_job(dir, rows, cols, 0, init)
}

/// A planned column remap (axis 1) of a `hidden x vocab` f32 table, the shape of an output
/// layer: every row takes the new vocabulary's order of columns.
fn col_remap_job(dir: &Path, hidden: usize, vocab: usize, init: Initializer) -> RemapJob {
    remap_job(dir, vocab, hidden, 1, init)
}

/// A planned remap of an f32 table whose axis `axis` is indexed by a vocabulary of `vocab`
/// tokens (`write_vocabs`, 2 OOV buckets), `other` long on the other axis.
fn remap_job(dir: &Path, vocab: usize, other: usize, axis: usize, init: Initializer) -> RemapJob {
    write_vocabs(dir, vocab);
    let shape = |v: usize| {
        if axis == 0 {
            vec![v, other]
        } else {
            vec![other, v]
        }
    };
    let data: Vec<u8> = (0..vocab * other)
        .flat_map(|i| (i as f32).to_le_bytes())
        .collect();
    let view = TensorView::new(Dtype::F32, shape(vocab), &data).unwrap();
    std::fs::write(
        dir.join("old.safetensors"),
        safetensors::serialize([("emb", view)], None).unwrap(),
    )
    .unwrap();
    let settings = WarmStartSettings::new(dir.join("old.safetensors")).vocab_info(
        "emb",
        VocabInfo::new(dir.join("new.txt"), vocab as i64, 2, dir.join("old.txt"))
            .axis(axis as i64)
            .backup_initializer(init),
    );
    let variable = Variable::new("emb", Dtype::F32, shape(vocab + 2));
    let plan = Plan::new(&settings, &Model::new(vec![variable]).unwrap()).unwrap();
    match &plan.tensors()[0].job {
        Job::Remap(job) => job.clone(),
        _ => unreachable!(),
    }
}

fn engines() -> Vec<(String, Box<dyn Engine>)> {
    let mut engines: Vec<(String, Box<dyn Engine>)> =
        vec![("cpu".into(), Box::new(CpuEngine::new()))];
    match warmstart::GpuEngine::new(Default::default()) {
        Ok(gpu) => engines.push(("gpu".into(), Box::new(gpu))),
        Err(e) => eprintln!("no GPU engine benchmarks: {e}"),
    }
    engines
}

/// A sink that lends one reused 4 MiB buffer, as the file writer lends its staging buffers:
/// the engines' work is timed, not host memory's first-touch page faults.
struct Scratch(Vec<u8>);

impl Default for Scratch {
    fn default() -> Self {
        Scratch(vec![0; 4 << 20])
    }
}

impl Sink for Scratch {
    fn append(
        &mut self,
        len: usize,
        fill: &mut dyn FnMut(usize, &mut [u8]),
    ) -> warmstart::Result<()> {
        let piece = self.0.len();
        for at in (0..len).step_by(piece) {
            fill(at, &mut self.0[..piece.min(len - at)]);
        }
        Ok(())
    }
}

/// Shuffled rows of 512 bytes (gathered on every engine), then of 8 KiB (moved by transfer
/// commands on a software adapter: also timed with the gather kernel, `gpu_gather`).
fn row_remap(c: &mut Criterion) {
    for (group, rows, cols) in [
        ("row_remap_256MiB", 1 << 19, 128),
        ("row_remap_256MiB_8KiB_rows", 1 << 15, 2048),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let job = row_remap_job(dir.path(), rows, cols, Initializer::Zeros {});
        let mut g = c.benchmark_group(group);
        g.sample_size(10);
        g.throughput(Throughput::Bytes(((rows + 2) * cols * 4) as u64));
        let mut engines = engines();
        if cols * 4 < 2048 {
            // The layout of a GPU (transfer buffers, windows copied) on a budget of half the
            // table: the shuffled table is streamed in passes (`passes` printed below).
            let options = GpuOptions::new()
                .hardware_layout(true)
                .vram_budget((rows * cols * 4 / 2) as u64);
            if let Ok(gpu) = warmstart::GpuEngine::new(options) {
                engines.push(("gpu_hardware_half_budget".into(), Box::new(gpu)));
            }
        }
        if cols * 4 >= 2048 {
            let options = GpuOptions::new().row_copies(false);
            if let Ok(gpu) = warmstart::GpuEngine::new(options) {
                engines.push(("gpu_gather".into(), Box::new(gpu)));
            }
        }
        for (name, mut engine) in engines {
            let (mut runs, passes) = (0u64, engine.passes());
            g.bench_function(&name, |b| {
                let mut out = Scratch::default();
                b.iter(|| {
                    runs += 1;
                    engine.remap(&job, &mut out).unwrap();
                    black_box(out.0[0])
                })
            });
            if engine.passes() > passes {
                let per_run = (engine.passes() - passes) as f64 / runs as f64;
                eprintln!("{group}/{name}: {per_run} passes over the old table per run");
            }
        }
        g.finish();
    }
}

/// Every backup initializer the plan file accepts, `variance_scaling` in each of its
/// distributions, with its benchmark name.
fn every_initializer() -> Vec<(String, Initializer)> {
    let seed = 1;
    let scaling = |distribution| Initializer::VarianceScaling {
        scale: 2.0,
        mode: FanMode::FanIn,
        distribution,
        seed,
    };
    [
        Initializer::Zeros {},
        Initializer::Ones {},
        Initializer::Constant { value: 0.5 },
        Initializer::RandomUniform {
            minval: -1.0,
            maxval: 1.0,
            seed,
        },
        Initializer::RandomNormal {
            mean: 0.0,
            stddev: 1.0,
            seed,
        },
        Initializer::TruncatedNormal {
            mean: 0.0,
            stddev: 1.0,
            seed,
        },
        scaling(Distribution::TruncatedNormal),
        scaling(Distribution::UntruncatedNormal),
        scaling(Distribution::Uniform),
        Initializer::GlorotUniform { seed },
        Initializer::GlorotNormal { seed },
    ]
    .into_iter()
    .map(|init| (initializer_name(&init), init))
    .collect()
}

/// The plan file's name of `init` (exhaustive: a new initializer must be named, and so
/// benchmarked, here).
fn initializer_name(init: &Initializer) -> String {
    match init {
        Initializer::Zeros {} => "zeros".into(),
        Initializer::Ones {} => "ones".into(),
        Initializer::Constant { .. } => "constant".into(),
        Initializer::RandomUniform { .. } => "random_uniform".into(),
        Initializer::RandomNormal { .. } => "random_normal".into(),
        Initializer::TruncatedNormal { .. } => "truncated_normal".into(),
        Initializer::VarianceScaling { distribution, .. } => match distribution {
            Distribution::TruncatedNormal => "variance_scaling_truncated_normal".into(),
            Distribution::UntruncatedNormal => "variance_scaling_untruncated_normal".into(),
            Distribution::Uniform => "variance_scaling_uniform".into(),
        },
        Initializer::GlorotUniform { .. } => "glorot_uniform".into(),
        Initializer::GlorotNormal { .. } => "glorot_normal".into(),
    }
}

/// Each initializer: drawing 4M values of each float type on one thread, then the engines
/// filling every row of a 64 MiB f32 table.
fn initializers(c: &mut Criterion) {
    let n = 1usize << 22;
    for dtype in FloatType::ALL {
        let mut g = c.benchmark_group(format!(
            "initializer_4M_{}",
            format!("{dtype:?}").to_lowercase()
        ));
        g.sample_size(10);
        g.throughput(Throughput::Elements(n as u64));
        for (name, init) in every_initializer() {
            let spec = init.resolve("emb", &[n / 128, 128], "bench").unwrap();
            let mut out = vec![0u8; n * dtype.size()];
            g.bench_function(BenchmarkId::new("cpu_one_thread", &name), |b| {
                b.iter(|| spec.fill(dtype, 0, black_box(&mut out)))
            });
        }
        g.finish();
    }
    // The engines on a table with no rows in common: every row is initialised.
    let dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("fill_all_rows_64MiB");
    g.sample_size(10);
    let mut engines = engines();
    for (name, init) in every_initializer() {
        let mut job = row_remap_job(dir.path(), 1 << 17, 128, init);
        job.row_map = Some(vec![warmstart::vocab::MISSING; job.rows.len()].into());
        g.throughput(Throughput::Elements((job.rows.len() * job.cols) as u64));
        for (engine_name, engine) in &mut engines {
            g.bench_function(BenchmarkId::new(engine_name.as_str(), &name), |b| {
                let mut out = Scratch::default();
                b.iter(|| {
                    engine.remap(&job, &mut out).unwrap();
                    black_box(out.0[0])
                })
            });
        }
    }
    g.finish();
}

/// Columns remapped by a shuffled vocabulary of 131,072 tokens (10% new, then 2 OOV
/// columns), in 512 rows: 256 MiB.
fn col_remap(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (hidden, vocab) = (512, 1 << 17);
    let mut g = c.benchmark_group("col_remap_256MiB");
    g.sample_size(10);
    g.throughput(Throughput::Bytes((hidden * (vocab + 2) * 4) as u64));
    for (name, init) in [
        ("zeros", Initializer::Zeros {}),
        (
            "truncated_normal",
            Initializer::TruncatedNormal {
                mean: 0.0,
                stddev: 1.0,
                seed: 1,
            },
        ),
    ] {
        let job = col_remap_job(dir.path(), hidden, vocab, init);
        for (engine_name, mut engine) in engines() {
            g.bench_function(BenchmarkId::new(engine_name, name), |b| {
                let mut out = Scratch::default();
                b.iter(|| {
                    engine.remap(&job, &mut out).unwrap();
                    black_box(out.0[0])
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, vocab_remap, row_remap, col_remap, initializers);
criterion_main!(benches);
