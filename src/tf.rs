//! TensorFlow's checkpoint ops over safetensors, literally: `GenerateVocabRemapping`,
//! `LoadAndRemapMatrix`, and the Python initializer that drives them
//! (`checkpoint_ops._load_and_remap_matrix_initializer`).
//!
//! These are ports for code that calls the ops directly, and the literal reference the
//! planner and engines are tested against. They follow TensorFlow's call order exactly,
//! including the order in which initializing values are consumed (missing cells row-major,
//! then OOV rows, then OOV columns), which [`crate::Plan`] deliberately does not (its
//! initializers are a function of the global element index). Only f32 tensors, as in
//! TensorFlow.

use std::collections::HashMap;
use std::path::Path;

use crate::checkpoint::Checkpoint;
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::vocab::{self, Vocab, MISSING};

/// `GenerateVocabRemapping`: for new lines `new_vocab_offset..+num_new_vocab`, the line of
/// the same token among the first `old_vocab_size` lines of the old file (-1 = whole file), or
/// -1; and the number of tokens found. The new file is read whole.
pub fn generate_vocab_remapping(
    new_vocab_file: &Path,
    old_vocab_file: &Path,
    new_vocab_offset: usize,
    num_new_vocab: usize,
    old_vocab_size: i64,
) -> Result<(Vec<i64>, usize)> {
    let new = Vocab::read(new_vocab_file, None)?;
    let limit = match old_vocab_size {
        -1 => None,
        n if n >= 0 => Some(n as usize),
        n => {
            return Err(Error::setting(
                "old_vocab_size",
                format!("must be >= -1, got {n}"),
            ));
        }
    };
    let old = Vocab::read(old_vocab_file, limit)?;
    let map = vocab::lookup(
        &new,
        new_vocab_offset..new_vocab_offset + num_new_vocab,
        &old,
    )?;
    let remapping: Vec<i64> = map
        .iter()
        .map(|&m| if m == MISSING { -1 } else { m as i64 })
        .collect();
    let present = remapping.iter().filter(|&&m| m >= 0).count();
    Ok((remapping, present))
}

/// Which new index each old index goes to; refuses an old index mapped twice.
fn remap_vector_to_map(
    remapping: &[i64],
    what: &str,
) -> Result<(Vec<bool>, HashMap<usize, usize>)> {
    let mut present = vec![false; remapping.len()];
    let mut map = HashMap::new();
    for (new, &old) in remapping.iter().enumerate() {
        if old < 0 {
            continue;
        }
        present[new] = true;
        if let Some(first) = map.insert(old as usize, new) {
            return Err(Error::setting(
                what,
                format!("old ID {old} is mapped to both new ID {first} and {new}, which is not supported"),
            ));
        }
    }
    Ok((present, map))
}

