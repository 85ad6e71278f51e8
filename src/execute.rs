//! Executing a plan: file to file (the CLI's job), or into host memory (for embedding).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::checkpoint::TensorData;
use crate::dtype::Dtype;
use crate::engine::{Engine, Sink};
use crate::error::{Error, Result};
use crate::plan::{Job, Plan};
use crate::writer::{header, OutputFile};

/// A warm-started tensor in host memory.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    /// Tensor name (a variable, or a partition `<var>/part_<k>`).
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// Little-endian bytes, row-major.
    pub data: Vec<u8>,
}

/// Largest piece appended at a time, so that progress moves smoothly.
const PIECE: usize = 8 << 20;

/// The output file, reporting the data bytes written after each piece.
struct Progress<'p> {
    out: OutputFile,
    start: u64,
    progress: &'p (dyn Fn(u64) + Sync),
}

impl Sink for Progress<'_> {
    fn append(&mut self, len: usize, fill: &mut dyn FnMut(usize, &mut [u8])) -> Result<()> {
        let mut done = 0;
        while done < len {
            let n = (len - done).min(PIECE);
            self.out.append(n, &mut |at, out| fill(done + at, out))?;
            done += n;
            (self.progress)(self.out.written() - self.start);
        }
        Ok(())
    }
}

/// Counts the bytes appended to a sink, so that a tensor shorter or longer than its header
/// says is caught before the file is committed.
struct Counted<'s> {
    sink: &'s mut dyn Sink,
    bytes: usize,
}

impl Sink for Counted<'_> {
    fn append(&mut self, len: usize, fill: &mut dyn FnMut(usize, &mut [u8])) -> Result<()> {
        self.sink.append(len, fill)?;
        self.bytes += len;
        Ok(())
    }
}

/// Refuses a tensor whose engine produced `got` bytes instead of `want`.
fn check_length(tensor: &str, want: usize, got: usize) -> Result<()> {
    if got == want {
        return Ok(());
    }
    Err(Error::Engine {
        tensor: tensor.to_string(),
        message: format!("the engine produced {got} bytes, the tensor has {want}"),
    })
}

impl Job {
    /// The tensor the job reads, if any.
    fn input(&self) -> Option<&TensorData> {
        match self {
            Job::Keep(data) => data.as_ref(),
            Job::Copy { source, .. } => Some(source),
            Job::Remap(job) => Some(&job.old),
        }
    }
}

impl Plan {
    /// Bytes of tensor data in the output (without the header).
    pub fn data_bytes(&self) -> u64 {
        self.tensors().iter().map(|t| t.byte_len() as u64).sum()
    }

    /// Asks `engine` whether it can compute every remap job of the plan
    /// ([`Engine::check`]): the GPU engine refuses rows wider than one storage binding of its
    /// device. Writing a plan checks this before the first byte; the CLI's dry run too.
    pub fn check_engine(&self, engine: &dyn Engine) -> Result<()> {
        self.tensors().iter().try_for_each(|t| match &t.job {
            Job::Remap(job) => engine.check(job),
            _ => Ok(()),
        })
    }

    /// Refuses an output path that is one of the inputs or lies in a missing directory, and a
    /// plan that cannot be written whole (a model declared in code has no initial values).
    pub fn check_output(&self, path: &Path) -> Result<()> {
        let bad = |what: &str| Error::setting("output", format!("{} {what}", path.display()));
        if crate::writer::names_directory(path) {
            return Err(bad(
                "names a directory (it ends with '/', '.' or '..'): name a file",
            ));
        }
        let Some(target) = crate::writer::resolve_target(path) else {
            return Err(bad(
                "cannot be written: its directory does not exist or is not a directory",
            ));
        };
        if target.is_dir() {
            return Err(bad("is a directory"));
        }
        // A FIFO or a device would be replaced by a regular file. (A symbolic link is itself
        // replaced, whatever it points to: the new file is made beside the link, in the
        // link's directory.)
        let link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        if !link && target.exists() && !target.is_file() {
            return Err(bad("exists and is not a regular file"));
        }
        if let Err(e) = crate::writer::check_creatable(path) {
            return Err(bad(&format!("cannot be written in its directory: {e}")));
        }
        for (input, role) in self.inputs() {
            if input.canonicalize().is_ok_and(|i| i == target) {
                return Err(Error::OutputIsInput {
                    path: path.to_path_buf(),
                    role: role.to_string(),
                });
            }
        }
        if let Some(t) = self
            .tensors()
            .iter()
            .find(|t| matches!(t.job, Job::Keep(None)))
        {
            return Err(Error::setting(
                "output",
                format!("tensor {:?} has no initial value (the model was declared in code); write the warm-started tensors with Plan::to_host instead", t.name),
            ));
        }
        Ok(())
    }

