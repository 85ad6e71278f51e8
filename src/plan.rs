//! The remap plan: one job per output tensor, fully validated before any byte is written.
//!
//! [`Plan::new`] runs selection and name mapping (`select.rs`), opens the checkpoint,
//! reads the vocabularies and builds index vectors ([`crate::vocab`]), resolves initializers,
//! and checks every shape and dtype. What comes out is a list of [`OutputTensor`]s, each with a
//! [`Job`]: keep the model's initial value, copy bytes of a checkpoint tensor, or remap rows or
//! columns by an index vector and initialise the rest ([`RemapJob`]). The engines
//! ([`crate::engine`]) execute remap jobs; the writer streams everything in order.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::checkpoint::{Checkpoint, TensorData};
use crate::dtype::{byte_len, Dtype, FloatType};
use crate::error::{Error, Result};
use crate::initializer::{Fill, InitSpec};
use crate::model::{Model, Variable};
use crate::select::{select, Action, Selected};
use crate::settings::{VocabInfo, WarmStartSettings};
use crate::vocab::{self, Vocab, MISSING};

/// One tensor of the output, with the job that produces its bytes.
#[derive(Clone, Debug)]
pub struct OutputTensor {
    /// Tensor name (as in the model file).
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// How its bytes are produced.
    pub job: Job,
}

impl OutputTensor {
    /// Bytes of the tensor.
    pub fn byte_len(&self) -> usize {
        byte_len(self.dtype, self.shape.iter().product()).expect("validated by the model file")
    }

    /// Whether the tensor is warm-started (copied or remapped from the checkpoint).
    pub fn is_warm_started(&self) -> bool {
        !matches!(self.job, Job::Keep(_))
    }
}

/// How an output tensor's bytes are produced.
#[derive(Clone, Debug)]
pub enum Job {
    /// The model's initial value, unchanged (`None` for a model declared in code).
    Keep(Option<TensorData>),
    /// A byte range of a checkpoint tensor, unchanged (`init_from_checkpoint`).
    Copy {
        /// The checkpoint tensor.
        source: TensorData,
        /// The bytes of it this output tensor holds (a partition's rows).
        bytes: Range<usize>,
    },
    /// Rows or columns remapped by an index vector, the rest initialised.
    Remap(RemapJob),
}

/// Remap one output tensor (a partition, or a whole variable) of a vocabulary variable.
///
/// The variable is a matrix of `cols` columns (a 1-D variable is one column). Output row `g`
/// of the variable (`rows` is this tensor's share) comes from old row `row_map[g]` (identity
/// when `row_map` is `None`); column `c` from old column `col_map[c]` (identity when `None`).
/// A cell whose row or column is [`MISSING`] receives `init` at global element `g * cols + c`.
///
/// Its `Debug` shows the index vectors' lengths, not their entries (millions, for a real
/// vocabulary).
#[derive(Clone)]
pub struct RemapJob {
    /// The variable's full name.
    pub variable: String,
    /// The old checkpoint tensor, viewed as `[old rows, old_cols]`.
    pub old: TensorData,
    /// The element type of old and new.
    pub dtype: FloatType,
    /// Rows of the full variable this output tensor holds.
    pub rows: Range<usize>,
    /// Columns of the variable.
    pub cols: usize,
    /// Columns of the old tensor.
    pub old_cols: usize,
    /// Old row per variable row, or `None` for the identity.
    pub row_map: Option<Arc<[u32]>>,
    /// Old column per column, or `None` for the identity.
    pub col_map: Option<Arc<[u32]>>,
    /// What missing cells receive.
    pub init: InitSpec,
}

impl std::fmt::Debug for RemapJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        /// An index vector as its length.
        struct Entries(usize);
        impl std::fmt::Debug for Entries {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "[{} entries]", self.0)
            }
        }
        let map = |m: &Option<Arc<[u32]>>| m.as_ref().map(|m| Entries(m.len()));
        f.debug_struct("RemapJob")
            .field("variable", &self.variable)
            .field("old", &self.old)
            .field("dtype", &self.dtype)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("old_cols", &self.old_cols)
            .field("row_map", &map(&self.row_map))
            .field("col_map", &map(&self.col_map))
            .field("init", &self.init)
            .finish()
    }
}

