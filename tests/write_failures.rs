//! Failures while the output is being written, on both engines: the output's file system
//! refuses bytes part-way through (a file-size limit, as a full disk or a quota would), or the
//! run is killed mid-write. Either way an existing output must be left byte for byte as it
//! was and nothing else left behind. A refused write must end in a message naming the output,
//! exit code 1 (a failure, not a refusal of the input), and a report that says so.
//!
//! The limit is `RLIMIT_FSIZE`, set in the child before it runs the CLI: a write past it fails
//! with `EFBIG` when `SIGXFSZ` is ignored, and kills the process with `SIGXFSZ` otherwise.
//!
//! And the report: a FIFO that nobody reads fails the run's end (exit 1; a refused run keeps
//! its 2) instead of blocking it forever; one with a reader gets the report.

#![cfg(target_os = "linux")]

mod common;

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{diff, mkfifo, snapshot, Node};

/// Far below the bundled example's output (about 360 KB), above its header: the limit is
/// crossed part-way through the tensors.
const LIMIT: u64 = 64 << 10;

/// `warmstart run` on the bundled example on `backend`, quiet, its output `warm.safetensors`
/// in `dir`.
fn example(dir: &Path, backend: &str) -> Command {
    let plan = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/recommender/plan.toml");
    let mut command = Command::new(env!("CARGO_BIN_EXE_warmstart"));
    command
        .arg("run")
        .arg(plan)
        .args(["--quiet", "--backend", backend, "--output"])
        .arg(dir.join("warm.safetensors"));
    command
}

/// Runs [`example`] with its file size limited to [`LIMIT`] (the report's too); `SIGXFSZ` is
/// ignored unless `killed`.
fn run_limited(dir: &Path, backend: &str, killed: bool, report: Option<&Path>) -> Output {
    let mut command = example(dir, backend);
    if let Some(report) = report {
        command.arg("--report").arg(report);
    }
    // SAFETY: between fork and exec the closure calls only setrlimit and signal, which are
    // async-signal-safe, and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: LIMIT,
                rlim_max: LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if !killed {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            }
            Ok(())
        });
    }
    command.output().expect("the warmstart binary runs")
}

/// A directory holding the output of an earlier run.
fn output_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("warm.safetensors"),
        b"an earlier run's output",
    )
    .unwrap();
    dir
}

/// Whether `backend` could start; `gpu` must when `WARMSTART_REQUIRE_GPU=1` (as in CI).
fn started(backend: &str, output: &Output) -> bool {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let no_adapter = backend == "gpu" && output.status.code() == Some(1) && stderr.contains("GPU:");
    if no_adapter {
        let require = std::env::var("WARMSTART_REQUIRE_GPU").is_ok_and(|v| v == "1");
        assert!(!require, "no GPU adapter: {stderr}");
        eprintln!("no GPU adapter here: skipped (set WARMSTART_REQUIRE_GPU=1 to make this fail)");
    }
    !no_adapter
}

