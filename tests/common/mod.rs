//! Shared helpers for tests that drive the `warmstart` binary: a [`Fixture`] that writes a
//! small valid warm start (checkpoint, model, two vocabularies, plan, an existing output) into
//! a temporary directory, so that a test can break exactly one piece of it; safetensors
//! builders for valid and deliberately broken files; and a snapshot of a directory tree to
//! prove that a refused run changed nothing.
//!
//! Also [`evict`], which drops a file from the page cache, and [`mkfifo`]. Only std, `safetensors`,
//! `tempfile` and `libc` are used.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use safetensors::Dtype;

/// The checkpoint file of the fixture.
pub const CKPT: &str = "ckpt.safetensors";
/// The model file of the fixture.
pub const MODEL: &str = "model.safetensors";
/// The new vocabulary of the fixture.
pub const NEW_VOCAB: &str = "new_vocab.txt";
/// The old vocabulary of the fixture.
pub const OLD_VOCAB: &str = "old_vocab.txt";
/// The plan file of the fixture.
pub const PLAN: &str = "plan.toml";
/// The output named by the fixture's plan; it exists before every run.
pub const OUT: &str = "out.safetensors";
/// What the existing output holds before a run: not a safetensors file, so that any write
/// (even of identical tensors) is noticed.
pub const OUT_BYTES: &[u8] = b"existing output: a refused run must leave these bytes alone\n";

/// Old vocabulary: 4 tokens, the rows of the checkpoint's `emb`.
pub const OLD_VOCAB_TEXT: &str = "a\nb\nc\nd\n";
/// New vocabulary: 5 tokens (`e` and `f` are new), plus 1 OOV bucket in the model's `emb`.
pub const NEW_VOCAB_TEXT: &str = "c\na\ne\nb\nf\n";

/// One tensor to serialize: name, dtype, shape, little-endian bytes.
pub type Tensor = (String, Dtype, Vec<usize>, Vec<u8>);

/// A tensor of `f32` values `start, start + 1, ...`.
pub fn f32_tensor(name: &str, shape: &[usize], start: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let bytes = (0..n)
        .flat_map(|i| (start + i as f32).to_le_bytes())
        .collect();
    (name.to_string(), Dtype::F32, shape.to_vec(), bytes)
}

/// A tensor of the given dtype filled with zero bytes.
pub fn zero_tensor(name: &str, dtype: Dtype, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let bytes = vec![0u8; n * dtype.bitsize() / 8];
    (name.to_string(), dtype, shape.to_vec(), bytes)
}

/// A valid safetensors file holding `tensors`.
pub fn safetensors_bytes(tensors: &[Tensor]) -> Vec<u8> {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            let view = safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes)
                .expect("test tensor is consistent");
            (name.clone(), view)
        })
        .collect();
    safetensors::serialize(views, None).expect("serializes")
}

