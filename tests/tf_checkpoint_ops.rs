//! TensorFlow's own conformance tests for the checkpoint ops, with their exact numbers:
//! `kernel_tests/io_ops/checkpoint_ops_test.py` (GenerateVocabRemapping, LoadAndRemapMatrix),
//! `training/checkpoint_ops_test.py` (the initializer wrappers) and the contrib wrappers.
//! Where a case is expressible as a warm start, the planner and CPU engine must give the same
//! numbers as the literal port.

use std::path::{Path, PathBuf};

use safetensors::tensor::TensorView;
use safetensors::Dtype;
use warmstart::tf::{
    generate_vocab_remapping, load_and_remap_matrix, LoadAndRemapMatrixInitializer,
};
use warmstart::{
    Checkpoint, CpuEngine, Initializer, Model, Partition, Plan, Variable, VocabInfo,
    WarmStartSettings,
};

fn write_f32(path: &Path, tensors: &[(&str, Vec<usize>, Vec<f32>)]) {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views: Vec<(&str, TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, shape, _), b)| (*n, TensorView::new(Dtype::F32, shape.clone(), b).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

fn range(n: usize) -> Vec<f32> {
    (0..n).map(|x| x as f32).collect()
}

fn text(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

fn forty_two(rows: usize, cols: usize) -> Vec<f32> {
    vec![42.0; rows * cols]
}

/// `rows` as a flat row-major matrix.
fn m(rows: &[&[f32]]) -> Vec<f32> {
    rows.concat()
}

// ------------------------------------------------------------------- GenerateVocabRemapping

struct Keywords {
    _dir: tempfile::TempDir,
    new: PathBuf,
    old: PathBuf,
}

fn keywords() -> Keywords {
    let dir = tempfile::tempdir().unwrap();
    Keywords {
        new: text(
            dir.path(),
            "keyword_shifted.txt",
            "MISSING\nknitting\neminem\n",
        ),
        old: text(dir.path(), "keyword.txt", "knitting\neminem\nMISSING\n"),
        _dir: dir,
    }
}

#[test]
fn generate_remapping_with_no_vocab_changes() {
    let k = keywords();
    assert_eq!(
        generate_vocab_remapping(&k.old, &k.old, 0, 3, -1).unwrap(),
        (vec![0, 1, 2], 3)
    );
}

#[test]
fn generate_remapping_with_shifted_vocab() {
    let k = keywords();
    assert_eq!(
        generate_vocab_remapping(&k.new, &k.old, 0, 3, -1).unwrap(),
        (vec![2, 0, 1], 3)
    );
}

#[test]
fn generate_remapping_with_offset() {
    let k = keywords();
    assert_eq!(
        generate_vocab_remapping(&k.new, &k.old, 1, 1, -1).unwrap(),
        (vec![0], 1)
    );
}

#[test]
fn generate_remapping_with_old_vocab_size() {
    let k = keywords();
    assert_eq!(
        generate_vocab_remapping(&k.new, &k.old, 0, 3, 2).unwrap(),
        (vec![-1, 0, 1], 2)
    );
}

// ------------------------------------------------------------------------ LoadAndRemapMatrix

/// `some_scope/matrix` = 5 x 16, m[r][c] = 16 r + c.
fn matrix_checkpoint() -> (tempfile::TempDir, Checkpoint) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ckpt.safetensors");
    write_f32(&p, &[("some_scope/matrix", vec![5, 16], range(80))]);
    let c = Checkpoint::open(&p).unwrap();
    (dir, c)
}

fn old_row(r: usize) -> Vec<f32> {
    range(80)[r * 16..(r + 1) * 16].to_vec()
}

#[test]
fn load_and_remap_no_missing() {
    let (_d, c) = matrix_checkpoint();
    let out = load_and_remap_matrix(&c, "some_scope/matrix", &[1, 0], &[], &[], 2, 16).unwrap();
    assert_eq!(out, [old_row(1), old_row(0)].concat());

    let out = load_and_remap_matrix(
        &c,
        "some_scope/matrix",
        &[0, 1, 2, 3, 4],
        &[2, 0],
        &[],
        5,
        2,
    )
    .unwrap();
    let want: Vec<f32> = (0..5)
        .flat_map(|r| [16.0 * r as f32 + 2.0, 16.0 * r as f32])
        .collect();
    assert_eq!(out, want);

    let out =
        load_and_remap_matrix(&c, "some_scope/matrix", &[1, 0, 4], &[1, 15], &[], 3, 2).unwrap();
    assert_eq!(out, m(&[&[17., 31.], &[1., 15.], &[65., 79.]]));
}

#[test]
fn load_and_remap_with_init() {
    let (_d, c) = matrix_checkpoint();
    let out = load_and_remap_matrix(
        &c,
        "some_scope/matrix",
        &[2, -1, 0],
        &[1, -1],
        &[42.0; 4],
        3,
        2,
    )
    .unwrap();
    assert_eq!(out, m(&[&[33., 42.], &[42., 42.], &[1., 42.]]));
}

#[test]
fn load_and_remap_all_missing_rows() {
    let (_d, c) = matrix_checkpoint();
    let out = load_and_remap_matrix(
        &c,
        "some_scope/matrix",
        &[-1; 7],
        &[],
        &forty_two(7, 16),
        7,
        16,
    )
    .unwrap();
    assert_eq!(out, forty_two(7, 16));
}

#[test]
fn load_and_remap_all_missing_rows_and_cols() {
    let (_d, c) = matrix_checkpoint();
    let out = load_and_remap_matrix(
        &c,
        "some_scope/matrix",
        &[-1; 7],
        &[-1; 4],
        &forty_two(7, 4),
        7,
        4,
    )
    .unwrap();
    assert_eq!(out, forty_two(7, 4));
}

#[test]
fn load_and_remap_invalid_remapping() {
    let (_d, c) = matrix_checkpoint();
    let invalid = [1, 0, 0, 0, 1, 2];
    let as_rows = load_and_remap_matrix(&c, "some_scope/matrix", &invalid, &[], &[], 6, 16);
    let err = as_rows.unwrap_err().to_string();
    assert!(err.contains("mapped to both"), "{err}");
    let as_cols = load_and_remap_matrix(
        &c,
        "some_scope/matrix",
        &[0, 1, 2, 3, 4],
        &invalid,
        &[],
        5,
        6,
    );
    assert!(as_cols.unwrap_err().to_string().contains("mapped to both"));
}

#[test]
fn load_and_remap_incorrect_initializing_values() {
    let (_d, c) = matrix_checkpoint();
    for values in [&[][..], &[0.0; 5][..]] {
        let r = load_and_remap_matrix(&c, "some_scope/matrix", &[2, -1, 0], &[1, -1], values, 3, 2);
        assert!(r.unwrap_err().to_string().contains("initializing_values"));
    }
}

#[test]
fn load_and_remap_op_doc_example() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("w.safetensors");
    write_f32(
        &p,
        &[("w", vec![3, 3], vec![1., 2., 3., 4., 5., 6., 7., 8., 9.])],
    );
    let c = Checkpoint::open(&p).unwrap();
    let out = load_and_remap_matrix(
        &c,
        "w",
        &[1, 0, -1],
        &[0, 2, -1],
        &[0.5, -0.5, 0.25, -0.25, 42.],
        3,
        3,
    )
    .unwrap();
    assert_eq!(
        out,
        m(&[&[4., 6., 0.5], &[1., 3., -0.5], &[0.25, -0.25, 42.]])
    );
}

