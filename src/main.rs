//! The `warmstart` command line: run a plan file between two training runs.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use warmstart::dtype::FloatType;
use warmstart::engine::gpu::{self, GpuOptions};
use warmstart::{
    CpuEngine, Engine, Error, GpuEngine, GpuFailure, Initializer, Plan, PlanFile, Result,
};

/// A line on standard error. A stderr that cannot be written (closed, a full disk) loses the
/// line but never changes the run's outcome or exit code.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

#[derive(Parser)]
#[command(
    name = "warmstart",
    version,
    about = "Warm-start a new model from an old safetensors checkpoint (TensorFlow's warm_start semantics)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a plan file: select, rename and remap variables, write the warm-started model.
    Run(RunArgs),
}

#[derive(Parser)]
struct RunArgs {
    /// The plan file (TOML).
    plan: PathBuf,
    /// Output path; overrides the plan's `output`.
    #[arg(long)]
    output: Option<PathBuf>,
    /// What computes remapped tables: `auto` picks a hardware GPU when there is one.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    backend: Backend,
    /// Validate everything and print the plan per variable, without writing.
    #[arg(long)]
    dry_run: bool,
    /// Write the plan and the outcome as JSON to this path.
    #[arg(long)]
    report: Option<PathBuf>,
    /// No progress bar, no summary, no notices (errors are still printed).
    #[arg(long, short)]
    quiet: bool,
    /// GPU engine: device memory it may use, in bytes or with a unit (`512MiB`, `4GiB`).
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    vram_budget: Option<u64>,
    /// CPU engine: memory an old table may take while it is read (default: what is
    /// available); a larger table read all over is read in passes, and one within it that is
    /// not in the page cache is read ahead.
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    memory_budget: Option<u64>,
}