fn a_refused_write_fails_cleanly(backend: &str) {
    let dir = output_dir();
    let before = snapshot(dir.path());
    // elsewhere, so that the output's directory can be compared whole
    let reports = tempfile::tempdir().unwrap();
    let report = reports.path().join("report.json");
    let output = run_limited(dir.path(), backend, false, Some(&report));
    if !started(backend, &output) {
        return;
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{backend}: {stderr}");
    assert!(!stderr.contains("panicked"), "{backend}: {stderr}");
    let target = dir.path().join("warm.safetensors");
    let message = format!("error: cannot write {}: File too large", target.display());
    assert!(stderr.contains(&message), "{backend}: {stderr}");
    let changes = diff(&before, &snapshot(dir.path()));
    assert!(changes.is_empty(), "{backend}: {changes:?}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let outcome = &report["outcome"];
    assert_eq!(outcome["status"], "failed", "{report}");
    assert_eq!(outcome["exit_code"], 1, "{report}");
    let error = outcome["error"].as_str().unwrap_or_default();
    assert!(error.contains("File too large"), "{report}");
}

#[test]
fn a_refused_write_fails_cleanly_on_the_cpu_engine() {
    a_refused_write_fails_cleanly("cpu");
}

#[test]
fn a_refused_write_fails_cleanly_on_the_gpu_engine() {
    a_refused_write_fails_cleanly("gpu");
}

/// Whether files in `dir` can be created unnamed (`O_TMPFILE`), which the writer needs to
/// leave nothing behind when killed; elsewhere it leaves its named temporary file.
fn unnamed_files_in(dir: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .open(dir)
        .is_ok()
}

fn a_killed_run_leaves_nothing_behind(backend: &str) {
    let dir = output_dir();
    let before = snapshot(dir.path());
    let output = run_limited(dir.path(), backend, true, None);
    if !started(backend, &output) {
        return;
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGXFSZ),
        "{backend}: {:?} {stderr}",
        output.status
    );
    let after = snapshot(dir.path());
    let changes = diff(&before, &after);
    if unnamed_files_in(dir.path()) {
        assert!(changes.is_empty(), "{backend}: {changes:?}");
    } else {
        // Only the named temporary file, which a killed process cannot delete.
        eprintln!("NOTICE: no unnamed files here; a killed run leaves its temporary file");
        let created: Vec<_> = after
            .iter()
            .filter(|(p, _)| !before.contains_key(*p))
            .collect();
        assert_eq!(changes.len(), 1, "{backend}: {changes:?}");
        let (name, node) = created[0];
        let name = name.to_string_lossy();
        assert!(name.starts_with(".warmstart-"), "{backend}: {name}");
        assert!(matches!(node, Node::File(_)), "{backend}: {name}");
    }
}

#[test]
fn a_killed_run_leaves_nothing_behind_on_the_cpu_engine() {
    a_killed_run_leaves_nothing_behind("cpu");
}

#[test]
fn a_killed_run_leaves_nothing_behind_on_the_gpu_engine() {
    a_killed_run_leaves_nothing_behind("gpu");
}

#[test]
fn a_report_fifo_without_a_reader_fails_instead_of_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("report.fifo");
    mkfifo(&fifo);
    let mut child = example(dir.path(), "cpu")
        .arg("--report")
        .arg(&fifo)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("the run blocked on a report FIFO without a reader");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    let message = format!("cannot write report {}: ", fifo.display());
    assert!(stderr.contains(&message), "{stderr}");
    assert!(stderr.contains("no process is reading"), "{stderr}");
    // the run itself was done: its output is in place
    let output = std::fs::read(dir.path().join("warm.safetensors")).unwrap();
    assert!(safetensors::SafeTensors::deserialize(&output).is_ok());
}

#[test]
fn a_refused_run_keeps_its_exit_code_when_its_report_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("report.fifo");
    mkfifo(&fifo);
    let output = Command::new(env!("CARGO_BIN_EXE_warmstart"))
        .arg("run")
        .arg(dir.path().join("missing-plan.toml"))
        .arg("--report")
        .arg(&fifo)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("missing-plan.toml"), "{stderr}");
    assert!(stderr.contains("no process is reading"), "{stderr}");
}

/// A socket opened by path also gives `ENXIO`; the message is then the system's, not the
/// FIFO's.
#[test]
fn a_report_to_a_socket_keeps_the_system_message() {
    let dir = tempfile::tempdir().unwrap();
    let (stdout, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
    let output = example(dir.path(), "cpu")
        .args(["--report", "/dev/stdout"])
        .stdout(std::os::fd::OwnedFd::from(stdout))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot write report /dev/stdout"),
        "{stderr}"
    );
    assert!(!stderr.contains("FIFO"), "{stderr}");
}

#[test]
fn a_report_fifo_with_a_reader_gets_the_report() {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("report.fifo");
    mkfifo(&fifo);
    // The reader is there before the run ends (the report fits in the pipe's buffer).
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let output = example(dir.path(), "cpu")
        .arg("--report")
        .arg(&fifo)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut reader, &mut text).unwrap();
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["outcome"]["status"], "ok", "{report}");
}
