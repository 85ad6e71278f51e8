//! Reading safetensors checkpoints: single files, sharded directories, partitioned tensors.
//!
//! A [`Checkpoint`] is one `.safetensors` file, a directory of shards (with or without a
//! `model.safetensors.index.json`), or the path of such an index. Every file is memory-mapped
//! and its header validated (offsets contiguous and inside the file, shape and byte count
//! agreeing, known dtypes); tensor bytes are read only when a job needs them.
//!
//! Tensors named `<name>/part_<k>` (k = 0..n-1, and no tensor `<name>`) form one logical
//! tensor `<name>`, concatenated along axis 0 in k order. A [`TensorData`] is such a logical
//! tensor: a list of byte segments, never copied.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::dtype::{byte_len, Dtype};
use crate::error::{Error, Result};
use crate::mmap::MappedFile;

/// One memory-mapped, validated safetensors file.
pub struct SafetensorsFile {
    path: PathBuf,
    map: MappedFile,
    /// Tensors in data order.
    tensors: Vec<Entry>,
    /// Position of each tensor in `tensors`, by name.
    by_name: HashMap<String, usize>,
    metadata: BTreeMap<String, String>,
}

#[derive(Clone, Debug)]
struct Entry {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    /// Absolute byte range in the file.
    bytes: Range<usize>,
}

impl SafetensorsFile {
    /// Maps and validates `path`.
    pub fn open(path: &Path) -> Result<Arc<Self>> {
        let map = MappedFile::open(path)?;
        let header = parse_header(&map).map_err(|message| Error::format(path, message))?;
        let data_start = header.data_start;
        let tensors: Vec<Entry> = header
            .tensors
            .into_iter()
            .map(|(name, info)| Entry {
                name,
                dtype: info.dtype,
                shape: info.shape,
                bytes: data_start + info.data_offsets.0..data_start + info.data_offsets.1,
            })
            .collect();
        let by_name = tensors
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        Ok(Arc::new(SafetensorsFile {
            path: path.to_path_buf(),
            map,
            tensors,
            by_name,
            metadata: header.metadata.unwrap_or_default(),
        }))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The header's `__metadata__` entries.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// Tensor names in data order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|e| e.name.as_str())
    }

    /// The whole tensor `name` of this file, if present.
    pub fn tensor(self: &Arc<Self>, name: &str) -> Option<TensorData> {
        let &i = self.by_name.get(name)?;
        Some(self.data(&self.tensors[i]))
    }

    /// All tensors of this file in data order.
    pub fn tensors(self: &Arc<Self>) -> Vec<TensorData> {
        self.tensors.iter().map(|e| self.data(e)).collect()
    }

    fn data(self: &Arc<Self>, e: &Entry) -> TensorData {
        TensorData {
            name: e.name.clone(),
            dtype: e.dtype,
            shape: e.shape.clone(),
            segments: vec![Segment {
                file: self.clone(),
                bytes: e.bytes.clone(),
            }],
        }
    }
}

/// The largest header safetensors allows.
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// A safetensors header as JSON.
#[derive(serde::Deserialize)]
#[serde(expecting = "a JSON object of tensors")]
struct HeaderJson {
    #[serde(rename = "__metadata__")]
    metadata: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    tensors: TensorEntries,
}

/// The tensors of a header, in the order written. A name given twice is refused: a JSON
/// reader keeps one of the two, and which one a consumer sees would depend on the reader.
struct TensorEntries(Vec<(String, safetensors::tensor::TensorInfo)>);

impl<'de> serde::Deserialize<'de> for TensorEntries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = TensorEntries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("tensors")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<TensorEntries, A::Error> {
                let mut seen = std::collections::HashSet::new();
                let mut entries = Vec::new();
                while let Some((name, info)) = map.next_entry::<String, _>()? {
                    if !seen.insert(name.clone()) {
                        return Err(serde::de::Error::custom(format!(
                            "tensor {name:?} is named twice"
                        )));
                    }
                    entries.push((name, info));
                }
                Ok(TensorEntries(entries))
            }
        }
        d.deserialize_map(Entries)
    }
}

/// A validated safetensors header.
struct Header {
    metadata: Option<BTreeMap<String, String>>,
    /// The tensors in data order.
    tensors: Vec<(String, safetensors::tensor::TensorInfo)>,
    /// Where the data starts in the file.
    data_start: usize,
}

