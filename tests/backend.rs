//! Which engine the CLI picks: `--backend auto` takes a hardware GPU when there is one and the
//! CPU otherwise (the software Vulkan driver is no reason to use the GPU engine); `--backend
//! gpu` takes any adapter, the software driver included; the report names it and gives the
//! GPU engine's VRAM budget. And the CPU engine's passes over tables larger than its memory
//! budget: same output, counted in the report.

use std::path::Path;
use std::process::Command;

fn backend_of(backend: &str) -> (i32, String) {
    let (code, report) = report_of(backend, &[]);
    let name = report["backend"].as_str().unwrap_or_default().to_string();
    (code, name)
}

/// A quiet dry run of the bundled example on `backend`, its output named in `dir`.
fn dry_run(backend: &str, dir: &Path) -> Command {
    let plan = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/recommender/plan.toml");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warmstart"));
    cmd.arg("run")
        .arg(&plan)
        .args(["--dry-run", "--quiet", "--backend", backend, "--output"])
        .arg(dir.join("warm.safetensors"));
    cmd
}

/// The exit code and report of a dry run of the bundled example on `backend`, with `extra`
/// options.
fn report_of(backend: &str, extra: &[&str]) -> (i32, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let out = dry_run(backend, dir.path())
        .arg("--report")
        .arg(&report)
        .args(extra)
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&report).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    (out.status.code().unwrap_or(-1), json)
}

#[test]
fn auto_takes_a_hardware_gpu_or_the_cpu() {
    let (code, backend) = backend_of("auto");
    assert_eq!(code, 0);
    if warmstart::engine::gpu::hardware_adapter_available() {
        assert!(backend.starts_with("gpu: "), "{backend}");
    } else {
        assert_eq!(backend, "cpu");
    }
}

/// A `WGPU_BACKEND` that names no backend wgpu knows finds no adapter (wgpu ignores the
/// unknown name): the message says which setting limited the search.
#[test]
fn gpu_without_an_adapter_names_wgpu_backend() {
    let dir = tempfile::tempdir().unwrap();
    let out = dry_run("gpu", dir.path())
        .env("WGPU_BACKEND", "vulcan")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no GPU adapter found"), "{stderr}");
    assert!(stderr.contains("WGPU_BACKEND=\"vulcan\""), "{stderr}");
}

#[test]
fn cpu_is_the_cpu() {
    assert_eq!(backend_of("cpu"), (0, "cpu".to_string()));
    assert_eq!(
        report_of("cpu", &[]).1["vram_budget"],
        serde_json::Value::Null
    );
}

#[test]
fn gpu_takes_any_adapter_and_names_it() {
    let (code, backend) = backend_of("gpu");
    let require = std::env::var("WARMSTART_REQUIRE_GPU").is_ok_and(|v| v == "1");
    if code == 1 && !require {
        eprintln!("no GPU adapter here: skipped (set WARMSTART_REQUIRE_GPU=1 to make this fail)");
        return;
    }
    assert_eq!(code, 0, "no GPU adapter (WARMSTART_REQUIRE_GPU=1)");
    assert!(
        backend.starts_with("gpu: ") && backend.len() > 5,
        "{backend}"
    );
    // the budget the engine chose, or the one asked for
    let budget = report_of("gpu", &[]).1["vram_budget"].as_u64();
    assert!(budget.is_some_and(|b| b >= 64 << 20), "{budget:?}");
    let asked = report_of("gpu", &["--vram-budget", "300MiB"]).1;
    assert_eq!(asked["vram_budget"], 300 << 20);
}

/// Runs the bundled example on the CPU engine with `extra` options; (output bytes, report).
fn run_example(extra: &[&str]) -> (Vec<u8>, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let output = dir.path().join("warm.safetensors");
    let plan = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/recommender/plan.toml");
    let status = Command::new(env!("CARGO_BIN_EXE_warmstart"))
        .arg("run")
        .arg(&plan)
        .args(["--quiet", "--backend", "cpu", "--output"])
        .arg(&output)
        .arg("--report")
        .arg(&report)
        .args(extra)
        .status()
        .unwrap();
    assert!(status.success());
    let json = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    (std::fs::read(&output).unwrap(), json)
}

#[test]
fn passes_over_tables_larger_than_the_memory_budget_are_reported() {
    // The old checkpoint read just before, so in the page cache: nothing is read ahead.
    let old = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/recommender/old");
    for file in std::fs::read_dir(old).unwrap() {
        std::fs::read(file.unwrap().path()).unwrap();
    }
    let (whole, report) = run_example(&[]);
    assert_eq!(report["passes"], 0);
    assert_eq!(report["read_ahead_bytes"], 0);
    let (passes, report) = run_example(&["--memory-budget", "1"]);
    assert!(
        report["passes"].as_u64().unwrap() > 0,
        "{}",
        report["passes"]
    );
    assert!(passes == whole, "passes change the output");
}
