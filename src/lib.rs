//! Warm-start a new model from an old checkpoint: TensorFlow's
//! `tf.compat.v1.train.warm_start`, over safetensors checkpoints, on the CPU or the GPU.
//!
//! When a large-embedding model is retrained after its vocabulary changed, warm starting
//! keeps what was learned: variables are selected by regex, new names are mapped to old
//! checkpoint names, rows (or columns) of vocabulary-indexed tables are remapped by token
//! identity, and rows with no past (new tokens, OOV buckets) are initialised by a backup
//! initializer. The semantics are TensorFlow's, down to its error conditions; the README
//! lists the few deliberate differences.
//!
//! # Brief overview
//!
//! The data flows through four stages, each a module:
//!
//! 1. **Settings** ([`WarmStartSettings`], [`VocabInfo`], [`Initializer`]): `warm_start`'s
//!    arguments. The CLI reads them from a TOML [plan file](plan_file).
//! 2. **Plan** ([`Plan::new`]): selection and name mapping, vocabulary remapping into index
//!    vectors, initializers resolved, every shape and dtype checked, against a
//!    [`Checkpoint`] and the new [`Model`]. Nothing is written while planning; a plan that
//!    exists can be executed.
//! 3. **Engine** ([`Engine`]): computes the plan's remap jobs, either [`CpuEngine`] (rayon)
//!    or [`engine::gpu::GpuEngine`] (wgpu compute shaders). Both produce the same bytes
//!    (normal and truncated normal fills within 1e-4 of each other), straight into memory lent by an [`engine::Sink`] (the output file's staging buffers,
//!    a `Vec<u8>`, or a sink of your own).
//! 4. **Output**: [`Plan::write_file`] streams every tensor to a temporary file beside the
//!    target and renames it into place once complete; [`Plan::to_host`] returns the
//!    warm-started tensors in memory.
//!
//! # Example
//!
//! An embedding of four fruits is warm-started into a new vocabulary of three fruits plus one
//! OOV bucket: `orange` and `guava` keep their learned rows, `kiwi` and the OOV row are new.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use warmstart::dtype::Dtype;
//! use warmstart::{CpuEngine, Initializer, Model, Plan, Variable, VocabInfo, WarmStartSettings};
//!
//! let dir = tempfile::tempdir()?;
//! let path = |name: &str| dir.path().join(name);
//!
//! // The old checkpoint: a [4, 2] embedding, row i = (i, i).
//! let old: Vec<u8> = [0f32, 0., 1., 1., 2., 2., 3., 3.].iter().flat_map(|x| x.to_le_bytes()).collect();
//! let view = safetensors::tensor::TensorView::new(Dtype::F32, vec![4, 2], &old)?;
//! std::fs::write(path("old.safetensors"), safetensors::serialize([("fruit_emb", view)], None)?)?;
//! std::fs::write(path("old_vocab.txt"), "apple\nbanana\nguava\norange\n")?;
//! std::fs::write(path("new_vocab.txt"), "orange\nguava\nkiwi\n")?;
//!
//! // warm_start's arguments, and the new model (declared here; usually a safetensors file).
//! let settings = WarmStartSettings::new(path("old.safetensors")).vocab_info(
//!     "fruit_emb",
//!     VocabInfo::new(path("new_vocab.txt"), 3, 1, path("old_vocab.txt"))
//!         .backup_initializer(Initializer::Constant { value: 0.5 }),
//! );
//! let model = Model::new(vec![Variable::new("fruit_emb", Dtype::F32, vec![4, 2])])?;
//!
//! let plan = Plan::new(&settings, &model)?;
//! let tensors = plan.to_host(&mut CpuEngine::new())?;
//! let values: Vec<f32> = tensors[0].data.chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
//! assert_eq!(values, [3., 3., 2., 2., 0.5, 0.5, 0.5, 0.5]); // orange, guava, kiwi, OOV
//!
//! // Or write a complete model file (every tensor of a model file, warm-started or not):
//! // plan.write_file(&mut CpuEngine::new(), "warm.safetensors".as_ref())?;
//! # Ok(()) }
//! ```
//!
//! # Errors
//!
//! Everything fails with one [`Error`], whose variants name what went wrong and where (file,
//! tensor, variable, token, line). [`Error::is_refusal`] tells bad configuration or input,
//! found before anything is written, from failures while running. A GPU error also says what
//! kind of failure it is ([`Error::gpu_failure`]), so that a caller can fall back: a failed
//! write leaves nothing behind, and writing again on the CPU engine gives the file it would
//! have written.
//!
//! ```no_run
//! use warmstart::{CpuEngine, Engine, GpuEngine, GpuFailure, Plan};
//!
//! fn write(plan: &Plan) -> warmstart::Result<()> {
//!     let out = "warm.safetensors".as_ref();
//!     let mut engine: Box<dyn Engine> = match GpuEngine::new(Default::default()) {
//!         Ok(gpu) => Box::new(gpu),
//!         Err(e) if e.gpu_failure() == Some(GpuFailure::NoDevice) => Box::new(CpuEngine::new()),
//!         Err(e) => return Err(e),
//!     };
//!     match plan.write_file(engine.as_mut(), out) {
//!         Err(e) if matches!(
//!             e.gpu_failure(),
//!             Some(GpuFailure::OutOfMemory | GpuFailure::DeviceLost | GpuFailure::Timeout)
//!         ) => plan.write_file(&mut CpuEngine::new(), out),
//!         written => written,
//!     }
//! }
//! ```
//!
//! # Memory maps
//!
//! Checkpoint and model files are memory-mapped, never read whole; only the rows a job needs
//! are paged in. The files must not be modified or truncated while a plan that reads them
//! is alive (see the crate's one mapping constructor in `mmap.rs`). A
//! [`GpuEngine`] on a software adapter keeps the old tables it read
//! mapped in its window cache for the next job, until
//! [`clear_cache`](engine::gpu::GpuEngine::clear_cache) or until it is dropped.

#![deny(missing_docs)]

pub mod checkpoint;
pub mod dtype;
pub mod engine;
pub mod error;
mod execute;
pub mod initializer;
mod mmap;
pub mod model;
pub mod philox;
pub mod plan;
pub mod plan_file;
mod select;
pub mod settings;
pub mod tf;
pub mod vocab;
pub mod writer;

/// The wgpu this crate is built on, for a caller's device and buffers of the same version.
pub use wgpu;

pub use checkpoint::{Checkpoint, TensorData};
pub use engine::gpu::{DeviceTensor, GpuOptions};
pub use engine::{CpuEngine, Engine, GpuEngine, Sink};
pub use error::{Error, GpuFailure, Result};
pub use execute::HostTensor;
pub use initializer::Initializer;
pub use model::{Model, Partition, Variable};
pub use plan::{Job, OutputTensor, Plan, RemapJob, VariableReport};
pub use plan_file::PlanFile;
pub use settings::{VarsToWarmStart, VocabInfo, WarmStartSettings};