/// Parses and validates the header of the safetensors file `bytes`, with the checks of the
/// safetensors crate (whose own `read_metadata` overflows on huge offsets and does not say
/// which tensor is wrong): the tensors' byte ranges are contiguous from the start of the data,
/// agree with shape and dtype, and end exactly at the end of the file. The tensors come back
/// in data order. The error is a sentence for a person, naming the tensor where there is one.
fn parse_header(bytes: &[u8]) -> std::result::Result<Header, String> {
    let file_len = bytes.len();
    let Some(len_bytes) = bytes.get(..8) else {
        return Err(format!(
            "not a safetensors file: {file_len} bytes, too short for a header (truncated?)"
        ));
    };
    let header_len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes"));
    if header_len > MAX_HEADER_BYTES {
        return Err(format!(
            "header length {header_len} is larger than safetensors allows ({MAX_HEADER_BYTES} bytes); not a safetensors file?"
        ));
    }
    let data_start = 8 + header_len as usize;
    let Some(text) = bytes.get(8..data_start) else {
        return Err(format!(
            "header length {header_len} points past the end of the file ({file_len} bytes; truncated?)"
        ));
    };
    let text = std::str::from_utf8(text).map_err(|e| format!("header is not valid UTF-8: {e}"))?;
    let json: HeaderJson = serde_json::from_str(text)
        .map_err(|e| format!("header is not valid safetensors JSON: {e}"))?;
    let mut header = Header {
        metadata: json.metadata,
        tensors: json.tensors.0,
        data_start,
    };
    header
        .tensors
        .sort_by(|a, b| (a.1.data_offsets, &a.0).cmp(&(b.1.data_offsets, &b.0)));
    let data_len = file_len - data_start;
    let mut end = 0usize;
    for (name, info) in &header.tensors {
        let (start, stop) = info.data_offsets;
        if start != end || stop < start {
            return Err(format!(
                "tensor {name:?} has data_offsets [{start}, {stop}], but the data before it ends at {end} (offsets overlap, leave a gap or are reversed)"
            ));
        }
        let size = info
            .shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .and_then(|n| byte_len(info.dtype, n));
        let Some(size) = size else {
            return Err(format!(
                "tensor {name:?} of shape {:?} and dtype {:?} does not take a whole number of bytes (or its size overflows)",
                info.shape, info.dtype
            ));
        };
        if stop - start != size {
            return Err(format!(
                "tensor {name:?} of shape {:?} and dtype {:?} takes {size} bytes, but its data_offsets [{start}, {stop}] hold {}",
                info.shape,
                info.dtype,
                stop - start
            ));
        }
        if stop > data_len {
            return Err(format!(
                "tensor {name:?} ends at data byte {stop}, past the end of the file ({data_len} data bytes; truncated?)"
            ));
        }
        end = stop;
    }
    if end != data_len {
        return Err(format!(
            "{} bytes of trailing data after the last tensor (the data ends at {end} of {data_len} data bytes)",
            data_len - end
        ));
    }
    Ok(header)
}

/// A contiguous byte range of one mapped file.
#[derive(Clone)]
pub(crate) struct Segment {
    pub(crate) file: Arc<SafetensorsFile>,
    pub(crate) bytes: Range<usize>,
}

impl Segment {
    pub(crate) fn slice(&self) -> &[u8] {
        &self.file.map[self.bytes.clone()]
    }
}

/// A logical tensor: one safetensors tensor, or the `/part_<k>` tensors of one concatenated
/// along axis 0. Holds its bytes as segments of mapped files; nothing is copied.
#[derive(Clone)]
pub struct TensorData {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    segments: Vec<Segment>,
}

impl std::fmt::Debug for TensorData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorData")
            .field("name", &self.name)
            .field("dtype", &self.dtype)
            .field("shape", &self.shape)
            .field("segments", &self.segments.len())
            .finish()
    }
}

impl TensorData {
    /// The logical name (without `/part_<k>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The element type.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// The full shape (partitions concatenated).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Total bytes.
    pub fn byte_len(&self) -> usize {
        self.segments.iter().map(|s| s.bytes.len()).sum()
    }

