//! The one error type of the crate.
//!
//! Every variant names what went wrong and where: the file, tensor, variable, token or line.
//! [`Error::exit_code`] sorts them into *refusals* (bad configuration or input: the CLI exits
//! with 2, before anything is written; among them a buffer the GPU engine cannot use) and
//! *failures* (I/O while writing, a failing engine or sink, the GPU device: exit 1).
//! A GPU error also says what kind of failure it is ([`GpuFailure`]), for callers that react
//! to it: fall back to the CPU engine when there is no device, lower the budget when the
//! device runs out of memory.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while planning or running a warm start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The plan file cannot be parsed, has an unknown key or an invalid value.
    #[error("{}: {message}", file.display())]
    PlanFile {
        /// The plan file.
        file: PathBuf,
        /// What is wrong, with line and column where TOML gives them.
        message: String,
    },

    /// A setting is invalid (for example `axis = 2`, a negative size, an unknown initializer).
    #[error("{context}: {message}")]
    Setting {
        /// Where the setting lives, e.g. `vocab."emb"` or `backup_initializer`.
        context: String,
        /// What is wrong with it.
        message: String,
    },

    /// A regular expression does not compile.
    #[error("{context}: invalid regex {pattern:?}: {message}")]
    Regex {
        /// Where the pattern comes from, e.g. `vars_to_warm_start`.
        context: String,
        /// The pattern as given.
        pattern: String,
        /// The regex engine's explanation.
        message: String,
    },

    /// An input file cannot be opened or read.
    #[error("cannot read {}: {source}", path.display())]
    Input {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },

    /// A safetensors file (or a sharded index) is malformed.
    #[error("{}: {message}", file.display())]
    Format {
        /// The file.
        file: PathBuf,
        /// What is malformed, naming the tensor where there is one.
        message: String,
    },

    /// A tensor a variable needs is not in the checkpoint.
    #[error("tensor {tensor:?} (for variable {variable:?}) is not found in checkpoint {}{hint}", checkpoint.display())]
    TensorNotFound {
        /// The checkpoint tensor name that was looked up.
        tensor: String,
        /// The new model's variable that needs it.
        variable: String,
        /// The checkpoint path as given.
        checkpoint: PathBuf,
        /// Similar names, if any (already formatted, may be empty).
        hint: String,
    },

    /// A variable and its checkpoint tensor (or its own partitions) disagree.
    #[error("variable {variable:?}: {message}")]
    Variable {
        /// The variable's full name.
        variable: String,
        /// What disagrees (shape, dtype, partitions).
        message: String,
    },

    /// A vocabulary file is invalid or does not fit its settings.
    #[error("{}{}: {message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Vocab {
        /// The vocabulary file.
        file: PathBuf,
        /// The 1-based line, where the problem has one.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },

    /// A token appears twice inside the part of a vocabulary that is read.
    #[error("{}: duplicate token {token:?} on lines {first} and {second}", file.display())]
    DuplicateToken {
        /// The vocabulary file.
        file: PathBuf,
        /// The token (lossily decoded for display, its first 100 characters where longer).
        token: String,
        /// 1-based line of the first occurrence.
        first: usize,
        /// 1-based line of the second occurrence.
        second: usize,
    },

    /// Keys of `prev_var_name` or `vocab` that name no selected variable (TensorFlow's
    /// "You provided the following variables in ... that were not used").
    #[error("{}", UnusedDisplay { what, names, viable })]
    UnusedKeys {
        /// `prev_var_name` or `vocab`.
        what: &'static str,
        /// The unused keys.
        names: Vec<String>,
        /// The selected variables the keys could have named.
        viable: Vec<String>,
    },

    /// The output path is also one of the inputs.
    #[error("output {} is also an input ({role}); choose another output path", path.display())]
    OutputIsInput {
        /// The output path.
        path: PathBuf,
        /// Which input it is.
        role: String,
    },

    /// The `--report` path cannot take the report: it is one of the run's files (an input or
    /// the output), a directory, or in a missing directory. Nothing is written to it.
    #[error("report {}: {message}", path.display())]
    Report {
        /// The report path as given.
        path: PathBuf,
        /// Why it cannot be used.
        message: String,
    },

    /// Writing the output failed (or, in the CLI, standard output: `--dry-run`'s table).
    #[error("cannot write {}: {source}", path.display())]
    Output {
        /// The output file (the error may come from its temporary file, beside it), or
        /// `standard output`.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },

    /// The GPU engine failed (no device, out of memory, device lost, ...), or was handed a
    /// buffer it cannot use.
    #[error("GPU: {message}")]
    Gpu {
        /// What kind of failure.
        kind: GpuFailure,
        /// What happened, in the driver's words where it gave some.
        message: String,
    },

    /// An engine or sink failed while computing a tensor: an engine of the caller's that
    /// produced the wrong number of bytes, or a caller's engine or sink reporting its own
    /// failure.
    #[error("tensor {tensor:?}: {message}")]
    Engine {
        /// The output tensor being computed.
        tensor: String,
        /// What went wrong.
        message: String,
    },
}

