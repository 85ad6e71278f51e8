//! What the output file carries besides its tensors: the model file's `__metadata__`, and
//! where the warm start came from (the source checkpoint as an absolute path, the plan's
//! digest as in the report, the tool's version).

use std::collections::HashMap;
use std::process::Command;

use safetensors::tensor::TensorView;
use safetensors::Dtype;

fn f32_bytes(values: impl IntoIterator<Item = f32>) -> Vec<u8> {
    values.into_iter().flat_map(f32::to_le_bytes).collect()
}

/// The `__metadata__` of a safetensors file.
fn metadata(bytes: &[u8]) -> HashMap<String, String> {
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
    header.metadata().clone().unwrap_or_default()
}

#[test]
fn the_output_records_its_source_and_keeps_the_models_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let old = f32_bytes((0..8).map(|i| i as f32));
    let new = f32_bytes([0.5; 8]);
    std::fs::create_dir(d.join("ckpt")).unwrap();
    std::fs::write(
        d.join("ckpt/old.safetensors"),
        safetensors::serialize(
            [(
                "emb",
                TensorView::new(Dtype::F32, vec![4, 2], &old).unwrap(),
            )],
            None,
        )
        .unwrap(),
    )
    .unwrap();
    let model_metadata: HashMap<String, String> = [("framework", "test"), ("step", "7")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    std::fs::write(
        d.join("model.safetensors"),
        safetensors::serialize(
            [(
                "emb",
                TensorView::new(Dtype::F32, vec![4, 2], &new).unwrap(),
            )],
            Some(model_metadata),
        )
        .unwrap(),
    )
    .unwrap();
    std::fs::write(d.join("old.txt"), "a\nb\nc\nd\n").unwrap();
    std::fs::write(d.join("new.txt"), "d\nc\nz\na\n").unwrap();
    std::fs::write(
        d.join("plan.toml"),
        "checkpoint = \"ckpt/old.safetensors\"\nmodel = \"model.safetensors\"\n\
         output = \"warm.safetensors\"\n\
         [vocab.emb]\nnew_vocab = \"new.txt\"\nnew_vocab_size = 4\nnum_oov_buckets = 0\n\
         old_vocab = \"old.txt\"\n",
    )
    .unwrap();
    // run from the plan's directory, every path relative
    let out = Command::new(env!("CARGO_BIN_EXE_warmstart"))
        .args([
            "run",
            "plan.toml",
            "--backend",
            "cpu",
            "--quiet",
            "--report",
            "report.json",
        ])
        .current_dir(d)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let written = std::fs::read(d.join("warm.safetensors")).unwrap();
    let meta = metadata(&written);
    assert_eq!(meta["framework"], "test");
    assert_eq!(meta["step"], "7");
    // absolute, so that it still names the checkpoint from anywhere else
    let source = d.canonicalize().unwrap().join("ckpt/old.safetensors");
    assert_eq!(
        meta["warmstart.checkpoint"],
        source.display().to_string(),
        "{meta:?}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("report.json")).unwrap()).unwrap();
    let digest = &meta["warmstart.plan_sha256"];
    assert_eq!(digest.len(), 64, "{digest}");
    assert!(digest.bytes().all(|b| b.is_ascii_hexdigit()), "{digest}");
    assert_eq!(report["plan_sha256"].as_str(), Some(digest.as_str()));
    assert_eq!(meta["warmstart.version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(meta.len(), 5, "{meta:?}");

    // the rows moved with their tokens (d c z a from a b c d; z has no past: zeros)
    let st = safetensors::SafeTensors::deserialize(&written).unwrap();
    assert_eq!(
        st.tensor("emb").unwrap().data(),
        &f32_bytes([6.0, 7.0, 4.0, 5.0, 0.0, 0.0, 0.0, 1.0])[..]
    );
}