#[cfg(test)]
impl RemapJob {
    /// Test helper: the axis-0 remap of variable `v` from `old` (a table) through `map` (the
    /// identity for `None`), the rows without a source from `init`.
    pub(crate) fn test_rows(
        old: TensorData,
        map: Option<Vec<u32>>,
        init: crate::Initializer,
    ) -> RemapJob {
        let (old_rows, cols) = (old.shape()[0], old.shape()[1]);
        let rows = map.as_ref().map_or(old_rows, |m| m.len());
        RemapJob {
            variable: "v".into(),
            dtype: FloatType::from_dtype(old.dtype()).expect("a float table"),
            old,
            rows: 0..rows,
            cols,
            old_cols: cols,
            row_map: map.map(Arc::from),
            col_map: None,
            init: init.resolve("v", &[rows, cols], "t").unwrap(),
        }
    }
}

impl RemapJob {
    /// Bytes of one output row.
    pub fn row_bytes(&self) -> usize {
        self.cols * self.dtype.size()
    }

    /// Bytes of one old row.
    pub fn old_row_bytes(&self) -> usize {
        self.old_cols * self.dtype.size()
    }

    /// Refuses a job that does not add up: the old tensor not a table of `old_cols` columns
    /// of this dtype, a map shorter than the rows or columns it serves, an entry past the old
    /// table, columns that differ without a column map, or a row count past the old table
    /// without a row map. Plans make only jobs that pass; both engines check every job they
    /// are handed, since the fields are public.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::variable(&self.variable, m));
        if FloatType::from_dtype(self.old.dtype()) != Some(self.dtype) {
            return bad(format!(
                "old tensor {:?} has dtype {:?}, the job {:?}",
                self.old.name(),
                self.old.dtype(),
                self.dtype
            ));
        }
        let old_rows = self.old.shape().first().copied().unwrap_or(1);
        let old_row_elems: usize = self.old.shape().iter().skip(1).product();
        if old_row_elems != self.old_cols
            || old_rows.checked_mul(self.old_row_bytes()) != Some(self.old.byte_len())
        {
            return bad(format!(
                "old tensor {:?} of shape {:?} is not a table of {} columns",
                self.old.name(),
                self.old.shape(),
                self.old_cols
            ));
        }
        if self.rows.start > self.rows.end {
            return bad(format!("rows {:?} run backwards", self.rows));
        }
        // The entries of a map that the job reads (`used`): MISSING, or an old row (column)
        // below `bound`.
        let check_map = |what: &str, map: &[u32], used: Range<usize>, bound: usize| {
            let Some(entries) = map.get(used.clone()) else {
                return bad(format!(
                    "{what} map has {} entries for {what}s up to {}",
                    map.len(),
                    used.end
                ));
            };
            match entries
                .iter()
                .find(|&&m| m != MISSING && m as usize >= bound)
            {
                Some(m) => bad(format!(
                    "{what} map names {what} {m} of an old table of {bound} {what}s"
                )),
                None => Ok(()),
            }
        };
        match &self.row_map {
            Some(m) => check_map("row", m, self.rows.clone(), old_rows)?,
            None if self.rows.end > old_rows => {
                return bad(format!(
                    "rows up to {} but the old tensor has {old_rows}",
                    self.rows.end
                ))
            }
            None => {}
        }
        match &self.col_map {
            Some(m) if m.len() != self.cols => bad(format!(
                "column map has {} entries for {} columns",
                m.len(),
                self.cols
            )),
            Some(m) => check_map("column", m, 0..self.cols, self.old_cols),
            None if self.old_cols != self.cols => bad(format!(
                "{} columns without a column map, but the old tensor has {}",
                self.cols, self.old_cols
            )),
            None => Ok(()),
        }
    }

    /// The old row of variable row `g`, or `None` when it has no past.
    #[inline]
    pub fn source_row(&self, g: usize) -> Option<usize> {
        match &self.row_map {
            None => Some(g),
            Some(m) => (m[g] != MISSING).then_some(m[g] as usize),
        }
    }
}

