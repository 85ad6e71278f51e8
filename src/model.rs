//! The new model: its variables, their partitions and their initial values.
//!
//! A [`Model`] comes from a safetensors file holding every variable of the new model (tensors
//! `<var>/part_<k>` are the partitions of `<var>` along axis 0, TensorFlow's div-partitioning),
//! or is declared in code. Declared variables may hold only a slice of a partitioned table, as
//! a distributed worker does (TensorFlow's `partition_info`: full shape and row offset).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::checkpoint::{split_part, PartIndex, SafetensorsFile, TensorData};
use crate::dtype::Dtype;
use crate::error::{Error, Result};

/// One variable of the new model.
#[derive(Clone, Debug)]
pub struct Variable {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    partitions: Vec<Partition>,
    trainable: bool,
    /// Whether `partitions` are all of the variable's, one after the other (every constructor
    /// but [`Variable::with_partitions`], whose worker slice may hold some only).
    complete: bool,
}

/// A partition (or the whole) of a variable: one output tensor.
#[derive(Clone, Debug)]
pub struct Partition {
    tensor: String,
    offset: usize,
    rows: usize,
    initial: Option<TensorData>,
}

impl Partition {
    /// A partition holding rows `offset..offset + rows` of its variable, stored under the
    /// tensor name `tensor`.
    pub fn new(tensor: impl Into<String>, offset: usize, rows: usize) -> Self {
        Partition {
            tensor: tensor.into(),
            offset,
            rows,
            initial: None,
        }
    }

    /// The tensor name (`<var>` or `<var>/part_<k>`).
    pub fn tensor(&self) -> &str {
        &self.tensor
    }

    /// First row of the variable held here.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Number of rows held here.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The initial value, when the model came from a file.
    pub fn initial(&self) -> Option<&TensorData> {
        self.initial.as_ref()
    }

    /// TensorFlow's graph name of the partition's variable (`name:0`, `name/part_k:0`).
    pub(crate) fn graph_name(&self) -> String {
        format!("{}:0", self.tensor)
    }
}

impl Variable {
    /// An unpartitioned, trainable variable.
    pub fn new(name: impl Into<String>, dtype: Dtype, shape: Vec<usize>) -> Self {
        let name = name.into();
        let rows = shape.first().copied().unwrap_or(1);
        Variable {
            partitions: vec![Partition::new(name.clone(), 0, rows)],
            name,
            dtype,
            shape,
            trainable: true,
            complete: true,
        }
    }

    /// A variable partitioned along axis 0 into `name/part_0..`, with the given row counts.
    pub fn partitioned(
        name: impl Into<String>,
        dtype: Dtype,
        shape: Vec<usize>,
        rows: &[usize],
    ) -> Self {
        let name = name.into();
        let mut offset = 0;
        let partitions = rows
            .iter()
            .enumerate()
            .map(|(k, &r)| {
                let p = Partition::new(format!("{name}/part_{k}"), offset, r);
                offset += r;
                p
            })
            .collect();
        Variable {
            name,
            dtype,
            shape,
            partitions,
            trainable: true,
            complete: true,
        }
    }

    /// A variable of which this process holds only some partitions (a distributed worker's
    /// slice: TensorFlow's `partition_info` with `full_shape` and the row offsets).
    pub fn with_partitions(
        name: impl Into<String>,
        dtype: Dtype,
        full_shape: Vec<usize>,
        partitions: Vec<Partition>,
    ) -> Self {
        Variable {
            name: name.into(),
            dtype,
            shape: full_shape,
            partitions,
            trainable: true,
            complete: false,
        }
    }

    /// Marks the variable as outside TensorFlow's `TRAINABLE_VARIABLES` (a single-regex
    /// `vars_to_warm_start` then skips it).
    pub fn set_trainable(&mut self, trainable: bool) -> &mut Self {
        self.trainable = trainable;
        self
    }

    /// The full name (no `:0`, no `/part_k`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The element type.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// The full shape (all partitions together).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The partitions held (all of them for a model file).
    pub fn partitions(&self) -> &[Partition] {
        &self.partitions
    }

    /// Whether the variable is in `TRAINABLE_VARIABLES`.
    pub fn trainable(&self) -> bool {
        self.trainable
    }

    /// Bytes of `rows` rows: `None` unless a whole number that fits in memory's address
    /// range.
    fn bytes(&self, rows: usize) -> Option<usize> {
        let rest = &self.shape[self.shape.len().min(1)..];
        let elements = rest.iter().try_fold(rows, |n, &d| n.checked_mul(d))?;
        crate::dtype::byte_len(self.dtype, elements)
    }

    fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::variable(&self.name, m));
        let rows = self.shape.first().copied().unwrap_or(1);
        if self.partitions.is_empty() {
            return bad("has no partitions".into());
        }
        let bytes = |rows| self.bytes(rows);
        if bytes(rows).is_none() {
            return bad(format!(
                "of shape {:?} and dtype {:?} does not take a whole number of bytes (or its size \
                 overflows)",
                self.shape, self.dtype
            ));
        }
        if self.complete && !self.shape.is_empty() {
            let sum = (self.partitions.iter()).try_fold(0usize, |n, p| n.checked_add(p.rows));
            if sum != Some(rows) {
                return bad(format!(
                    "its partitions' rows {:?} do not add up to its {rows} rows",
                    self.partitions.iter().map(|p| p.rows).collect::<Vec<_>>()
                ));
            }
        }
        for p in &self.partitions {
            if bytes(p.rows).is_none() {
                return bad(format!(
                    "partition {} ({} rows) does not take a whole number of bytes",
                    p.tensor, p.rows
                ));
            }
            if p.offset.checked_add(p.rows).is_none_or(|end| end > rows) {
                return bad(format!(
                    "partition {} (rows {}..{}) exceeds the full shape {:?}",
                    p.tensor,
                    p.offset,
                    p.offset.saturating_add(p.rows),
                    self.shape
                ));
            }
            if self.shape.is_empty() && (p.offset, p.rows) != (0, 1) {
                return bad(format!("partition {} of a scalar", p.tensor));
            }
        }
        Ok(())
    }
}

/// The new model's variables, in the order of the model file.
#[derive(Clone, Debug)]
pub struct Model {
    path: Option<PathBuf>,
    metadata: std::collections::BTreeMap<String, String>,
    variables: Vec<Variable>,
    /// (variable, partition) of every tensor, in file data order.
    order: Vec<(usize, usize)>,
}

