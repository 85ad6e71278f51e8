//! Property tests over random vocabularies, tables, dtypes, initializers and partitionings:
//! - partition invariance: the partitions of a table, concatenated, equal the unpartitioned
//!   table byte for byte (random initializers included);
//! - N workers that each hold only their own slice produce, concatenated, the single-process
//!   result byte for byte;
//! - the result does not depend on the CPU engine's chunk size, nor on its memory budget (a
//!   budget smaller than the old table makes it read the table in passes);
//! - for deterministic initializers the planner + engine agree with the literal port of
//!   TensorFlow's ops (`warmstart::tf`), partition by partition.

mod common;

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use warmstart::engine::{Engine, Sink};
use warmstart::tf::LoadAndRemapMatrixInitializer;
use warmstart::{
    Checkpoint, CpuEngine, HostTensor, Initializer, Job, Model, Partition, Plan, Variable,
    VocabInfo, WarmStartSettings,
};

#[derive(Clone, Debug)]
struct Case {
    dtype: Dtype,
    old_tokens: Vec<String>,
    new_tokens: Vec<String>,
    new_size: usize,
    oov: usize,
    axis: u8,
    /// The other dimension: columns for axis 0, rows for axis 1.
    other: usize,
    old_extra_rows: usize,
    init: Initializer,
    old_parts: usize,
    /// Rows of each new partition.
    parts: Vec<usize>,
    chunk_bytes: usize,
    seed: u64,
}

fn split(total: usize, cuts: &[usize]) -> Vec<usize> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (total + 1)).collect();
    points.extend([0, total]);
    points.sort_unstable();
    points.dedup();
    points.windows(2).map(|w| w[1] - w[0]).collect()
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![
            Just(Dtype::F32),
            Just(Dtype::F64),
            Just(Dtype::F16),
            Just(Dtype::BF16)
        ],
        1usize..40,
        0usize..20,
        any::<u64>(),
        0usize..4,
        0u8..2,
        1usize..7,
        0usize..3,
        prop_oneof![
            Just(Initializer::Zeros {}),
            Just(Initializer::Constant { value: -0.375 }),
            (any::<u32>()).prop_map(|s| Initializer::RandomUniform {
                minval: -0.5,
                maxval: 2.0,
                seed: s as u64
            }),
            (any::<u32>()).prop_map(|s| Initializer::RandomNormal {
                mean: 0.1,
                stddev: 0.7,
                seed: s as u64
            }),
            (any::<u32>()).prop_map(|s| Initializer::TruncatedNormal {
                mean: 0.0,
                stddev: 0.01,
                seed: s as u64
            }),
            (any::<u32>()).prop_map(|s| Initializer::GlorotUniform { seed: s as u64 }),
        ],
        1usize..4,
        proptest::collection::vec(0usize..64, 0..4),
        1usize..600,
    )
        .prop_map(
            |(
                dtype,
                n_old,
                n_new_only,
                seed,
                oov,
                axis,
                other,
                extra,
                init,
                old_parts,
                cuts,
                chunk,
            )| {
                // Old tokens t0..; the new vocabulary keeps a pseudo-random subset in a shuffled
                // order and adds tokens of its own.
                let old_tokens: Vec<String> = (0..n_old).map(|i| format!("t{i}")).collect();
                let mut new_tokens: Vec<String> = old_tokens
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| (seed >> (i % 64)) & 1 == 1)
                    .map(|(_, t)| t.clone())
                    .collect();
                new_tokens.extend((0..n_new_only).map(|i| format!("new{i}")));
                if new_tokens.is_empty() {
                    new_tokens.push("only".into());
                }
                let rot = (seed as usize) % new_tokens.len();
                new_tokens.rotate_left(rot);
                let new_size = 1 + (seed as usize / 7) % new_tokens.len();
                let vocab_len = new_size + oov;
                let axis_rows = if axis == 0 { vocab_len } else { other };
                Case {
                    dtype,
                    old_tokens,
                    new_tokens,
                    new_size,
                    oov,
                    axis,
                    other,
                    old_extra_rows: extra,
                    init,
                    old_parts,
                    parts: split(axis_rows, &cuts),
                    chunk_bytes: chunk,
                    seed,
                }
            },
        )
}

