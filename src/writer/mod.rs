//! Streaming safetensors output: the header is computed from the plan first, then tensor
//! bytes are produced in order into the staging buffers of a temporary file in the output's
//! directory (`staged.rs`: direct I/O on Linux, written by a background thread), which is
//! flushed to disk and renamed into place only after everything succeeded.

mod staged;
mod temp;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::dtype::Dtype;
use crate::engine::Sink;
use crate::error::{Error, Result};

/// The safetensors header for tensors `(name, dtype, shape, bytes)` laid out in order: the
/// 8-byte little-endian length, then the JSON (with `__metadata__` first), padded with spaces
/// to a multiple of 8 so that every tensor starts 8-aligned relative to the data.
pub fn header(
    tensors: &[(&str, Dtype, &[usize], usize)],
    metadata: &BTreeMap<String, String>,
) -> Vec<u8> {
    let mut json = String::from("{");
    if !metadata.is_empty() {
        json += "\"__metadata__\":";
        json += &serde_json::to_string(metadata).expect("string map serializes");
    }
    let mut offset = 0usize;
    for (i, (name, dtype, shape, bytes)) in tensors.iter().enumerate() {
        if i > 0 || !metadata.is_empty() {
            json.push(',');
        }
        let name = serde_json::to_string(name).expect("string serializes");
        let dtype = serde_json::to_string(dtype).expect("dtype serializes");
        let shape = serde_json::to_string(shape).expect("shape serializes");
        let _ = write!(
            json,
            "{name}:{{\"dtype\":{dtype},\"shape\":{shape},\"data_offsets\":[{offset},{}]}}",
            offset + bytes
        );
        offset += bytes;
    }
    json.push('}');
    while (json.len() + 8) % 8 != 0 {
        json.push(' ');
    }
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(json.as_bytes());
    out
}

/// Where a write to `path` lands: the file itself if it exists (links followed), else its
/// canonical directory joined with its name. `None` if that directory does not exist or is
/// not a directory, or `path` names no file (`..`).
pub fn resolve_target(path: &Path) -> Option<PathBuf> {
    if let Ok(p) = path.canonicalize() {
        return Some(p);
    }
    let dir = parent_dir(path)
        .canonicalize()
        .ok()
        .filter(|d| d.is_dir())?;
    Some(dir.join(path.file_name()?))
}