/// A hand-made safetensors file: the 8-byte little-endian length of `header`, the header
/// as given (need not be valid JSON), then `data`.
pub fn raw_safetensors(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// The fixture's valid checkpoint: `emb` [4, 2] (rows = old vocabulary), `dense` [2, 3].
pub fn checkpoint_tensors() -> Vec<Tensor> {
    vec![
        f32_tensor("emb", &[4, 2], 1.0),
        f32_tensor("dense", &[2, 3], 100.0),
    ]
}

/// The fixture's valid model: `emb` [6, 2] (5 new tokens + 1 OOV bucket), `dense` [2, 3].
pub fn model_tensors() -> Vec<Tensor> {
    vec![
        f32_tensor("emb", &[6, 2], -1000.0),
        f32_tensor("dense", &[2, 3], -2000.0),
    ]
}

/// The fixture's plan, with `top` inserted among the top-level keys (it may also open
/// tables of its own, such as `[prev_var_name]`) and `vocab` inside `[vocab."emb"]`.
pub fn plan_text(top: &str, vocab: &str) -> String {
    format!(
        "checkpoint = \"{CKPT}\"\n\
         model = \"{MODEL}\"\n\
         output = \"{OUT}\"\n\
         {top}\n\
         \n\
         [vocab.\"emb\"]\n\
         new_vocab = \"{NEW_VOCAB}\"\n\
         new_vocab_size = 5\n\
         num_oov_buckets = 1\n\
         old_vocab = \"{OLD_VOCAB}\"\n\
         {vocab}\n"
    )
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    /// The exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// A node of a [`Snapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// A regular file and its bytes.
    File(Vec<u8>),
    /// A directory.
    Dir,
    /// A symbolic link and its target.
    Link(PathBuf),
    /// Anything else (a FIFO, a socket, a device), never opened.
    Other,
}

/// Every path under a directory (relative), with what it is.
pub type Snapshot = BTreeMap<PathBuf, Node>;

/// Reads the whole tree under `root` (without following links).
pub fn snapshot(root: &Path) -> Snapshot {
    fn walk(root: &Path, dir: &Path, out: &mut Snapshot) {
        for entry in fs::read_dir(dir).expect("readable directory") {
            let path = entry.expect("directory entry").path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                out.insert(rel, Node::Link(fs::read_link(&path).unwrap()));
            } else if meta.is_dir() {
                out.insert(rel, Node::Dir);
                walk(root, &path, out);
            } else if meta.is_file() {
                out.insert(rel, Node::File(fs::read(&path).unwrap()));
            } else {
                out.insert(rel, Node::Other);
            }
        }
    }
    let mut out = Snapshot::new();
    walk(root, root, &mut out);
    out
}