    /// The bytes in `range` (relative to the tensor's start) as contiguous pieces, in order.
    pub fn pieces(&self, range: Range<usize>) -> impl Iterator<Item = &[u8]> {
        let mut start = 0usize;
        self.segments.iter().filter_map(move |s| {
            let seg = start..start + s.bytes.len();
            start = seg.end;
            let lo = range.start.max(seg.start);
            let hi = range.end.min(seg.end);
            (lo < hi).then(|| &s.slice()[lo - seg.start..hi - seg.start])
        })
    }

    /// Whether most of the tensor's bytes are in the page cache (see
    /// `MappedFile::mostly_resident`).
    pub(crate) fn mostly_resident(&self) -> bool {
        self.segments
            .iter()
            .all(|s| s.file.map.mostly_resident(s.bytes.clone()))
    }

    /// Reads the tensor's bytes into the page cache ahead of use (see `MappedFile::prefetch`).
    pub(crate) fn prefetch(&self) {
        for s in &self.segments {
            s.file.map.prefetch(s.bytes.clone());
        }
    }

    /// Reads the tensor ahead ([`TensorData::prefetch`]) if most of it is not in the page
    /// cache and it fits `budget` bytes of memory: a table read where its rows lie would
    /// otherwise come from disk a few pages at a time, in the order of the rows. Whether it
    /// did.
    pub(crate) fn read_ahead_if_cold(&self, budget: u64) -> bool {
        let cold = self.byte_len() as u64 <= budget && !self.mostly_resident();
        if cold {
            self.prefetch();
        }
        cold
    }

    /// Drops this process's page mappings of the tensor's bytes (see `MappedFile::release`):
    /// called once the tensor has been read for the last time, so that unmapping it overlaps
    /// the output's last writes. The bytes are unchanged.
    pub(crate) fn release_pages(&self) {
        for s in &self.segments {
            s.file.map.release(s.bytes.clone());
        }
    }

    /// Where the tensor's bytes lie: per segment, its file (by identity) and byte range. Views
    /// with the same location read the same pages.
    pub(crate) fn location(&self) -> Vec<(usize, Range<usize>)> {
        self.segments
            .iter()
            .map(|s| (Arc::as_ptr(&s.file) as usize, s.bytes.clone()))
            .collect()
    }

    /// The bytes in `range` (relative to the tensor's start) when they lie in one file, with
    /// that file's whole map.
    pub(crate) fn mapped(&self, range: Range<usize>) -> Option<(&[u8], &[u8])> {
        let mut start = 0usize;
        for s in &self.segments {
            let seg = start..start + s.bytes.len();
            if range.start >= seg.start && range.end <= seg.end {
                let bytes = &s.slice()[range.start - seg.start..range.end - seg.start];
                return Some((bytes, &s.file.map));
            }
            start = seg.end;
        }
        None
    }

    /// A view of this tensor as rows of `row_bytes` bytes each (axis 0 and everything after
    /// it), for row gathers. `None` for sub-byte rows.
    pub(crate) fn rows(&self) -> Option<RowView<'_>> {
        let per_row: usize = self.shape.iter().skip(1).product();
        let row_bytes = byte_len(self.dtype, per_row)?;
        let mut starts = Vec::with_capacity(self.segments.len());
        let mut first_row = 0usize;
        for s in &self.segments {
            starts.push(first_row);
            first_row += s.bytes.len().checked_div(row_bytes).unwrap_or(0);
        }
        Some(RowView {
            data: self,
            row_bytes,
            starts,
        })
    }

    /// `parts` concatenated along axis 0 as tensor `name`; refuses scalars and parts whose
    /// dtype or trailing dimensions differ.
    pub(crate) fn concat(
        name: &str,
        parts: Vec<TensorData>,
    ) -> std::result::Result<TensorData, String> {
        let first = &parts[0];
        if first.shape.is_empty() {
            return Err(format!(
                "{name}/part_0 is a scalar; partitions need a first axis"
            ));
        }
        let mut rows = 0usize;
        let mut segments = Vec::new();
        for (k, p) in parts.iter().enumerate() {
            if p.dtype != first.dtype {
                return Err(format!(
                    "{name}/part_{k} has dtype {:?} but {name}/part_0 has {:?}",
                    p.dtype, first.dtype
                ));
            }
            if p.shape.len() != first.shape.len() || p.shape[1..] != first.shape[1..] {
                return Err(format!(
                    "{name}/part_{k} has shape {:?}, which does not extend {name}/part_0's {:?} along axis 0",
                    p.shape, first.shape
                ));
            }
            rows = rows.checked_add(p.shape[0]).ok_or_else(|| {
                format!(
                    "the partitions of {name} have more rows in all than this machine can count"
                )
            })?;
            segments.extend(p.segments.iter().cloned());
        }
        let mut shape = first.shape.clone();
        shape[0] = rows;
        Ok(TensorData {
            name: name.to_string(),
            dtype: first.dtype,
            shape,
            segments,
        })
    }
}