/// Whether a file can be created beside `path` (the temporary file of an output, made in
/// `path`'s own directory, that of a symbolic link too): the directory is writable by this
/// process, so that a read-only one is refused while planning rather than after it. On Linux
/// `access(2)`, which also sees read-only mounts and immutable directories (that even root
/// cannot write), and `statfs(2)`, for kernel filesystems that take no files (`/proc`,
/// `/sys`); elsewhere not checked (a directory's read-only flag means other things on
/// other systems), and found out when writing begins.
pub fn check_creatable(path: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let dir = parent_dir(path);
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "a NUL byte"))?;
        // SAFETY: `c` is a NUL-terminated path that `access` only reads.
        if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // Kernel filesystems pass `access` but take no new files.
        // SAFETY: `statfs` is plain data, for which all zeros is a value.
        let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c` is a NUL-terminated path; `statfs` writes one struct through `fs`.
        if unsafe { libc::statfs(c.as_ptr(), &mut fs) } == 0 {
            const PSEUDO: [(i64, &str); 4] = [
                (0x9fa0, "proc"),
                (0x6265_6572, "sysfs"),
                (0x6367_7270, "cgroup2"),
                (0x6462_6720, "debugfs"),
            ];
            if let Some((_, name)) = PSEUDO.iter().find(|(magic, _)| *magic == fs.f_type as i64) {
                return Err(std::io::Error::other(format!(
                    "a {name} filesystem, which takes no new files"
                )));
            }
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        Ok(())
    }
}

/// Whether `path` can only name a directory: it ends with a `/`, or its last component is
/// `.` or `..` (which [`Path`]'s components, and so [`Path::file_name`], would drop or hide).
pub fn names_directory(path: &Path) -> bool {
    let bytes = path.as_os_str().as_encoded_bytes();
    let last = bytes.rsplit(|&b| b == b'/').next().unwrap_or(bytes);
    bytes.last() == Some(&b'/') || last == b"." || last == b".."
}

/// Writes `bytes` to `path` the way the output is written: into a temporary file in `path`'s
/// directory (unnamed where the system allows), flushed, then renamed into place. A reader
/// never sees a partial file, a failure leaves `path` as it was, and whatever `path` named
/// before (a file that other names also link to, the target of a symbolic link) is not
/// written to: the name is given to the new file. For small files (the CLI's report).
pub fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = temp_file_for(path, true)?;
    let mut file = tmp.file();
    file.write_all(bytes)?;
    file.sync_all()?;
    tmp.persist(path)
}

/// A temporary file in `path`'s directory, with the permissions of the file at `path` when
/// it replaces one, else those a new file gets (0o666 less the umask); not a temporary
/// file's usual owner-only 0o600.
fn temp_file_for(path: &Path, unnamed: bool) -> std::io::Result<temp::TempFile> {
    let tmp = temp::TempFile::create(parent_dir(path), unnamed)?;
    if let Ok(existing) = std::fs::metadata(path) {
        tmp.file().set_permissions(existing.permissions())?;
    }
    Ok(tmp)
}

/// The directory `path` is in (`.` for a bare file name, whose parent is "").
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// An output being written: a temporary file beside the target (unnamed where the system
/// allows, see `temp.rs`), renamed into place by [`OutputFile::commit`]. Dropped without
/// commit, it is deleted and the target untouched; a process killed before the commit leaves
/// nothing behind where the file is unnamed. Bytes are appended through [`Sink`].
pub struct OutputFile {
    // Dropped first: its thread stops before the temporary file is deleted.
    writer: staged::StagedWriter,
    tmp: temp::TempFile,
    path: PathBuf,
    written: u64,
}

impl OutputFile {
    /// Creates the temporary file in `path`'s directory.
    pub fn create(path: &Path) -> Result<Self> {
        Self::create_with(path, true, true)
    }

    /// [`OutputFile::create`], with direct I/O (where available) or through the page cache,
    /// and with an unnamed temporary file (where available) or a named one.
    fn create_with(path: &Path, direct: bool, unnamed: bool) -> Result<Self> {
        // Errors name the output, not its temporary file: that is the file the user asked for.
        let tmp = temp_file_for(path, unnamed).map_err(|e| Error::output(path, e))?;
        let writer =
            staged::StagedWriter::start(tmp.file(), direct).map_err(|e| Error::output(path, e))?;
        Ok(OutputFile {
            writer,
            tmp,
            path: path.to_path_buf(),
            written: 0,
        })
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Flushes the file to disk and renames it to the target path.
    pub fn commit(self) -> Result<()> {
        let OutputFile {
            tmp, path, writer, ..
        } = self;
        let len = writer.finish().map_err(|e| Error::output(&path, e))?;
        // The last block was padded to the direct-I/O alignment.
        tmp.file()
            .set_len(len)
            .map_err(|e| Error::output(&path, e))?;
        tmp.file().sync_all().map_err(|e| Error::output(&path, e))?;
        tmp.persist(&path).map_err(|e| Error::output(&path, e))?;
        // Make the rename durable; not every platform can open a directory.
        if let Ok(d) = std::fs::File::open(parent_dir(&path)) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Sink for OutputFile {
    fn append(&mut self, len: usize, fill: &mut dyn FnMut(usize, &mut [u8])) -> Result<()> {
        self.writer
            .append(len, fill)
            .map_err(|e| Error::output(&self.path, e))?;
        self.written += len as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_valid_safetensors() {
        let mut meta = BTreeMap::new();
        meta.insert("k".to_string(), "v \"quoted\"".to_string());
        let tensors: [(&str, Dtype, &[usize], usize); 2] = [
            ("a/b", Dtype::F32, &[2, 3], 24),
            ("é", Dtype::BF16, &[3], 6),
        ];
        let mut file = header(&tensors, &meta);
        assert_eq!(file.len() % 8, 0);
        file.extend((0..30u8).collect::<Vec<_>>());
        let st = safetensors::SafeTensors::deserialize(&file).unwrap();
        assert_eq!(st.tensor("a/b").unwrap().shape(), &[2, 3]);
        assert_eq!(
            st.tensor("é").unwrap().data(),
            &(24..30u8).collect::<Vec<_>>()[..]
        );
        let (_, m) = safetensors::SafeTensors::read_metadata(&file).unwrap();
        assert_eq!(m.metadata().as_ref().unwrap()["k"], "v \"quoted\"");
    }

    /// A run that reaches neither the commit nor the drop (a killed process) leaves nothing in
    /// the directory: the temporary file has no name until the commit.
    #[cfg(target_os = "linux")]
    #[test]
    fn an_abandoned_output_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = OutputFile::create(&dir.path().join("out")).unwrap();
        out.write(&[7u8; 10_000]).unwrap();
        // (leaks the file and the writer's thread: no cleanup runs, as in a killed process)
        std::mem::forget(out);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn both_modes_write_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        // Longer than a staging buffer and not a multiple of the direct-I/O alignment.
        let data: Vec<u8> = (0..(40 << 20) + 4097u32)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        for (direct, unnamed) in [(true, true), (false, true), (true, false), (false, false)] {
            let target = dir.path().join(format!("out-{direct}-{unnamed}"));
            let mut out = OutputFile::create_with(&target, direct, unnamed).unwrap();
            out.write(&data[..5]).unwrap();
            out.write(&data[5..1000]).unwrap();
            // Produced in place, in pieces that do not line up with the staging buffers.
            let rest = &data[1000..];
            out.append(rest.len(), &mut |at, piece| {
                piece.copy_from_slice(&rest[at..at + piece.len()])
            })
            .unwrap();
            assert_eq!(out.written(), data.len() as u64);
            out.commit().unwrap();
            assert!(
                std::fs::read(&target).unwrap() == data,
                "direct = {direct}, unnamed = {unnamed}"
            );
        }
    }

    /// A new output gets a new file's permissions (0o666 less the umask), a replaced one
    /// keeps its own.
    #[cfg(target_os = "linux")]
    #[test]
    fn outputs_get_the_usual_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let umask = status
            .lines()
            .find_map(|l| l.strip_prefix("Umask:"))
            .map(|m| u32::from_str_radix(m.trim(), 8).unwrap())
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let target = dir.path().join("new.safetensors");
        OutputFile::create(&target).unwrap().commit().unwrap();
        assert_eq!(mode(&target), 0o666 & !umask);

        let target = dir.path().join("old.safetensors");
        std::fs::write(&target, b"old").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
        OutputFile::create(&target).unwrap().commit().unwrap();
        assert_eq!(mode(&target), 0o640);
    }

    /// An output path that is a symbolic link is replaced by the new file; the file it
    /// pointed to is left as it was.
    #[cfg(unix)]
    #[test]
    fn a_symlinked_output_is_replaced_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let pointed = dir.path().join("v1.safetensors");
        std::fs::write(&pointed, b"v1").unwrap();
        let link = dir.path().join("current.safetensors");
        std::os::unix::fs::symlink(&pointed, &link).unwrap();
        let mut out = OutputFile::create(&link).unwrap();
        out.write(b"v2").unwrap();
        out.commit().unwrap();
        assert_eq!(std::fs::read(&pointed).unwrap(), b"v1");
        assert!(!std::fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(std::fs::read(&link).unwrap(), b"v2");
    }

    #[test]
    fn uncommitted_output_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.safetensors");
        std::fs::write(&target, b"old").unwrap();
        {
            let mut out = OutputFile::create(&target).unwrap();
            out.write(b"partial").unwrap();
        }
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let mut out = OutputFile::create(&target).unwrap();
        out.write(b"new").unwrap();
        out.commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