/// The kind of an [`Error::Gpu`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GpuFailure {
    /// No adapter was found (or none matching `WGPU_ADAPTER_NAME`), or no device could be
    /// opened on it. The CPU engine computes the same results.
    NoDevice,
    /// The device could not allocate a buffer. A smaller
    /// [`GpuOptions::vram_budget`](crate::GpuOptions::vram_budget) may fit.
    OutOfMemory,
    /// The device was lost: a driver reset, the GPU removed or hung. Only on a device the
    /// engine opened: on a caller's ([`GpuEngine::from_device`](crate::GpuEngine::from_device))
    /// the device-lost callback is the caller's, and a loss shows in the engine as the
    /// errors that follow it (`Internal`).
    DeviceLost,
    /// The device did not take or finish work within
    /// [`GpuOptions::timeout`](crate::GpuOptions::timeout).
    Timeout,
    /// The caller handed the engine something it cannot use: a destination buffer too small,
    /// without `COPY_DST` usage, or an offset not a multiple of 4
    /// ([`GpuEngine::remap_into`](crate::GpuEngine::remap_into),
    /// [`GpuEngine::tensor_into`](crate::GpuEngine::tensor_into)); a kept tensor of a model
    /// declared in code, which has no value (`tensor_into`); a device whose
    /// `max_buffer_size` cannot hold a warm-started tensor as one buffer
    /// ([`GpuEngine::to_device`](crate::GpuEngine::to_device),
    /// [`GpuEngine::remap_to_buffer`](crate::GpuEngine::remap_to_buffer)); a caller's device
    /// whose limits cannot run compute kernels
    /// ([`GpuEngine::from_device`](crate::GpuEngine::from_device)). Found before any work is
    /// done; a refusal ([`Error::is_refusal`]).
    Usage,
    /// The driver reported a validation or internal error, or a kernel did not compile: a bug
    /// in the engine or the driver.
    Internal,
}

impl GpuFailure {
    /// The kind's name in the CLI's `--report` (`no_device`, `out_of_memory`, `device_lost`,
    /// `timeout`, `usage`, `internal`).
    pub fn name(self) -> &'static str {
        match self {
            GpuFailure::NoDevice => "no_device",
            GpuFailure::OutOfMemory => "out_of_memory",
            GpuFailure::DeviceLost => "device_lost",
            GpuFailure::Timeout => "timeout",
            GpuFailure::Usage => "usage",
            GpuFailure::Internal => "internal",
        }
    }
}

struct UnusedDisplay<'a> {
    what: &'a str,
    names: &'a [String],
    viable: &'a [String],
}

impl fmt::Display for UnusedDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "you provided the following variables in {} that were not used: {:?}. \
             Perhaps you misspelled them? Here is the list of viable variable names: {:?}",
            self.what, self.names, self.viable
        )
    }
}

impl Error {
    /// The CLI's exit code for this error: 2 for refusals (configuration or input, a buffer
    /// the GPU engine cannot use), 1 for failures while running (writing the output, the GPU).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Gpu {
                kind: GpuFailure::Usage,
                ..
            } => 2,
            Error::Output { .. } | Error::Gpu { .. } | Error::Engine { .. } => 1,
            _ => 2,
        }
    }

    /// The kind of GPU failure, for an [`Error::Gpu`].
    pub fn gpu_failure(&self) -> Option<GpuFailure> {
        match self {
            Error::Gpu { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    pub(crate) fn gpu(kind: GpuFailure, message: impl Into<String>) -> Self {
        Error::Gpu {
            kind,
            message: message.into(),
        }
    }

    /// Whether this error is a refusal of the configuration or input.
    pub fn is_refusal(&self) -> bool {
        self.exit_code() == 2
    }

    pub(crate) fn input(path: &Path, source: io::Error) -> Self {
        Error::Input {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn format(file: &Path, message: impl Into<String>) -> Self {
        Error::Format {
            file: file.to_path_buf(),
            message: message.into(),
        }
    }

    pub(crate) fn output(path: &Path, source: io::Error) -> Self {
        Error::Output {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn setting(context: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Setting {
            context: context.into(),
            message: message.into(),
        }
    }

    pub(crate) fn variable(variable: &str, message: impl Into<String>) -> Self {
        Error::Variable {
            variable: variable.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn vocab(file: &Path, line: Option<usize>, message: impl Into<String>) -> Self {
        Error::Vocab {
            file: file.to_path_buf(),
            line,
            message: message.into(),
        }
    }
}
