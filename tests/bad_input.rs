//! Bad input (issue 2, "Bad input"): each refusal goes through the CLI binary
//! (`warmstart run plan.toml --backend cpu --quiet ...`) and must
//!
//! * exit with code 2,
//! * print a message on stderr that names the culprit (file, tensor, key or token),
//! * leave an existing output file byte-for-byte untouched, and
//! * leave no temporary file behind.
//!
//! The last two are checked together and more strictly: nothing anywhere in the fixture
//! directory may be created, removed or changed (see `Fixture::refused`). Every test starts
//! from the valid `Fixture` (checkpoint, model, vocabularies, plan, existing output) and
//! breaks exactly one piece of it.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;

// ---------------------------------------------------------------------------------------
// The valid fixture works, so that every refusal below is caused by the one broken piece.

#[test]
fn valid_fixture_succeeds() {
    let fx = Fixture::new();
    let out = fx.succeeds(&[]);
    let (dtype, shape, emb) = &out["emb"];
    assert_eq!((*dtype, shape.as_slice()), (Dtype::F32, &[6, 2][..]));
    // new vocabulary c a e b f (+1 OOV); old rows a=[1,2] b=[3,4] c=[5,6] d=[7,8].
    assert_eq!(f32s(emb), [5., 6., 1., 2., 0., 0., 3., 4., 0., 0., 0., 0.]);
    assert_eq!(f32s(&out["dense"].2), [100., 101., 102., 103., 104., 105.]);
    let names: Vec<_> = snapshot(fx.root()).into_keys().collect();
    assert_eq!(names.len(), 6, "no temporary file left: {names:?}");
}

#[test]
fn valid_sharded_fixture_succeeds() {
    let fx = Fixture::new();
    fx.shard(Fixture::VALID_WEIGHT_MAP);
    fx.write(CKPT, b"not used any more");
    let out = fx.succeeds(&[]);
    assert_eq!(f32s(&out["dense"].2), [100., 101., 102., 103., 104., 105.]);
}

// ---------------------------------------------------------------------------------------
// Broken safetensors, each as the checkpoint and as the model file.

/// Replaces `file` (the checkpoint or the model) by `broken(valid bytes of that file)` and
/// expects a refusal naming the file and every one of `culprits`.
fn broken_file(file: &str, broken: impl Fn(&[u8]) -> Vec<u8>, culprits: &[&str]) {
    let fx = Fixture::new();
    let valid = std::fs::read(fx.path(file)).unwrap();
    fx.write(file, broken(&valid));
    let mut names = vec![file];
    names.extend_from_slice(culprits);
    fx.refused(&[], &names);
}