    /// Writes the whole output file: every tensor of the model, warm-started where planned.
    /// The file appears at `path` only once complete and flushed; on any error nothing is
    /// left behind and an existing file at `path` is untouched.
    pub fn write_file(&self, engine: &mut dyn Engine, path: &Path) -> Result<()> {
        self.write_file_with_progress(engine, path, &|_| {})
    }

    /// [`Plan::write_file`], calling `progress` with the number of data bytes written so far.
    pub fn write_file_with_progress(
        &self,
        engine: &mut dyn Engine,
        path: &Path,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<()> {
        self.check_output(path)?;
        self.check_engine(engine)?;
        let layout: Vec<(&str, Dtype, &[usize], usize)> = self
            .tensors()
            .iter()
            .map(|t| (t.name.as_str(), t.dtype, t.shape.as_slice(), t.byte_len()))
            .collect();
        let head = header(&layout, &self.output_metadata());
        let mut out = OutputFile::create(path)?;
        out.write(&head)?;
        let mut sink = Progress {
            out,
            start: head.len() as u64,
            progress,
        };
        // Each input's pages are released after the last tensor that reads it, on a thread of
        // their own: unmapping a table of 1 GB takes tens of ms, which then overlaps the
        // writes still in flight and the final flush instead of holding back the last block.
        // The thread ends once the sender is dropped, when the closure returns.
        std::thread::scope(|scope| {
            let (release, to_release) = std::sync::mpsc::channel::<&TensorData>();
            scope.spawn(move || to_release.into_iter().for_each(TensorData::release_pages));
            self.write_tensors(engine, &mut sink, &mut |data| {
                let _ = release.send(data);
            })?;
            sink.out.commit()
        })
    }

    /// Writes every tensor's bytes to `sink` in order, handing each input to `release` after
    /// the last tensor that reads it (partitions of one variable read the same old table).
    fn write_tensors<'a>(
        &'a self,
        engine: &mut dyn Engine,
        sink: &mut dyn Sink,
        release: &mut dyn FnMut(&'a TensorData),
    ) -> Result<()> {
        let mut last_reader = HashMap::new();
        for (i, t) in self.tensors().iter().enumerate() {
            if let Some(data) = t.job.input() {
                last_reader.insert(data.location(), i);
            }
        }
        for (i, t) in self.tensors().iter().enumerate() {
            match &t.job {
                Job::Keep(Some(data)) => {
                    for piece in data.pieces(0..data.byte_len()) {
                        sink.write(piece)?;
                    }
                }
                Job::Keep(None) => unreachable!("refused by check_output"),
                Job::Copy { source, bytes } => {
                    for piece in source.pieces(bytes.clone()) {
                        sink.write(piece)?;
                    }
                }
                Job::Remap(job) => {
                    let mut counted = Counted { sink, bytes: 0 };
                    engine.remap(job, &mut counted)?;
                    check_length(&t.name, t.byte_len(), counted.bytes)?;
                }
            }
            if let Some(data) = t.job.input() {
                if last_reader.get(&data.location()) == Some(&i) {
                    release(data);
                }
            }
        }
        Ok(())
    }

    /// Computes the warm-started tensors (copied or remapped) into host memory; tensors the
    /// plan keeps are not returned (the caller already holds their initial values).
    pub fn to_host(&self, engine: &mut dyn Engine) -> Result<Vec<HostTensor>> {
        self.check_engine(engine)?;
        let mut out = Vec::new();
        for t in self.tensors().iter().filter(|t| t.is_warm_started()) {
            let mut data = Vec::with_capacity(t.byte_len());
            match &t.job {
                Job::Keep(_) => unreachable!("filtered"),
                Job::Copy { source, bytes } => {
                    for piece in source.pieces(bytes.clone()) {
                        data.extend_from_slice(piece);
                    }
                }
                Job::Remap(job) => {
                    engine.remap(job, &mut data)?;
                    check_length(&t.name, t.byte_len(), data.len())?;
                }
            }
            out.push(HostTensor {
                name: t.name.clone(),
                dtype: t.dtype,
                shape: t.shape.clone(),
                data,
            });
        }
        Ok(out)
    }
}

/// Resolves `path` against `base` unless it is absolute.
pub(crate) fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::error::GpuFailure;
    use crate::mmap::tests::mapped_rss;
    use crate::plan::RemapJob;
    use crate::{CpuEngine, Model, Variable, VocabInfo, WarmStartSettings};

