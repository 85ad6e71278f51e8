//! TensorFlow's `warm_starting_util_test.py` and the `init_from_checkpoint` tests that apply
//! to safetensors checkpoints, with TF's exact numbers, through the library (plan + CPU
//! engine + writer). TF's partitioner in these tests is `min(2, rows)` parts on axis 0; a
//! partitioned variable is stored as `<name>/part_<k>`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use warmstart::{
    CpuEngine, Error, Initializer, Model, Plan, VarsToWarmStart, VocabInfo, WarmStartSettings,
};

const OLD_FRUITS: [&str; 4] = ["apple", "banana", "guava", "orange"];
const NEW_FRUITS: [&str; 5] = ["orange", "guava", "banana", "apple", "raspberry"];
const NEW_FRUITS6: [&str; 6] = [
    "orange",
    "guava",
    "banana",
    "apple",
    "raspberry",
    "blueberry",
];
const FRUIT_WEIGHTS: [f32; 4] = [0.5, 1.0, 1.5, 2.0];
const COLUMN_CKPT: [f32; 8] = [0.5, 0.3, 1.0, 0.8, 1.5, 1.2, 2.0, 2.3];

/// A variable: name, full shape, value, number of partitions (1 = not partitioned).
struct V<'a>(&'a str, &'a [usize], Vec<f32>, usize);

fn part_rows(rows: usize, parts: usize) -> Vec<usize> {
    (0..parts)
        .map(|k| rows / parts + usize::from(k < rows % parts))
        .collect()
}

struct Fx {
    dir: tempfile::TempDir,
}