macro_rules! broken_safetensors {
    ($($(#[$doc:meta])* $name:ident: $broken:expr, $culprits:expr;)*) => {$(
        $(#[$doc])*
        mod $name {
            use super::*;

            #[test]
            fn as_checkpoint() {
                broken_file(CKPT, $broken, &$culprits);
            }

            #[test]
            fn as_model() {
                broken_file(MODEL, $broken, &$culprits);
            }
        }
    )*};
}

/// A header for one tensor `emb`.
fn one_tensor(dtype: &str, shape: &str, offsets: &str) -> String {
    format!(r#"{{"emb":{{"dtype":"{dtype}","shape":{shape},"data_offsets":{offsets}}}}}"#)
}

broken_safetensors! {
    /// The file ends in the middle of the tensor data.
    truncated_in_data: |valid: &[u8]| valid[..valid.len() - 5].to_vec(), ["truncated"];
    /// Fewer than the 8 bytes of the header length.
    shorter_than_8_bytes: |_: &[u8]| vec![16, 0, 0], ["too short"];
    /// An empty file.
    empty_file: |_: &[u8]| Vec::new(), [];
    /// The header length points past the end of the file.
    header_length_past_end: |_: &[u8]| {
        let mut bytes = 4096u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{}      ");
        bytes
    }, ["past the end"];
    /// A header length beyond what safetensors allows.
    header_length_huge: |_: &[u8]| u64::MAX.to_le_bytes().to_vec(), [];
    /// The header is not JSON.
    invalid_json_header: |_: &[u8]| {
        raw_safetensors(r#"{"emb": {"dtype": "F32", "#, &[0; 8])
    }, ["JSON"];
    /// The header is not UTF-8.
    header_not_utf8: |_: &[u8]| {
        let mut bytes = raw_safetensors("{\"e\u{e9}\":1}", &[]);
        bytes[11] = 0xff;
        bytes
    }, ["UTF-8"];
    /// A tensor entry without data_offsets.
    tensor_without_data_offsets: |_: &[u8]| {
        raw_safetensors(r#"{"emb":{"dtype":"F32","shape":[2]}}"#, &[0; 8])
    }, ["data_offsets"];
    /// `__metadata__` values must be strings.
    metadata_not_strings: |_: &[u8]| raw_safetensors(r#"{"__metadata__":{"step":3}}"#, &[]), ["JSON"];
    /// A tensor named twice (identical entries, so that the byte ranges alone would pass).
    tensor_named_twice: |_: &[u8]| {
        let entry = r#""emb":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#;
        raw_safetensors(&format!("{{{entry},{entry}}}"), &[0; 8])
    }, ["\"emb\"", "twice"];
    /// The header is JSON, but not an object of tensors.
    header_not_an_object: |_: &[u8]| raw_safetensors("[1, 2, 3]", &[]), ["JSON"];
    /// data_offsets end past the data (shape and byte count agree).
    data_offsets_past_end: |_: &[u8]| {
        raw_safetensors(&one_tensor("F32", "[4,2]", "[0,32]"), &[0; 16])
    }, ["\"emb\"", "past the end"];
    /// data_offsets leave a gap before the first tensor.
    data_offsets_gap: |_: &[u8]| {
        raw_safetensors(&one_tensor("F32", "[4,2]", "[8,40]"), &[0; 40])
    }, ["\"emb\""];
    /// data_offsets whose end is before their start.
    data_offsets_reversed: |_: &[u8]| {
        raw_safetensors(&one_tensor("F32", "[0]", "[8,0]"), &[0; 8])
    }, ["\"emb\""];
    /// data_offsets so large that adding them up overflows (a panic inside the safetensors
    /// crate's own validation).
    data_offsets_overflow: |_: &[u8]| {
        let big = (1u64 << 61) - 1;
        let header: Vec<String> = (0..8u64)
            .map(|i| format!(
                r#""t{i}":{{"dtype":"U8","shape":[{big}],"data_offsets":[{},{}]}}"#,
                i * big,
                (i + 1) * big
            ))
            .collect();
        raw_safetensors(&format!("{{{}}}", header.join(",")), &[])
    }, ["\"t0\""];
    /// Two tensors whose byte ranges overlap.
    overlapping_offsets: |_: &[u8]| raw_safetensors(
        r#"{"first":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"overlapper":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#,
        &[0; 24],
    ), ["\"overlapper\""];
    /// The shape says 32 bytes, the offsets 24.
    shape_and_byte_count_disagree: |_: &[u8]| {
        raw_safetensors(&one_tensor("F32", "[4,2]", "[0,24]"), &[0; 24])
    }, ["\"emb\"", "[4, 2]", "24"];
    /// A 4-bit dtype whose element count leaves half a byte.
    sub_byte_dtype_half_a_byte: |_: &[u8]| {
        raw_safetensors(&one_tensor("F4", "[3]", "[0,2]"), &[0; 2])
    }, ["\"emb\""];
    /// A dtype safetensors does not know.
    unknown_dtype: |_: &[u8]| {
        raw_safetensors(&one_tensor("F33", "[4,2]", "[0,32]"), &[0; 32])
    }, ["F33"];
    /// Bytes after the last tensor.
    trailing_garbage: |valid: &[u8]| [valid, b"garbage"].concat(), ["trailing"];
}

// ---------------------------------------------------------------------------------------
// Sharded checkpoints: the index must not lead out of the checkpoint directory.

#[test]
fn shard_in_parent_directory() {
    let fx = Fixture::new();
    fx.shard(r#"{"emb": "../ckpt.safetensors", "dense": "shard2.safetensors"}"#);
    fx.refused(
        &[],
        &[
            "model.safetensors.index.json",
            "../ckpt.safetensors",
            "outside",
        ],
    );
}

#[test]
fn shard_hidden_parent_directory() {
    let fx = Fixture::new();
    fx.shard(r#"{"emb": "./sub/../../ckpt.safetensors", "dense": "shard2.safetensors"}"#);
    fx.mkdir("ckpt/sub");
    fx.refused(&[], &["./sub/../../ckpt.safetensors", "outside"]);
}

#[test]
fn shard_name_empty() {
    let fx = Fixture::new();
    fx.shard(r#"{"emb": "", "dense": "shard2.safetensors"}"#);
    fx.refused(
        &[],
        &["model.safetensors.index.json", "a shard name is empty"],
    );
}

#[test]
fn shard_absolute_path() {
    let fx = Fixture::new();
    let abs = fx.path(CKPT).display().to_string();
    fx.shard(&format!(
        r#"{{"emb": "{abs}", "dense": "shard2.safetensors"}}"#
    ));
    fx.refused(&[], &[&abs, "outside"]);
}

#[cfg(unix)]
#[test]
fn shard_symlink_pointing_outside() {
    let fx = Fixture::new();
    fx.shard(r#"{"emb": "link.safetensors", "dense": "shard2.safetensors"}"#);
    std::os::unix::fs::symlink(fx.path(CKPT), fx.path("ckpt/link.safetensors")).unwrap();
    fx.refused(&[], &["link.safetensors", "outside"]);
}

#[cfg(unix)]
#[test]
fn shard_symlink_inside_is_followed() {
    let fx = Fixture::new();
    fx.shard(r#"{"emb": "link.safetensors", "dense": "shard2.safetensors"}"#);
    std::os::unix::fs::symlink("shard1.safetensors", fx.path("ckpt/link.safetensors")).unwrap();
    fx.succeeds(&[]);
}

/// `..` is followed where the path stays inside the checkpoint directory.
#[test]
fn shard_path_through_a_subdirectory_and_back() {
    let fx = Fixture::new();
    fx.shard(r#"{"emb": "sub/../shard1.safetensors", "dense": "shard2.safetensors"}"#);
    fx.mkdir("ckpt/sub");
    fx.succeeds(&[]);
}

/// Without an index, every `*.safetensors` in the directory is a shard: a broken link among
/// them is refused, not skipped (its tensors would be reported missing, or worse, found in
/// an older shard).
#[cfg(unix)]
#[test]
fn broken_link_among_unindexed_shards() {
    let fx = Fixture::new();
    fx.shard(Fixture::VALID_WEIGHT_MAP);
    fs::remove_file(fx.path("ckpt/model.safetensors.index.json")).unwrap();
    fx.succeeds(&[]);
    std::os::unix::fs::symlink("gone.safetensors", fx.path("ckpt/zz.safetensors")).unwrap();
    fx.refused(&[], &["zz.safetensors"]);
}

#[test]
fn shard_missing() {
    let fx = Fixture::new();
    fx.shard(r#"{"emb": "shard1.safetensors", "dense": "shard3.safetensors"}"#);
    fx.refused(&[], &["shard3.safetensors"]);
}

#[test]
fn shard_lacks_the_tensor_the_index_puts_there() {
    let fx = Fixture::new();
    fx.shard(r#"{"emb": "shard1.safetensors", "dense": "shard1.safetensors"}"#);
    fx.refused(&[], &["\"dense\"", "shard1.safetensors"]);
}

#[test]
fn shard_is_broken() {
    let fx = Fixture::new();
    fx.shard(Fixture::VALID_WEIGHT_MAP);
    fx.write("ckpt/shard2.safetensors", b"\x08\0\0\0\0\0\0\0{}");
    fx.refused(&[], &["shard2.safetensors"]);
}

#[test]
fn directory_shards_share_a_tensor() {
    let fx = Fixture::new();
    fx.write(
        "ckpt/a.safetensors",
        safetensors_bytes(&checkpoint_tensors()),
    );
    fx.write(
        "ckpt/b.safetensors",
        safetensors_bytes(&[f32_tensor("dense", &[2, 3], 0.0)]),
    );
    fx.edit_plan("checkpoint = \"ckpt.safetensors\"", "checkpoint = \"ckpt\"");
    fx.refused(&[], &["\"dense\"", "a.safetensors", "b.safetensors"]);
}

#[test]
fn index_invalid_json() {
    let fx = Fixture::new();
    fx.shard(Fixture::VALID_WEIGHT_MAP);
    fx.write(
        "ckpt/model.safetensors.index.json",
        r#"{"weight_map": {"emb": "#,
    );
    fx.refused(&[], &["model.safetensors.index.json"]);
}

#[test]
fn index_without_weight_map() {
    let fx = Fixture::new();
    fx.shard(Fixture::VALID_WEIGHT_MAP);
    fx.write("ckpt/model.safetensors.index.json", r#"{"metadata": {}}"#);
    fx.refused(&[], &["model.safetensors.index.json", "weight_map"]);
}

/// The index named by a bare file name, the plan run from its directory: the index's
/// directory is then "" (it failed with "cannot read : No such file or directory").
#[test]
fn index_given_as_a_bare_file_name_succeeds() {
    let fx = Fixture::new();
    fx.shard(Fixture::VALID_WEIGHT_MAP);
    for f in [
        "shard1.safetensors",
        "shard2.safetensors",
        "model.safetensors.index.json",
    ] {
        fs::rename(fx.path(&format!("ckpt/{f}")), fx.path(f)).unwrap();
    }
    fx.edit_plan(
        "checkpoint = \"ckpt\"",
        "checkpoint = \"model.safetensors.index.json\"",
    );
    fx.write(CKPT, b"not used any more");
    let out = fx.succeeds(&[]);
    assert_eq!(f32s(&out["dense"].2), [100., 101., 102., 103., 104., 105.]);
}

/// Partitions whose rows add up past `usize::MAX` (zero-width, so the file is tiny): the sum
/// used to wrap silently, and `z` to be planned as a table of 0 rows.
#[test]
fn partition_rows_that_overflow() {
    let fx = Fixture::new();
    let mut tensors = model_tensors();
    for k in 0..2 {
        tensors.push((
            format!("z/part_{k}"),
            Dtype::F32,
            vec![1 << 63, 0],
            Vec::new(),
        ));
    }
    fx.write(MODEL, safetensors_bytes(&tensors));
    fx.refused(&[], &[MODEL, "z", "rows"]);
}

#[test]
fn index_given_as_the_checkpoint_path_naming_a_parent_file() {
    let fx = Fixture::new();
    fx.shard(r#"{"emb": "../ckpt.safetensors", "dense": "shard2.safetensors"}"#);
    fx.edit_plan(
        "checkpoint = \"ckpt\"",
        "checkpoint = \"ckpt/model.safetensors.index.json\"",
    );
    fx.refused(&[], &["../ckpt.safetensors", "outside"]);
}

// ---------------------------------------------------------------------------------------
// Missing files.

#[test]
fn checkpoint_directory_without_safetensors() {
    let fx = Fixture::new();
    fx.write("empty_ckpt/README.txt", "nothing here");
    fx.edit_plan(
        "checkpoint = \"ckpt.safetensors\"",
        "checkpoint = \"empty_ckpt\"",
    );
    fx.refused(&[], &["empty_ckpt", "no *.safetensors"]);
}

#[test]
fn checkpoint_missing() {
    let fx = Fixture::new();
    std::fs::remove_file(fx.path(CKPT)).unwrap();
    fx.refused(&[], &[CKPT]);
}

#[test]
fn model_missing() {
    let fx = Fixture::new();
    std::fs::remove_file(fx.path(MODEL)).unwrap();
    fx.refused(&[], &[MODEL]);
}

#[test]
fn old_vocab_is_a_directory() {
    let fx = Fixture::new();
    fs::remove_file(fx.path(OLD_VOCAB)).unwrap();
    fx.mkdir(OLD_VOCAB);
    fx.refused(&[], &[OLD_VOCAB, "is a directory"]);
}

#[test]
fn new_vocab_missing() {
    let fx = Fixture::new();
    std::fs::remove_file(fx.path(NEW_VOCAB)).unwrap();
    fx.refused(&[], &[NEW_VOCAB]);
}

#[test]
fn old_vocab_missing() {
    let fx = Fixture::new();
    std::fs::remove_file(fx.path(OLD_VOCAB)).unwrap();
    fx.refused(&[], &[OLD_VOCAB]);
}

#[test]
fn plan_missing() {
    let fx = Fixture::new();
    fx.refused_plan("no_such_plan.toml", &[], &["no_such_plan.toml"]);
}

#[test]
fn plan_is_not_toml() {
    let fx = Fixture::new();
    fx.write(PLAN, "checkpoint = \"ckpt.safetensors\nmodel = 3\n");
    fx.refused(&[], &[PLAN]);
}

#[test]
fn plan_without_model_key() {
    let fx = Fixture::new();
    fx.write(
        PLAN,
        "checkpoint = \"ckpt.safetensors\"\noutput = \"out.safetensors\"\n",
    );
    fx.refused(&[], &[PLAN, "model"]);
}

#[test]
fn plan_with_empty_checkpoint_path() {
    let fx = Fixture::new();
    // "" would otherwise be the plan's directory, which holds safetensors files.
    fx.edit_plan("checkpoint = \"ckpt.safetensors\"", "checkpoint = \"\"");
    fx.refused(&[], &[PLAN, "`checkpoint` is empty"]);
}

#[test]
fn plan_with_empty_model_path() {
    let fx = Fixture::new();
    fx.edit_plan("model = \"model.safetensors\"", "model = \"\"");
    fx.refused(&[], &[PLAN, "`model` is empty"]);
}

#[test]
fn plan_with_empty_output_path() {
    let fx = Fixture::new();
    fx.edit_plan("output = \"out.safetensors\"", "output = \"\"");
    fx.refused(&[], &[PLAN, "`output` is empty"]);
}

#[test]
fn plan_with_empty_vocab_path() {
    let fx = Fixture::new();
    fx.edit_plan("new_vocab = \"new_vocab.txt\"", "new_vocab = \"\"");
    fx.refused(&[], &[PLAN, "new_vocab` is empty"]);
}

#[test]
fn plan_without_output_and_no_flag() {
    let fx = Fixture::new();
    fx.edit_plan("output = \"out.safetensors\"\n", "");
    fx.refused(&[], &[PLAN, "output"]);
}

// ---------------------------------------------------------------------------------------
// Unknown plan keys and invalid values.

#[test]
fn unknown_top_level_key() {
    let fx = Fixture::new();
    fx.plan("vars_to_warmstart = \".*\"", "");
    fx.refused(&[], &[PLAN, "vars_to_warmstart"]);
}

#[test]
fn unknown_key_in_vocab_table() {
    let fx = Fixture::new();
    fx.plan("", "axes = 1");
    fx.refused(&[], &[PLAN, "axes"]);
}

#[test]
fn constant_that_overflows_the_dtype() {
    let fx = Fixture::new();
    fx.plan(
        "",
        "backup_initializer = { type = \"constant\", value = 1e39 }",
    );
    fx.refused(&[], &["backup_initializer", "1e39", "overflows", "F32"]);
    // the largest finite f32 value rounds to itself
    fx.plan(
        "",
        "backup_initializer = { type = \"constant\", value = 3.4028234e38 }",
    );
    fx.succeeds(&[]);
}

/// A random initializer whose values can leave the dtype's range is refused as such a
/// constant is: the extremes of its samples are known (the uniform's bounds, the truncated
/// normal's two standard deviations, the normal's most extreme inverse-CDF sample).
#[test]
fn random_initializer_that_overflows_the_dtype() {
    let fx = Fixture::new();
    for init in [
        "{ type = \"random_normal\", stddev = 1e38 }",
        "{ type = \"truncated_normal\", mean = 3.3e38, stddev = 1e37 }",
    ] {
        fx.plan("", &format!("backup_initializer = {init}"));
        fx.refused(&[], &["backup_initializer", "overflows", "F32"]);
    }
    // within two standard deviations of 1.5e38: at most 3e38
    fx.plan(
        "",
        "backup_initializer = { type = \"truncated_normal\", stddev = 1.5e38 }",
    );
    fx.succeeds(&[]);

    // f16 (largest finite value 65504): a uniform up to 1e5 overflows, one up to 6e4 not
    let f16 = |name: &str, rows| zero_tensor(name, Dtype::F16, &[rows, 2]);
    fx.write(CKPT, safetensors_bytes(&[f16("emb", 4), f16("dense", 2)]));
    fx.write(MODEL, safetensors_bytes(&[f16("emb", 6), f16("dense", 2)]));
    fx.plan(
        "",
        "backup_initializer = { type = \"random_uniform\", minval = 0, maxval = 1e5 }",
    );
    fx.refused(&[], &["backup_initializer", "overflows", "F16"]);
    fx.plan(
        "",
        "backup_initializer = { type = \"random_uniform\", minval = 0, maxval = 6e4 }",
    );
    fx.succeeds(&[]);
}

#[test]
fn unknown_key_in_backup_initializer() {
    let fx = Fixture::new();
    fx.plan(
        "",
        "backup_initializer = { type = \"truncated_normal\", mean = 0.0, stdev = 0.1 }",
    );
    fx.refused(&[], &[PLAN, "stdev"]);
}

#[test]
fn unknown_key_in_parameterless_initializer() {
    let fx = Fixture::new();
    fx.plan("", "backup_initializer = { type = \"zeros\", value = 1.0 }");
    fx.refused(&[], &[PLAN, "value"]);
}

#[test]
fn unknown_initializer_type() {
    let fx = Fixture::new();
    fx.plan(
        "",
        "backup_initializer = { type = \"he_normal\", seed = 1 }",
    );
    fx.refused(&[], &[PLAN, "he_normal"]);
}

#[test]
fn initializer_without_type() {
    let fx = Fixture::new();
    fx.plan("", "backup_initializer = { seed = 1 }");
    fx.refused(&[], &[PLAN, "type"]);
}

#[test]
fn unknown_variance_scaling_mode() {
    let fx = Fixture::new();
    fx.plan(
        "",
        "backup_initializer = { type = \"variance_scaling\", mode = \"fan_sum\" }",
    );
    fx.refused(&[], &[PLAN, "fan_sum"]);
}

#[test]
fn invalid_initializer_value() {
    let fx = Fixture::new();
    fx.plan(
        "",
        "backup_initializer = { type = \"random_normal\", stddev = -1.0 }",
    );
    fx.refused(&[], &["backup_initializer", "stddev"]);
}

#[test]
fn invalid_regex_in_vars_to_warm_start_string() {
    let fx = Fixture::new();
    fx.plan("vars_to_warm_start = \"emb(\"", "");
    fx.refused(&[], &["vars_to_warm_start", "emb("]);
}

#[test]
fn invalid_regex_in_vars_to_warm_start_array() {
    let fx = Fixture::new();
    fx.plan("vars_to_warm_start = [\"dense\", \"[emb\"]", "");
    fx.refused(&[], &["vars_to_warm_start", "[emb"]);
}

#[test]
fn invalid_regex_in_non_trainable() {
    let fx = Fixture::new();
    fx.plan("non_trainable = [\"global_step\", \"bn/moving_(mean\"]", "");
    fx.refused(&[], &["non_trainable", "bn/moving_(mean"]);
}

#[test]
fn vars_to_warm_start_of_wrong_type() {
    let fx = Fixture::new();
    fx.plan("vars_to_warm_start = 3", "");
    fx.refused(&[], &[PLAN, "vars_to_warm_start"]);
}

#[test]
fn axis_2() {
    let fx = Fixture::new();
    fx.plan("", "axis = 2");
    fx.refused(&[], &["vocab.\"emb\"", "axis", "2"]);
}

#[test]
fn axis_minus_1() {
    let fx = Fixture::new();
    fx.plan("", "axis = -1");
    fx.refused(&[], &["vocab.\"emb\"", "axis", "-1"]);
}

/// Replaces `key = <value>` in the fixture's `[vocab."emb"]` table.
fn vocab_setting(fx: &Fixture, key: &str, value: &str) {
    let mut plan = plan_text("", "");
    let line = plan
        .lines()
        .find(|l| l.starts_with(&format!("{key} =")))
        .map(str::to_string);
    match line {
        Some(line) => plan = plan.replace(&line, &format!("{key} = {value}")),
        None => plan.push_str(&format!("{key} = {value}\n")),
    }
    fx.write(PLAN, plan);
}

#[test]
fn negative_new_vocab_size() {
    let fx = Fixture::new();
    vocab_setting(&fx, "new_vocab_size", "-5");
    fx.refused(&[], &["vocab.\"emb\"", "new_vocab_size", "-5"]);
}

#[test]
fn zero_new_vocab_size() {
    let fx = Fixture::new();
    vocab_setting(&fx, "new_vocab_size", "0");
    fx.refused(&[], &["vocab.\"emb\"", "new_vocab_size"]);
}

#[test]
fn negative_num_oov_buckets() {
    let fx = Fixture::new();
    vocab_setting(&fx, "num_oov_buckets", "-1");
    fx.refused(&[], &["vocab.\"emb\"", "num_oov_buckets", "-1"]);
}

#[test]
fn old_vocab_size_minus_2() {
    let fx = Fixture::new();
    vocab_setting(&fx, "old_vocab_size", "-2");
    fx.refused(&[], &["vocab.\"emb\"", "old_vocab_size", "-2"]);
}

#[test]
fn old_vocab_size_0() {
    let fx = Fixture::new();
    vocab_setting(&fx, "old_vocab_size", "0");
    fx.refused(&[], &["vocab.\"emb\"", "old_vocab_size"]);
}

#[test]
fn sizes_that_overflow() {
    let fx = Fixture::new();
    vocab_setting(&fx, "new_vocab_size", &i64::MAX.to_string());
    fx.refused(&[], &["vocab.\"emb\"", "num_oov_buckets"]);
}

/// An axis longer than the index vector's u32 entries can address, even of a zero-width
/// table (no bytes of output, but an entry per position while planning): it used to abort on
/// a failed allocation of terabytes.
#[test]
fn vocabulary_axis_too_long() {
    let fx = Fixture::new();
    fx.write(
        MODEL,
        safetensors_bytes(&[("emb".to_string(), Dtype::F32, vec![1 << 40, 0], Vec::new())]),
    );
    vocab_setting(&fx, "num_oov_buckets", &((1u64 << 40) - 5).to_string());
    fx.refused(&[], &["vocab.\"emb\"", "num_oov_buckets", "4294967294"]);
}

/// A selected partition that holds only OOV rows still needs the variable's checkpoint
/// tensor: the variable is validated whole (TensorFlow initialises such a partition without
/// reading the checkpoint; README, "Differences from TensorFlow").
#[test]
fn oov_only_partition_still_needs_the_checkpoint_tensor() {
    let fx = Fixture::new();
    let mut tensors = vec![f32_tensor("emb/part_0", &[5, 2], -1.0)];
    tensors.push(f32_tensor("emb/part_1", &[1, 2], -1.0));
    tensors.push(f32_tensor("dense", &[2, 3], -2.0));
    fx.write(MODEL, safetensors_bytes(&tensors));
    fx.write(
        CKPT,
        safetensors_bytes(&[f32_tensor("dense", &[2, 3], 100.0)]),
    );
    fx.plan("vars_to_warm_start = \"emb/part_1\"", "");
    fx.refused(&[], &["emb", CKPT]);
}

#[test]
fn size_as_a_string() {
    let fx = Fixture::new();
    vocab_setting(&fx, "new_vocab_size", "\"5\"");
    fx.refused(&[], &[PLAN, "new_vocab_size"]);
}

// ---------------------------------------------------------------------------------------
// Vocabulary files.

#[test]
fn new_vocab_empty_line() {
    let fx = Fixture::new();
    fx.write(NEW_VOCAB, "c\na\n\ne\nb\nf\n");
    fx.refused(&[], &[&format!("{NEW_VOCAB}:3"), "empty line"]);
}

#[test]
fn new_vocab_empty_line_past_new_vocab_size() {
    let fx = Fixture::new();
    fx.write(NEW_VOCAB, "c\na\ne\nb\nf\ng\n\nh\n");
    fx.refused(&[], &[&format!("{NEW_VOCAB}:7"), "empty line"]);
}

#[test]
fn old_vocab_empty_line_within_old_vocab_size() {
    let fx = Fixture::new();
    fx.write(OLD_VOCAB, "a\nb\n\nc\n");
    vocab_setting(&fx, "old_vocab_size", "3");
    fx.refused(&[], &[&format!("{OLD_VOCAB}:3"), "empty line"]);
}

#[test]
fn old_vocab_empty_line_beyond_old_vocab_size_is_not_read() {
    let fx = Fixture::new();
    fx.write(OLD_VOCAB, "a\nb\nc\nd\n\ne\n");
    vocab_setting(&fx, "old_vocab_size", "4");
    let out = fx.succeeds(&[]);
    assert_eq!(
        f32s(&out["emb"].2),
        [5., 6., 1., 2., 0., 0., 3., 4., 0., 0., 0., 0.]
    );
}

#[test]
fn old_vocab_duplicate_token() {
    let fx = Fixture::new();
    fx.write(OLD_VOCAB, "a\nb\nc\nb\n");
    fx.refused(&[], &[OLD_VOCAB, "\"b\"", "lines 2 and 4"]);
}

/// A token is a line, however long: messages show its first 100 characters and its length
/// (a duplicated line of 10 MB used to be printed whole, into stderr and the report).
#[test]
fn long_duplicate_token_is_shortened_in_the_message() {
    let fx = Fixture::new();
    let token = "é".repeat(5_000_000);
    fx.write(OLD_VOCAB, format!("a\n{token}\nc\n{token}\n"));
    let shown = format!("\"{}... (10000000 bytes)\"", "é".repeat(100));
    let run = fx.refused(&[], &[OLD_VOCAB, &shown, "lines 2 and 4"]);
    assert!(
        run.stderr.len() < 2000,
        "{} bytes of stderr",
        run.stderr.len()
    );
}

#[test]
fn new_vocab_duplicate_token_in_window() {
    let fx = Fixture::new();
    fx.write(NEW_VOCAB, "c\na\ne\na\nf\n");
    fx.refused(&[], &[NEW_VOCAB, "\"a\"", "lines 2 and 4"]);
}

#[test]
fn new_vocab_duplicate_token_past_window_is_not_an_error() {
    let fx = Fixture::new();
    fx.write(NEW_VOCAB, "c\na\ne\nb\nf\nc\n");
    fx.succeeds(&[]);
}

#[test]
fn old_vocab_size_larger_than_file() {
    let fx = Fixture::new();
    vocab_setting(&fx, "old_vocab_size", "10");
    fx.refused(&[], &[OLD_VOCAB, "10"]);
}

#[test]
fn new_vocab_size_larger_than_file() {
    let fx = Fixture::new();
    // 6 rows = 6 + 0 OOV, but the file has 5 lines.
    vocab_setting(&fx, "new_vocab_size", "6");
    fx.edit_plan("num_oov_buckets = 1", "num_oov_buckets = 0");
    fx.refused(&[], &[NEW_VOCAB, "6"]);
}

#[test]
fn old_vocab_line_past_checkpoint_rows() {
    let fx = Fixture::new();
    // `e` is on line 5 of the old vocabulary, but the checkpoint's emb has 4 rows.
    fx.write(OLD_VOCAB, "a\nb\nc\nd\ne\n");
    fx.refused(&[], &[&format!("{OLD_VOCAB}:5"), "\"e\"", "\"emb\""]);
}

#[test]
fn old_vocab_line_past_checkpoint_columns() {
    let fx = Fixture::new();
    // Vocabulary along columns: `e` is on line 5, but the checkpoint's emb has 4 columns.
    fx.write(OLD_VOCAB, "a\nb\nc\nd\ne\n");
    fx.write(
        CKPT,
        safetensors_bytes(&[
            f32_tensor("emb", &[2, 4], 1.0),
            f32_tensor("dense", &[2, 3], 100.0),
        ]),
    );
    fx.write(
        MODEL,
        safetensors_bytes(&[
            f32_tensor("emb", &[2, 6], 0.0),
            f32_tensor("dense", &[2, 3], 0.0),
        ]),
    );
    fx.plan("", "axis = 1");
    fx.refused(&[], &[&format!("{OLD_VOCAB}:5"), "\"e\"", "columns"]);
}

#[test]
fn new_vocab_empty_file() {
    let fx = Fixture::new();
    fx.write(NEW_VOCAB, "");
    fx.refused(&[], &[NEW_VOCAB, "empty"]);
}

#[test]
fn old_vocab_empty_file() {
    let fx = Fixture::new();
    fx.write(OLD_VOCAB, "");
    fx.refused(&[], &[OLD_VOCAB, "empty"]);
}

#[test]
fn vocab_path_is_a_directory() {
    let fx = Fixture::new();
    std::fs::remove_file(fx.path(OLD_VOCAB)).unwrap();
    fx.mkdir(OLD_VOCAB);
    fx.refused(&[], &[OLD_VOCAB]);
}

// ---------------------------------------------------------------------------------------
// Variables that do not fit their checkpoint tensor.

#[test]
fn checkpoint_tensor_missing() {
    let fx = Fixture::new();
    fx.write(CKPT, safetensors_bytes(&[f32_tensor("emb", &[4, 2], 1.0)]));
    fx.refused(&[], &["tensor \"dense\"", "variable \"dense\"", CKPT]);
}

#[test]
fn checkpoint_tensor_missing_under_prev_name() {
    let fx = Fixture::new();
    fx.plan("[prev_var_name]\n\"dense\" = \"old_dense\"", "");
    fx.refused(&[], &["\"old_dense\"", "\"dense\""]);
}

#[test]
fn shape_mismatch() {
    let fx = Fixture::new();
    fx.write(
        MODEL,
        safetensors_bytes(&[
            f32_tensor("emb", &[6, 2], 0.0),
            f32_tensor("dense", &[3, 2], 0.0),
        ]),
    );
    fx.refused(&[], &["\"dense\"", "[3, 2]", "[2, 3]"]);
}

#[test]
fn dtype_mismatch() {
    let fx = Fixture::new();
    fx.write(
        MODEL,
        safetensors_bytes(&[
            f32_tensor("emb", &[6, 2], 0.0),
            zero_tensor("dense", Dtype::F64, &[2, 3]),
        ]),
    );
    fx.refused(&[], &["\"dense\"", "F64", "F32"]);
}

#[test]
fn vocab_variable_dtype_mismatch() {
    let fx = Fixture::new();
    fx.write(
        MODEL,
        safetensors_bytes(&[
            zero_tensor("emb", Dtype::F16, &[6, 2]),
            f32_tensor("dense", &[2, 3], 0.0),
        ]),
    );
    fx.refused(&[], &["\"emb\"", "F16", "F32"]);
}

#[test]
fn vocab_variable_with_int_dtype() {
    let fx = Fixture::new();
    fx.write(
        CKPT,
        safetensors_bytes(&[
            zero_tensor("emb", Dtype::I32, &[4, 2]),
            f32_tensor("dense", &[2, 3], 0.0),
        ]),
    );
    fx.write(
        MODEL,
        safetensors_bytes(&[
            zero_tensor("emb", Dtype::I32, &[6, 2]),
            f32_tensor("dense", &[2, 3], 0.0),
        ]),
    );
    fx.refused(&[], &["\"emb\"", "I32"]);
}

#[test]
fn vocab_variable_rows_differ_from_vocab_size_plus_oov() {
    let fx = Fixture::new();
    fx.write(
        MODEL,
        safetensors_bytes(&[
            f32_tensor("emb", &[7, 2], 0.0),
            f32_tensor("dense", &[2, 3], 0.0),
        ]),
    );
    fx.refused(&[], &["\"emb\"", "7 rows", "5 + 1"]);
}

#[test]
fn vocab_variable_3d() {
    let fx = Fixture::new();
    fx.write(
        MODEL,
        safetensors_bytes(&[
            f32_tensor("emb", &[6, 2, 1], 0.0),
            f32_tensor("dense", &[2, 3], 0.0),
        ]),
    );
    fx.refused(&[], &["\"emb\"", "[6, 2, 1]"]);
}

#[test]
fn vocab_checkpoint_tensor_3d() {
    let fx = Fixture::new();
    fx.write(
        CKPT,
        safetensors_bytes(&[
            f32_tensor("emb", &[4, 2, 1], 0.0),
            f32_tensor("dense", &[2, 3], 0.0),
        ]),
    );
    fx.refused(&[], &["\"emb\"", "[4, 2, 1]"]);
}

#[test]
fn axis_0_old_column_count_differs() {
    let fx = Fixture::new();
    fx.write(
        CKPT,
        safetensors_bytes(&[
            f32_tensor("emb", &[4, 3], 1.0),
            f32_tensor("dense", &[2, 3], 100.0),
        ]),
    );
    fx.refused(&[], &["\"emb\"", "2 columns", "3"]);
}

#[test]
fn axis_1_fewer_old_rows() {
    let fx = Fixture::new();
    // Vocabulary along columns: emb [2, 6] in the model, [1, 4] in the checkpoint.
    fx.write(
        CKPT,
        safetensors_bytes(&[
            f32_tensor("emb", &[1, 4], 1.0),
            f32_tensor("dense", &[2, 3], 100.0),
        ]),
    );
    fx.write(
        MODEL,
        safetensors_bytes(&[
            f32_tensor("emb", &[2, 6], 0.0),
            f32_tensor("dense", &[2, 3], 0.0),
        ]),
    );
    fx.plan("", "axis = 1");
    fx.refused(&[], &["\"emb\"", "2 rows", "only 1"]);
}

#[test]
fn partition_gap_in_checkpoint() {
    let fx = Fixture::new();
    fx.write(
        CKPT,
        safetensors_bytes(&[
            f32_tensor("emb", &[4, 2], 1.0),
            f32_tensor("dense/part_0", &[1, 3], 100.0),
            f32_tensor("dense/part_2", &[1, 3], 103.0),
        ]),
    );
    fx.refused(&[], &[CKPT, "dense/part_1"]);
}

#[test]
fn partition_gap_in_model() {
    let fx = Fixture::new();
    fx.write(
        MODEL,
        safetensors_bytes(&[
            f32_tensor("emb", &[6, 2], 0.0),
            f32_tensor("dense/part_0", &[1, 3], 0.0),
            f32_tensor("dense/part_2", &[1, 3], 0.0),
        ]),
    );
    fx.refused(&[], &[MODEL, "dense/part_1"]);
}

#[test]
fn partitions_disagree_in_checkpoint() {
    let fx = Fixture::new();
    fx.write(
        CKPT,
        safetensors_bytes(&[
            f32_tensor("emb", &[4, 2], 1.0),
            f32_tensor("dense/part_0", &[1, 3], 100.0),
            f32_tensor("dense/part_1", &[1, 2], 103.0),
        ]),
    );
    fx.refused(&[], &[CKPT, "dense/part_1"]);
}

#[test]
fn partitions_disagree_in_model() {
    let fx = Fixture::new();
    fx.write(
        MODEL,
        safetensors_bytes(&[
            f32_tensor("emb", &[6, 2], 0.0),
            f32_tensor("dense/part_0", &[1, 3], 0.0),
            zero_tensor("dense/part_1", Dtype::F64, &[1, 3]),
        ]),
    );
    fx.refused(&[], &[MODEL, "dense/part_1"]);
}

#[test]
fn model_mixes_variable_and_its_partitions() {
    let fx = Fixture::new();
    fx.write(
        MODEL,
        safetensors_bytes(&[
            f32_tensor("emb", &[6, 2], 0.0),
            f32_tensor("dense", &[2, 3], 0.0),
            f32_tensor("dense/part_0", &[2, 3], 0.0),
        ]),
    );
    fx.refused(&[], &[MODEL, "\"dense\""]);
}

// ---------------------------------------------------------------------------------------
// Keys that name no selected variable.

#[test]
fn unused_prev_var_name_key() {
    let fx = Fixture::new();
    fx.plan("[prev_var_name]\n\"embedding\" = \"emb\"", "");
    let run = fx.refused(&[], &["prev_var_name", "\"embedding\""]);
    // The viable names are listed.
    assert!(run.stderr.contains("\"dense\"") && run.stderr.contains("\"emb\""));
}

#[test]
fn unused_vocab_key() {
    let fx = Fixture::new();
    let plan = format!(
        "{}\n[vocab.\"embedding\"]\nnew_vocab = \"{NEW_VOCAB}\"\nnew_vocab_size = 5\n\
         num_oov_buckets = 1\nold_vocab = \"{OLD_VOCAB}\"\n",
        plan_text("", "")
    );
    fx.write(PLAN, plan);
    let run = fx.refused(&[], &["vocab", "\"embedding\""]);
    assert!(run.stderr.contains("\"dense\"") && run.stderr.contains("\"emb\""));
}

#[test]
fn vocab_key_of_unselected_variable() {
    let fx = Fixture::new();
    fx.plan("vars_to_warm_start = \"dense\"", "");
    let run = fx.refused(&[], &["vocab", "\"emb\""]);
    assert!(run.stderr.contains("[\"dense\"]"), "viable: {}", run.stderr);
}

// ---------------------------------------------------------------------------------------
// Output paths.

#[test]
fn output_is_the_model_file() {
    let fx = Fixture::new();
    fx.refused(&["--output", MODEL], &[MODEL, "model"]);
}

#[test]
fn output_is_the_model_file_by_another_spelling() {
    let fx = Fixture::new();
    fx.mkdir("sub");
    fx.refused(
        &["--output", "./sub/../model.safetensors"],
        &["./sub/../model.safetensors", "input"],
    );
}

#[test]
fn output_is_the_model_file_through_the_plan() {
    let fx = Fixture::new();
    fx.edit_plan(
        "output = \"out.safetensors\"",
        "output = \"./model.safetensors\"",
    );
    fx.refused(&[], &[MODEL, "input"]);
}

#[test]
fn output_is_the_checkpoint_file() {
    let fx = Fixture::new();
    fx.refused(&["--output", CKPT], &[CKPT, "checkpoint"]);
}

#[test]
fn output_is_a_checkpoint_shard() {
    let fx = Fixture::new();
    fx.shard(Fixture::VALID_WEIGHT_MAP);
    fx.refused(
        &["--output", "ckpt/shard2.safetensors"],
        &["shard2.safetensors", "checkpoint"],
    );
}

#[test]
fn output_is_the_checkpoint_index() {
    let fx = Fixture::new();
    fx.shard(Fixture::VALID_WEIGHT_MAP);
    fx.refused(
        &["--output", "ckpt/model.safetensors.index.json"],
        &["model.safetensors.index.json", "checkpoint"],
    );
}

#[test]
fn output_is_the_new_vocab() {
    let fx = Fixture::new();
    fx.refused(&["--output", NEW_VOCAB], &[NEW_VOCAB, "vocabulary"]);
}

#[test]
fn output_is_the_old_vocab_by_absolute_path() {
    let fx = Fixture::new();
    let abs = fx.path(OLD_VOCAB).display().to_string();
    fx.refused(&["--output", &abs], &[OLD_VOCAB, "vocabulary"]);
}

#[test]
fn output_is_the_plan_file() {
    let fx = Fixture::new();
    fx.refused(&["--output", PLAN], &[PLAN, "plan"]);
}

#[cfg(unix)]
#[test]
fn output_is_a_symlink_to_the_model() {
    let fx = Fixture::new();
    std::os::unix::fs::symlink(MODEL, fx.path("alias.safetensors")).unwrap();
    fx.refused(
        &["--output", "alias.safetensors"],
        &["alias.safetensors", "model"],
    );
}

#[test]
fn output_in_missing_directory() {
    let fx = Fixture::new();
    fx.refused(
        &["--output", "no_such_dir/out.safetensors"],
        &["no_such_dir"],
    );
}

#[test]
fn output_under_a_file() {
    let fx = Fixture::new();
    fx.refused(
        &["--output", "out.safetensors/x.safetensors"],
        &["out.safetensors", "not a directory"],
    );
}

#[test]
fn output_is_a_directory() {
    let fx = Fixture::new();
    fx.mkdir("outdir");
    fx.refused(&["--output", "outdir"], &["outdir", "directory"]);
}

#[test]
fn output_is_a_directory_with_trailing_slash() {
    let fx = Fixture::new();
    fx.mkdir("outdir");
    fx.refused(&["--output", "outdir/"], &["outdir", "directory"]);
}

#[test]
fn output_in_a_directory_that_does_not_exist_yet_with_trailing_slash() {
    let fx = Fixture::new();
    fx.refused(
        &["--output", "new.safetensors/"],
        &["new.safetensors/", "names a directory"],
    );
}

/// Kernel filesystems take no new files, though `access` lets root write there: refused while
/// planning, not after the output is computed.
#[cfg(target_os = "linux")]
#[test]
fn output_on_a_kernel_filesystem() {
    let fx = Fixture::new();
    for output in ["/proc/x.safetensors", "/sys/x.safetensors"] {
        fx.refused(&["--output", output], &[output, "cannot be written"]);
    }
}

/// `x/.` and `x/..` name directories, whatever `x` is; `Path` would read the first as `x`.
#[test]
fn output_ending_in_dot_or_dot_dot() {
    let fx = Fixture::new();
    for output in ["new.safetensors/.", "new.safetensors/..", ".", ".."] {
        fx.refused(&["--output", output], &[output, "names a directory"]);
    }
}

/// A FIFO (or a device) would be replaced by a regular file.
#[cfg(unix)]
#[test]
fn output_is_a_fifo() {
    let fx = Fixture::new();
    mkfifo(&fx.path("fifo"));
    fx.refused(&["--output", "fifo"], &["fifo", "not a regular file"]);
}

/// Inputs that are not regular files are refused at once: a FIFO that no process writes
/// (opening it to read would block forever), and a device such as `/dev/null` (which cannot
/// be mapped). Should opening block again, a thread opens the FIFO for writing after 20 s,
/// and the time taken fails the test.
#[cfg(unix)]
#[test]
fn inputs_that_are_not_regular_files() {
    let fx = Fixture::new();
    mkfifo(&fx.path("fifo"));
    mkfifo(&fx.path("fifo.json"));
    let fifos = [fx.path("fifo"), fx.path("fifo.json")];
    std::thread::spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_secs(20));
        for fifo in &fifos {
            use std::os::unix::fs::OpenOptionsExt;
            let mut options = fs::OpenOptions::new();
            let _ = options
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(fifo);
        }
    });
    let started = std::time::Instant::now();
    for (from, to) in [
        (
            format!("new_vocab = \"{NEW_VOCAB}\""),
            "new_vocab = \"fifo\"",
        ),
        (
            format!("old_vocab = \"{OLD_VOCAB}\""),
            "old_vocab = \"fifo\"",
        ),
        (format!("model = \"{MODEL}\""), "model = \"fifo\""),
        (format!("checkpoint = \"{CKPT}\""), "checkpoint = \"fifo\""),
        (
            format!("checkpoint = \"{CKPT}\""),
            "checkpoint = \"fifo.json\"",
        ),
        (
            format!("new_vocab = \"{NEW_VOCAB}\""),
            "new_vocab = \"/dev/null\"",
        ),
    ] {
        fx.plan("", "");
        fx.edit_plan(&from, to);
        let name = to.split('"').nth(1).unwrap();
        fx.refused(&[], &[name, "not a regular file"]);
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "refusing took {:?}",
        started.elapsed()
    );
}

/// An output directory this process cannot write is refused while planning (a dry run too),
/// not found out when the writing starts.
#[cfg(target_os = "linux")]
#[test]
fn output_directory_cannot_be_written() {
    let fx = Fixture::new();
    fx.mkdir("locked");
    let _locked = Locked::new(&fx.path("locked"));
    for dry in [&["--dry-run"][..], &[]] {
        let args = [&["--output", "locked/out.safetensors"][..], dry].concat();
        fx.refused(&args, &["locked/out.safetensors", "cannot be written"]);
    }
}

/// An output path that is a symbolic link is replaced, in the link's own directory: what
/// the link points into may be unwritable (an older version kept read-only).
#[cfg(target_os = "linux")]
#[test]
fn output_symlink_into_an_unwritable_directory_is_replaced() {
    let fx = Fixture::new();
    fx.write("locked/v1.safetensors", OUT_BYTES);
    std::os::unix::fs::symlink("locked/v1.safetensors", fx.path("current.safetensors")).unwrap();
    let _locked = Locked::new(&fx.path("locked"));
    let run = fx.run(&["--output", "current.safetensors"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let current = fs::symlink_metadata(fx.path("current.safetensors")).unwrap();
    assert!(current.is_file(), "the link is replaced by the output");
    assert_eq!(
        fs::read(fx.path("locked/v1.safetensors")).unwrap(),
        OUT_BYTES
    );
}

/// A directory no one may write while it lives: read-only permissions, or, as root (whom
/// permission bits do not stop), the immutable flag (`FS_IOC_SETFLAGS`). Unlocked on drop,
/// however the test ends.
#[cfg(target_os = "linux")]
struct Locked(PathBuf);

#[cfg(target_os = "linux")]
impl Locked {
    fn new(dir: &Path) -> Locked {
        use std::os::unix::fs::PermissionsExt;
        let locked = Locked(dir.to_path_buf());
        // SAFETY: no arguments, no memory.
        if unsafe { libc::geteuid() } == 0 {
            set_immutable(dir, true).expect("an immutable directory (FS_IOC_SETFLAGS)");
        } else {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o555)).unwrap();
        }
        locked
    }
}

#[cfg(target_os = "linux")]
impl Drop for Locked {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        let _ = set_immutable(&self.0, false);
        let _ = fs::set_permissions(&self.0, fs::Permissions::from_mode(0o755));
    }
}

/// Sets or clears a directory's immutable flag (ext4, xfs, btrfs, tmpfs: `chattr +i`).
#[cfg(target_os = "linux")]
fn set_immutable(path: &Path, on: bool) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    const FS_IOC_GETFLAGS: libc::c_ulong = 0x8008_6601;
    const FS_IOC_SETFLAGS: libc::c_ulong = 0x4008_6602;
    const FS_IMMUTABLE_FL: libc::c_long = 0x10;
    let file = fs::File::open(path)?;
    let mut flags: libc::c_long = 0;
    // SAFETY: the ioctls read and write one `long` through the pointer, on an open file.
    unsafe {
        if libc::ioctl(file.as_raw_fd(), FS_IOC_GETFLAGS, &mut flags) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        flags = if on {
            flags | FS_IMMUTABLE_FL
        } else {
            flags & !FS_IMMUTABLE_FL
        };
        if libc::ioctl(file.as_raw_fd(), FS_IOC_SETFLAGS, &flags) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Paths that are not UTF-8 (Linux allows any byte but `/` and NUL in a name): a plan in
/// such a directory, so that every path it names resolves under it, and such an output and
/// report. They run as any other; serde refuses such a path, which used to panic.
#[cfg(target_os = "linux")]
#[test]
fn paths_that_are_not_utf8() {
    use std::os::unix::ffi::OsStrExt;
    let fx = Fixture::new();
    let sub = fx.root().join(std::ffi::OsStr::from_bytes(b"d\xff"));
    fs::create_dir(&sub).unwrap();
    for f in [CKPT, MODEL, OLD_VOCAB, NEW_VOCAB, PLAN] {
        fs::copy(fx.path(f), sub.join(f)).unwrap();
    }
    let out = sub.join(std::ffi::OsStr::from_bytes(b"o\xfe.safetensors"));
    let run = fx
        .command()
        .arg("run")
        .arg(sub.join(PLAN))
        .args([
            "--backend",
            "cpu",
            "--quiet",
            "--report",
            "r.json",
            "--output",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{stderr}");
    let bytes = fs::read(&out).expect("output written");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid output");
    assert_eq!(
        f32s(st.tensor("emb").unwrap().data()),
        [5., 6., 1., 2., 0., 0., 3., 4., 0., 0., 0., 0.]
    );
    let r = read_report(&fx, "r.json");
    assert_eq!(r["outcome"]["status"], "ok", "{r:#}");
    assert!(r["plan"].as_str().unwrap().contains('\u{FFFD}'), "{r:#}");
}

#[test]
fn output_is_dot() {
    let fx = Fixture::new();
    fx.refused(&["--output", "."], &["output: ."]);
}

// ---------------------------------------------------------------------------------------
// --dry-run and --report.

#[test]
fn dry_run_of_a_bad_plan_is_refused() {
    let fx = Fixture::new();
    fx.plan("", "axis = 2");
    fx.refused(&["--dry-run"], &["vocab.\"emb\"", "axis"]);
}

#[test]
fn dry_run_of_a_bad_vocabulary_is_refused() {
    let fx = Fixture::new();
    fx.write(OLD_VOCAB, "a\nb\nc\nb\n");
    fx.refused(&["--dry-run"], &[OLD_VOCAB, "\"b\""]);
}

#[test]
fn dry_run_of_a_good_plan_writes_nothing() {
    let fx = Fixture::new();
    let before = snapshot(fx.root());
    let run = fx.run(&["--dry-run"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.contains("emb") && run.stdout.contains("remap"));
    assert_eq!(diff(&before, &snapshot(fx.root())), Vec::<String>::new());
}

fn read_report(fx: &Fixture, name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fx.path(name)).expect("report written");
    serde_json::from_str(&text).expect("report is JSON")
}

#[test]
fn report_of_a_successful_run() {
    let fx = Fixture::new();
    fx.succeeds(&["--report", "r.json"]);
    let r = read_report(&fx, "r.json");
    assert_eq!(r["backend"], "cpu", "{r:#}");
    assert_eq!(r["outcome"]["status"], "ok", "{r:#}");
    let vars = r["variables"].as_array().expect("variables is an array");
    let emb = vars
        .iter()
        .find(|v| v["name"] == "emb")
        .expect("emb reported");
    assert_eq!(emb["action"], "remap");
    assert_eq!(
        (&emb["copied"], &emb["initialised"], &emb["oov"]),
        (&3.into(), &2.into(), &1.into())
    );
    let dense = vars
        .iter()
        .find(|v| v["name"] == "dense")
        .expect("dense reported");
    assert_eq!(dense["action"], "copy");
}

#[test]
fn report_of_a_refused_run() {
    let fx = Fixture::new();
    fx.write(OLD_VOCAB, "a\nb\nc\nb\n");
    let before = snapshot(fx.root());
    let run = fx.run(&["--report", "r.json"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    let r = read_report(&fx, "r.json");
    assert_eq!(r["outcome"]["status"], "refused", "{r:#}");
    assert_eq!(r["outcome"]["exit_code"], 2, "{r:#}");
    let error = r["outcome"]["error"].as_str().expect("error is a string");
    assert!(
        error.contains(OLD_VOCAB) && error.contains("\"b\""),
        "{error}"
    );
    // Only the report is new.
    assert_eq!(diff(&before, &snapshot(fx.root())), ["created r.json"]);
}

#[test]
fn report_path_is_an_input() {
    let fx = Fixture::new();
    fx.refused(&["--report", MODEL], &[MODEL, "report"]);
}

#[test]
fn report_path_is_the_output() {
    let fx = Fixture::new();
    fx.refused(&["--report", OUT], &[OUT, "report"]);
}

#[test]
fn report_path_is_the_plan_file_of_a_broken_plan() {
    let fx = Fixture::new();
    fx.plan("vars_to_warmstart = \".*\"", "");
    fx.refused(&["--report", PLAN], &[PLAN, "report", "plan file"]);
}

#[test]
fn report_path_is_the_vocabulary_that_is_refused() {
    let fx = Fixture::new();
    fx.write(OLD_VOCAB, "a\nb\nc\nb\n");
    fx.refused(&["--report", OLD_VOCAB], &[OLD_VOCAB, "report"]);
}

#[test]
fn report_path_is_a_checkpoint_shard() {
    let fx = Fixture::new();
    fx.shard(Fixture::VALID_WEIGHT_MAP);
    fx.refused(
        &["--report", "ckpt/shard1.safetensors"],
        &["shard1.safetensors", "report", "checkpoint"],
    );
}

#[test]
fn report_path_in_missing_directory() {
    let fx = Fixture::new();
    fx.refused(
        &["--report", "no_such_dir/r.json"],
        &["no_such_dir/r.json", "report"],
    );
}

#[test]
fn report_path_under_a_file() {
    let fx = Fixture::new();
    fx.refused(
        &["--report", "out.safetensors/r.json"],
        &["out.safetensors/r.json", "not a directory"],
    );
}

#[test]
fn report_path_is_a_directory() {
    let fx = Fixture::new();
    fx.mkdir("reports");
    fx.refused(&["--report", "reports"], &["reports", "directory"]);
}

/// A path that can only name a directory is refused before anything is written, whether or
/// not something is there.
#[test]
fn report_path_names_a_directory() {
    let fx = Fixture::new();
    fx.write("r.json", "an old report\n");
    for report in ["r.json/", "r.json/.", "new.json/", "new.json/..", "."] {
        fx.refused(&["--report", report], &[report, "names a directory"]);
    }
}

/// A report in a directory where it cannot be created is refused before the output is
/// written, as such an output is.
#[cfg(target_os = "linux")]
#[test]
fn report_path_in_a_directory_that_cannot_be_written() {
    let fx = Fixture::new();
    fx.mkdir("locked");
    let _locked = Locked::new(&fx.path("locked"));
    fx.refused(
        &["--report", "locked/r.json"],
        &["locked/r.json", "cannot be written in its directory"],
    );
}

/// A report path that is a symbolic link to where the output is about to be written (a link
/// that dangles while the run is planned) is itself replaced by the report, as an output
/// path that is a link is: the output is not overwritten by the report.
#[cfg(unix)]
#[test]
fn report_path_is_a_link_to_the_output_to_be() {
    let fx = Fixture::new();
    fs::remove_file(fx.path(OUT)).unwrap();
    std::os::unix::fs::symlink(OUT, fx.path("r.json")).unwrap();
    fx.succeeds(&["--report", "r.json"]); // reads the output as safetensors
    let report = fs::symlink_metadata(fx.path("r.json")).unwrap();
    assert!(report.is_file(), "the link is replaced by the report");
    assert_eq!(read_report(&fx, "r.json")["outcome"]["status"], "ok");
}

/// A report path that is another name of an input (a hard link): the report takes the name
/// and the input keeps its bytes.
#[cfg(unix)]
#[test]
fn report_path_is_a_hard_link_to_an_input() {
    let fx = Fixture::new();
    fs::hard_link(fx.path(MODEL), fx.path("r.json")).unwrap();
    let model = fs::read(fx.path(MODEL)).unwrap();
    fx.succeeds(&["--report", "r.json"]);
    assert_eq!(fs::read(fx.path(MODEL)).unwrap(), model);
    assert_eq!(read_report(&fx, "r.json")["outcome"]["status"], "ok");
}

/// A report path that leads to a process's descriptor (`/dev/stdout`, here a link of the
/// fixture's own to `/proc/self/fd/1`, so as not to touch `/dev`) is written in place: with
/// standard output redirected to a file, the report lands in that file and the link stays.
#[cfg(target_os = "linux")]
#[test]
fn report_to_standard_output_redirected_to_a_file() {
    let fx = Fixture::new();
    std::os::unix::fs::symlink("/proc/self/fd/1", fx.path("stdout")).unwrap();
    let captured = fs::File::create(fx.path("captured.json")).unwrap();
    let run = fx
        .command()
        .args([
            "run",
            PLAN,
            "--backend",
            "cpu",
            "--quiet",
            "--report",
            "stdout",
        ])
        .stdout(captured)
        .output()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(fs::symlink_metadata(fx.path("stdout"))
        .unwrap()
        .is_symlink());
    assert_eq!(read_report(&fx, "captured.json")["outcome"]["status"], "ok");
}

/// `--dry-run | head`: a reader that leaves before the plan is printed whole is no failure;
/// a standard output that cannot be written (a full disk) fails the run with exit code 1, and
/// the report says so. Neither panics.
#[cfg(target_os = "linux")]
#[test]
fn dry_run_to_a_closed_pipe_or_a_full_disk() {
    let fx = Fixture::new();
    let dry_run = |stdout: std::process::Stdio| {
        fx.command()
            .args([
                "run",
                PLAN,
                "--backend",
                "cpu",
                "--dry-run",
                "--report",
                "r.json",
            ])
            .stdout(stdout)
            .output()
            .unwrap()
    };
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let closed = dry_run(writer.into());
    let stderr = String::from_utf8_lossy(&closed.stderr);
    assert_eq!(closed.status.code(), Some(0), "{stderr}");
    assert_eq!(read_report(&fx, "r.json")["outcome"]["status"], "ok");

    let full = dry_run(fs::File::create("/dev/full").unwrap().into());
    let stderr = String::from_utf8_lossy(&full.stderr);
    assert_eq!(full.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot write standard output"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(read_report(&fx, "r.json")["outcome"]["status"], "failed");
}

/// A standard error that cannot be written loses the messages, not the exit code: a refusal
/// stays 2, and a run that succeeds still writes its report.
#[cfg(target_os = "linux")]
#[test]
fn standard_error_that_cannot_be_written() {
    let fx = Fixture::new();
    let run = |args: &[&str]| {
        fx.command()
            .args(["run", "--backend", "cpu"])
            .args(args)
            .stderr(fs::File::create("/dev/full").unwrap())
            .status()
            .unwrap()
    };
    assert_eq!(run(&["missing.toml"]).code(), Some(2));
    assert_eq!(run(&[PLAN, "--report", "r.json"]).code(), Some(0));
    assert_eq!(read_report(&fx, "r.json")["outcome"]["status"], "ok");
}