impl Case {
    fn shape(&self) -> [usize; 2] {
        let v = self.new_size + self.oov;
        if self.axis == 0 {
            [v, self.other]
        } else {
            [self.other, v]
        }
    }

    fn old_shape(&self) -> [usize; 2] {
        if self.axis == 0 {
            [self.old_tokens.len() + self.old_extra_rows, self.other]
        } else {
            [self.other + self.old_extra_rows, self.old_tokens.len()]
        }
    }

    fn elem(&self) -> usize {
        self.dtype.bitsize() / 8
    }

    /// The bytes of element `i` (flat, row-major) of the old table: finite values of any
    /// dtype, small integers scaled, written through f32 -> dtype.
    fn old_element(&self, i: usize) -> Vec<u8> {
        let v = ((i as u64 * 2654435761 + self.seed) % 1000) as f32 / 64.0 - 7.0;
        match self.dtype {
            Dtype::F32 => v.to_le_bytes().to_vec(),
            Dtype::F64 => (v as f64).to_le_bytes().to_vec(),
            Dtype::F16 => half::f16::from_f32(v).to_le_bytes().to_vec(),
            _ => half::bf16::from_f32(v).to_le_bytes().to_vec(),
        }
    }

    /// Writes the old checkpoint (possibly partitioned) and the vocabularies.
    fn write(&self, dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        let [rows, cols] = self.old_shape();
        let elem = self.elem();
        let mut data = Vec::with_capacity(rows * cols * elem);
        for i in 0..rows * cols {
            data.extend(self.old_element(i));
        }
        let row_bytes = cols * elem;
        let parts = split(rows, &[rows / 3, rows / 2][..self.old_parts - 1]);
        let mut names = Vec::new();
        let mut at = 0;
        for (k, r) in parts.iter().enumerate() {
            let name = if parts.len() == 1 {
                "old".to_string()
            } else {
                format!("old/part_{k}")
            };
            names.push((
                name,
                vec![*r, cols],
                data[at * row_bytes..(at + r) * row_bytes].to_vec(),
            ));
            at += r;
        }
        let views: Vec<(&str, TensorView<'_>)> = names
            .iter()
            .map(|(n, s, b)| {
                (
                    n.as_str(),
                    TensorView::new(self.dtype, s.clone(), b).unwrap(),
                )
            })
            .collect();
        let ckpt = dir.join("old.safetensors");
        std::fs::write(&ckpt, safetensors::serialize(views, None).unwrap()).unwrap();
        let old = dir.join("old.txt");
        std::fs::write(&old, self.old_tokens.join("\n") + "\n").unwrap();
        let new = dir.join("new.txt");
        std::fs::write(&new, self.new_tokens.join("\n")).unwrap();
        (ckpt, old, new)
    }

    fn settings(&self, files: &(PathBuf, PathBuf, PathBuf)) -> WarmStartSettings {
        WarmStartSettings::new(&files.0)
            .prev_var_name("emb", "old")
            .vocab_info(
                "emb",
                VocabInfo::new(&files.2, self.new_size as i64, self.oov as i64, &files.1)
                    .axis(self.axis as i64)
                    .backup_initializer(self.init.clone()),
            )
    }

    fn run(
        &self,
        files: &(PathBuf, PathBuf, PathBuf),
        variable: Variable,
        engine: &mut CpuEngine,
    ) -> Vec<HostTensor> {
        let model = Model::new(vec![variable]).unwrap();
        let plan = Plan::new(&self.settings(files), &model).unwrap();
        plan.to_host(engine).unwrap()
    }
}

/// Host memory, lent to the engine in pieces of `piece` bytes.
struct Pieces {
    data: Vec<u8>,
    piece: usize,
}

impl Sink for Pieces {
    fn append(
        &mut self,
        len: usize,
        fill: &mut dyn FnMut(usize, &mut [u8]),
    ) -> warmstart::Result<()> {
        let at = self.data.len();
        self.data.resize(at + len, 0);
        for (k, out) in self.data[at..].chunks_mut(self.piece).enumerate() {
            fill(k * self.piece, out);
        }
        Ok(())
    }
}

fn concat(tensors: &[HostTensor]) -> Vec<u8> {
    tensors
        .iter()
        .flat_map(|t| t.data.iter().copied())
        .collect()
}

/// A shuffled vocabulary over an old table larger than the memory budget: the CPU engine
/// reads it in passes (as many as the budget makes it), with the same result.
#[test]
fn tables_larger_than_the_memory_budget_are_read_in_passes() {
    let n = 5000;
    let old_tokens: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
    // Every 7th old token, scattered, then new tokens.
    let mut new_tokens: Vec<String> = (0..n).map(|i| format!("t{}", (i * 7919) % n)).collect();
    new_tokens.truncate(n - n / 10);
    new_tokens.extend((0..n / 10).map(|i| format!("new{i}")));
    let c = Case {
        dtype: Dtype::F32,
        old_tokens,
        new_tokens,
        new_size: n,
        oov: 2,
        axis: 0,
        other: 16,
        old_extra_rows: 0,
        init: Initializer::TruncatedNormal {
            mean: 0.0,
            stddev: 1.0,
            seed: 3,
        },
        old_parts: 2,
        parts: vec![3000, n + 2 - 3000],
        chunk_bytes: 4096,
        seed: 1,
    };
    let dir = tempfile::tempdir().unwrap();
    let files = c.write(dir.path());
    let variable = || Variable::partitioned("emb", c.dtype, c.shape().to_vec(), &c.parts);
    let mut fits = CpuEngine::new().with_chunk_bytes(c.chunk_bytes);
    let whole = concat(&c.run(&files, variable(), &mut fits));
    assert_eq!(fits.passes(), 0);
    // 320 KB of old table, a budget of 64 KB: passes of 32 KB of rows and their list.
    let mut small = CpuEngine::new()
        .with_chunk_bytes(c.chunk_bytes)
        .with_memory_budget(64 << 10);
    let passes = concat(&c.run(&files, variable(), &mut small));
    assert!(passes == whole, "passes change the result");
    let per_pass = (32 << 10) / (16 * 4 + 32);
    let want: u64 = c
        .parts
        .iter()
        .map(|&rows| rows.div_ceil(per_pass) as u64)
        .sum();
    assert_eq!(small.passes(), want);
}

/// An old table not in the page cache is read ahead whole by the CPU engine when it fits the
/// memory budget, and read in passes when it does not; the result is the same either way.
#[test]
fn old_tables_not_in_the_page_cache_are_read_ahead() {
    // 64 MiB of table: reading the checkpoint's header reads the file ahead (8 MiB on the
    // development VM), which must leave most of the table out of the page cache.
    let n = 16_384;
    let old_tokens: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
    let new_tokens: Vec<String> = (0..n).map(|i| format!("t{}", (i * 7919) % n)).collect();
    let c = Case {
        dtype: Dtype::F32,
        old_tokens,
        new_tokens,
        new_size: n,
        oov: 1,
        axis: 0,
        other: 1024,
        old_extra_rows: 0,
        init: Initializer::Zeros {},
        old_parts: 1,
        parts: vec![n + 1],
        chunk_bytes: 1 << 20,
        seed: 2,
    };
    // In the build directory: on a disk, where pages can be dropped (not a tmpfs).
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let files = c.write(dir.path());
    let variable = || Variable::new("emb", c.dtype, c.shape().to_vec());
    let table = (n * 1024 * 4) as u64;
    let mut warm = CpuEngine::new().with_chunk_bytes(c.chunk_bytes);
    let want = concat(&c.run(&files, variable(), &mut warm));
    assert_eq!(
        warm.read_ahead_bytes(),
        0,
        "just written: in the page cache"
    );

    common::evict(&files.0);
    let mut cold = CpuEngine::new().with_chunk_bytes(c.chunk_bytes);
    assert!(concat(&c.run(&files, variable(), &mut cold)) == want);
    assert_eq!(cold.read_ahead_bytes(), table);

    common::evict(&files.0);
    let mut small = CpuEngine::new()
        .with_chunk_bytes(c.chunk_bytes)
        .with_memory_budget(table / 2);
    assert!(concat(&c.run(&files, variable(), &mut small)) == want);
    assert_eq!(small.read_ahead_bytes(), 0);
    assert!(small.passes() > 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn partitions_workers_and_chunks_do_not_change_the_bytes(c in case()) {
        let dir = tempfile::tempdir().unwrap();
        let files = c.write(dir.path());
        let shape = c.shape().to_vec();
        let whole = c.run(&files, Variable::new("emb", c.dtype, shape.clone()), &mut CpuEngine::new());
        prop_assert_eq!(whole.len(), 1);
        let whole = &whole[0].data;
        prop_assert_eq!(whole.len(), shape[0] * shape[1] * c.elem());

        // Partitioned in one process.
        let parts = c.run(&files, Variable::partitioned("emb", c.dtype, shape.clone(), &c.parts), &mut CpuEngine::new());
        prop_assert_eq!(parts.len(), c.parts.len());
        prop_assert!(concat(&parts) == *whole, "partitioned result differs");

        // One worker per partition, each declaring only its own slice.
        let mut offset = 0;
        let mut workers = Vec::new();
        for (k, &rows) in c.parts.iter().enumerate() {
            let slice = Variable::with_partitions("emb", c.dtype, shape.clone(), vec![Partition::new(format!("emb/part_{k}"), offset, rows)]);
            workers.extend(c.run(&files, slice, &mut CpuEngine::new()));
            offset += rows;
        }
        prop_assert!(concat(&workers) == *whole, "workers' slices differ");

        // Any chunk size, and a sink that lends its memory in pieces ending inside rows.
        let mut engine = CpuEngine::new().with_chunk_bytes(c.chunk_bytes);
        let chunked = c.run(&files, Variable::partitioned("emb", c.dtype, shape.clone(), &c.parts), &mut engine);
        prop_assert!(concat(&chunked) == *whole, "chunk size {} changes the result", c.chunk_bytes);
        let model = Model::new(vec![Variable::new("emb", c.dtype, shape.clone())]).unwrap();
        let plan = Plan::new(&c.settings(&files), &model).unwrap();
        let mut pieces = Pieces { data: Vec::new(), piece: c.chunk_bytes / 3 + 1 };
        for t in plan.tensors() {
            if let Job::Remap(job) = &t.job {
                engine.remap(job, &mut pieces).unwrap();
            }
        }
        prop_assert!(pieces.data == *whole, "pieces of {} bytes change the result", pieces.piece);

        // Any memory budget: one smaller than the old table makes the engine read it in
        // passes, of any number of rows.
        let budget = 1 + c.seed % (2 * (c.old_shape()[0] * c.old_shape()[1] * c.elem()) as u64);
        let mut engine = CpuEngine::new().with_chunk_bytes(c.chunk_bytes).with_memory_budget(budget);
        let passes = c.run(&files, Variable::partitioned("emb", c.dtype, shape.clone(), &c.parts), &mut engine);
        prop_assert!(concat(&passes) == *whole, "memory budget {} changes the result", budget);
    }

    /// The CPU engine against the definition, cell by cell: a cell whose row and column have
    /// a source (by the plan's maps) is that old cell; any other is the initializer's value at
    /// the cell's global index (`row * cols + col`), rounded once to the dtype.
    #[test]
    fn every_cell_is_its_old_cell_or_the_initializer_at_its_index(c in case()) {
        let dir = tempfile::tempdir().unwrap();
        let files = c.write(dir.path());
        let shape = c.shape();
        let model = Model::new(vec![Variable::new("emb", c.dtype, shape.to_vec())]).unwrap();
        let plan = Plan::new(&c.settings(&files), &model).unwrap();
        let Job::Remap(job) = &plan.tensors()[0].job else {
            return Ok(());
        };
        let mut out = Pieces { data: Vec::new(), piece: c.chunk_bytes };
        CpuEngine::new().with_chunk_bytes(c.chunk_bytes).remap(job, &mut out).unwrap();
        let elem = c.elem();
        let old_cols = c.old_shape()[1];
        for (r, g) in job.rows.clone().enumerate() {
            for col in 0..job.cols {
                let source_col = match &job.col_map {
                    None => Some(col),
                    Some(map) => (map[col] != warmstart::vocab::MISSING).then(|| map[col] as usize),
                };
                let want = match (job.source_row(g), source_col) {
                    (Some(sr), Some(sc)) => c.old_element(sr * old_cols + sc),
                    _ => {
                        let index = (g * job.cols + col) as u64;
                        let bits = job.init.constant_bits(job.dtype).unwrap_or_else(|| {
                            job.dtype.bits_from_f32(job.init.value_f32(index))
                        });
                        bits.to_le_bytes()[..elem].to_vec()
                    }
                };
                let at = (r * job.cols + col) * elem;
                prop_assert_eq!(&out.data[at..at + elem], &want[..], "cell ({}, {})", g, col);
            }
        }
    }

    #[test]
    fn deterministic_initializers_match_the_tensorflow_port(mut c in case()) {
        c.dtype = Dtype::F32;
        let value = match c.init { Initializer::Constant { value } => value as f32, _ => 0.0 };
        if !matches!(c.init, Initializer::Constant { .. }) {
            c.init = Initializer::Zeros {};
        }
        let dir = tempfile::tempdir().unwrap();
        let files = c.write(dir.path());
        let shape = c.shape();
        let ours = c.run(&files, Variable::partitioned("emb", c.dtype, shape.to_vec(), &c.parts), &mut CpuEngine::new());

        let ckpt = Checkpoint::open(&files.0).unwrap();
        let (rows_files, cols_files) = if c.axis == 0 {
            ((Some(files.1.as_path()), Some(files.2.as_path())), (None, None))
        } else {
            ((None, None), (Some(files.1.as_path()), Some(files.2.as_path())))
        };
        let tf = LoadAndRemapMatrixInitializer {
            checkpoint: Some(&ckpt),
            old_tensor_name: "old",
            new_row_vocab_size: if c.axis == 0 { c.new_size } else { shape[0] },
            new_col_vocab_size: if c.axis == 0 { shape[1] } else { c.new_size },
            old_row_vocab_size: -1,
            old_row_vocab_file: rows_files.0,
            new_row_vocab_file: rows_files.1,
            old_col_vocab_file: cols_files.0,
            new_col_vocab_file: cols_files.1,
            num_row_oov_buckets: if c.axis == 0 { c.oov } else { 0 },
            num_col_oov_buckets: if c.axis == 0 { 0 } else { c.oov },
        };
        let mut offset = 0;
        for (part, &rows) in ours.iter().zip(&c.parts) {
            let want = tf.call([rows, shape[1]], offset, &mut |r, k| vec![value; r * k]).unwrap();
            let got: Vec<f32> = part.data.chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
            prop_assert_eq!(got, want, "partition at row {}", offset);
            offset += rows;
        }
    }
}
