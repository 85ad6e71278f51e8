//! Writes the bundled example under `examples/recommender/`: a small recommender whose
//! vocabularies changed between two training runs.
//!
//! ```text
//! cargo run --example make_recommender      # rewrites examples/recommender/{old/,model.safetensors,vocab/}
//! ```
//!
//! The old checkpoint (`old/`, two shards and an index) holds what the first run learned:
//! user and item embeddings with an Adagrad slot, a hidden layer, and a softmax layer over 10
//! classes. The new model (`model.safetensors`, initial values) has grown vocabularies: 10% of
//! the users left and 20% new ones arrived, the item table is renamed and split into three
//! partitions, and two classes were added. `plan.toml` (written by hand) warm-starts it.
//! The output is deterministic: running this twice writes the same bytes.

use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::Dtype;
use warmstart::philox;

/// Deterministic values in [-0.5, 0.5): Philox of (table, index).
fn values(table: u64, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| philox::unit_f32(philox::block([table as u32, 7], [0, 0], i as u64)[0]) - 0.5)
        .collect()
}

struct Tensors(Vec<(String, Dtype, Vec<usize>, Vec<u8>)>);

impl Tensors {
    fn f32(&mut self, name: &str, shape: &[usize], v: Vec<f32>) {
        self.0.push((
            name.into(),
            Dtype::F32,
            shape.to_vec(),
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ));
    }

    /// A table split along axis 0 into `parts` TensorFlow-style partitions.
    fn partitioned(&mut self, name: &str, shape: [usize; 2], v: Vec<f32>, parts: usize) {
        let mut at = 0;
        for k in 0..parts {
            let rows = shape[0] / parts + usize::from(k < shape[0] % parts);
            let slice = v[at * shape[1]..(at + rows) * shape[1]].to_vec();
            self.f32(&format!("{name}/part_{k}"), &[rows, shape[1]], slice);
            at += rows;
        }
    }

    fn save(&self, path: &Path, only: impl Fn(&str) -> bool) {
        let views: Vec<(&str, TensorView<'_>)> = self
            .0
            .iter()
            .filter(|(n, ..)| only(n))
            .map(|(n, d, s, b)| (n.as_str(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
    }
}

fn write_vocab(path: &Path, tokens: &[String]) {
    std::fs::write(path, tokens.join("\n") + "\n").unwrap();
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/recommender");
    std::fs::create_dir_all(dir.join("old")).unwrap();
    std::fs::create_dir_all(dir.join("vocab")).unwrap();
    let dim = 16;

    // Vocabularies. New users: every 10th old user left, 200 new ones; items: 3000 old, the new
    // vocabulary is sorted by a different popularity (reversed blocks) plus 300 new items.
    let users_old: Vec<String> = (0..1000).map(|i| format!("user_{i:05}")).collect();
    let mut users_new: Vec<String> = users_old
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 10 != 3)
        .map(|(_, u)| u.clone())
        .collect();
    users_new.extend((1000..1200).map(|i| format!("user_{i:05}")));
    let items_old: Vec<String> = (0..3000).map(|i| format!("item_{i:05}")).collect();
    let mut items_new: Vec<String> = items_old.chunks(100).rev().flatten().cloned().collect();
    items_new.extend((3000..3300).map(|i| format!("item_{i:05}")));
    let classes_old: Vec<String> = [
        "books", "music", "video", "games", "toys", "garden", "tools", "food", "health", "sports",
    ]
    .map(String::from)
    .to_vec();
    let mut classes_new = classes_old.clone();
    classes_new.swap(0, 4);
    classes_new.extend(["travel".to_string(), "pets".to_string()]);
    write_vocab(&dir.join("vocab/users_old.txt"), &users_old);
    write_vocab(&dir.join("vocab/users_new.txt"), &users_new);
    write_vocab(&dir.join("vocab/items_old.txt"), &items_old);
    write_vocab(&dir.join("vocab/items_new.txt"), &items_new);
    write_vocab(&dir.join("vocab/classes_old.txt"), &classes_old);
    write_vocab(&dir.join("vocab/classes_new.txt"), &classes_new);

    // The old checkpoint: what the first training run learned.
    let mut old = Tensors(Vec::new());
    old.0.push((
        "global_step".into(),
        Dtype::I64,
        vec![],
        120_000i64.to_le_bytes().to_vec(),
    ));
    old.f32(
        "input_layer/user_embedding/embedding_weights",
        &[1000, dim],
        values(1, 1000 * dim),
    );
    old.f32(
        "input_layer/user_embedding/embedding_weights/Adagrad",
        &[1000, dim],
        values(2, 1000 * dim).iter().map(|v| v + 0.6).collect(),
    );
    old.partitioned(
        "input_layer/item_id_embedding/embedding_weights",
        [3000, dim],
        values(3, 3000 * dim),
        2,
    );
    old.f32(
        "dnn/hiddenlayer_0/kernel",
        &[2 * dim, 64],
        values(4, 2 * dim * 64),
    );
    old.f32("dnn/hiddenlayer_0/bias", &[64], values(5, 64));
    old.f32("dnn/logits/kernel", &[64, 10], values(6, 640));
    old.f32("dnn/logits/bias", &[10], values(7, 10));
    old.save(&dir.join("old/model-00001-of-00002.safetensors"), |n| {
        n.starts_with("input_layer/")
    });
    old.save(&dir.join("old/model-00002-of-00002.safetensors"), |n| {
        !n.starts_with("input_layer/")
    });
    let mut index = String::from("{\n  \"metadata\": {},\n  \"weight_map\": {\n");
    let names: Vec<&String> = old.0.iter().map(|(n, ..)| n).collect();
    for (i, n) in names.iter().enumerate() {
        let shard = if n.starts_with("input_layer/") { 1 } else { 2 };
        let comma = if i + 1 < names.len() { "," } else { "" };
        index += &format!("    \"{n}\": \"model-0000{shard}-of-00002.safetensors\"{comma}\n");
    }
    index += "  }\n}\n";
    std::fs::write(dir.join("old/model.safetensors.index.json"), index).unwrap();

    // The new model's initial values (what a fresh training run would start from).
    let users = users_new.len() + 2; // 2 OOV buckets
    let items = items_new.len() + 4; // 4 OOV buckets
    let classes = classes_new.len() + 1; // 1 OOV class
    let mut new = Tensors(Vec::new());
    new.0.push((
        "global_step".into(),
        Dtype::I64,
        vec![],
        0i64.to_le_bytes().to_vec(),
    ));
    new.f32(
        "input_layer/user_embedding/embedding_weights",
        &[users, dim],
        vec![0.0; users * dim],
    );
    new.f32(
        "input_layer/user_embedding/embedding_weights/Adagrad",
        &[users, dim],
        vec![0.1; users * dim],
    );
    new.partitioned(
        "input_layer/item_embedding/embedding_weights",
        [items, dim],
        vec![0.0; items * dim],
        3,
    );
    new.f32(
        "dnn/hiddenlayer_0/kernel",
        &[2 * dim, 64],
        vec![0.0; 2 * dim * 64],
    );
    new.f32("dnn/hiddenlayer_0/bias", &[64], vec![0.0; 64]);
    new.f32("dnn/logits/kernel", &[64, classes], vec![0.0; 64 * classes]);
    new.f32("dnn/logits/bias", &[classes], vec![0.0; classes]);
    new.save(&dir.join("model.safetensors"), |_| true);
    println!("wrote {}", dir.display());
}