/// LoadAndRemapMatrixWithMaxRowsTest: the three sub-cases on a matrix saved whole and saved
/// in 3 partitions (`max_rows_in_memory` only chunks I/O in TensorFlow; there is no such
/// knob in the port, so each case runs once per layout).
#[test]
fn load_and_remap_max_rows_cases() {
    for (rows, cols) in [(9usize, 4usize), (6, 3)] {
        let value = range(rows * cols);
        for partitioned in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("m.safetensors");
            if partitioned {
                // fixed_size_partitioner(3)
                let sizes: Vec<usize> = (0..3)
                    .map(|k| rows / 3 + usize::from(k < rows % 3))
                    .collect();
                let mut at = 0;
                let parts: Vec<(String, Vec<usize>, Vec<f32>)> = sizes
                    .iter()
                    .enumerate()
                    .map(|(k, &r)| {
                        let v = value[at * cols..(at + r) * cols].to_vec();
                        at += r;
                        (format!("m/part_{k}"), vec![r, cols], v)
                    })
                    .collect();
                let refs: Vec<(&str, Vec<usize>, Vec<f32>)> = parts
                    .iter()
                    .map(|(n, s, v)| (n.as_str(), s.clone(), v.clone()))
                    .collect();
                write_f32(&p, &refs);
            } else {
                write_f32(&p, &[("m", vec![rows, cols], value.clone())]);
            }
            let c = Checkpoint::open(&p).unwrap();
            let label = format!("{rows}x{cols} partitioned={partitioned}");
            // (a) reversed rows
            let rev: Vec<i64> = (0..rows as i64).rev().collect();
            let out = load_and_remap_matrix(&c, "m", &rev, &[], &[], rows, cols).unwrap();
            let want: Vec<f32> = (0..rows)
                .rev()
                .flat_map(|r| value[r * cols..(r + 1) * cols].to_vec())
                .collect();
            assert_eq!(out, want, "{label} (a)");
            // (b) two missing rows, rows 1..n-1, three missing rows
            let mut remap = vec![-1, -1];
            remap.extend(1..rows as i64 - 1);
            remap.extend([-1, -1, -1]);
            let n = remap.len();
            let out =
                load_and_remap_matrix(&c, "m", &remap, &[], &forty_two(5, cols), n, cols).unwrap();
            let want = [
                forty_two(2, cols),
                value[cols..(rows - 1) * cols].to_vec(),
                forty_two(3, cols),
            ]
            .concat();
            assert_eq!(out, want, "{label} (b)");
            // (c) all rows missing
            let out = load_and_remap_matrix(&c, "m", &[-1; 7], &[], &forty_two(7, cols), 7, cols)
                .unwrap();
            assert_eq!(out, forty_two(7, cols), "{label} (c)");
        }
    }
}