impl Model {
    /// Reads the variables of a safetensors model file: tensors `<var>/part_<k>` are the
    /// partitions of `<var>`; every other tensor is a variable of its own. All variables are
    /// trainable until [`Model::mark_non_trainable`] says otherwise.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = SafetensorsFile::open(path)?;
        Self::from_file(path, &file)
    }

    fn from_file(path: &Path, file: &Arc<SafetensorsFile>) -> Result<Self> {
        let tensors = file.tensors();
        let parts = PartIndex::new(tensors.iter().map(|t| t.name()));
        let bad = |m: String| Error::format(path, m);
        let mut variables: Vec<Variable> = Vec::new();
        let mut seen = std::collections::HashMap::new();
        let mut order = Vec::with_capacity(tensors.len());
        for t in &tensors {
            let base = match split_part(t.name()) {
                Some((base, k)) => {
                    if let Some(&v) = seen.get(base) {
                        order.push((v, k));
                        continue;
                    }
                    order.push((variables.len(), k));
                    base
                }
                None => {
                    if parts.group(t.name()).is_some() {
                        return Err(bad(format!(
                            "mixing slices and non-slices with the same name: {:?} and {}/part_<k>",
                            t.name(),
                            t.name()
                        )));
                    }
                    order.push((variables.len(), 0));
                    variables.push(Variable {
                        partitions: vec![Partition {
                            tensor: t.name().to_string(),
                            offset: 0,
                            rows: t.shape().first().copied().unwrap_or(1),
                            initial: Some(t.clone()),
                        }],
                        name: t.name().to_string(),
                        dtype: t.dtype(),
                        shape: t.shape().to_vec(),
                        trainable: true,
                        complete: true,
                    });
                    continue;
                }
            };
            seen.insert(base.to_string(), variables.len());
            let names = parts.group(base).expect("base has parts").map_err(bad)?;
            let members: Vec<TensorData> = names
                .iter()
                .map(|n| file.tensor(n).expect("indexed"))
                .collect();
            // The same consistency rules as partitioned checkpoint tensors.
            let whole = TensorData::concat(base, members.clone()).map_err(bad)?;
            let mut offset = 0;
            let mut partitions = Vec::new();
            for m in &members {
                partitions.push(Partition {
                    tensor: m.name().to_string(),
                    offset,
                    rows: m.shape()[0],
                    initial: Some(m.clone()),
                });
                offset += m.shape()[0];
            }
            let (dtype, shape) = (whole.dtype(), whole.shape().to_vec());
            variables.push(Variable {
                name: base.to_string(),
                dtype,
                shape,
                partitions,
                trainable: true,
                complete: true,
            });
        }
        Ok(Model {
            path: Some(path.to_path_buf()),
            metadata: file.metadata().clone(),
            variables,
            order,
        })
    }

    /// A model declared in code (no initial values: only warm-started tensors can be produced
    /// from it). Checks, as for a model file, that every partition lies inside its variable,
    /// that the partitions of [`Variable::partitioned`] add up to its rows, that every tensor
    /// takes a whole number of bytes, and that no two variables or output tensors share a
    /// name.
    pub fn new(variables: Vec<Variable>) -> Result<Self> {
        for v in &variables {
            v.check()?;
        }
        let mut names = std::collections::HashSet::new();
        for v in &variables {
            if !names.insert(v.name.as_str()) {
                return Err(Error::variable(&v.name, "is declared twice"));
            }
        }
        // Every partition is an output tensor: no two may share a name, and all of them
        // together, the data of one output file, must have a size.
        let mut tensors = std::collections::HashMap::new();
        let mut total = 0usize;
        for v in &variables {
            for p in &v.partitions {
                let Some(sum) = v.bytes(p.rows).and_then(|b| total.checked_add(b)) else {
                    return Err(Error::variable(
                        &v.name,
                        "brings the model's tensors past 2^64 bytes",
                    ));
                };
                total = sum;
                if let Some(other) = tensors.insert(p.tensor.as_str(), v.name.as_str()) {
                    return Err(Error::variable(
                        &v.name,
                        format!(
                            "has a partition named {:?}, a tensor name that variable {other:?} \
                             already uses",
                            p.tensor
                        ),
                    ));
                }
            }
        }
        let order = variables
            .iter()
            .enumerate()
            .flat_map(|(v, var)| (0..var.partitions.len()).map(move |p| (v, p)))
            .collect();
        Ok(Model {
            path: None,
            metadata: Default::default(),
            variables,
            order,
        })
    }

    /// Marks every variable whose full name fully matches one of `patterns` (Python regex
    /// syntax) as non-trainable; all others as trainable.
    pub fn mark_non_trainable(&mut self, patterns: &[String]) -> Result<()> {
        let regexes = patterns
            .iter()
            .map(|p| crate::select::PyRegex::full_match(p, "non_trainable"))
            .collect::<Result<Vec<_>>>()?;
        for v in &mut self.variables {
            v.trainable = true;
            for r in &regexes {
                if r.is_match(&v.name)? {
                    v.trainable = false;
                }
            }
        }
        Ok(())
    }

    /// The model file, when the model came from one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The model file's `__metadata__`.
    pub fn metadata(&self) -> &std::collections::BTreeMap<String, String> {
        &self.metadata
    }

    /// The variables in model order.
    pub fn variables(&self) -> &[Variable] {
        &self.variables
    }

    /// Every tensor as (variable index, partition index), in the model file's data order (the
    /// output's order).
    pub fn tensor_order(&self) -> &[(usize, usize)] {
        &self.order
    }

    /// Mutable access, e.g. to set trainability.
    pub fn variables_mut(&mut self) -> &mut [Variable] {
        &mut self.variables
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(variables: Vec<Variable>, what: &str) {
        match Model::new(variables) {
            Err(e @ Error::Variable { .. }) => assert!(e.to_string().contains(what), "{e}"),
            other => panic!(
                "expected a refusal naming {what:?}: {:?}",
                other.map(|_| ())
            ),
        }
    }

    /// A model declared in code is checked as a model file is, before anything is planned:
    /// each of these used to be accepted, and then wrote a file no reader accepts, lost
    /// rows, or panicked when its size was asked for.
    #[test]
    fn declared_models_are_checked() {
        use Dtype::{F32, F4};
        let part = |name: &str, offset, rows| Partition::new(name, offset, rows);
        // two output tensors of one name
        let twice = vec![part("emb/part_0", 0, 3), part("emb/part_0", 3, 2)];
        refused(
            vec![Variable::with_partitions("emb", F32, vec![5, 2], twice)],
            "\"emb/part_0\"",
        );
        refused(
            vec![
                Variable::new("bias", F32, vec![4]),
                Variable::with_partitions("w", F32, vec![4, 2], vec![part("bias", 0, 4)]),
            ],
            "variable \"bias\" already uses",
        );
        // all partitions, whose rows must add up
        refused(
            vec![Variable::partitioned("emb", F32, vec![5, 2], &[2, 2])],
            "do not add up",
        );
        // sizes in bytes
        refused(
            vec![Variable::new("huge", F32, vec![usize::MAX / 2, 4])],
            "overflows",
        );
        refused(vec![Variable::new("nibbles", F4, vec![3])], "whole number");
        // (each within the 2^64 bits of a byte count's computation, nine of them past 2^64 bytes)
        let big = |k: usize| Variable::new(format!("v{k}"), Dtype::U8, vec![(1 << 61) - 1]);
        refused((0..9).map(big).collect(), "past 2^64 bytes");
        refused(
            vec![Variable::partitioned("n", F4, vec![2, 1], &[1, 1])],
            "partition n/part_0",
        );
        // a worker's slice, a scalar, an even number of nibbles
        Model::new(vec![
            Variable::partitioned("emb", F32, vec![5, 2], &[3, 2]),
            Variable::with_partitions("w", F32, vec![6, 2], vec![part("w/part_1", 3, 3)]),
            Variable::new("s", F32, vec![]),
            Variable::new("nibbles", F4, vec![4]),
        ])
        .unwrap();
    }
}