fn parse_size(text: &str) -> std::result::Result<u64, String> {
    warmstart::engine::gpu::parse_bytes(text)
        .ok_or_else(|| format!("{text:?} is not a byte count (e.g. 536870912, 512MiB, 4GiB)"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Backend {
    Auto,
    Cpu,
    Gpu,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run(args),
    }
}

fn run(args: RunArgs) -> ExitCode {
    let started = Instant::now();
    let mut report =
        serde_json::json!({ "plan": args.plan.to_string_lossy(), "dry_run": args.dry_run });
    let result = execute(&args, &mut report);
    let code = match &result {
        Ok(()) => {
            report["outcome"] = serde_json::json!({
                "status": "ok",
                "seconds": started.elapsed().as_secs_f64(),
            });
            0
        }
        Err(e) => {
            say!("warmstart: error: {e}");
            report["outcome"] = serde_json::json!({
                "status": if e.is_refusal() { "refused" } else { "failed" },
                "error": e.to_string(),
                "exit_code": e.exit_code(),
            });
            if let Some(kind) = e.gpu_failure() {
                report["outcome"]["gpu_failure"] = kind.name().into();
            }
            e.exit_code()
        }
    };
    // A report path that was refused (an input, the output) is left alone.
    let report_path = match &result {
        Err(Error::Report { .. }) => None,
        _ => args.report.as_ref(),
    };
    if let Some(path) = report_path {
        let text = serde_json::to_string_pretty(&report).expect("report serializes");
        if let Err(e) = write_report(path, &(text + "\n")) {
            say!(
                "warmstart: error: cannot write report {}: {e}",
                path.display()
            );
            // A run that failed keeps its own exit code (a refusal stays a refusal).
            return ExitCode::from(if code == 0 { 1 } else { code as u8 });
        }
    }
    ExitCode::from(code as u8)
}

fn execute(args: &RunArgs, report: &mut serde_json::Value) -> Result<()> {
    let started = Instant::now();
    let report_path = args.report.as_deref();
    check_report_dir(report_path)?;
    check_report(report_path, [(args.plan.as_path(), "plan file")])?;
    let plan_file = PlanFile::read(&args.plan)?;
    let output = args
        .output
        .clone()
        .or_else(|| plan_file.output.clone())
        .ok_or_else(|| missing_output(&args.plan))?;
    // Before anything else can fail: a refused run still writes its report.
    let settings = &plan_file.settings;
    let mut files = vec![
        (output.as_path(), "output"),
        (plan_file.model.as_path(), "model"),
        (settings.ckpt_to_initialize_from.as_path(), "checkpoint"),
    ];
    for info in settings.var_name_to_vocab_info.values() {
        files.push((info.new_vocab.as_path(), "new vocabulary"));
        files.push((info.old_vocab.as_path(), "old vocabulary"));
    }
    check_report(report_path, files)?;
    // Acquiring a GPU takes a while: do it while planning.
    let (plan, engine) = std::thread::scope(|scope| {
        let engine = scope.spawn(|| engine(args, &plan_file));
        let plan = plan_file.plan();
        (
            plan,
            engine.join().expect("engine selection does not panic"),
        )
    });
    let plan = plan?;
    report["planning_seconds"] = serde_json::json!(started.elapsed().as_secs_f64());
    plan.check_output(&output)?;
    check_report(
        report_path,
        plan.inputs().iter().map(|(p, role)| (p.as_path(), *role)),
    )?;
    report["checkpoint"] = serde_json::json!(plan.checkpoint().to_string_lossy());
    report["output"] = serde_json::json!(output.to_string_lossy());
    report["plan_sha256"] = serde_json::json!(plan.digest());
    report["variables"] = serde_json::json!(plan.variables());

    let engine = engine_for(&plan, engine?, args)?;
    report["backend"] = serde_json::json!(engine.name());
    report["vram_budget"] = serde_json::json!(engine.vram_budget());
    if args.dry_run {
        return print(&plan_table(&plan, &engine.name()));
    }

    let total = plan.data_bytes();
    let bar = progress_bar(total, args.quiet);
    let writing = Instant::now();
    let engine = write(&plan, engine, args, &output, report, &|done| {
        bar.set_position(done)
    })?;
    bar.finish_and_clear();
    let seconds = writing.elapsed().as_secs_f64();
    report["bytes"] = serde_json::json!(total);
    report["writing_seconds"] = serde_json::json!(seconds);
    report["passes"] = serde_json::json!(engine.passes());
    report["read_ahead_bytes"] = serde_json::json!(engine.read_ahead_bytes());
    if !args.quiet {
        say!(
            "{}",
            summary(&plan, &output, total, seconds, engine.as_ref())
        );
    }
    Ok(())
}

/// Writes the output with `engine`. Under `--backend auto`, a GPU that fails while writing
/// for a reason of its own (out of memory, lost, hung: not a bug, which is reported) leaves
/// nothing behind, and the output is written again on the CPU engine; the report says so
/// (`gpu_fallback`: the kind of failure and the error). Returns the engine that wrote it.
fn write(
    plan: &Plan,
    mut engine: Box<dyn Engine + Send>,
    args: &RunArgs,
    output: &Path,
    report: &mut serde_json::Value,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Box<dyn Engine + Send>> {
    let e = match plan.write_file_with_progress(engine.as_mut(), output, progress) {
        Ok(()) => return Ok(engine),
        Err(e) => e,
    };
    // the GPU's own failures, not bugs
    let kind = match e.gpu_failure() {
        Some(k @ (GpuFailure::OutOfMemory | GpuFailure::DeviceLost | GpuFailure::Timeout))
            if args.backend == Backend::Auto =>
        {
            k
        }
        _ => return Err(e),
    };
    if !args.quiet {
        say!("warmstart: {e}; --backend auto: writing again on the CPU engine");
    }
    report["gpu_fallback"] =
        serde_json::json!({ "gpu_failure": kind.name(), "error": e.to_string() });
    let failed = std::mem::replace(&mut engine, cpu_engine(args));
    if kind == GpuFailure::OutOfMemory {
        drop(failed);
    } else {
        // Dropping an engine waits for its device to finish the work it was given, which a
        // hung device never does: the process, which ends after this write, lets it be.
        std::mem::forget(failed);
    }
    report["backend"] = serde_json::json!(engine.name());
    report["vram_budget"] = serde_json::json!(engine.vram_budget());
    progress(0);
    plan.write_file_with_progress(engine.as_mut(), output, progress)?;
    Ok(engine)
}

/// Writes the report. A file is replaced as the output is: the report goes to a temporary
/// file beside it, renamed into place, so that it is never seen half written and no other
/// name of the file it replaces (a hard link to an input, a symbolic link's target) is
/// written to. What [`written_in_place`] says is written in place.
fn write_report(path: &Path, text: &str) -> std::io::Result<()> {
    if written_in_place(path) {
        write_in_place(path, text)
    } else {
        warmstart::writer::replace_file(path, text.as_bytes())
    }
}

/// Whether the report at `path` is written in place rather than replaced: a pipe, socket or
/// device (`--report >(jq .)`), or a path that leads through `/dev` or `/proc`, a process's
/// descriptor (`/dev/stdout`, `/proc/self/fd/1`), whatever it is open on (`> report.json`
/// included: renaming a file over `/dev/stdout` would replace the link, not fill the file).
fn written_in_place(path: &Path) -> bool {
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
        return true;
    }
    let mut at = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    for _ in 0..40 {
        // the directory as it really is (it may be a link into /proc itself)
        if let (Some(dir), Some(name)) = (at.parent(), at.file_name()) {
            if let Ok(dir) = dir.canonicalize() {
                at = dir.join(name);
            }
        }
        if at.starts_with("/dev") || at.starts_with("/proc") {
            return true;
        }
        match std::fs::read_link(&at) {
            // (a relative target is relative to the link's directory; an absolute one
            // replaces the whole path in `join`)
            Ok(target) => at = at.parent().unwrap_or(Path::new("/")).join(target),
            Err(_) => return false,
        }
    }
    false
}

/// Writes `text` to the pipe, socket or device at `path`, failing rather than waiting when it
/// is a FIFO that no process has open for reading (the run is over; nothing would ever read
/// it). A pipe with a reader is written as usual.
fn write_in_place(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let mut file = options.open(path).map_err(|e| {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            // (ENXIO also comes from a socket opened by path, e.g. /dev/stdout of a service)
            let fifo = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo());
            if fifo && e.raw_os_error() == Some(libc::ENXIO) {
                return std::io::Error::other("a FIFO that no process is reading");
            }
        }
        e
    })?;
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // Blocking again, so that a pipe whose reader is slow is waited for, not failed.
        let fd = file.as_raw_fd();
        // SAFETY: fcntl on a descriptor this function owns, with integer arguments.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    file.write_all(text.as_bytes())
}