// ------------------------------------------------------------ the initializer wrappers (5.2)

/// training/checkpoint_ops_test.py: `some_scope/embeddings` = 5 x 16 (0..79) and its vocabs.
struct Wrappers {
    dir: tempfile::TempDir,
    ckpt: Checkpoint,
    new_feature: PathBuf,
    old_feature: PathBuf,
    new_class: PathBuf,
    old_class: PathBuf,
}

fn wrappers() -> Wrappers {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("model-5.safetensors");
    write_f32(&p, &[("some_scope/embeddings", vec![5, 16], range(80))]);
    let d = dir.path();
    Wrappers {
        ckpt: Checkpoint::open(&p).unwrap(),
        new_feature: text(d, "new_feature_vocab.txt", "zero\none\ntwo\nthree\nfour\n"),
        old_feature: text(d, "old_feature_vocab.txt", "zero\none\ntwo\nthree\n"),
        new_class: text(
            d,
            "new_class_vocab.txt",
            "MISSING\nknitting\nflask\neminem\n",
        ),
        old_class: text(d, "old_class_vocab.txt", "knitting\neminem\nMISSING\n"),
        dir,
    }
}

fn constant(value: f32) -> impl FnMut(usize, usize) -> Vec<f32> {
    move |r, c| vec![value; r * c]
}

/// Runs the initializer over `shape` split like `fixed_size_partitioner(parts)` and
/// concatenates the partitions.
fn partitioned(
    init: &LoadAndRemapMatrixInitializer<'_>,
    shape: [usize; 2],
    parts: usize,
    value: f32,
) -> Vec<f32> {
    let mut out = Vec::new();
    let mut offset = 0;
    for k in 0..parts {
        let rows = shape[0] / parts + usize::from(k < shape[0] % parts);
        out.extend(
            init.call([rows, shape[1]], offset, &mut constant(value))
                .unwrap(),
        );
        offset += rows;
    }
    out
}

fn columns(matrix: &[f32], cols: usize) -> Vec<Vec<f32>> {
    (0..cols)
        .map(|c| matrix.iter().skip(c).step_by(cols).copied().collect())
        .collect()
}

#[test]
fn load_and_remap_matrix_wrapper() {
    let w = wrappers();
    let init = LoadAndRemapMatrixInitializer {
        checkpoint: Some(&w.ckpt),
        old_tensor_name: "some_scope/embeddings",
        new_col_vocab_size: 4,
        old_row_vocab_size: -1,
        old_row_vocab_file: Some(&w.old_feature),
        new_row_vocab_file: Some(&w.new_feature),
        old_col_vocab_file: Some(&w.old_class),
        new_col_vocab_file: Some(&w.new_class),
        num_col_oov_buckets: 1,
        ..Default::default()
    };
    let out = init.load_and_remap(1, 4, 1, &mut constant(42.0)).unwrap();
    assert_eq!(
        out,
        m(&[
            &[18., 16., 42., 17., 42.],
            &[34., 32., 42., 33., 42.],
            &[50., 48., 42., 49., 42.],
            &[42.; 5],
            &[42.; 5],
        ])
    );
}

