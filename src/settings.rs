//! The arguments of TensorFlow's `tf.compat.v1.train.warm_start`, as a Rust type.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::initializer::Initializer;

/// Which variables to warm-start (TensorFlow's `vars_to_warm_start`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum VarsToWarmStart {
    /// One regex over the *trainable* variables (TensorFlow: a string). The default is `".*"`.
    Regex(String),
    /// Regexes over *all* variables (TensorFlow: a list of strings); a variable matched by
    /// several is selected once.
    Regexes(Vec<String>),
    /// Only variables with a [`VocabInfo`] (TensorFlow: `None`, or the empty string).
    OnlyVocab,
}

impl Default for VarsToWarmStart {
    fn default() -> Self {
        VarsToWarmStart::Regex(".*".into())
    }
}

impl VarsToWarmStart {
    /// TensorFlow's truthiness of the argument: `None`, `""` and `[]` warm-start no variable
    /// without a vocabulary.
    pub(crate) fn copies_vocabless(&self) -> bool {
        match self {
            VarsToWarmStart::Regex(s) => !s.is_empty(),
            VarsToWarmStart::Regexes(v) => !v.is_empty(),
            VarsToWarmStart::OnlyVocab => false,
        }
    }
}

/// How to remap a vocabulary-indexed variable (TensorFlow's `VocabInfo`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VocabInfo {
    /// The new vocabulary file, one token per line.
    #[serde(serialize_with = "lossy")]
    pub new_vocab: PathBuf,
    /// Number of leading lines of `new_vocab` that form the new vocabulary.
    pub new_vocab_size: i64,
    /// OOV buckets appended after the vocabulary on `axis`, always freshly initialised.
    pub num_oov_buckets: i64,
    /// The vocabulary the checkpoint was trained with.
    #[serde(serialize_with = "lossy")]
    pub old_vocab: PathBuf,
    /// Number of leading lines of `old_vocab` to use; -1 for the whole file (ignored for
    /// `axis = 1`, as in TensorFlow).
    pub old_vocab_size: i64,
    /// What rows (columns) without a past receive; `None` means zeros.
    pub backup_initializer: Option<Initializer>,
    /// 0: the vocabulary indexes rows; 1: it indexes columns.
    pub axis: i64,
}

impl VocabInfo {
    /// A `VocabInfo` with TensorFlow's defaults (`old_vocab_size = -1`, zeros, `axis = 0`).
    pub fn new(
        new_vocab: impl Into<PathBuf>,
        new_vocab_size: i64,
        num_oov_buckets: i64,
        old_vocab: impl Into<PathBuf>,
    ) -> Self {
        VocabInfo {
            new_vocab: new_vocab.into(),
            new_vocab_size,
            num_oov_buckets,
            old_vocab: old_vocab.into(),
            old_vocab_size: -1,
            backup_initializer: None,
            axis: 0,
        }
    }

    /// Sets `old_vocab_size`.
    pub fn old_vocab_size(mut self, size: i64) -> Self {
        self.old_vocab_size = size;
        self
    }

    /// Sets the backup initializer.
    pub fn backup_initializer(mut self, init: Initializer) -> Self {
        self.backup_initializer = Some(init);
        self
    }

    /// Sets the axis.
    pub fn axis(mut self, axis: i64) -> Self {
        self.axis = axis;
        self
    }
}

/// Everything `warm_start` takes: the checkpoint, the selection, renames and vocabularies.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WarmStartSettings {
    /// The old checkpoint: a `.safetensors` file, a directory of shards or an index JSON.
    #[serde(serialize_with = "lossy")]
    pub ckpt_to_initialize_from: PathBuf,
    /// Which variables to warm-start.
    pub vars_to_warm_start: VarsToWarmStart,
    /// Vocabulary remapping per variable (full variable names).
    pub var_name_to_vocab_info: BTreeMap<String, VocabInfo>,
    /// Checkpoint name per variable, where it differs from the variable's name.
    pub var_name_to_prev_var_name: BTreeMap<String, String>,
}

impl WarmStartSettings {
    /// Warm-start every trainable variable from `checkpoint` under its own name.
    pub fn new(checkpoint: impl Into<PathBuf>) -> Self {
        WarmStartSettings {
            ckpt_to_initialize_from: checkpoint.into(),
            vars_to_warm_start: VarsToWarmStart::default(),
            var_name_to_vocab_info: BTreeMap::new(),
            var_name_to_prev_var_name: BTreeMap::new(),
        }
    }

    /// Sets `vars_to_warm_start`.
    pub fn vars_to_warm_start(mut self, vars: VarsToWarmStart) -> Self {
        self.vars_to_warm_start = vars;
        self
    }

    /// Adds a vocabulary remapping for `variable`.
    pub fn vocab_info(mut self, variable: impl Into<String>, info: VocabInfo) -> Self {
        self.var_name_to_vocab_info.insert(variable.into(), info);
        self
    }

    /// Maps `variable` to the checkpoint tensor `prev_name`.
    pub fn prev_var_name(
        mut self,
        variable: impl Into<String>,
        prev_name: impl Into<String>,
    ) -> Self {
        self.var_name_to_prev_var_name
            .insert(variable.into(), prev_name.into());
        self
    }
}

/// Serializes a path as text, invalid UTF-8 replaced (serde's own refuses such a path, and the
/// settings are serialized for the plan digest).
fn lossy<S: serde::Serializer>(path: &std::path::Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&path.to_string_lossy())
}