/// Rows of a [`TensorData`]: row `r` always lies inside one segment, since partitions split
/// a tensor at row boundaries.
pub(crate) struct RowView<'a> {
    data: &'a TensorData,
    pub(crate) row_bytes: usize,
    /// First row of each segment.
    starts: Vec<usize>,
}

impl RowView<'_> {
    /// The segment holding row `r`.
    #[inline]
    fn segment(&self, r: usize) -> usize {
        match self.starts.len() {
            1 => 0,
            _ => self.starts.partition_point(|&start| start <= r) - 1,
        }
    }

    /// The bytes of row `r`.
    #[inline]
    pub(crate) fn row(&self, r: usize) -> &[u8] {
        let s = self.segment(r);
        let at = (r - self.starts[s]) * self.row_bytes;
        &self.data.segments[s].slice()[at..at + self.row_bytes]
    }
}

/// Splits `<name>/part_<k>` into `(name, k)`.
pub(crate) fn split_part(tensor: &str) -> Option<(&str, usize)> {
    let (base, k) = tensor.rsplit_once("/part_")?;
    if base.is_empty() || k.is_empty() || !k.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if k.len() > 1 && k.starts_with('0') {
        return None;
    }
    Some((base, k.parse().ok()?))
}

/// Groups tensor names into logical names: literal tensors, and `<name>/part_<k>` groups.
pub(crate) struct PartIndex {
    /// base name -> k -> literal tensor name
    parts: BTreeMap<String, BTreeMap<usize, String>>,
}

impl PartIndex {
    pub(crate) fn new<'a>(names: impl Iterator<Item = &'a str>) -> Self {
        let mut parts: BTreeMap<String, BTreeMap<usize, String>> = BTreeMap::new();
        for name in names {
            if let Some((base, k)) = split_part(name) {
                parts
                    .entry(base.to_string())
                    .or_default()
                    .insert(k, name.to_string());
            }
        }
        PartIndex { parts }
    }

    /// The literal names of the partitions of `base`, checked to be `part_0..part_{n-1}`.
    pub(crate) fn group(&self, base: &str) -> Option<std::result::Result<Vec<&str>, String>> {
        let group = self.parts.get(base)?;
        for (i, &k) in group.keys().enumerate() {
            if i != k {
                return Some(Err(format!(
                    "partitions of {base:?} are not numbered 0..{}: {base}/part_{i} is missing",
                    group.len()
                )));
            }
        }
        Some(Ok(group.values().map(String::as_str).collect()))
    }

    pub(crate) fn bases(&self) -> impl Iterator<Item = &str> {
        self.parts.keys().map(String::as_str)
    }
}

/// An old checkpoint: one or more safetensors files and their tensors.
pub struct Checkpoint {
    path: PathBuf,
    /// The sharded index, when the checkpoint has one.
    index_file: Option<PathBuf>,
    files: Vec<Arc<SafetensorsFile>>,
    /// literal tensor name -> file index
    index: HashMap<String, usize>,
    parts: PartIndex,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("path", &self.path)
            .field("files", &self.files.len())
            .field("tensors", &self.index.len())
            .finish()
    }
}

/// Name of the sharded index that a checkpoint directory may hold.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