fn output_layer<'a>(
    w: &'a Wrappers,
    row_vocab: bool,
    row_oov: usize,
) -> LoadAndRemapMatrixInitializer<'a> {
    LoadAndRemapMatrixInitializer {
        checkpoint: Some(&w.ckpt),
        old_tensor_name: "some_scope/embeddings",
        new_row_vocab_size: 5,
        new_col_vocab_size: 4,
        old_row_vocab_size: -1,
        old_row_vocab_file: row_vocab.then_some(w.old_feature.as_path()),
        new_row_vocab_file: row_vocab.then_some(w.new_feature.as_path()),
        old_col_vocab_file: Some(&w.old_class),
        new_col_vocab_file: Some(&w.new_class),
        num_row_oov_buckets: row_oov,
        num_col_oov_buckets: 1,
    }
}

#[test]
fn load_and_remap_output_layer_weight_initializer_linear() {
    let w = wrappers();
    let out = partitioned(&output_layer(&w, true, 1), [6, 5], 2, 42.0);
    assert_eq!(
        out,
        m(&[
            &[2., 0., 42., 1., 42.],
            &[18., 16., 42., 17., 42.],
            &[34., 32., 42., 33., 42.],
            &[50., 48., 42., 49., 42.],
            &[42.; 5],
            &[42.; 5],
        ])
    );
}

#[test]
fn load_and_remap_output_layer_weight_initializer_dnn_output() {
    let w = wrappers();
    let out = partitioned(&output_layer(&w, false, 0), [5, 5], 2, 42.0);
    let cols = columns(&out, 5);
    assert_eq!(cols[0], [2., 18., 34., 50., 66.]);
    assert_eq!(cols[1], [0., 16., 32., 48., 64.]);
    assert_eq!(cols[2], [42.; 5]);
    assert_eq!(cols[3], [1., 17., 33., 49., 65.]);
    assert_eq!(cols[4], [42.; 5]);
}

#[test]
fn initializer_with_oov_only_partition() {
    let w = wrappers();
    let out = partitioned(&output_layer(&w, true, 5), [10, 5], 2, 42.0);
    let cols = columns(&out, 5);
    let with_tail = |head: [f32; 4]| [head.to_vec(), vec![42.; 6]].concat();
    assert_eq!(cols[0], with_tail([2., 18., 34., 50.]));
    assert_eq!(cols[1], with_tail([0., 16., 32., 48.]));
    assert_eq!(cols[2], [42.; 10]);
    assert_eq!(cols[3], with_tail([1., 17., 33., 49.]));
    assert_eq!(cols[4], [42.; 10]);
}

#[test]
fn load_and_remap_linear_multiclass_initializer_default_init() {
    let w = wrappers();
    let out = partitioned(&output_layer(&w, true, 1), [6, 5], 2, 0.0);
    let cols = columns(&out, 5);
    assert_eq!(cols[0], [2., 18., 34., 50., 0., 0.]);
    assert_eq!(cols[1], [0., 16., 32., 48., 0., 0.]);
    assert_eq!(cols[2], [0.; 6]);
    assert_eq!(cols[3], [1., 17., 33., 49., 0., 0.]);
    assert_eq!(cols[4], [0.; 6]);
}

fn embedding<'a>(
    w: &'a Wrappers,
    new: &'a Path,
    old: &'a Path,
    size: usize,
    oov: usize,
    old_size: i64,
) -> LoadAndRemapMatrixInitializer<'a> {
    LoadAndRemapMatrixInitializer {
        checkpoint: Some(&w.ckpt),
        old_tensor_name: "some_scope/embeddings",
        new_row_vocab_size: size,
        new_col_vocab_size: 16,
        old_row_vocab_size: old_size,
        old_row_vocab_file: Some(old),
        new_row_vocab_file: Some(new),
        num_row_oov_buckets: oov,
        ..Default::default()
    }
}