    const ROWS: usize = 4096;
    const COLS: usize = 256;

    /// A plan that reverses the rows of a 4096 x 256 f32 table, written as two partitions
    /// that each read half of the old table; with the old table's bytes.
    fn two_partition_plan(dir: &Path) -> (Plan, Vec<u8>) {
        let (rows, cols) = (ROWS, COLS);
        let table: Vec<u8> = (0..rows * cols)
            .flat_map(|i| (i as f32).to_le_bytes())
            .collect();
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![rows, cols], &table)
                .unwrap();
        let ckpt = dir.join("old.safetensors");
        safetensors::serialize_to_file([("emb", view)], None, &ckpt).unwrap();
        let tokens = |order: &mut dyn Iterator<Item = usize>| {
            order.map(|i| format!("t{i}\n")).collect::<String>()
        };
        std::fs::write(dir.join("old.txt"), tokens(&mut (0..rows))).unwrap();
        std::fs::write(dir.join("new.txt"), tokens(&mut (0..rows).rev())).unwrap();
        let var = Variable::partitioned("emb", Dtype::F32, vec![rows, cols], &[rows / 2, rows / 2]);
        let model = Model::new(vec![var]).unwrap();
        let info = VocabInfo::new(dir.join("new.txt"), rows as i64, 0, dir.join("old.txt"));
        let settings = WarmStartSettings::new(&ckpt).vocab_info("emb", info);
        (Plan::new(&settings, &model).unwrap(), table)
    }

    /// The old table's pages are released once the last partition that reads it has been
    /// written (they would stay mapped until exit otherwise), not before.
    #[test]
    fn write_file_releases_the_old_table_after_its_last_reader() {
        let (rows, cols) = (ROWS, COLS);
        let dir = tempfile::tempdir().unwrap();
        let (plan, table) = two_partition_plan(dir.path());
        let Job::Remap(job) = &plan.tensors()[0].job else {
            panic!("a remap was planned");
        };
        let old = job.old.mapped(0..job.old.byte_len()).unwrap().0.as_ptr();

        /// The CPU engine, noting how much of the old table is mapped as each job starts.
        struct Watch(CpuEngine, *const u8, Vec<usize>);
        impl Engine for Watch {
            fn name(&self) -> String {
                self.0.name()
            }
            fn remap(&mut self, job: &RemapJob, sink: &mut dyn crate::engine::Sink) -> Result<()> {
                self.2.push(mapped_rss(self.1));
                self.0.remap(job, sink)
            }
        }
        let mut engine = Watch(CpuEngine::new(), old, Vec::new());
        let out = dir.path().join("out.safetensors");
        plan.write_file(&mut engine, &out).unwrap();
        assert_eq!(engine.2.len(), 2);
        assert!(
            engine.2[1] >= 1 << 20,
            "the old table was released before its second reader"
        );
        let rss = mapped_rss(old);
        assert!(rss < 1 << 20, "{rss} bytes of the old table still mapped");
        // and the output is right: the rows reversed
        let bytes = std::fs::read(&out).unwrap();
        let written = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let last = &table[(rows - 1) * cols * 4..];
        assert_eq!(
            &written.tensor("emb/part_0").unwrap().data()[..cols * 4],
            last
        );
    }

    /// An engine that fails on the second partition: the error comes back (the thread that
    /// releases pages does not keep `write_file` waiting), nothing appears at the output path
    /// and no temporary file is left.
    #[test]
    fn a_failed_job_leaves_no_output_and_returns() {
        let dir = tempfile::tempdir().unwrap();
        let (plan, _) = two_partition_plan(dir.path());
        struct FailSecond(CpuEngine, usize);
        impl Engine for FailSecond {
            fn name(&self) -> String {
                self.0.name()
            }
            fn remap(&mut self, job: &RemapJob, sink: &mut dyn crate::engine::Sink) -> Result<()> {
                self.1 += 1;
                if self.1 == 2 {
                    return Err(Error::gpu(GpuFailure::Internal, "the second job fails"));
                }
                self.0.remap(job, sink)
            }
        }
        let out = dir.path().join("out.safetensors");
        // On a thread of its own, so that a write_file that never returns fails the test.
        let (done, result) = std::sync::mpsc::channel();
        let target = out.clone();
        std::thread::spawn(move || {
            let written = plan.write_file(&mut FailSecond(CpuEngine::new(), 0), &target);
            let _ = done.send(written);
        });
        let written = result
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("write_file returns");
        assert!(
            matches!(&written, Err(Error::Gpu { message, .. }) if message == "the second job fails"),
            "{written:?}"
        );
        assert!(!out.exists());
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["new.txt", "old.safetensors", "old.txt"]);
    }

    /// Jobs changed by a caller so that they no longer add up are errors on the CPU engine,
    /// not panics (or reads past the old table).
    #[test]
    fn jobs_that_do_not_add_up_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (plan, _) = two_partition_plan(dir.path());
        let Job::Remap(job) = &plan.tensors()[1].job else {
            panic!("a remap was planned");
        };
        let mut past_map = job.clone();
        past_map.rows = ROWS..ROWS + 1;
        let mut past_table = job.clone();
        let mut map: Vec<u32> = (0..ROWS as u32).collect();
        map[ROWS - 1] = ROWS as u32;
        past_table.row_map = Some(map.into());
        let mut cols = job.clone();
        cols.old_cols = COLS - 1;
        let mut wider = job.clone();
        wider.cols = COLS + 1;
        let mut dtype = job.clone();
        dtype.dtype = crate::dtype::FloatType::F16;
        let mut col_map = job.clone();
        col_map.col_map = Some(vec![0; COLS - 1].into());
        let mut backwards = job.clone();
        #[allow(clippy::reversed_empty_ranges)] // what a caller might build by mistake
        {
            backwards.rows = ROWS..ROWS / 2;
        }
        for (bad, what) in [
            (past_map, "row map has 4096 entries for rows up to 4097"),
            (
                past_table,
                "row map names row 4096 of an old table of 4096 rows",
            ),
            (backwards, "rows 4096..2048 run backwards"),
            (cols, "is not a table of 255 columns"),
            (wider, "257 columns without a column map"),
            (dtype, "has dtype F32, the job F16"),
            (col_map, "column map has 255 entries for 256 columns"),
        ] {
            let mut sink = Vec::new();
            match CpuEngine::new().remap(&bad, &mut sink) {
                Err(e @ Error::Variable { .. }) => assert!(e.to_string().contains(what), "{e}"),
                other => panic!("{what}: {other:?}"),
            }
            assert!(sink.is_empty());
        }
        // Only the entries of the job's own rows are checked: the other partition's (here a
        // bad one) are not its business, and each partition's check stays proportional to
        // its rows.
        let mut other_rows = job.clone();
        let mut map: Vec<u32> = (0..ROWS as u32).rev().collect();
        map[0] = ROWS as u32;
        other_rows.row_map = Some(map.into());
        let mut sink = Vec::new();
        CpuEngine::new().remap(&other_rows, &mut sink).unwrap();
        assert_eq!(sink.len(), ROWS / 2 * COLS * 4);
    }

    /// An engine of the caller's that produces a byte too few, or too many, for a tensor: an
    /// error naming the tensor, no output (the header would promise bytes the file lacks),
    /// and `to_host` refuses it too.
    #[test]
    fn a_tensor_of_the_wrong_length_is_an_error() {
        struct Off(CpuEngine, isize);
        impl Engine for Off {
            fn name(&self) -> String {
                self.0.name()
            }
            fn remap(&mut self, job: &RemapJob, sink: &mut dyn crate::engine::Sink) -> Result<()> {
                let mut bytes = Vec::new();
                self.0.remap(job, &mut bytes)?;
                bytes.resize((bytes.len() as isize + self.1) as usize, 0);
                sink.write(&bytes)
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let (plan, _) = two_partition_plan(dir.path());
        let out = dir.path().join("out.safetensors");
        for off in [-1, 1] {
            let err = plan.write_file(&mut Off(CpuEngine::new(), off), &out);
            assert!(
                matches!(&err, Err(Error::Engine { tensor, .. }) if tensor == "emb/part_0"),
                "{err:?}"
            );
            assert!(!out.exists());
            let err = plan.to_host(&mut Off(CpuEngine::new(), off));
            assert!(matches!(err, Err(Error::Engine { .. })), "{err:?}");
        }
        plan.write_file(&mut Off(CpuEngine::new(), 0), &out)
            .unwrap();
    }
}
