//! The output's temporary file. On Linux it is an unnamed file (`O_TMPFILE`) in the target's
//! directory, given a name only when the output is committed: a run that never gets there
//! (killed, out of memory, a machine that loses power) leaves nothing behind, and the kernel
//! frees its blocks. Elsewhere, or where the filesystem has no unnamed files, it is a named
//! `.warmstart-*.tmp` file, deleted when dropped (which a killed process cannot do).

use std::fs::File;
use std::path::{Path, PathBuf};

/// A temporary file beside an output.
pub(super) enum TempFile {
    /// Unnamed, in `dir`, reachable through `/proc/self/fd` until linked.
    #[cfg(target_os = "linux")]
    Unnamed { file: File, dir: PathBuf },
    /// Named, deleted on drop.
    Named(tempfile::NamedTempFile),
}

impl TempFile {
    /// A temporary file in `dir`, unnamed where possible (and `unnamed`), created with the
    /// permissions a new file gets (0o666 less the umask).
    pub(super) fn create(dir: &Path, unnamed: bool) -> std::io::Result<TempFile> {
        #[cfg(target_os = "linux")]
        if unnamed && Path::new("/proc/self/fd").is_dir() {
            use std::os::unix::fs::OpenOptionsExt;
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_TMPFILE)
                .mode(0o666)
                .open(dir);
            match file {
                Ok(file) => {
                    return Ok(TempFile::Unnamed {
                        file,
                        dir: dir.to_path_buf(),
                    })
                }
                // a filesystem without unnamed files (or a kernel before 3.11): a named one
                Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR)) => {}
                Err(e) => return Err(e),
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = unnamed;
        let mut builder = tempfile::Builder::new();
        builder.prefix(".warmstart-").suffix(".tmp");
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
        builder
            .tempfile_in(dir)
            .map(TempFile::Named)
            .map_err(without_path)
    }

    /// The open file.
    pub(super) fn file(&self) -> &File {
        match self {
            #[cfg(target_os = "linux")]
            TempFile::Unnamed { file, .. } => file,
            TempFile::Named(tmp) => tmp.as_file(),
        }
    }

    /// Gives the file the name `target`, replacing what is there (in one rename). An unnamed
    /// file is first linked under a fresh temporary name, then renamed: the name exists only
    /// between the two calls.
    pub(super) fn persist(self, target: &Path) -> std::io::Result<()> {
        match self {
            #[cfg(target_os = "linux")]
            TempFile::Unnamed { file, dir } => {
                let name = match link_unnamed(&file, &dir) {
                    Ok(name) => name,
                    // Linking can fail where creating could not tell (a /proc that does not
                    // allow it): the bytes are copied into a named file rather than lost.
                    Err(e) => return copy_to_named(&file, &dir, target).map_err(|_| e),
                };
                std::fs::rename(&name, target).inspect_err(|_| {
                    let _ = std::fs::remove_file(&name);
                })
            }
            TempFile::Named(tmp) => tmp.persist(target).map(drop).map_err(|e| e.error),
        }
    }
}

/// Copies the unnamed `file` (in-kernel where possible) into a new named temporary file in
/// `dir` with its permissions, flushes it and renames it to `target`.
#[cfg(target_os = "linux")]
fn copy_to_named(file: &File, dir: &Path, target: &Path) -> std::io::Result<()> {
    use std::io::Seek;
    let mut named = TempFile::create(dir, false)?;
    let TempFile::Named(tmp) = &mut named else {
        unreachable!("asked for a named file")
    };
    tmp.as_file()
        .set_permissions(file.metadata()?.permissions())?;
    // (the writer leaves direct I/O on, whose reads need aligned buffers)
    super::staged::set_direct(file, false);
    let mut from = file;
    from.rewind()?;
    std::io::copy(&mut from, tmp.as_file_mut())?;
    tmp.as_file().sync_all()?;
    named.persist(target)
}

/// Links the unnamed `file` into `dir` under a fresh `.warmstart-*.tmp` name, and returns it.
#[cfg(target_os = "linux")]
fn link_unnamed(file: &File, dir: &Path) -> std::io::Result<PathBuf> {
    use std::ffi::CString;
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let cstr = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "a NUL byte"))
    };
    let from = cstr(Path::new(&format!("/proc/self/fd/{}", file.as_raw_fd())))?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    for attempt in 0..100 {
        let name = dir.join(format!(
            ".warmstart-{}-{stamp:x}-{attempt}.tmp",
            std::process::id()
        ));
        let to = cstr(&name)?;
        // SAFETY: two NUL-terminated paths that linkat only reads.
        let linked = unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        };
        if linked == 0 {
            return Ok(name);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(e);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        "no free temporary name",
    ))
}

/// The error without the temporary file's path, which the `tempfile` crate appends to its
/// message (`... at path "DIR/.warmstart-*.tmp"`): errors name the output the user asked
/// for, not a file they never see.
fn without_path(e: std::io::Error) -> std::io::Error {
    let message = e.to_string();
    // (the first occurrence: the operating system's message comes first, then the path)
    match message.find(" at path \"") {
        Some(at) => std::io::Error::new(e.kind(), &message[..at]),
        None => e,
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::io::Write;

    use super::*;

    /// Where the commit cannot link the unnamed file, its bytes are copied into a named file
    /// renamed to the target, with the unnamed file's permissions; nothing else is left.
    #[test]
    fn an_unnamed_file_that_cannot_be_linked_is_copied() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let tmp = TempFile::create(dir.path(), true).unwrap();
        let TempFile::Unnamed { mut file, .. } = tmp else {
            panic!("this file system has no unnamed files");
        };
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        file.write_all(&bytes).unwrap();
        file.set_permissions(std::fs::Permissions::from_mode(0o640))
            .unwrap();
        // as the writer leaves it: direct I/O on (which unaligned reads refuse)
        assert!(super::super::staged::set_direct(&file, true));
        let target = dir.path().join("out");
        copy_to_named(&file, dir.path(), &target).unwrap();
        assert!(std::fs::read(&target).unwrap() == bytes);
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    /// A named temporary file that cannot be created: the operating system's error, without
    /// the temporary name the `tempfile` crate puts in its message.
    #[test]
    fn errors_do_not_name_the_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let Err(e) = TempFile::create(&missing, false) else {
            panic!("created a file in a missing directory");
        };
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        assert!(!e.to_string().contains("warmstart-"), "{e}");
    }
}