/// The same embedding case as a warm start: planner + CPU engine, constant 42 backup.
fn embedding_warm_start(
    w: &Wrappers,
    new: &Path,
    old: &Path,
    size: i64,
    oov: i64,
    old_size: i64,
    rows: &[usize],
) -> Vec<f32> {
    let total: usize = rows.iter().sum();
    let model = Model::new(vec![Variable::partitioned(
        "emb",
        Dtype::F32,
        vec![total, 16],
        rows,
    )])
    .unwrap();
    let settings = WarmStartSettings::new(w.dir.path().join("model-5.safetensors"))
        .prev_var_name("emb", "some_scope/embeddings")
        .vocab_info(
            "emb",
            VocabInfo::new(new, size, oov, old)
                .old_vocab_size(old_size)
                .backup_initializer(Initializer::Constant { value: 42.0 }),
        );
    let plan = Plan::new(&settings, &model).unwrap();
    let tensors = plan.to_host(&mut CpuEngine::new()).unwrap();
    tensors
        .iter()
        .flat_map(|t| {
            t.data
                .chunks(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        })
        .collect()
}

#[test]
fn load_embedding_initializer() {
    let w = wrappers();
    let init = embedding(&w, &w.new_feature, &w.old_feature, 5, 1, -1);
    let want = [range(64), forty_two(2, 16)].concat();
    assert_eq!(partitioned(&init, [6, 16], 2, 42.0), want);
    assert_eq!(
        embedding_warm_start(&w, &w.new_feature, &w.old_feature, 5, 1, -1, &[3, 3]),
        want
    );
}

#[test]
fn load_embedding_initializer_large_oov() {
    let w = wrappers();
    let new = text(w.dir.path(), "new_large.txt", "one\nzero\ntwo\nfour\n");
    let old = text(w.dir.path(), "old_large.txt", "zero\none\n");
    let init = embedding(&w, &new, &old, 4, 5, -1);
    let want = [range(32)[16..].to_vec(), range(16), forty_two(7, 16)].concat();
    assert_eq!(partitioned(&init, [9, 16], 2, 42.0), want);
    assert_eq!(
        embedding_warm_start(&w, &new, &old, 4, 5, -1, &[5, 4]),
        want
    );
}

#[test]
fn load_embedding_initializer_old_row_vocab() {
    let w = wrappers();
    let init = embedding(&w, &w.new_feature, &w.old_feature, 5, 1, 3);
    let want = [range(48), forty_two(3, 16)].concat();
    assert_eq!(partitioned(&init, [6, 16], 2, 42.0), want);
    assert_eq!(
        embedding_warm_start(&w, &w.new_feature, &w.old_feature, 5, 1, 3, &[3, 3]),
        want
    );
}

// ------------------------------------------------------------------ contrib wrappers (5.4)

fn bias_checkpoint(name: &str) -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bundle.safetensors");
    write_f32(&p, &[(name, vec![3, 1], vec![0., 1., 2.])]);
    let old = text(dir.path(), "keyword.txt", "knitting\neminem\nMISSING\n");
    let new = text(
        dir.path(),
        "keyword_new.txt",
        "MISSING\nknitting\nflask\neminem\n",
    );
    (dir, p, old, new)
}