/// Refuses, before anything is written, a report path that cannot be written: a directory
/// (or a path that can only name one), in a missing directory, or a file in a directory
/// where this process cannot create the report's temporary file.
fn check_report_dir(report: Option<&Path>) -> Result<()> {
    let Some(report) = report else {
        return Ok(());
    };
    let bad = |message: &str| Error::Report {
        path: report.to_path_buf(),
        message: message.to_string(),
    };
    if warmstart::writer::names_directory(report) {
        return Err(bad("names a directory (it ends with '/', '.' or '..')"));
    }
    match warmstart::writer::resolve_target(report) {
        None => Err(bad("its directory does not exist or is not a directory")),
        Some(p) if p.is_dir() => Err(bad("is a directory")),
        Some(_) if written_in_place(report) => Ok(()),
        Some(_) => warmstart::writer::check_creatable(report)
            .map_err(|e| bad(&format!("cannot be written in its directory: {e}"))),
    }
}

/// Refuses a report path that is one of `files` (role and path): writing the report there
/// would destroy an input or the output.
fn check_report<'a>(
    report: Option<&Path>,
    files: impl IntoIterator<Item = (&'a Path, &'a str)>,
) -> Result<()> {
    let Some(target) = report.and_then(warmstart::writer::resolve_target) else {
        return Ok(());
    };
    for (file, role) in files {
        if warmstart::writer::resolve_target(file).is_some_and(|f| f == target) {
            return Err(Error::Report {
                path: report.unwrap_or(file).to_path_buf(),
                message: format!("is also the {role}; choose another report path"),
            });
        }
    }
    Ok(())
}

fn missing_output(plan: &Path) -> Error {
    Error::Setting {
        context: plan.display().to_string(),
        message: "no output path: set `output` in the plan or pass --output".into(),
    }
}

/// `auto`: the GPU engine on a hardware adapter (never on a software driver such as
/// lavapipe), else the CPU engine; `gpu`: any adapter, software included; `cpu`.
fn engine(args: &RunArgs, plan_file: &PlanFile) -> Result<Box<dyn Engine + Send>> {
    let gpu = || {
        let mut options = GpuOptions::new();
        if let Some(bytes) = args.vram_budget {
            options = options.vram_budget(bytes);
        }
        // The model's element types and the plan's backup initializers, so that the engine
        // compiles only the kernels they need while the plan is built (planning opens the
        // model too, and reports its errors).
        let vocab = plan_file.settings.var_name_to_vocab_info.values();
        let initializers: Vec<Initializer> = vocab
            .map(|info| info.backup_initializer.clone().unwrap_or_default())
            .collect();
        options = options.initializers(&initializers);
        if let Ok(model) = warmstart::Model::open(&plan_file.model) {
            let types: Vec<FloatType> = (model.variables().iter())
                .filter_map(|v| FloatType::from_dtype(v.dtype()))
                .collect();
            options = options.element_types(&types);
        }
        GpuEngine::new(options)
    };
    match args.backend {
        Backend::Cpu => Ok(cpu_engine(args)),
        Backend::Gpu => Ok(Box::new(gpu()?)),
        Backend::Auto => {
            if gpu::hardware_adapter_available() {
                match gpu() {
                    Ok(engine) => return Ok(Box::new(engine)),
                    Err(e) if !args.quiet => {
                        say!("warmstart: the GPU is unusable ({e}); using the CPU engine")
                    }
                    Err(_) => {}
                }
            }
            Ok(cpu_engine(args))
        }
    }
}