impl Checkpoint {
    /// Opens a checkpoint: a `.safetensors` file, a directory (its
    /// `model.safetensors.index.json` if present, else every `*.safetensors` in it), or the
    /// path of an index JSON. Every file is mapped and validated now; no tensor data is read.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let meta = std::fs::metadata(path).map_err(|e| Error::input(path, e))?;
        let index_file = if meta.is_dir() {
            Some(path.join(INDEX_FILE)).filter(|p| p.is_file())
        } else if path.extension().is_some_and(|e| e == "json") {
            Some(path.to_path_buf())
        } else {
            None
        };
        let (files, index) = if let Some(index_path) = &index_file {
            open_index(index_path)?
        } else if meta.is_dir() {
            open_directory(path)?
        } else {
            let file = SafetensorsFile::open(path)?;
            let index = file.names().map(|n| (n.to_string(), 0)).collect();
            (vec![file], index)
        };
        let parts = PartIndex::new(index.keys().map(String::as_str));
        Ok(Checkpoint {
            path: path.to_path_buf(),
            index_file,
            files,
            index,
            parts,
        })
    }

    /// The path as given to [`Checkpoint::open`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The sharded index (`model.safetensors.index.json`), when the checkpoint has one.
    pub fn index_file(&self) -> Option<&Path> {
        self.index_file.as_deref()
    }

    /// The files of the checkpoint.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|f| f.path())
    }

    /// The logical tensor `name`: the literal tensor if there is one, else the concatenation
    /// of `name/part_0..n`. `Ok(None)` if neither exists; an error if the partitions are
    /// inconsistent (a gap in k, differing dtypes or trailing dimensions).
    pub fn tensor(&self, name: &str) -> Result<Option<TensorData>> {
        if let Some(&f) = self.index.get(name) {
            return Ok(self.files[f].tensor(name));
        }
        let Some(group) = self.parts.group(name) else {
            return Ok(None);
        };
        let bad = |message: String| Error::format(&self.path, message);
        let literal = group.map_err(bad)?;
        let parts = literal
            .iter()
            .map(|n| {
                let f = self.index[*n];
                self.files[f].tensor(n).expect("indexed tensor exists")
            })
            .collect();
        TensorData::concat(name, parts).map(Some).map_err(bad)
    }

    /// Whether `name` is one partition (`<base>/part_<k>`) of a partitioned tensor: TensorFlow
    /// names a partitioned variable in a checkpoint by its full name only.
    pub(crate) fn is_partition(&self, name: &str) -> bool {
        split_part(name).is_some_and(|(base, _)| self.parts.group(base).is_some())
    }

    /// Every logical name: literal tensors and partition groups (for "did you mean" hints).
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.index.keys().map(String::as_str).collect();
        names.extend(self.parts.bases().filter(|b| !self.index.contains_key(*b)));
        names.sort_unstable();
        names
    }
}

/// The files of a checkpoint and, per literal tensor name, the file holding it.
type Opened = (Vec<Arc<SafetensorsFile>>, HashMap<String, usize>);

fn open_directory(dir: &Path) -> Result<Opened> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::input(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        // (not `is_file`: a broken link or a FIFO named *.safetensors is refused when opened,
        // not skipped, since the tensors it should hold would then be missing)
        .filter(|p| !p.is_dir() && p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(Error::format(
            dir,
            format!("checkpoint directory holds no *.safetensors file and no {INDEX_FILE}"),
        ));
    }
    let mut files = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, p) in paths.iter().enumerate() {
        let file = SafetensorsFile::open(p)?;
        for name in file.names() {
            if let Some(&other) = index.get(name) {
                return Err(Error::format(
                    dir,
                    format!(
                        "tensor {name:?} is in both {} and {}",
                        files_path(&files, other, &file).display(),
                        p.display()
                    ),
                ));
            }
            index.insert(name.to_string(), i);
        }
        files.push(file);
    }
    Ok((files, index))
}

fn files_path<'a>(
    files: &'a [Arc<SafetensorsFile>],
    i: usize,
    current: &'a Arc<SafetensorsFile>,
) -> &'a Path {
    files.get(i).unwrap_or(current).path()
}

#[derive(serde::Deserialize)]
struct IndexJson {
    weight_map: BTreeMap<String, String>,
}