/// `LoadAndRemapMatrix`: a `[num_rows, num_cols]` f32 matrix whose row `i` is old row
/// `row_remapping[i]` (columns through `col_remapping` when it is not empty), and whose
/// missing cells take `initializing_values` in row-major order.
pub fn load_and_remap_matrix(
    checkpoint: &Checkpoint,
    old_tensor_name: &str,
    row_remapping: &[i64],
    col_remapping: &[i64],
    initializing_values: &[f32],
    num_rows: usize,
    num_cols: usize,
) -> Result<Vec<f32>> {
    let bad = |m: String| Error::setting("load_and_remap_matrix", m);
    if row_remapping.len() != num_rows {
        return Err(bad(format!(
            "size of row_remapping is {} instead of being equal to num_rows={num_rows}",
            row_remapping.len()
        )));
    }
    let (row_present, row_map) = remap_vector_to_map(row_remapping, "row_remapping")?;
    let remap_cols = !col_remapping.is_empty();
    if remap_cols && col_remapping.len() != num_cols {
        return Err(bad(format!(
            "provided col_remapping, but its size is {} instead of being equal to num_cols={num_cols}",
            col_remapping.len()
        )));
    }
    let (col_present, col_map) = if remap_cols {
        remap_vector_to_map(col_remapping, "col_remapping")?
    } else {
        (vec![true; num_cols], HashMap::new())
    };
    let Some(old) = checkpoint.tensor(old_tensor_name)? else {
        return Err(Error::TensorNotFound {
            tensor: old_tensor_name.into(),
            variable: old_tensor_name.into(),
            checkpoint: checkpoint.path().to_path_buf(),
            hint: String::new(),
        });
    };
    if old.dtype() != Dtype::F32 {
        return Err(bad(format!(
            "tensor {old_tensor_name} has invalid type {:?} instead of expected type float",
            old.dtype()
        )));
    }
    let &[old_rows, old_cols] = old.shape() else {
        return Err(bad(format!(
            "tensor {old_tensor_name} has shape {:?} of invalid rank instead of expected shape of rank 2",
            old.shape()
        )));
    };
    if !remap_cols && num_cols != old_cols {
        return Err(bad(format!(
            "tensor {old_tensor_name} has shape {:?}, where the size of its 2nd dimension is {old_cols} instead of being equal to num_cols={num_cols}",
            old.shape()
        )));
    }
    let rows = old.rows().expect("f32 rows");
    let mut out = vec![0f32; num_rows * num_cols];
    for (&old_row, &new_row) in &row_map {
        if old_row >= old_rows {
            return Err(bad(format!(
                "row {old_row} is out of bounds of tensor {old_tensor_name} with shape {:?}",
                old.shape()
            )));
        }
        let src = rows.row(old_row);
        for old_col in 0..old_cols {
            let new_col = if remap_cols {
                match col_map.get(&old_col) {
                    Some(&c) => c,
                    None => continue,
                }
            } else {
                old_col
            };
            let b = &src[old_col * 4..old_col * 4 + 4];
            out[new_row * num_cols + new_col] = f32::from_le_bytes(b.try_into().unwrap());
        }
    }
    let mut k = 0;
    for i in 0..num_rows {
        for j in 0..num_cols {
            if row_present[i] && col_present[j] {
                continue;
            }
            let Some(&v) = initializing_values.get(k) else {
                return Err(bad(format!(
                    "initializing_values contained {} elements, but more missing values remain",
                    initializing_values.len()
                )));
            };
            out[i * num_cols + j] = v;
            k += 1;
        }
    }
    if k != initializing_values.len() {
        return Err(bad(format!(
            "initializing_values contained {} elements, but only {k} elements were used to fill in missing values",
            initializing_values.len()
        )));
    }
    Ok(out)
}

/// The arguments of `_load_and_remap_matrix_initializer` (vocabulary files are optional per
/// axis; at least one axis must have both).
#[derive(Clone, Debug, Default)]
pub struct LoadAndRemapMatrixInitializer<'a> {
    /// The checkpoint.
    pub checkpoint: Option<&'a Checkpoint>,
    /// The old tensor's name.
    pub old_tensor_name: &'a str,
    /// Rows of the new vocabulary (without OOV).
    pub new_row_vocab_size: usize,
    /// Columns of the new vocabulary (without OOV).
    pub new_col_vocab_size: usize,
    /// Lines of the old row vocabulary to use (-1: all).
    pub old_row_vocab_size: i64,
    /// Old row vocabulary.
    pub old_row_vocab_file: Option<&'a Path>,
    /// New row vocabulary.
    pub new_row_vocab_file: Option<&'a Path>,
    /// Old column vocabulary.
    pub old_col_vocab_file: Option<&'a Path>,
    /// New column vocabulary.
    pub new_col_vocab_file: Option<&'a Path>,
    /// OOV rows appended.
    pub num_row_oov_buckets: usize,
    /// OOV columns appended.
    pub num_col_oov_buckets: usize,
}

/// An initializer callback: `(rows, cols)` values in row-major order.
pub type InitFn<'a> = dyn FnMut(usize, usize) -> Vec<f32> + 'a;