#[test]
fn load_linear_multiclass_bias_initializer() {
    let (_dir, p, old, new) = bias_checkpoint("some_scope/bias");
    let ckpt = Checkpoint::open(&p).unwrap();
    let init = LoadAndRemapMatrixInitializer {
        checkpoint: Some(&ckpt),
        old_tensor_name: "some_scope/bias",
        new_row_vocab_size: 4,
        new_col_vocab_size: 1,
        old_row_vocab_size: -1,
        old_row_vocab_file: Some(&old),
        new_row_vocab_file: Some(&new),
        num_row_oov_buckets: 1,
        ..Default::default()
    };
    // fixed_size_partitioner(3) on 5 rows: [2, 2, 1]; the last partition starts at the
    // vocabulary size (a 0-row load plus one OOV row).
    assert_eq!(partitioned(&init, [5, 1], 3, 42.0), [2., 0., 42., 1., 42.]);

    // The same as a warm start of a partitioned [5, 1] bias.
    let model = Model::new(vec![Variable::partitioned(
        "bias",
        Dtype::F32,
        vec![5, 1],
        &[2, 2, 1],
    )])
    .unwrap();
    let settings = WarmStartSettings::new(&p)
        .prev_var_name("bias", "some_scope/bias")
        .vocab_info(
            "bias",
            VocabInfo::new(&new, 4, 1, &old)
                .backup_initializer(Initializer::Constant { value: 42.0 }),
        );
    let out = Plan::new(&settings, &model)
        .unwrap()
        .to_host(&mut CpuEngine::new())
        .unwrap();
    let values: Vec<f32> = out
        .iter()
        .flat_map(|t| {
            t.data
                .chunks(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        })
        .collect();
    assert_eq!(values, [2., 0., 42., 1., 42.]);
}

#[test]
fn load_variable_slot_initializer() {
    let (_dir, p, old, new) = bias_checkpoint("some_scope/accum");
    let ckpt = Checkpoint::open(&p).unwrap();
    let init = LoadAndRemapMatrixInitializer {
        checkpoint: Some(&ckpt),
        old_tensor_name: "some_scope/accum",
        new_row_vocab_size: 4,
        new_col_vocab_size: 1,
        old_row_vocab_size: -1,
        old_row_vocab_file: Some(&old),
        new_row_vocab_file: Some(&new),
        num_row_oov_buckets: 1,
        ..Default::default()
    };
    // Slots are created without the primary's partition info; the wrapper passes the
    // primary's offsets (0 and 3 of a [5, 1] variable).
    assert_eq!(
        init.call([3, 1], 0, &mut constant(42.0)).unwrap(),
        [2., 0., 42.]
    );
    assert_eq!(
        init.call([2, 1], 3, &mut constant(42.0)).unwrap(),
        [1., 42.]
    );

    // A worker holding just one slice warm-starts it through the library (partition_info:
    // full shape [5, 1], row offset 3).
    let model = Model::new(vec![Variable::with_partitions(
        "accum",
        Dtype::F32,
        vec![5, 1],
        vec![Partition::new("accum/part_1", 3, 2)],
    )])
    .unwrap();
    let settings = WarmStartSettings::new(&p)
        .prev_var_name("accum", "some_scope/accum")
        .vocab_info(
            "accum",
            VocabInfo::new(&new, 4, 1, &old)
                .backup_initializer(Initializer::Constant { value: 42.0 }),
        );
    let out = Plan::new(&settings, &model)
        .unwrap()
        .to_host(&mut CpuEngine::new())
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].name, "accum/part_1");
    assert_eq!(out[0].shape, [2, 1]);
    assert_eq!(
        out[0].data,
        [1f32, 42.]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect::<Vec<_>>()
    );
}

/// The order in which the initializer's values are consumed (the `_load_and_remap_matrix`
/// docstring's worked example, with an initializer of the natural numbers continuing across
/// its calls): missing cells of the loaded block row by row, then the OOV rows, then the OOV
/// column down the loaded and OOV rows.
#[test]
fn load_and_remap_initializer_order() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ckpt_path = d.join("ckpt.safetensors");
    write_f32(&ckpt_path, &[("w", vec![3, 3], range(10)[1..].to_vec())]);
    let ckpt = Checkpoint::open(&ckpt_path).unwrap();
    let old_rows = text(d, "old_rows.txt", "mercury\nvenus\nmars\n");
    let new_rows = text(d, "new_rows.txt", "venus\njupiter\nmercury\n");
    let old_cols = text(d, "old_cols.txt", "good\nbetter\nbest\n");
    let new_cols = text(d, "new_cols.txt", "good\nbest\nfantastic\n");
    let mut next = 0.0;
    let mut naturals = |rows: usize, cols: usize| -> Vec<f32> {
        (0..rows * cols)
            .map(|_| {
                next += 1.0;
                next
            })
            .collect()
    };
    let init = LoadAndRemapMatrixInitializer {
        checkpoint: Some(&ckpt),
        old_tensor_name: "w",
        new_row_vocab_size: 3,
        new_col_vocab_size: 3,
        old_row_vocab_size: -1,
        old_row_vocab_file: Some(&old_rows),
        new_row_vocab_file: Some(&new_rows),
        old_col_vocab_file: Some(&old_cols),
        new_col_vocab_file: Some(&new_cols),
        num_row_oov_buckets: 2,
        num_col_oov_buckets: 1,
    };
    let out = init.load_and_remap(0, 3, 2, &mut naturals).unwrap();
    assert_eq!(
        out,
        m(&[
            &[4., 6., 1., 12.],
            &[2., 3., 4., 13.],
            &[1., 3., 5., 14.],
            &[6., 7., 8., 15.],
            &[9., 10., 11., 16.],
        ])
    );
}