/// `engine` if it can compute every job of `plan`. A table the GPU cannot take (a row
/// wider than one storage binding) makes `auto` fall back to the CPU engine; an explicit
/// `--backend gpu` is refused.
fn engine_for(
    plan: &Plan,
    engine: Box<dyn Engine + Send>,
    args: &RunArgs,
) -> Result<Box<dyn Engine + Send>> {
    match plan.check_engine(engine.as_ref()) {
        Ok(()) => Ok(engine),
        Err(e) if args.backend == Backend::Auto => {
            if !args.quiet {
                say!("warmstart: {e} (--backend auto: using it)");
            }
            Ok(cpu_engine(args))
        }
        Err(e) => Err(e),
    }
}

fn cpu_engine(args: &RunArgs) -> Box<dyn Engine + Send> {
    let engine = CpuEngine::new();
    Box::new(match args.memory_budget {
        Some(bytes) => engine.with_memory_budget(bytes),
        None => engine,
    })
}

fn progress_bar(total: u64, quiet: bool) -> indicatif::ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        )
        .expect("valid template"),
    );
    bar
}

/// Writes `text` to standard output. A reader that went away (`--dry-run | head`) is not an
/// error; any other failure (a full disk) is.
fn print(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Output {
            path: "standard output".into(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// What `--dry-run` prints: the plan's digest, checkpoint and engine, then a table of what
/// happens to each variable.
fn plan_table(plan: &Plan, backend: &str) -> String {
    use std::fmt::Write;
    let mut text = format!(
        "plan digest {}\ncheckpoint  {}\nbackend     {backend}\n\n",
        plan.digest(),
        plan.checkpoint().display()
    );
    let rows: Vec<[String; 6]> = plan
        .variables()
        .iter()
        .map(|v| {
            let how = match v.axis {
                Some(axis) => format!("{} (axis {axis})", v.action),
                None => v.action.to_string(),
            };
            let count = |n: usize| {
                if v.action == "keep" {
                    "-".to_string()
                } else {
                    format!("{n} {}", v.unit)
                }
            };
            [
                v.name.clone(),
                how,
                v.source.clone().unwrap_or_else(|| "-".into()),
                count(v.copied),
                if v.action == "remap" {
                    count(v.initialised)
                } else {
                    "-".into()
                },
                if v.action == "remap" {
                    count(v.oov)
                } else {
                    "-".into()
                },
            ]
        })
        .collect();
    let header = [
        "variable",
        "action",
        "source",
        "from checkpoint",
        "initialised",
        "oov",
    ]
    .map(String::from);
    let widths: Vec<usize> = (0..6)
        .map(|i| {
            rows.iter()
                .chain([&header])
                .map(|r| r[i].len())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in [&header].into_iter().chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, &w))| {
                if i < 3 {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        let _ = writeln!(text, "{}", cells.join("  ").trim_end());
    }
    text
}

fn human_bytes(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

fn summary(plan: &Plan, output: &Path, bytes: u64, seconds: f64, engine: &dyn Engine) -> String {
    let count = |action: &str| {
        plan.variables()
            .iter()
            .filter(|v| v.action == action)
            .count()
    };
    let (copied, initialised, oov) = plan
        .variables()
        .iter()
        .filter(|v| v.action == "remap")
        .fold((0, 0, 0), |(a, b, c), v| {
            (a + v.copied, b + v.initialised, c + v.oov)
        });
    let budget = match engine.vram_budget() {
        Some(_) => "VRAM budget",
        None => "memory budget",
    };
    let passes = match engine.passes() {
        0 => String::new(),
        n => format!("; old tables larger than the {budget} read in {n} passes"),
    };
    let read_ahead = match engine.read_ahead_bytes() {
        0 => String::new(),
        n => format!(
            "; {} of old tables read ahead (not in the page cache)",
            human_bytes(n)
        ),
    };
    format!(
        "warmstart: wrote {} ({}) in {seconds:.2} s on {}: {} variables remapped \
         ({copied} rows/columns from the checkpoint, {initialised} new, {oov} OOV), {} copied, {} kept{passes}{read_ahead}",
        output.display(),
        human_bytes(bytes),
        engine.name(),
        count("remap"),
        count("copy"),
        count("keep"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The arguments of `warmstart run p.toml --quiet --backend <backend>`.
    fn args(backend: &str) -> RunArgs {
        match Cli::parse_from([
            "warmstart",
            "run",
            "p.toml",
            "--quiet",
            "--backend",
            backend,
        ])
        .command
        {
            Command::Run(args) => args,
        }
    }

    /// The bundled example's plan.
    fn example_plan() -> Plan {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/recommender/plan.toml");
        PlanFile::read(&example).unwrap().plan().unwrap()
    }

    /// A plan the GPU engine cannot compute (here every row is wider than its 16-byte
    /// bindings): `auto` falls back to the CPU engine, `gpu` refuses it with exit code 2.
    #[test]
    fn auto_falls_back_to_the_cpu_when_the_gpu_cannot_take_a_table() {
        let gpu = || match GpuEngine::new(GpuOptions::new().max_binding_bytes(16)) {
            Ok(engine) => Some(Box::new(engine) as Box<dyn Engine + Send>),
            Err(e) if std::env::var("WARMSTART_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
                panic!("WARMSTART_REQUIRE_GPU=1 but the GPU engine is unavailable: {e}")
            }
            Err(e) => {
                eprintln!("NOTICE: skipping GPU test, no usable GPU adapter: {e}");
                None
            }
        };
        let Some(engine) = gpu() else { return };
        let plan = example_plan();
        let chosen = engine_for(&plan, engine, &args("auto")).map(|e| e.name());
        assert_eq!(chosen.unwrap(), "cpu");
        let refused = engine_for(&plan, gpu().unwrap(), &args("gpu")).map(|e| e.name());
        let e = refused.unwrap_err();
        assert!(e.to_string().contains("storage binding"), "{e}");
        assert_eq!(e.exit_code(), 2);
    }

    /// Under `auto`, a GPU that runs out of memory, is lost or hangs while writing leaves
    /// nothing behind and the output is written on the CPU engine, as the report says; a bug
    /// (`Internal`) and an explicit `--backend gpu` are reported instead.
    #[test]
    fn auto_writes_again_on_the_cpu_when_the_gpu_fails_while_writing() {
        struct Failing(GpuFailure);
        impl Engine for Failing {
            fn name(&self) -> String {
                "gpu: failing".into()
            }
            fn remap(
                &mut self,
                _: &warmstart::RemapJob,
                _: &mut dyn warmstart::Sink,
            ) -> Result<()> {
                Err(Error::Gpu {
                    kind: self.0,
                    message: format!("{:?}", self.0),
                })
            }
        }
        let plan = example_plan();
        let dir = tempfile::tempdir().unwrap();
        let expected = dir.path().join("expected.safetensors");
        plan.write_file(&mut CpuEngine::new(), &expected).unwrap();
        let expected = std::fs::read(expected).unwrap();
        let out = dir.path().join("warm.safetensors");
        // `write` with a GPU engine failing with `kind`, under `backend`: its engine and report
        let run = |kind: GpuFailure, backend: &str| {
            let mut report = serde_json::json!({});
            let written = write(
                &plan,
                Box::new(Failing(kind)),
                &args(backend),
                &out,
                &mut report,
                &|_| {},
            );
            (written.map(|engine| engine.name()), report)
        };
        for kind in [
            GpuFailure::OutOfMemory,
            GpuFailure::DeviceLost,
            GpuFailure::Timeout,
        ] {
            let (engine, report) = run(kind, "auto");
            assert_eq!(engine.unwrap(), "cpu");
            assert_eq!(std::fs::read(&out).unwrap(), expected, "{kind:?}");
            assert_eq!(report["backend"], "cpu");
            assert_eq!(report["gpu_fallback"]["gpu_failure"], kind.name());
            assert_eq!(report["gpu_fallback"]["error"], format!("GPU: {kind:?}"));
            std::fs::remove_file(&out).unwrap();

            let (engine, _) = run(kind, "gpu");
            assert_eq!(engine.err().and_then(|e| e.gpu_failure()), Some(kind));
            assert!(!out.exists());
        }
        let (engine, report) = run(GpuFailure::Internal, "auto");
        assert_eq!(
            engine.err().and_then(|e| e.gpu_failure()),
            Some(GpuFailure::Internal)
        );
        assert!(!out.exists());
        assert_eq!(report, serde_json::json!({}));
    }
}