/// Describes how two snapshots differ (empty when they are equal).
pub fn diff(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    for (path, node) in before {
        match after.get(path) {
            None => out.push(format!("removed {}", path.display())),
            Some(n) if n != node => out.push(format!("changed {}", path.display())),
            Some(_) => {}
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        out.push(format!("created {}", path.display()));
    }
    out
}

/// A valid warm start in a temporary directory: `ckpt.safetensors`, `model.safetensors`,
/// `old_vocab.txt`, `new_vocab.txt`, `plan.toml` (remap `emb` by vocabulary, copy `dense`)
/// and an existing `out.safetensors` holding [`OUT_BYTES`].
pub struct Fixture {
    dir: tempfile::TempDir,
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixture {
    /// Writes the valid fixture.
    pub fn new() -> Self {
        let fx = Fixture {
            dir: tempfile::tempdir().expect("temporary directory"),
        };
        fx.write(CKPT, safetensors_bytes(&checkpoint_tensors()));
        fx.write(MODEL, safetensors_bytes(&model_tensors()));
        fx.write(OLD_VOCAB, OLD_VOCAB_TEXT);
        fx.write(NEW_VOCAB, NEW_VOCAB_TEXT);
        fx.write(PLAN, plan_text("", ""));
        fx.write(OUT, OUT_BYTES);
        fx
    }

    /// The fixture's directory.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// `rel` inside the fixture.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes (or replaces) `rel`, creating its parent directories.
    pub fn write(&self, rel: &str, bytes: impl AsRef<[u8]>) {
        let path = self.path(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }

    /// Replaces the plan with [`plan_text`]`(top, vocab)`.
    pub fn plan(&self, top: &str, vocab: &str) {
        self.write(PLAN, plan_text(top, vocab));
    }

    /// Replaces `from` by `to` in the current plan (`from` must occur in it).
    pub fn edit_plan(&self, from: &str, to: &str) {
        let plan = fs::read_to_string(self.path(PLAN)).unwrap();
        assert!(plan.contains(from), "{from:?} is not in the plan:\n{plan}");
        self.write(PLAN, plan.replace(from, to));
    }

    /// Makes `rel` a directory.
    pub fn mkdir(&self, rel: &str) {
        fs::create_dir_all(self.path(rel)).unwrap();
    }

    /// Moves the checkpoint into a sharded directory `ckpt/`: `emb` in `shard1.safetensors`,
    /// `dense` in `shard2.safetensors`, and an index whose `weight_map` is `weight_map`
    /// (JSON object text). The plan's `checkpoint` becomes `ckpt`.
    pub fn shard(&self, weight_map: &str) {
        let [emb, dense]: [Tensor; 2] = checkpoint_tensors().try_into().unwrap();
        self.write("ckpt/shard1.safetensors", safetensors_bytes(&[emb]));
        self.write("ckpt/shard2.safetensors", safetensors_bytes(&[dense]));
        self.write(
            "ckpt/model.safetensors.index.json",
            format!("{{\"metadata\": {{}}, \"weight_map\": {weight_map}}}"),
        );
        self.edit_plan(&format!("checkpoint = \"{CKPT}\""), "checkpoint = \"ckpt\"");
    }

    /// The index of a valid sharded checkpoint (see [`Fixture::shard`]).
    pub const VALID_WEIGHT_MAP: &'static str =
        r#"{"emb": "shard1.safetensors", "dense": "shard2.safetensors"}"#;

    /// Runs `warmstart run plan.toml --backend cpu --quiet <args>` in the fixture directory.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_plan(PLAN, args)
    }

    /// The `warmstart` binary, to be run in the fixture directory.
    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_warmstart"));
        command.current_dir(self.root());
        command
    }

    /// Runs `warmstart run <plan> --backend cpu --quiet <args>` in the fixture directory.
    pub fn run_plan(&self, plan: &str, args: &[&str]) -> Run {
        let out = self
            .command()
            .args(["run", plan, "--backend", "cpu", "--quiet"])
            .args(args)
            .output()
            .expect("the warmstart binary runs");
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs the fixture's plan with `args` and checks a refusal: exit code 2, no panic, a
    /// stderr message that contains every one of `culprits`, and not a byte changed, created
    /// or removed anywhere in the fixture (the existing output included; a temporary file
    /// left behind would show up as created).
    pub fn refused(&self, args: &[&str], culprits: &[&str]) -> Run {
        self.refused_plan(PLAN, args, culprits)
    }

    /// [`Fixture::refused`] for another plan path (as given on the command line).
    pub fn refused_plan(&self, plan: &str, args: &[&str], culprits: &[&str]) -> Run {
        let before = snapshot(self.root());
        let run = self.run_plan(plan, args);
        let after = snapshot(self.root());
        let mut problems = Vec::new();
        if run.code != Some(2) {
            problems.push(format!("exit code {:?}, expected 2", run.code));
        }
        if run.stderr.contains("panicked") {
            problems.push("the binary panicked".to_string());
        }
        if !run.stderr.contains("error") {
            problems.push("stderr has no error message".to_string());
        }
        for culprit in culprits {
            if !run.stderr.contains(culprit) {
                problems.push(format!("stderr does not name {culprit:?}"));
            }
        }
        problems.extend(diff(&before, &after));
        assert!(
            problems.is_empty(),
            "refusal expected, but:\n  {}\nstderr:\n{}\nstdout:\n{}",
            problems.join("\n  "),
            run.stderr,
            run.stdout
        );
        run
    }

    /// Runs the fixture's plan with `args` and checks success: exit code 0 and an output
    /// that is a valid safetensors file. Returns the output's tensors.
    pub fn succeeds(&self, args: &[&str]) -> BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)> {
        let run = self.run(args);
        assert_eq!(
            run.code,
            Some(0),
            "success expected\nstderr:\n{}\nstdout:\n{}",
            run.stderr,
            run.stdout
        );
        let bytes = fs::read(self.path(OUT)).expect("output written");
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid output");
        st.tensors()
            .into_iter()
            .map(|(name, view)| {
                (
                    name,
                    (view.dtype(), view.shape().to_vec(), view.data().to_vec()),
                )
            })
            .collect()
    }
}

/// Decodes little-endian `f32`s.
pub fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Drops `path`'s pages from the page cache (written back first), as if it had never been
/// read; pages the process still maps stay.
pub fn evict(path: &Path) {
    use std::os::fd::AsRawFd;
    let file = fs::File::open(path).unwrap();
    file.sync_all().unwrap();
    // SAFETY: advice on a file descriptor that `file` keeps open for the call.
    let done = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(done, 0);
}

/// Makes a FIFO at `path`.
#[cfg(unix)]
pub fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a NUL-terminated path that `mkfifo` only reads.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}