impl Fx {
    fn new() -> Self {
        Fx {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes variables (partitioned ones as `<name>/part_<k>`) to a safetensors file.
    fn write(&self, file: &str, vars: &[V<'_>]) -> PathBuf {
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for V(name, shape, value, parts) in vars {
            let per_row: usize = shape[1..].iter().product();
            if *parts == 1 {
                tensors.push((name.to_string(), shape.to_vec(), bytes(value)));
                continue;
            }
            let mut at = 0;
            for (k, rows) in part_rows(shape[0], *parts).into_iter().enumerate() {
                let mut s = shape.to_vec();
                s[0] = rows;
                tensors.push((
                    format!("{name}/part_{k}"),
                    s,
                    bytes(&value[at * per_row..(at + rows) * per_row]),
                ));
                at += rows;
            }
        }
        let views: Vec<(&str, TensorView<'_>)> = tensors
            .iter()
            .map(|(n, s, b)| {
                (
                    n.as_str(),
                    TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
                )
            })
            .collect();
        let p = self.path(file);
        std::fs::write(&p, safetensors::serialize(views, None).unwrap()).unwrap();
        p
    }

    /// A vocabulary file written as TF's tests do: `"\n".join(tokens)`, no trailing newline.
    fn vocab(&self, name: &str, tokens: &[&str]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, tokens.join("\n")).unwrap();
        p
    }

    /// Warm-starts `new` (a model file written from it) with the settings that `settings`
    /// builds from the old checkpoint path; returns every output tensor as f32 values.
    fn run(
        &self,
        old: &[V<'_>],
        new: &[V<'_>],
        non_trainable: &[&str],
        settings: impl FnOnce(WarmStartSettings) -> WarmStartSettings,
    ) -> Result<BTreeMap<String, Vec<f32>>, Error> {
        let ckpt = self.write("old.safetensors", old);
        let model_path = self.write("model.safetensors", new);
        let mut model = Model::open(&model_path).unwrap();
        let nt: Vec<String> = non_trainable.iter().map(|s| s.to_string()).collect();
        model.mark_non_trainable(&nt).unwrap();
        let plan = Plan::new(&settings(WarmStartSettings::new(ckpt)), &model)?;
        let out = self.path("out.safetensors");
        plan.write_file(&mut CpuEngine::new(), &out)?;
        let data = std::fs::read(&out).unwrap();
        let st = SafeTensors::deserialize(&data).unwrap();
        Ok(st
            .tensors()
            .into_iter()
            .map(|(n, t)| {
                let v = t
                    .data()
                    .chunks(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                    .collect();
                (n, v)
            })
            .collect())
    }
}

fn bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn zeros(n: usize) -> Vec<f32> {
    vec![0.0; n]
}

fn ones(n: usize) -> Vec<f32> {
    vec![1.0; n]
}

fn seq(n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|i| (i as f32 + 1.0) * scale).collect()
}

fn regexes(r: &[&str]) -> VarsToWarmStart {
    VarsToWarmStart::Regexes(r.iter().map(|s| s.to_string()).collect())
}

fn regex(r: &str) -> VarsToWarmStart {
    VarsToWarmStart::Regex(r.to_string())
}

// ------------------------------------------------------------ single variables, no vocab

#[test]
fn warm_start_var() {
    let fx = Fx::new();
    let out = fx
        .run(
            &[V("fruit_weights", &[4, 1], FRUIT_WEIGHTS.to_vec(), 1)],
            &[V("fruit_weights", &[4, 1], zeros(4), 1)],
            &[],
            |s| s,
        )
        .unwrap();
    assert_eq!(out["fruit_weights"], FRUIT_WEIGHTS);
}

#[test]
fn warm_start_var_prev_var_partitioned() {
    let fx = Fx::new();
    let out = fx
        .run(
            &[V("fruit_weights", &[4, 1], FRUIT_WEIGHTS.to_vec(), 2)],
            &[V("fruit_weights", &[4, 1], zeros(4), 1)],
            &[],
            |s| s,
        )
        .unwrap();
    assert_eq!(out["fruit_weights"], FRUIT_WEIGHTS);
}

#[test]
fn warm_start_var_current_var_partitioned() {
    let fx = Fx::new();
    let out = fx
        .run(
            &[V("fruit_weights", &[4, 1], FRUIT_WEIGHTS.to_vec(), 1)],
            &[V("fruit_weights", &[4, 1], zeros(4), 2)],
            &[],
            |s| s,
        )
        .unwrap();
    assert_eq!(
        [
            &out["fruit_weights/part_0"][..],
            &out["fruit_weights/part_1"][..]
        ]
        .concat(),
        FRUIT_WEIGHTS
    );
}

#[test]
fn warm_start_var_both_vars_partitioned() {
    let fx = Fx::new();
    let out = fx
        .run(
            &[V(
                "old_scope/fruit_weights",
                &[4, 1],
                FRUIT_WEIGHTS.to_vec(),
                2,
            )],
            &[V("new_scope/fruit_weights", &[4, 1], zeros(4), 2)],
            &[],
            |s| s.prev_var_name("new_scope/fruit_weights", "old_scope/fruit_weights"),
        )
        .unwrap();
    assert_eq!(out["new_scope/fruit_weights/part_0"], [0.5, 1.0]);
    assert_eq!(out["new_scope/fruit_weights/part_1"], [1.5, 2.0]);
}

// ---------------------------------------------------------------------- with vocabularies

fn fruit_vocab(fx: &Fx, new: &[&str], size: i64, oov: i64) -> VocabInfo {
    VocabInfo::new(
        fx.vocab("new_vocab", new),
        size,
        oov,
        fx.vocab("old_vocab", &OLD_FRUITS),
    )
}

#[test]
fn warm_start_var_with_vocab() {
    let fx = Fx::new();
    let info = fruit_vocab(&fx, &NEW_FRUITS, 5, 0);
    let out = fx
        .run(
            &[V("fruit_weights", &[4, 1], FRUIT_WEIGHTS.to_vec(), 1)],
            &[V("fruit_weights", &[5, 1], zeros(5), 1)],
            &[],
            |s| s.vocab_info("fruit_weights", info),
        )
        .unwrap();
    assert_eq!(out["fruit_weights"], [2.0, 1.5, 1.0, 0.5, 0.0]);
}

/// testWarmStartVarWithColumnVocab and its partitioned variants: old columns `apple orange`,
/// new `orange apple banana`, axis 1; the old and new variables in the given numbers of parts.
fn column_vocab(old_parts: usize, new_parts: usize) -> BTreeMap<String, Vec<f32>> {
    let fx = Fx::new();
    let info = VocabInfo::new(
        fx.vocab("new", &["orange", "apple", "banana"]),
        3,
        0,
        fx.vocab("old", &["apple", "orange"]),
    )
    .axis(1);
    fx.run(
        &[V(
            "fruit_output_layer",
            &[4, 2],
            COLUMN_CKPT.to_vec(),
            old_parts,
        )],
        &[V("fruit_output_layer", &[4, 3], zeros(12), new_parts)],
        &[],
        |s| s.vocab_info("fruit_output_layer", info),
    )
    .unwrap()
}

#[test]
fn warm_start_var_with_column_vocab() {
    let out = column_vocab(1, 1);
    assert_eq!(
        out["fruit_output_layer"],
        [0.3, 0.5, 0.0, 0.8, 1.0, 0.0, 1.2, 1.5, 0.0, 2.3, 2.0, 0.0]
    );
}

#[test]
fn warm_start_var_with_vocab_constrained_old_vocab_size() {
    let fx = Fx::new();
    let info = fruit_vocab(&fx, &NEW_FRUITS, 5, 0).old_vocab_size(2);
    let out = fx
        .run(
            &[V("fruit_weights", &[4, 1], FRUIT_WEIGHTS.to_vec(), 1)],
            &[V("fruit_weights", &[5, 1], zeros(5), 1)],
            &[],
            |s| s.vocab_info("fruit_weights", info),
        )
        .unwrap();
    assert_eq!(out["fruit_weights"], [0.0, 0.0, 1.0, 0.5, 0.0]);
}

#[test]
fn warm_start_var_with_vocab_prev_var_partitioned() {
    let fx = Fx::new();
    let info = fruit_vocab(&fx, &NEW_FRUITS, 5, 0);
    let out = fx
        .run(
            &[V("fruit_weights", &[4, 1], FRUIT_WEIGHTS.to_vec(), 2)],
            &[V("fruit_weights", &[5, 1], zeros(5), 1)],
            &[],
            |s| s.vocab_info("fruit_weights", info),
        )
        .unwrap();
    assert_eq!(out["fruit_weights"], [2.0, 1.5, 1.0, 0.5, 0.0]);
}

#[test]
fn warm_start_var_with_column_vocab_prev_var_partitioned() {
    let out = column_vocab(2, 1);
    assert_eq!(
        out["fruit_output_layer"],
        [0.3, 0.5, 0.0, 0.8, 1.0, 0.0, 1.2, 1.5, 0.0, 2.3, 2.0, 0.0]
    );
}

#[test]
fn warm_start_var_with_vocab_current_var_partitioned() {
    let fx = Fx::new();
    let info = fruit_vocab(&fx, &NEW_FRUITS, 5, 1);
    let out = fx
        .run(
            &[V("fruit_weights", &[4, 1], FRUIT_WEIGHTS.to_vec(), 1)],
            &[V("fruit_weights", &[6, 1], zeros(6), 2)],
            &[],
            |s| s.vocab_info("fruit_weights", info),
        )
        .unwrap();
    assert_eq!(out["fruit_weights/part_0"], [2.0, 1.5, 1.0]);
    assert_eq!(out["fruit_weights/part_1"], [0.5, 0.0, 0.0]);
}

#[test]
fn warm_start_var_with_column_vocab_current_var_partitioned() {
    let out = column_vocab(1, 2);
    assert_eq!(
        out["fruit_output_layer/part_0"],
        [0.3, 0.5, 0.0, 0.8, 1.0, 0.0]
    );
    assert_eq!(
        out["fruit_output_layer/part_1"],
        [1.2, 1.5, 0.0, 2.3, 2.0, 0.0]
    );
}

#[test]
fn warm_start_var_with_vocab_both_vars_partitioned() {
    let fx = Fx::new();
    let info = fruit_vocab(&fx, &NEW_FRUITS6, 6, 0);
    let out = fx
        .run(
            &[V("fruit_weights", &[4, 1], FRUIT_WEIGHTS.to_vec(), 2)],
            &[V("fruit_weights", &[6, 1], zeros(6), 2)],
            &[],
            |s| s.vocab_info("fruit_weights", info),
        )
        .unwrap();
    assert_eq!(out["fruit_weights/part_0"], [2.0, 1.5, 1.0]);
    assert_eq!(out["fruit_weights/part_1"], [0.5, 0.0, 0.0]);
}

#[test]
fn warm_start_var_with_column_vocab_both_vars_partitioned() {
    let out = column_vocab(2, 2);
    assert_eq!(
        out["fruit_output_layer/part_0"],
        [0.3, 0.5, 0.0, 0.8, 1.0, 0.0]
    );
    assert_eq!(
        out["fruit_output_layer/part_1"],
        [1.2, 1.5, 0.0, 2.3, 2.0, 0.0]
    );
}

// --------------------------------------------------------------------------------- selection

#[test]
fn warm_start_list_of_strings() {
    let fx = Fx::new();
    let out = fx
        .run(
            &[V("v1", &[10, 1], ones(10), 1)],
            &[V("v1", &[10, 1], zeros(10), 1)],
            &[],
            |s| s.vars_to_warm_start(regexes(&["v1"])),
        )
        .unwrap();
    assert_eq!(out["v1"], ones(10));
}

#[test]
fn warm_start_two_vars_from_the_same_prev_var() {
    let fx = Fx::new();
    let out = fx
        .run(
            &[V("v1", &[10, 1], ones(10), 1)],
            &[
                V("v1", &[10, 1], zeros(10), 1),
                V("v2", &[10, 1], zeros(10), 1),
            ],
            &[],
            |s| {
                s.vars_to_warm_start(regexes(&["v1", "v2"]))
                    .prev_var_name("v2", "v1")
            },
        )
        .unwrap();
    assert_eq!(out["v1"], ones(10));
    assert_eq!(out["v2"], ones(10));
}

#[test]
fn warm_start_list_of_regexes() {
    let fx = Fx::new();
    let names = ["v1", "v1/Momentum", "v2", "v2/Momentum"];
    let old: Vec<V<'_>> = names.iter().map(|n| V(n, &[10, 1], ones(10), 1)).collect();
    let new: Vec<V<'_>> = names.iter().map(|n| V(n, &[10, 1], zeros(10), 1)).collect();
    let out = fx
        .run(&old, &new, &[".*/Momentum"], |s| {
            s.vars_to_warm_start(regexes(&["v1", "v2[^/]"]))
        })
        .unwrap();
    assert_eq!(out["v1"], ones(10));
    assert_eq!(out["v1/Momentum"], ones(10));
    assert_eq!(out["v2"], ones(10));
    assert_eq!(out["v2/Momentum"], zeros(10));
}

#[test]
fn warm_start_sparse_column_integerized() {
    let fx = Fx::new();
    let out = fx
        .run(
            &[V("linear_model/sc_int/weights", &[10, 1], ones(10), 1)],
            &[
                V("linear_model/sc_int/weights", &[10, 1], zeros(10), 1),
                V("linear_model/bias_weights", &[1], zeros(1), 1),
            ],
            &[],
            |s| s.vars_to_warm_start(regex(".*sc_int.*")),
        )
        .unwrap();
    assert_eq!(out["linear_model/sc_int/weights"], ones(10));
    assert_eq!(out["linear_model/bias_weights"], zeros(1));
}

#[test]
fn warm_start_sparse_column_hashed() {
    let fx = Fx::new();
    let prev = seq(15, 0.01);
    let out = fx
        .run(
            &[V("linear_model/sc_hash/weights", &[15, 1], prev.clone(), 1)],
            &[V("linear_model/sc_hash/weights", &[15, 1], zeros(15), 1)],
            &[],
            |s| s.vars_to_warm_start(regex(".*sc_hash.*")),
        )
        .unwrap();
    assert_eq!(out["linear_model/sc_hash/weights"], prev);
}

#[test]
fn warm_start_sparse_column_vocabulary() {
    let fx = Fx::new();
    let out = fx
        .run(
            &[V("linear_model/sc_vocab/weights", &[4, 1], ones(4), 1)],
            &[V("linear_model/sc_vocab/weights", &[4, 1], zeros(4), 1)],
            &[],
            |s| s.vars_to_warm_start(regex(".*sc_vocab.*")),
        )
        .unwrap();
    assert_eq!(out["linear_model/sc_vocab/weights"], ones(4));
}

#[test]
fn warm_start_sparse_column_vocabulary_constrained_vocab_sizes() {
    let fx = Fx::new();
    let old = fx.vocab("old", &["apple", "guava", "banana"]);
    let new = fx.vocab("new", &["apple", "banana", "guava", "orange"]);
    let info = VocabInfo::new(new, 2, 0, old).old_vocab_size(2);
    let out = fx
        .run(
            &[V("linear_model/sc_vocab/weights", &[2, 1], ones(2), 1)],
            &[V("linear_model/sc_vocab/weights", &[2, 1], zeros(2), 1)],
            &[],
            |s| {
                s.vars_to_warm_start(regex(".*sc_vocab.*"))
                    .vocab_info("linear_model/sc_vocab/weights", info)
            },
        )
        .unwrap();
    assert_eq!(out["linear_model/sc_vocab/weights"], [1.0, 0.0]);
}

#[test]
fn warm_start_multiple_cols() {
    let fx = Fx::new();
    let vocab = fx.vocab("vocab", &OLD_FRUITS);
    let specs: [(&str, &[usize]); 7] = [
        ("linear_model/sc_int/weights", &[10, 1]),
        ("linear_model/sc_hash/weights", &[15, 1]),
        ("linear_model/sc_keys/weights", &[4, 1]),
        ("linear_model/sc_vocab/weights", &[4, 1]),
        ("linear_model/real_bucketized/weights", &[5, 1]),
        ("linear_model/cross/weights", &[20, 1]),
        ("linear_model/bias_weights", &[1]),
    ];
    let old: Vec<V<'_>> = specs
        .iter()
        .enumerate()
        .map(|(i, (n, s))| V(n, s, seq(s[0], 0.1 * (i + 1) as f32), 1))
        .collect();
    let new: Vec<V<'_>> = specs.iter().map(|(n, s)| V(n, s, zeros(s[0]), 1)).collect();
    let info = VocabInfo::new(&vocab, 4, 0, &vocab);
    let out = fx
        .run(&old, &new, &[], |s| {
            s.vocab_info("linear_model/sc_vocab/weights", info)
        })
        .unwrap();
    for V(name, _, value, _) in &old {
        assert_eq!(&out[*name], value, "{name}");
    }
}

/// testWarmStartMoreSettings with and without partitioning, and with vars_to_warm_start=None.
fn more_settings(parts: usize, vars: VarsToWarmStart) -> BTreeMap<String, Vec<f32>> {
    let fx = Fx::new();
    let info = fruit_vocab(&fx, &NEW_FRUITS6, 6, 0);
    let sc_keys_prev = seq(4, 0.25);
    fx.run(
        &[
            V("some_other_name", &[4, 1], sc_keys_prev, 1),
            V("linear_model/sc_hash/weights", &[15, 1], seq(15, 0.5), 1),
            V(
                "linear_model/sc_vocab/weights",
                &[4, 1],
                vec![0.5, 1.0, 2.0, 3.0],
                1,
            ),
        ],
        &[
            V("linear_model/sc_keys/weights", &[4, 1], zeros(4), parts),
            V("linear_model/sc_hash/weights", &[15, 1], zeros(15), parts),
            V("linear_model/sc_vocab/weights", &[6, 1], zeros(6), parts),
        ],
        &[],
        |s| {
            s.vars_to_warm_start(vars)
                .vocab_info("linear_model/sc_vocab/weights", info)
                .prev_var_name("linear_model/sc_keys/weights", "some_other_name")
        },
    )
    .unwrap()
}

#[test]
fn warm_start_more_settings() {
    let out = more_settings(2, regex(".*(sc_keys|sc_vocab).*"));
    assert_eq!(out["linear_model/sc_keys/weights/part_0"], [0.25, 0.5]);
    assert_eq!(out["linear_model/sc_keys/weights/part_1"], [0.75, 1.0]);
    assert_eq!(out["linear_model/sc_hash/weights/part_0"], zeros(8));
    assert_eq!(out["linear_model/sc_hash/weights/part_1"], zeros(7));
    assert_eq!(out["linear_model/sc_vocab/weights/part_0"], [3.0, 2.0, 1.0]);
    assert_eq!(out["linear_model/sc_vocab/weights/part_1"], [0.5, 0.0, 0.0]);
}

#[test]
fn warm_start_more_settings_no_partitioning() {
    let out = more_settings(1, regex(".*(sc_keys|sc_vocab).*"));
    assert_eq!(out["linear_model/sc_keys/weights"], [0.25, 0.5, 0.75, 1.0]);
    assert_eq!(out["linear_model/sc_hash/weights"], zeros(15));
    assert_eq!(
        out["linear_model/sc_vocab/weights"],
        [3.0, 2.0, 1.0, 0.5, 0.0, 0.0]
    );
}

#[test]
fn warm_start_vars_to_warm_start_is_none() {
    let out = more_settings(2, VarsToWarmStart::OnlyVocab);
    // sc_keys has a prev name but no vocabulary: accepted, not warm-started.
    assert_eq!(out["linear_model/sc_keys/weights/part_0"], zeros(2));
    assert_eq!(out["linear_model/sc_keys/weights/part_1"], zeros(2));
    assert_eq!(out["linear_model/sc_hash/weights/part_0"], zeros(8));
    assert_eq!(out["linear_model/sc_vocab/weights/part_0"], [3.0, 2.0, 1.0]);
    assert_eq!(out["linear_model/sc_vocab/weights/part_1"], [0.5, 0.0, 0.0]);
}

fn embedding(linear_model: bool) -> BTreeMap<String, Vec<f32>> {
    let fx = Fx::new();
    let info =
        fruit_vocab(&fx, &NEW_FRUITS6, 6, 0).backup_initializer(Initializer::RandomUniform {
            minval: 0.42,
            maxval: 0.42,
            seed: 0,
        });
    let emb = "input_layer/sc_vocab_embedding/embedding_weights";
    let lin = "linear_model/sc_vocab_embedding/weights";
    let mut old = vec![V(
        emb,
        &[4, 2],
        vec![0.5, 0.4, 1.0, 1.1, 2.0, 2.2, 3.0, 3.3],
        1,
    )];
    let mut new = vec![V(emb, &[6, 2], zeros(12), 2)];
    if linear_model {
        old.push(V(lin, &[2, 1], vec![0.69, 0.71], 1));
        new.push(V(lin, &[2, 1], zeros(2), 2));
    }
    fx.run(&old, &new, &[], |s| {
        s.vars_to_warm_start(regex(".*sc_vocab.*"))
            .vocab_info(emb, info)
    })
    .unwrap()
}

#[test]
fn warm_start_embedding_column() {
    let out = embedding(false);
    let emb = "input_layer/sc_vocab_embedding/embedding_weights";
    assert_eq!(
        out[&format!("{emb}/part_0")],
        [3.0, 3.3, 2.0, 2.2, 1.0, 1.1]
    );
    assert_eq!(
        out[&format!("{emb}/part_1")],
        [0.5, 0.4, 0.42, 0.42, 0.42, 0.42]
    );
}

#[test]
fn warm_start_embedding_column_linear_model() {
    let out = embedding(true);
    let emb = "input_layer/sc_vocab_embedding/embedding_weights";
    assert_eq!(
        out[&format!("{emb}/part_0")],
        [3.0, 3.3, 2.0, 2.2, 1.0, 1.1]
    );
    assert_eq!(
        out[&format!("{emb}/part_1")],
        [0.5, 0.4, 0.42, 0.42, 0.42, 0.42]
    );
    assert_eq!(
        out["linear_model/sc_vocab_embedding/weights/part_0"],
        [0.69]
    );
    assert_eq!(
        out["linear_model/sc_vocab_embedding/weights/part_1"],
        [0.71]
    );
}

#[test]
fn warm_start_error_conditions() {
    let fx = Fx::new();
    let old = [V("x", &[4, 1], FRUIT_WEIGHTS.to_vec(), 1)];
    let new = [V("x", &[4, 1], zeros(4), 1)];
    // VocabInfo("", 1, 0, "") for an unknown variable.
    let err = fx
        .run(&old, &new, &[], |s| {
            s.vocab_info("y", VocabInfo::new("", 1, 0, ""))
        })
        .unwrap_err();
    assert!(err.is_refusal(), "{err}");
    let err = fx
        .run(&old, &new, &[], |s| s.prev_var_name("y", "y2"))
        .unwrap_err();
    match err {
        Error::UnusedKeys {
            what,
            names,
            viable,
        } => {
            assert_eq!(
                (what, names, viable),
                (
                    "prev_var_name",
                    vec!["y".to_string()],
                    vec!["x".to_string()]
                )
            );
        }
        other => panic!("{other}"),
    }
    let err = fx
        .run(&old, &new, &[], |s| {
            s.vocab_info("y", fruit_vocab(&fx, &NEW_FRUITS, 5, 0))
        })
        .unwrap_err();
    assert!(
        matches!(err, Error::UnusedKeys { what: "vocab", .. }),
        "{err}"
    );
}

// ---------------------------------------------------- init_from_checkpoint tests that apply

#[test]
fn init_from_checkpoint_missing_tensor_and_shape_mismatch() {
    let fx = Fx::new();
    let err = fx
        .run(
            &[V("var1", &[1, 10], ones(10), 1)],
            &[V("some_scope/my1", &[1, 10], zeros(10), 1)],
            &[],
            |s| s.prev_var_name("some_scope/my1", "no_var"),
        )
        .unwrap_err();
    match &err {
        Error::TensorNotFound {
            tensor, variable, ..
        } => assert_eq!(
            (tensor.as_str(), variable.as_str()),
            ("no_var", "some_scope/my1")
        ),
        other => panic!("{other}"),
    }
    let err = fx
        .run(
            &[V("var1", &[1, 10], ones(10), 1)],
            &[V("some_scope/my1", &[10, 10], zeros(100), 1)],
            &[],
            |s| s.prev_var_name("some_scope/my1", "var1"),
        )
        .unwrap_err();
    assert!(err.to_string().contains("shape"), "{err}");
}

#[test]
fn init_from_partitioned_var_with_different_partition_counts() {
    let fx = Fx::new();
    let prev = seq(9 * 3, 1.0);
    let out = fx
        .run(
            &[V("var3", &[9, 3], prev.clone(), 3)],
            &[
                V("my3", &[9, 3], zeros(27), 2),
                V("my3b", &[9, 3], zeros(27), 1),
            ],
            &[],
            |s| s.prev_var_name("my3", "var3").prev_var_name("my3b", "var3"),
        )
        .unwrap();
    assert_eq!(
        [&out["my3/part_0"][..], &out["my3/part_1"][..]].concat(),
        prev
    );
    assert_eq!(out["my3b"], prev);
}