impl LoadAndRemapMatrixInitializer<'_> {
    /// The initializer called for one partition: `shape = [rows, cols]` at row `offset` of
    /// the variable (0 when not partitioned).
    pub fn call(
        &self,
        shape: [usize; 2],
        offset: usize,
        init: &mut InitFn<'_>,
    ) -> Result<Vec<f32>> {
        let bad = |m: String| Error::setting("load_and_remap_matrix_initializer", m);
        let [rows, cols] = shape;
        let want_cols = self.new_col_vocab_size + self.num_col_oov_buckets;
        if cols != want_cols {
            return Err(bad(format!(
                "expected 2nd dim of shape to be new_col_vocab_size ({}) + num_col_oov_buckets ({}) = {want_cols}, but received shape: {shape:?}",
                self.new_col_vocab_size, self.num_col_oov_buckets
            )));
        }
        if rows == 0 {
            return Err(bad(format!(
                "expected 1st dim of shape to be > 0, but received shape: {shape:?}"
            )));
        }
        let total = self.new_row_vocab_size + self.num_row_oov_buckets;
        if offset + rows > total {
            return Err(bad(format!(
                "trying to initialize {rows} additional rows after {offset} rows have already been initialized, which would exceed expected total row count of {total}"
            )));
        }
        let row_oov = rows.min((offset + rows).saturating_sub(self.new_row_vocab_size));
        let load = rows - row_oov;
        if offset > self.new_row_vocab_size {
            return Ok(init(rows, cols));
        }
        self.load_and_remap(offset, load, row_oov, init)
    }

    /// `_load_and_remap_matrix`: `num_rows_to_load` rows from new row `offset`, then
    /// `num_row_oov_buckets` OOV rows, then the OOV columns.
    pub fn load_and_remap(
        &self,
        offset: usize,
        num_rows_to_load: usize,
        num_row_oov_buckets: usize,
        init: &mut InitFn<'_>,
    ) -> Result<Vec<f32>> {
        let bad = |m: &str| Error::setting("load_and_remap_matrix", m);
        if self.old_row_vocab_file.is_some() != self.new_row_vocab_file.is_some() {
            return Err(bad("old_row_vocab_file and new_row_vocab_file must both be specified or left unspecified"));
        }
        if self.old_col_vocab_file.is_some() != self.new_col_vocab_file.is_some() {
            return Err(bad("old_col_vocab_file and new_col_vocab_file must both be specified or left unspecified"));
        }
        if self.new_row_vocab_file.is_none() && self.new_col_vocab_file.is_none() {
            return Err(bad("must provide either row or column vocab files"));
        }
        let checkpoint = self.checkpoint.ok_or_else(|| bad("no checkpoint"))?;
        let cols = self.new_col_vocab_size;
        if cols == 0 {
            return Err(bad("new_col_vocab_size must be >= 1"));
        }
        let (row_remapping, rows_present) = match (self.new_row_vocab_file, self.old_row_vocab_file)
        {
            (Some(new), Some(old)) => generate_vocab_remapping(
                new,
                old,
                offset,
                num_rows_to_load,
                self.old_row_vocab_size,
            )?,
            _ => (
                (offset as i64..(offset + num_rows_to_load) as i64).collect(),
                num_rows_to_load,
            ),
        };
        let (col_remapping, cols_present) = match (self.new_col_vocab_file, self.old_col_vocab_file)
        {
            (Some(new), Some(old)) => generate_vocab_remapping(new, old, 0, cols, -1)?,
            _ => (Vec::new(), cols),
        };
        let missing = num_rows_to_load * cols - rows_present * cols_present;
        let values = init(missing, 1);
        let block = load_and_remap_matrix(
            checkpoint,
            self.old_tensor_name,
            &row_remapping,
            &col_remapping,
            &values,
            num_rows_to_load,
            cols,
        )?;
        let mut rows: Vec<Vec<f32>> = block.chunks(cols).map(<[f32]>::to_vec).collect();
        if num_row_oov_buckets > 0 {
            let oov = init(num_row_oov_buckets, cols);
            rows.extend(oov.chunks(cols).map(<[f32]>::to_vec));
        }
        if self.num_col_oov_buckets > 0 {
            let n = self.num_col_oov_buckets;
            let extra = init(rows.len(), n);
            for (row, add) in rows.iter_mut().zip(extra.chunks(n)) {
                row.extend_from_slice(add);
            }
        }
        Ok(rows.concat())
    }
}