fn open_index(index_path: &Path) -> Result<Opened> {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut crate::mmap::open_regular(index_path)?, &mut text)
        .map_err(|e| Error::input(index_path, e))?;
    let parsed: IndexJson = serde_json::from_str(&text)
        .map_err(|e| Error::format(index_path, format!("invalid sharded index: {e}")))?;
    let dir = crate::writer::parent_dir(index_path);
    let root = dir.canonicalize().map_err(|e| Error::input(dir, e))?;
    let mut shard_of: BTreeMap<&str, usize> = BTreeMap::new();
    let mut files = Vec::new();
    let mut index = HashMap::new();
    for (tensor, shard) in &parsed.weight_map {
        let f = match shard_of.get(shard.as_str()) {
            Some(&f) => f,
            None => {
                let path = shard_path(index_path, &root, dir, shard)?;
                files.push(SafetensorsFile::open(&path)?);
                shard_of.insert(shard, files.len() - 1);
                files.len() - 1
            }
        };
        if files[f].tensor(tensor).is_none() {
            return Err(Error::format(
                index_path,
                format!("weight_map puts tensor {tensor:?} in {shard:?}, which has no such tensor"),
            ));
        }
        index.insert(tensor.clone(), f);
    }
    Ok((files, index))
}

/// Resolves a shard named by an index, refusing any path that leaves the index's directory.
fn shard_path(index_path: &Path, root: &Path, dir: &Path, shard: &str) -> Result<PathBuf> {
    if shard.is_empty() {
        return Err(Error::format(index_path, "a shard name is empty"));
    }
    let rel = Path::new(shard);
    // Relative paths only; `..` may appear as long as the path resolves inside (below).
    let plain = rel.components().all(|c| {
        matches!(
            c,
            Component::Normal(_) | Component::CurDir | Component::ParentDir
        )
    });
    let escape = || {
        Error::format(
            index_path,
            format!("shard {shard:?} is outside the checkpoint directory; refusing to follow it"),
        )
    };
    if !plain {
        return Err(escape());
    }
    let path = dir.join(rel);
    let real = path.canonicalize().map_err(|e| Error::input(&path, e))?;
    if !real.starts_with(root) {
        return Err(escape());
    }
    Ok(path)
}

/// Test helper: `data` as tensor `t` (of `dtype` and `shape`), the only tensor of the
/// checkpoint file `file` written in `dir`, opened.
#[cfg(test)]
pub(crate) fn test_tensor(
    dir: &Path,
    file: &str,
    dtype: Dtype,
    shape: Vec<usize>,
    data: &[u8],
) -> TensorData {
    let view = safetensors::tensor::TensorView::new(dtype, shape, data).unwrap();
    let path = dir.join(file);
    std::fs::write(&path, safetensors::serialize([("t", view)], None).unwrap()).unwrap();
    Checkpoint::open(&path)
        .unwrap()
        .tensor("t")
        .unwrap()
        .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names() {
        assert_eq!(split_part("a/b/part_0"), Some(("a/b", 0)));
        assert_eq!(split_part("x/part_12"), Some(("x", 12)));
        assert_eq!(split_part("x/part_"), None);
        assert_eq!(split_part("x/part_01"), None);
        assert_eq!(split_part("/part_1"), None);
        assert_eq!(split_part("x/part_1a"), None);
        assert_eq!(split_part("x_part_1"), None);
    }

    /// `mapped` gives a range that lies in one file's map, with that whole map, and nothing
    /// for a range that crosses two parts.
    #[test]
    fn mapped_ranges_lie_in_one_file() {
        use safetensors::tensor::TensorView;
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..48u8).collect();
        let views = [
            (
                "t/part_0",
                TensorView::new(Dtype::F32, vec![2, 2], &bytes[..16]).unwrap(),
            ),
            (
                "t/part_1",
                TensorView::new(Dtype::F32, vec![4, 2], &bytes[16..]).unwrap(),
            ),
        ];
        let file = safetensors::serialize(views, None).unwrap();
        std::fs::write(dir.path().join("a.safetensors"), &file).unwrap();
        let t = Checkpoint::open(dir.path())
            .unwrap()
            .tensor("t")
            .unwrap()
            .unwrap();
        let (piece, map) = t.mapped(20..28).unwrap();
        assert_eq!(piece, &bytes[20..28]);
        assert_eq!(map, &file[..]);
        let piece_at = piece.as_ptr() as usize - map.as_ptr() as usize;
        assert_eq!(&map[piece_at..piece_at + 8], &bytes[20..28]);
        assert_eq!(t.mapped(0..16).unwrap().0, &bytes[..16]);
        assert!(t.mapped(12..20).is_none());
    }
}