/// What the plan does with one variable, for `--dry-run` and `--report`.
#[derive(Clone, Debug, Serialize)]
pub struct VariableReport {
    /// Full variable name.
    pub name: String,
    /// `copy`, `remap` or `keep`.
    pub action: &'static str,
    /// The checkpoint tensor it comes from.
    pub source: Option<String>,
    /// Element type.
    pub dtype: String,
    /// Full shape.
    pub shape: Vec<usize>,
    /// The output tensors it is warm-started into (all its tensors for `keep`).
    pub tensors: Vec<String>,
    /// The vocabulary axis for `remap`.
    pub axis: Option<u8>,
    /// `rows` or `columns`: the unit of the three counts.
    pub unit: &'static str,
    /// Rows (columns) taken from the checkpoint.
    pub copied: usize,
    /// In-vocabulary rows (columns) without a past, initialised.
    pub initialised: usize,
    /// OOV rows (columns), initialised.
    pub oov: usize,
}

/// A validated warm start: every output tensor and its job.
#[derive(Debug)]
pub struct Plan {
    checkpoint: PathBuf,
    /// The checkpoint as an absolute path (against the working directory when the plan was
    /// made), for the output's metadata.
    checkpoint_absolute: PathBuf,
    tensors: Vec<OutputTensor>,
    variables: Vec<VariableReport>,
    digest: String,
    inputs: Vec<(PathBuf, &'static str)>,
    model_metadata: BTreeMap<String, String>,
}

impl Plan {
    /// Plans the warm start of `model` from `settings`: selection, name mapping, vocabulary
    /// remapping and every check. Nothing is written; on `Ok` the plan can be executed.
    pub fn new(settings: &WarmStartSettings, model: &Model) -> Result<Plan> {
        for (name, info) in &settings.var_name_to_vocab_info {
            check_vocab_info(name, info)?;
        }
        let selected = select(settings, model)?;
        let checkpoint = Checkpoint::open(&settings.ckpt_to_initialize_from)?;
        let mut planner = Planner {
            settings,
            checkpoint: &checkpoint,
            vocabs: HashMap::new(),
            maps: HashMap::new(),
        };
        let mut jobs: HashMap<(usize, usize), Job> = HashMap::new();
        let mut reports: Vec<Option<VariableReport>> = vec![None; model.variables().len()];
        for s in &selected {
            let var = &model.variables()[s.variable];
            let (report, var_jobs) = match s.action {
                Action::Copy => planner.copy(var, s)?,
                Action::Remap => planner.remap(var, s)?,
                Action::None => continue,
            };
            for (p, job) in var_jobs {
                jobs.insert((s.variable, p), job);
            }
            reports[s.variable] = Some(report);
        }

        let mut tensors = Vec::new();
        for &(v, p) in model.tensor_order() {
            let var = &model.variables()[v];
            let part = &var.partitions()[p];
            let mut shape = var.shape().to_vec();
            if let Some(first) = shape.first_mut() {
                *first = part.rows();
            }
            tensors.push(OutputTensor {
                name: part.tensor().to_string(),
                dtype: var.dtype(),
                shape,
                job: jobs
                    .remove(&(v, p))
                    .unwrap_or_else(|| Job::Keep(part.initial().cloned())),
            });
        }
        let variables = model
            .variables()
            .iter()
            .zip(reports)
            .map(|(var, r)| r.unwrap_or_else(|| keep_report(var)))
            .collect();

        let mut inputs: Vec<(PathBuf, &'static str)> = checkpoint
            .files()
            .map(|p| (p.to_path_buf(), "checkpoint"))
            .collect();
        inputs.extend(
            checkpoint
                .index_file()
                .map(|p| (p.to_path_buf(), "checkpoint index")),
        );
        inputs.extend(model.path().map(|p| (p.to_path_buf(), "model")));
        for info in settings.var_name_to_vocab_info.values() {
            inputs.push((info.new_vocab.clone(), "new vocabulary"));
            inputs.push((info.old_vocab.clone(), "old vocabulary"));
        }
        let checkpoint = settings.ckpt_to_initialize_from.clone();
        Ok(Plan {
            checkpoint_absolute: std::path::absolute(&checkpoint).unwrap_or(checkpoint.clone()),
            checkpoint,
            tensors,
            variables,
            digest: digest(settings, model),
            inputs,
            model_metadata: model.metadata().clone(),
        })
    }

    /// Every output tensor, in the model file's order.
    pub fn tensors(&self) -> &[OutputTensor] {
        &self.tensors
    }

    /// What happens to each variable.
    pub fn variables(&self) -> &[VariableReport] {
        &self.variables
    }

    /// The checkpoint path as configured.
    pub fn checkpoint(&self) -> &Path {
        &self.checkpoint
    }

    /// SHA-256 of the settings and the model's trainability, hex.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The input files, with their role (for refusing an output that is one of them).
    pub fn inputs(&self) -> &[(PathBuf, &'static str)] {
        &self.inputs
    }

    /// Adds an input file the plan came from (such as the plan file itself), so that the
    /// output may not overwrite it either.
    pub fn add_input(&mut self, path: impl Into<PathBuf>, role: &'static str) {
        self.inputs.push((path.into(), role));
    }

    /// The `__metadata__` the output carries: the model file's entries, plus the source
    /// checkpoint (an absolute path), the plan digest and this crate's version.
    pub fn output_metadata(&self) -> BTreeMap<String, String> {
        let mut m = self.model_metadata.clone();
        m.insert(
            "warmstart.checkpoint".into(),
            self.checkpoint_absolute.display().to_string(),
        );
        m.insert("warmstart.plan_sha256".into(), self.digest.clone());
        m.insert("warmstart.version".into(), env!("CARGO_PKG_VERSION").into());
        m
    }
}

fn keep_report(var: &Variable) -> VariableReport {
    VariableReport {
        name: var.name().to_string(),
        action: "keep",
        source: None,
        dtype: format!("{:?}", var.dtype()),
        shape: var.shape().to_vec(),
        tensors: var
            .partitions()
            .iter()
            .map(|p| p.tensor().to_string())
            .collect(),
        axis: None,
        unit: "rows",
        copied: 0,
        initialised: 0,
        oov: 0,
    }
}

/// Most positions of a vocabulary axis (`new_vocab_size + num_oov_buckets`): old rows are
/// indexed in `u32`, whose largest value marks a position with no old row ([`MISSING`]).
pub const MAX_VOCAB_AXIS: u64 = u32::MAX as u64 - 1;

fn digest(settings: &WarmStartSettings, model: &Model) -> String {
    let non_trainable: Vec<&str> = model
        .variables()
        .iter()
        .filter(|v| !v.trainable())
        .map(|v| v.name())
        .collect();
    let canonical = serde_json::json!({ "settings": settings, "non_trainable": non_trainable });
    let hash = Sha256::digest(canonical.to_string().as_bytes());
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks a `VocabInfo` on its own, as TensorFlow's `VocabInfo` and its op attributes do.
fn check_vocab_info(name: &str, info: &VocabInfo) -> Result<()> {
    let bad = |m: String| Err(Error::setting(format!("vocab.{name:?}"), m));
    if info.axis != 0 && info.axis != 1 {
        return bad(format!(
            "the only supported values for the axis argument are 0 and 1; provided axis: {}",
            info.axis
        ));
    }
    if info.new_vocab.as_os_str().is_empty() || info.old_vocab.as_os_str().is_empty() {
        return bad("new_vocab and old_vocab must both name a file".into());
    }
    if info.new_vocab_size <= 0 {
        return bad(format!(
            "new_vocab_size must be positive, got {}",
            info.new_vocab_size
        ));
    }
    if info.num_oov_buckets < 0 {
        return bad(format!(
            "num_oov_buckets must be >= 0, got {}",
            info.num_oov_buckets
        ));
    }
    // The index vector has an entry per position of the axis, held in memory while planning.
    if info
        .new_vocab_size
        .checked_add(info.num_oov_buckets)
        .is_none_or(|len| len > MAX_VOCAB_AXIS as i64)
    {
        return bad(format!(
            "new_vocab_size + num_oov_buckets = {} + {} is too large: a vocabulary axis has at most {MAX_VOCAB_AXIS} entries",
            info.new_vocab_size, info.num_oov_buckets
        ));
    }
    // (for axis 1 TensorFlow passes -1 whatever the value: it is not even checked)
    if info.axis == 0 && (info.old_vocab_size == 0 || info.old_vocab_size < -1) {
        return bad(format!(
            "old_vocab_size must be -1 (the whole file) or positive, got {}",
            info.old_vocab_size
        ));
    }
    Ok(())
}

type VocabKey = (PathBuf, Option<usize>);

struct Planner<'a> {
    settings: &'a WarmStartSettings,
    checkpoint: &'a Checkpoint,
    /// Vocabulary files read so far, by (path, line limit).
    vocabs: HashMap<VocabKey, Arc<Vocab>>,
    /// Index vectors built so far.
    maps: HashMap<MapKey, Arc<[u32]>>,
}

/// What an index vector is built from: the new vocabulary file, (`new_vocab_size`, the lines
/// of it read), the old vocabulary file with its line limit, and the OOV buckets.
type MapKey = (VocabKey, (usize, usize), VocabKey, usize);

impl Planner<'_> {
    /// The checkpoint tensor `name` for `variable`, or a refusal naming similar tensors.
    /// The checkpoint tensor `var` is warm-started from, which must have its dtype.
    fn old_tensor(&self, s: &Selected, var: &Variable) -> Result<TensorData> {
        let (name, variable) = (s.prev_name.as_str(), var.name());
        if self.checkpoint.is_partition(name) {
            let base = name.rsplit_once('/').map_or(name, |(b, _)| b);
            return Err(Error::TensorNotFound {
                tensor: name.to_string(),
                variable: variable.to_string(),
                checkpoint: self.checkpoint.path().to_path_buf(),
                hint: format!(
                    "; it is a partition of {base:?}, and as in TensorFlow a checkpoint tensor \
                     is named by its full name"
                ),
            });
        }
        if let Some(t) = self.checkpoint.tensor(name)? {
            if t.dtype() != var.dtype() {
                return Err(Error::variable(
                    variable,
                    format!(
                        "has dtype {:?} but checkpoint tensor {name:?} has {:?}",
                        var.dtype(),
                        t.dtype()
                    ),
                ));
            }
            return Ok(t);
        }
        let leaf = name.rsplit('/').next().unwrap_or(name);
        let similar: Vec<&str> = self
            .checkpoint
            .names()
            .into_iter()
            .filter(|n| n.rsplit('/').next() == Some(leaf))
            .take(5)
            .collect();
        let hint = if similar.is_empty() {
            String::new()
        } else {
            format!("; similar names in the checkpoint: {similar:?}")
        };
        Err(Error::TensorNotFound {
            tensor: name.to_string(),
            variable: variable.to_string(),
            checkpoint: self.checkpoint.path().to_path_buf(),
            hint,
        })
    }

    fn copy(
        &mut self,
        var: &Variable,
        s: &Selected,
    ) -> Result<(VariableReport, Vec<(usize, Job)>)> {
        let old = self.old_tensor(s, var)?;
        let partial = s.partitions.len() < var.partitions().len();
        if let ([p], [1], true) = (&s.partitions[..], &s.times[..], partial) {
            // TensorFlow hands a lone selected partition to init_from_checkpoint as a whole
            // variable: it takes the checkpoint tensor whole if the shapes are equal, and
            // refuses it otherwise. (A partition matched by two patterns of a list is held
            // twice, so not alone: it is restored as a slice, as any other selection.)
            let part = &var.partitions()[*p];
            let mut shape = var.shape().to_vec();
            shape[0] = part.rows();
            if old.shape() != shape {
                return Err(Error::variable(
                    var.name(),
                    format!(
                        "only partition {} ({} of {} rows) is selected; as in TensorFlow, a lone \
                         partition is warm-started as a whole variable and its shape {:?} must \
                         equal checkpoint tensor {:?}'s {:?} (select all partitions, or at least two)",
                        part.tensor(),
                        part.rows(),
                        var.shape()[0],
                        shape,
                        s.prev_name,
                        old.shape()
                    ),
                ));
            }
            let job = Job::Copy {
                bytes: 0..old.byte_len(),
                source: old,
            };
            return Ok((
                Self::copy_report(var, s, vec![part.tensor().to_string()], part.rows()),
                vec![(*p, job)],
            ));
        }
        if old.shape() != var.shape() {
            return Err(Error::variable(
                var.name(),
                format!(
                    "has shape {:?} but checkpoint tensor {:?} has shape {:?}",
                    var.shape(),
                    s.prev_name,
                    old.shape()
                ),
            ));
        }
        let per_row: usize = var.shape().iter().skip(1).product();
        let mut jobs = Vec::new();
        let mut tensors = Vec::new();
        let mut rows = 0;
        for &p in &s.partitions {
            let part = &var.partitions()[p];
            let (Some(start), Some(end)) = (
                byte_len(var.dtype(), part.offset() * per_row),
                byte_len(var.dtype(), (part.offset() + part.rows()) * per_row),
            ) else {
                return Err(Error::variable(
                    var.name(),
                    "partitions of a sub-byte dtype must start on a byte",
                ));
            };
            jobs.push((
                p,
                Job::Copy {
                    source: old.clone(),
                    bytes: start..end,
                },
            ));
            tensors.push(part.tensor().to_string());
            rows += part.rows();
        }
        Ok((Self::copy_report(var, s, tensors, rows), jobs))
    }

    fn copy_report(
        var: &Variable,
        s: &Selected,
        tensors: Vec<String>,
        rows: usize,
    ) -> VariableReport {
        VariableReport {
            name: var.name().to_string(),
            action: "copy",
            source: Some(s.prev_name.clone()),
            dtype: format!("{:?}", var.dtype()),
            shape: var.shape().to_vec(),
            tensors,
            axis: None,
            unit: "rows",
            copied: rows,
            initialised: 0,
            oov: 0,
        }
    }

    fn vocab(&mut self, path: &Path, limit: Option<usize>) -> Result<Arc<Vocab>> {
        Ok(self.vocab_pair((path, limit), (path, limit))?.0)
    }

    /// Two vocabularies, read in parallel where neither was read before.
    fn vocab_pair(
        &mut self,
        a: (&Path, Option<usize>),
        b: (&Path, Option<usize>),
    ) -> Result<(Arc<Vocab>, Arc<Vocab>)> {
        let cached = |(path, limit): (&Path, Option<usize>)| {
            self.vocabs.get(&(path.to_path_buf(), limit)).cloned()
        };
        let read = |key: (&Path, Option<usize>), known: Option<Arc<Vocab>>| match known {
            Some(v) => Ok(v),
            None => Vocab::read(key.0, key.1).map(Arc::new),
        };
        let (known_a, known_b) = (cached(a), cached(b));
        let (va, vb) = if a == b {
            let v = read(a, known_a)?;
            (v.clone(), v)
        } else {
            let (va, vb) = rayon::join(|| read(a, known_a), || read(b, known_b));
            (va?, vb?)
        };
        self.vocabs.insert((a.0.to_path_buf(), a.1), va.clone());
        self.vocabs.insert((b.0.to_path_buf(), b.1), vb.clone());
        Ok((va, vb))
    }

    /// The index vector of a vocabulary axis: old line per new token of the first `lines`
    /// lines of the new vocabulary, MISSING for the rest of `new_vocab_size`, then `oov`
    /// MISSING.
    fn index_vector(
        &mut self,
        info: &VocabInfo,
        old_limit: Option<usize>,
        lines: usize,
    ) -> Result<Arc<[u32]>> {
        let new_size = info.new_vocab_size as usize;
        let oov = info.num_oov_buckets as usize;
        let key = (
            (info.new_vocab.clone(), None),
            (new_size, lines),
            (info.old_vocab.clone(), old_limit),
            oov,
        );
        if let Some(m) = self.maps.get(&key) {
            return Ok(m.clone());
        }
        let (new, old) = self.vocab_pair((&info.new_vocab, None), (&info.old_vocab, old_limit))?;
        let mut map = vocab::remap(&new, lines, &old)?;
        // (OOV buckets of a zero-width table cost no bytes of output, but an entry each here)
        map.try_reserve_exact((new_size + oov).saturating_sub(map.len()))
            .map_err(|_| {
                Error::setting(
                    info.new_vocab.display().to_string(),
                    format!(
                        "no memory for an index vector of {} entries",
                        new_size + oov
                    ),
                )
            })?;
        map.resize(new_size + oov, MISSING);
        let map: Arc<[u32]> = map.into();
        self.maps.insert(key, map.clone());
        Ok(map)
    }

    fn remap(
        &mut self,
        var: &Variable,
        s: &Selected,
    ) -> Result<(VariableReport, Vec<(usize, Job)>)> {
        let info = &self.settings.var_name_to_vocab_info[var.name()];
        let bad = |m: String| Err(Error::variable(var.name(), m));
        let Some(dtype) = FloatType::from_dtype(var.dtype()) else {
            return bad(format!(
                "has dtype {:?}; vocabulary remapping needs F32, F64, F16 or BF16",
                var.dtype()
            ));
        };
        let (rows, cols) = match *var.shape() {
            [n] => (n, 1),
            [r, c] => (r, c),
            _ => {
                return bad(format!(
                    "has shape {:?}; vocabulary remapping needs a 1-D or 2-D variable",
                    var.shape()
                ))
            }
        };
        let old = self.old_tensor(s, var)?;
        let (old_rows, old_cols) = match *old.shape() {
            [n] => (n, 1),
            [r, c] => (r, c),
            _ => {
                return bad(format!(
                    "checkpoint tensor {:?} has shape {:?}; vocabulary remapping needs 1-D or 2-D",
                    s.prev_name,
                    old.shape()
                ))
            }
        };
        let axis = info.axis as u8;
        let vocab_len = (info.new_vocab_size + info.num_oov_buckets) as usize;
        let (axis_len, axis_name) = if axis == 0 {
            (rows, "rows")
        } else {
            (cols, "columns")
        };
        if axis_len != vocab_len {
            return bad(format!(
                "has {axis_len} {axis_name} but new_vocab_size + num_oov_buckets = {} + {} = {vocab_len}",
                info.new_vocab_size, info.num_oov_buckets
            ));
        }
        if axis == 0 && old_cols != cols {
            return bad(format!(
                "has {cols} columns but checkpoint tensor {:?} has {old_cols}",
                s.prev_name
            ));
        }
        // TensorFlow's LoadAndRemapMatrix needs at least one column, and its initializer at
        // least one row in each partition (checked here for the whole variable).
        if cols == 0 {
            return bad(format!(
                "has shape {:?}: a vocabulary variable needs at least one column, as in TensorFlow",
                var.shape()
            ));
        }
        if let Some(p) = s
            .partitions
            .iter()
            .map(|&p| &var.partitions()[p])
            .find(|p| p.rows() == 0)
        {
            return bad(format!(
                "{} has no rows: a vocabulary variable's partitions need at least one row, as in TensorFlow",
                p.tensor()
            ));
        }
        // The rows an axis-1 remap reads: row i of the old tensor for row i of the variable,
        // over the selected partitions, whose rows TensorFlow takes as the whole variable's
        // (a partition held twice counting twice); the old tensor needs those up to the last.
        let mut needed_rows = rows;
        if axis == 1 && s.partitions.len() < var.partitions().len() {
            let selected: usize = (s.partitions.iter().zip(&s.times))
                .map(|(&p, &times)| var.partitions()[p].rows() * times)
                .sum();
            if let Some(p) = s
                .partitions
                .iter()
                .map(|&p| &var.partitions()[p])
                .find(|p| p.offset() + p.rows() > selected)
            {
                return bad(format!(
                    "the selected partitions hold {selected} rows but partition {} ends at row {}; \
                     as in TensorFlow, an axis-1 remap counts only the selected partitions' rows \
                     (select a leading run of partitions, or all of them)",
                    p.tensor(),
                    p.offset() + p.rows()
                ));
            }
            needed_rows = (s.partitions.iter())
                .map(|&p| var.partitions()[p].offset() + var.partitions()[p].rows())
                .max()
                .unwrap_or(0);
        }
        if axis == 1 && old_rows < needed_rows {
            return bad(format!(
                "needs {needed_rows} rows but checkpoint tensor {:?} has only {old_rows}",
                s.prev_name
            ));
        }
        // TensorFlow ignores old_vocab_size for axis 1.
        let old_limit = match (axis, info.old_vocab_size) {
            (0, n) if n > 0 => Some(n as usize),
            _ => None,
        };
        // The new-vocabulary lines read, and the rows whose source is checked: on axis 0,
        // TensorFlow reads for each selected partition the lines of its rows (the lines up to
        // its offset at least, none past new_vocab_size; nothing for a partition that starts
        // past new_vocab_size), and reads only those rows of the old table.
        let new_size = info.new_vocab_size as usize;
        let served = |i: usize| {
            axis == 1
                || s.partitions.iter().any(|&p| {
                    let part = &var.partitions()[p];
                    (part.offset()..part.offset() + part.rows()).contains(&i)
                })
        };
        let lines = match axis {
            0 => (s.partitions.iter())
                .map(|&p| &var.partitions()[p])
                .filter(|p| p.offset() <= new_size)
                .map(|p| (p.offset() + p.rows()).min(new_size))
                .max()
                .unwrap_or(0),
            _ => new_size,
        };
        let map = self.index_vector(info, old_limit, lines)?;
        let bound = if axis == 0 { old_rows } else { old_cols };
        if let Some(i) = (0..lines).find(|&i| {
            let m = map[i];
            m != MISSING && m as usize >= bound && served(i)
        }) {
            let new = self.vocab(&info.new_vocab, None)?;
            return Err(Error::vocab(
                &info.old_vocab,
                Some(map[i] as usize + 1),
                format!(
                    "token {:?} (new line {}) is on this line of the old vocabulary, past the {bound} {} of checkpoint tensor {:?}",
                    vocab::display_token(new.token(i)),
                    i + 1,
                    if axis == 0 { "rows" } else { "columns" },
                    s.prev_name
                ),
            ));
        }
        let context = format!("vocab.{:?}.backup_initializer", var.name());
        let init = info
            .backup_initializer
            .clone()
            .unwrap_or_default()
            .resolve(var.name(), var.shape(), &context)?;
        let overflows = |value: f64| {
            let bits = dtype.bits_from_f64(value).to_le_bytes();
            !value.is_finite() || dtype.decode(&bits).is_infinite()
        };
        match (init.fill, init.fill.extremes()) {
            (Fill::Constant(value), _) if value.is_finite() && overflows(value) => {
                return Err(Error::setting(
                    &context,
                    format!(
                        "constant value {value:e} overflows the variable's dtype {:?}",
                        var.dtype()
                    ),
                ));
            }
            (_, Some((lo, hi))) if overflows(lo.into()) || overflows(hi.into()) => {
                return Err(Error::setting(
                    &context,
                    format!(
                        "its values reach {lo:e}..{hi:e}, which overflows the variable's dtype {:?}",
                        var.dtype()
                    ),
                ));
            }
            _ => {}
        }

        let mut report = VariableReport {
            name: var.name().to_string(),
            action: "remap",
            source: Some(s.prev_name.clone()),
            dtype: format!("{:?}", var.dtype()),
            shape: var.shape().to_vec(),
            tensors: Vec::new(),
            axis: Some(axis),
            unit: if axis == 0 { "rows" } else { "columns" },
            copied: 0,
            initialised: 0,
            oov: 0,
        };
        let mut count = |range: Range<usize>| {
            for g in range {
                match (g >= new_size, map[g] == MISSING) {
                    (true, _) => report.oov += 1,
                    (false, true) => report.initialised += 1,
                    (false, false) => report.copied += 1,
                }
            }
        };
        if axis == 1 {
            count(0..cols);
        }
        let mut jobs = Vec::new();
        let mut tensors = Vec::new();
        for &p in &s.partitions {
            let part = &var.partitions()[p];
            let range = part.offset()..part.offset() + part.rows();
            if axis == 0 {
                count(range.clone());
            }
            tensors.push(part.tensor().to_string());
            jobs.push((
                p,
                Job::Remap(RemapJob {
                    variable: var.name().to_string(),
                    old: old.clone(),
                    dtype,
                    rows: range,
                    cols,
                    old_cols,
                    row_map: (axis == 0).then(|| map.clone()),
                    col_map: (axis == 1).then(|| map.clone()),
                    init,
                }),
            ));
        }
        report.tensors = tensors;
        Ok((report, jobs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plan's `Debug` (`tracing::debug!(?plan)`) stays short whatever the vocabulary:
    /// index vectors are shown by their lengths.
    #[test]
    fn debug_shows_index_vectors_by_length() {
        let dir = tempfile::tempdir().unwrap();
        let old = crate::checkpoint::test_tensor(
            dir.path(),
            "old.safetensors",
            Dtype::F32,
            vec![1, 2],
            &[0; 8],
        );
        let job = RemapJob::test_rows(old, Some(vec![0; 100_000]), crate::Initializer::Zeros {});
        let text = format!("{:?}", Job::Remap(job));
        assert!(text.contains("row_map: Some([100000 entries])"), "{text}");
        assert!(text.len() < 2000, "{} bytes", text.len());
    }
}
