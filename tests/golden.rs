//! Golden tests: the CLI against TensorFlow 2.21's own `tf.compat.v1.train.warm_start`.
//!
//! Every directory under `tests/golden/cases/` (written by `tests/golden/generate.py`, see
//! `tests/golden/README.md`) is one case in the CLI's input format. The case is copied to a
//! temporary directory (without its expectation files) and run as
//!
//! ```text
//! warmstart run <tmp>/plan.toml --output <tmp>/out.safetensors --backend <backend> --quiet
//! ```
//!
//! (and once more on the CPU engine with `--memory-budget 1`, under which every table
//! remapped along axis 0 is read in passes).
//!
//! * `expected.safetensors` cases: exit code 0, exactly one new file `out.safetensors`, whose
//!   tensor names, dtypes, shapes and bytes equal `expected.safetensors`.
//! * `expected_error.json` cases: exit code 2, stderr contains the `"match"` substring
//!   (case-insensitive; a JSON array gives alternatives, any one suffices), and no file was
//!   created or removed.
//!
//! All cases run; failures are collected and reported together at the end.
//! `GOLDEN_CASE=name1,name2` restricts the run to cases whose names contain one of the
//! comma-separated substrings.
//!
//! Besides std, `safetensors` and `tempfile`, it uses the library only to ask whether a GPU
//! engine can start; everything else goes through the CLI binary.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use safetensors::{Dtype, SafeTensors};

/// How long one CLI run may take before it is killed and the case fails.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Files of a case directory that describe the expectation; they are not copied next to the
/// plan, so the tool cannot see (or touch) them.
const EXPECTATION_FILES: [&str; 3] = ["expected.safetensors", "expected_error.json", "case.json"];

fn cases_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("golden")
        .join("cases")
}

/// The case directories, sorted by name, filtered by `GOLDEN_CASE` if set.
fn case_dirs() -> Vec<PathBuf> {
    let root = cases_root();
    let filter: Vec<String> = std::env::var("GOLDEN_CASE")
        .map(|s| {
            s.split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let mut dirs: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", root.display()))
        .map(|entry| entry.expect("read_dir entry").path())
        .filter(|p| p.is_dir())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()))
        })
        .collect();
    dirs.sort();
    dirs
}

fn copy_tree(src: &Path, dst: &Path, top: bool) -> io::Result<()> {
    fs::create_dir_all(dst)?;
    let mut entries: Vec<_> = fs::read_dir(src)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        if top && EXPECTATION_FILES.iter().any(|f| name == *f) {
            continue;
        }
        let from = entry.path();
        let to = dst.join(&name);
        if entry.file_type()?.is_dir() {
            copy_tree(&from, &to, false)?;
        } else {
            fs::copy(&from, &to)?;
        }
    }
    Ok(())
}

/// Every file and directory below `root`, as paths relative to `root`.
fn list_tree(root: &Path) -> BTreeSet<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            out.insert(path.strip_prefix(root).unwrap().to_path_buf());
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                walk(root, &path, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

struct Outcome {
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
    timed_out: bool,
}

impl Outcome {
    fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    fn describe(&self) -> String {
        let code = match (self.timed_out, self.status) {
            (true, _) => format!("killed after {TIMEOUT:?}"),
            (false, Some(s)) => format!("{s}"),
            (false, None) => "no status".to_string(),
        };
        format!(
            "{code}\n      stdout: {}\n      stderr: {}",
            tail(&self.stdout),
            tail(&self.stderr)
        )
    }
}

fn tail(s: &str) -> String {
    const MAX: usize = 2000;
    let s = s.trim_end();
    if s.is_empty() {
        return "(empty)".to_string();
    }
    let start = s
        .char_indices()
        .map(|(i, _)| i)
        .find(|&i| s.len() - i <= MAX)
        .unwrap_or(0);
    let t = &s[start..];
    let t = t.replace('\n', "\n              ");
    if start > 0 {
        format!("...{t}")
    } else {
        t
    }
}

fn run_cli(plan: &Path, output: &Path, backend: &[&str]) -> Result<Outcome, String> {
    let exe = env!("CARGO_BIN_EXE_warmstart");
    let mut child = Command::new(exe)
        .arg("run")
        .arg(plan)
        .arg("--output")
        .arg(output)
        .arg("--backend")
        .args(backend)
        .arg("--quiet")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {exe}: {e}"))?;
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out_pipe.read_to_end(&mut buf);
        buf
    });
    let err_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err_pipe.read_to_end(&mut buf);
        buf
    });
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if start.elapsed() > TIMEOUT => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().ok();
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("waiting for {exe}: {e}")),
        }
    };
    let stdout = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    Ok(Outcome {
        status,
        stdout,
        stderr,
        timed_out,
    })
}

/// Runs one case with the given backend (`"cpu"` or `"gpu"`, and options); `Err` describes
/// the failure.
fn run_case(dir: &Path, backend: &[&str]) -> Result<(), String> {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let expected_tensors = dir.join("expected.safetensors");
    let expected_error = dir.join("expected_error.json");
    let expect_ok = expected_tensors.is_file();
    if expect_ok == expected_error.is_file() {
        return Err(
            "case needs exactly one of expected.safetensors and expected_error.json".into(),
        );
    }

    let tmp = tempfile::Builder::new()
        .prefix("warmstart-golden-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let work = tmp.path().join(&name);
    copy_tree(dir, &work, true).map_err(|e| format!("cannot copy the case: {e}"))?;
    let plan = work.join("plan.toml");
    let output = work.join("out.safetensors");
    let before = list_tree(&work);

    let outcome = run_cli(&plan, &output, backend)?;
    let after = list_tree(&work);
    let added: Vec<_> = after.difference(&before).collect();
    let removed: Vec<_> = before.difference(&after).collect();

    if expect_ok {
        if outcome.code() != Some(0) {
            return Err(format!("expected exit code 0, got {}", outcome.describe()));
        }
        let out_rel = PathBuf::from("out.safetensors");
        if added != [&out_rel] || !removed.is_empty() {
            return Err(format!(
                "expected exactly one new file out.safetensors; added {added:?}, removed {removed:?}"
            ));
        }
        let want = fs::read(&expected_tensors)
            .map_err(|e| format!("cannot read {}: {e}", expected_tensors.display()))?;
        let got = fs::read(&output).map_err(|e| format!("cannot read out.safetensors: {e}"))?;
        compare_safetensors(&want, &got)
    } else {
        let text = fs::read_to_string(&expected_error)
            .map_err(|e| format!("cannot read {}: {e}", expected_error.display()))?;
        let alternatives =
            error_matches(&text).map_err(|e| format!("{}: {e}", expected_error.display()))?;
        let mut problems = Vec::new();
        if outcome.code() != Some(2) {
            problems.push("expected exit code 2".to_string());
        }
        let stderr = outcome.stderr.to_lowercase();
        if !alternatives
            .iter()
            .any(|m| stderr.contains(&m.to_lowercase()))
        {
            problems.push(format!("stderr contains none of {alternatives:?}"));
        }
        if !added.is_empty() || !removed.is_empty() {
            problems.push(format!(
                "files changed: added {added:?}, removed {removed:?}"
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{}; got {}",
                problems.join("; "),
                outcome.describe()
            ))
        }
    }
}

fn run_all(backend: &[&str]) {
    let dirs = case_dirs();
    let backend_name = backend.join(" ");
    let backend_name = backend_name.as_str();
    assert!(
        !dirs.is_empty(),
        "no golden cases under {} (GOLDEN_CASE filter?)",
        cases_root().display()
    );
    let mut failures = Vec::new();
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        match run_case(dir, backend) {
            Ok(()) => eprintln!("golden[{backend_name}] ok    {name}"),
            Err(why) => {
                eprintln!("golden[{backend_name}] FAIL  {name}");
                failures.push((name, why));
            }
        }
    }
    if !failures.is_empty() {
        let mut report = format!(
            "{} of {} golden cases failed with --backend {backend_name}:\n",
            failures.len(),
            dirs.len()
        );
        for (name, why) in &failures {
            let _ = writeln!(report, "  - {name}: {why}");
        }
        let names: Vec<&str> = failures.iter().map(|(n, _)| n.as_str()).collect();
        let _ = writeln!(report, "failing: {}", names.join(","));
        panic!("{report}");
    }
}

#[test]
fn golden_cases_cpu() {
    run_all(&["cpu"]);
}

/// The CPU engine reading every old table in passes, as it does when a table is larger than
/// the memory available (here: a budget of one byte).
#[test]
fn golden_cases_cpu_in_passes() {
    run_all(&["cpu", "--memory-budget", "1"]);
}

/// The same cases on the GPU engine (the software Vulkan driver counts). Without an adapter
/// this fails when `WARMSTART_REQUIRE_GPU=1` (CI) and is skipped with a notice otherwise.
#[test]
fn golden_cases_gpu() {
    if let Err(e) = warmstart::GpuEngine::new(Default::default()) {
        if std::env::var("WARMSTART_REQUIRE_GPU").is_ok_and(|v| v == "1") {
            panic!("WARMSTART_REQUIRE_GPU=1 but the GPU engine is unavailable: {e}");
        }
        eprintln!("golden_cases_gpu skipped: no GPU adapter ({e})");
        return;
    }
    run_all(&["gpu"]);
}

// ------------------------------------------------------------------------------------------
// Comparing safetensors files
// ------------------------------------------------------------------------------------------

fn compare_safetensors(want: &[u8], got: &[u8]) -> Result<(), String> {
    let want =
        SafeTensors::deserialize(want).map_err(|e| format!("expected.safetensors: {e:?}"))?;
    let got = SafeTensors::deserialize(got).map_err(|e| format!("out.safetensors: {e:?}"))?;
    let want_names: BTreeSet<&str> = want.names().into_iter().collect();
    let got_names: BTreeSet<&str> = got.names().into_iter().collect();
    let mut problems = Vec::new();
    let missing: Vec<_> = want_names.difference(&got_names).collect();
    let extra: Vec<_> = got_names.difference(&want_names).collect();
    if !missing.is_empty() {
        problems.push(format!("missing tensors {missing:?}"));
    }
    if !extra.is_empty() {
        problems.push(format!("unexpected tensors {extra:?}"));
    }
    for name in want_names.intersection(&got_names) {
        let w = want.tensor(name).unwrap();
        let g = got.tensor(name).unwrap();
        if w.dtype() != g.dtype() || w.shape() != g.shape() {
            problems.push(format!(
                "{name}: expected {:?} {:?}, got {:?} {:?}",
                w.dtype(),
                w.shape(),
                g.dtype(),
                g.shape()
            ));
        } else if w.data() != g.data() {
            problems.push(format!(
                "{name} ({:?} {:?}): {}",
                w.dtype(),
                w.shape(),
                element_diff(w.dtype(), w.shape(), w.data(), g.data())
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "out.safetensors differs:\n      {}",
            problems.join("\n      ")
        ))
    }
}

/// The first differing elements, with their multi-dimensional indices.
fn element_diff(dtype: Dtype, shape: &[usize], want: &[u8], got: &[u8]) -> String {
    const SHOW: usize = 8;
    let bits = dtype.bitsize();
    if !bits.is_multiple_of(8) || want.len() != got.len() {
        return format!("bytes differ ({} vs {} bytes)", want.len(), got.len());
    }
    let size = bits / 8;
    let count = want.len() / size;
    let differing: Vec<usize> = (0..count)
        .filter(|&i| want[i * size..(i + 1) * size] != got[i * size..(i + 1) * size])
        .collect();
    let mut s = format!("{} of {count} elements differ:", differing.len());
    for &i in differing.iter().take(SHOW) {
        let _ = write!(
            s,
            " {:?} expected {} got {};",
            unravel(i, shape),
            format_element(dtype, &want[i * size..(i + 1) * size]),
            format_element(dtype, &got[i * size..(i + 1) * size])
        );
    }
    if differing.len() > SHOW {
        s.push_str(" ...");
    }
    s
}

fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (d, &n) in shape.iter().enumerate().rev() {
        if n > 0 {
            idx[d] = flat % n;
            flat /= n;
        }
    }
    idx
}

fn format_element(dtype: Dtype, b: &[u8]) -> String {
    fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
        b.try_into().unwrap()
    }
    match dtype {
        Dtype::F32 => {
            let v = f32::from_le_bytes(arr(b));
            format!("{v:?} (0x{:08x})", v.to_bits())
        }
        Dtype::F64 => {
            let v = f64::from_le_bytes(arr(b));
            format!("{v:?} (0x{:016x})", v.to_bits())
        }
        Dtype::I64 => i64::from_le_bytes(arr(b)).to_string(),
        Dtype::U64 => u64::from_le_bytes(arr(b)).to_string(),
        Dtype::I32 => i32::from_le_bytes(arr(b)).to_string(),
        Dtype::U32 => u32::from_le_bytes(arr(b)).to_string(),
        Dtype::I16 => i16::from_le_bytes(arr(b)).to_string(),
        Dtype::U16 => u16::from_le_bytes(arr(b)).to_string(),
        Dtype::I8 => i8::from_le_bytes(arr(b)).to_string(),
        Dtype::U8 | Dtype::BOOL => b[0].to_string(),
        Dtype::BF16 => {
            let bits = u16::from_le_bytes(arr(b));
            format!(
                "{:?} (bf16 0x{bits:04x})",
                f32::from_bits(u32::from(bits) << 16)
            )
        }
        _ => {
            let hex: String = b.iter().rev().map(|x| format!("{x:02x}")).collect();
            format!("0x{hex}")
        }
    }
}

// ------------------------------------------------------------------------------------------
// expected_error.json: a minimal JSON reader (std only)
// ------------------------------------------------------------------------------------------

#[derive(Debug)]
enum Json {
    Null,
    Bool(#[allow(dead_code)] bool),
    Num(#[allow(dead_code)] String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

/// The `"match"` alternatives of an expected_error.json (a string or an array of strings).
fn error_matches(text: &str) -> Result<Vec<String>, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    let value = p.value()?;
    p.ws();
    if p.i != p.s.len() {
        return Err(format!("trailing characters at byte {}", p.i));
    }
    let Json::Obj(fields) = value else {
        return Err("not a JSON object".into());
    };
    let m = fields
        .into_iter()
        .find(|(k, _)| k == "match")
        .map(|(_, v)| v)
        .ok_or("no \"match\" field")?;
    let alternatives = match m {
        Json::Str(s) => vec![s],
        Json::Arr(items) => items
            .into_iter()
            .map(|v| match v {
                Json::Str(s) => Ok(s),
                other => Err(format!("\"match\" array holds {other:?}")),
            })
            .collect::<Result<_, _>>()?,
        other => return Err(format!("\"match\" is {other:?}")),
    };
    if alternatives.is_empty() || alternatives.iter().any(|s| s.is_empty()) {
        return Err("\"match\" must hold non-empty strings".into());
    }
    Ok(alternatives)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", c as char, self.i))
        }
    }

    fn literal(&mut self, word: &str, v: Json) -> Result<Json, String> {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(format!("invalid literal at byte {}", self.i))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        match self.peek().ok_or("unexpected end of JSON")? {
            b'n' => self.literal("null", Json::Null),
            b't' => self.literal("true", Json::Bool(true)),
            b'f' => self.literal("false", Json::Bool(false)),
            b'"' => self.string().map(Json::Str),
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(items));
                        }
                        _ => return Err(format!("expected ',' or ']' at byte {}", self.i)),
                    }
                }
            }
            b'{' => {
                self.i += 1;
                let mut fields = Vec::new();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(fields));
                }
                loop {
                    if self.peek() != Some(b'"') {
                        return Err(format!("expected a key at byte {}", self.i));
                    }
                    let key = self.string()?;
                    self.expect(b':')?;
                    fields.push((key, self.value()?));
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(fields));
                        }
                        _ => return Err(format!("expected ',' or '}}' at byte {}", self.i)),
                    }
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = self.i;
                while self.i < self.s.len()
                    && matches!(
                        self.s[self.i],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.i += 1;
                }
                Ok(Json::Num(
                    String::from_utf8_lossy(&self.s[start..self.i]).into_owned(),
                ))
            }
            c => Err(format!("unexpected '{}' at byte {}", c as char, self.i)),
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let h = self
            .s
            .get(self.i..self.i + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| format!("bad \\u escape at byte {}", self.i))?;
        self.i += 4;
        Ok(h)
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let c = *self.s.get(self.i).ok_or("unterminated string")?;
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let e = *self.s.get(self.i).ok_or("unterminated escape")?;
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi)
                                && self.s[self.i..].starts_with(b"\\u")
                            {
                                self.i += 2;
                                let lo = self.hex4()?;
                                0x10000 + ((hi - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF)
                            } else {
                                hi
                            };
                            char::from_u32(code).unwrap_or('\u{FFFD}')
                        }
                        other => return Err(format!("bad escape '\\{}'", other as char)),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                _ => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|e| format!("invalid UTF-8 in string: {e}"))
    }
}

#[test]
fn golden_json_reader() {
    assert_eq!(
        error_matches(r#"{"tf_error": null, "match": "abc", "n": -1.5e3}"#).unwrap(),
        vec!["abc"]
    );
    assert_eq!(
        error_matches(
            "{\n \"match\": [\"a\\u00e9\", \"b\\\"c\"],\n \"x\": {\"y\": [true, false]}\n}"
        )
        .unwrap(),
        vec!["a\u{e9}", "b\"c"]
    );
    assert!(error_matches(r#"{"tf_error": null}"#).is_err());
    assert!(error_matches(r#"{"match": ""}"#).is_err());
    assert!(error_matches(r#"{"match": "a"} x"#).is_err());
    // Every committed case parses.
    for dir in case_dirs() {
        let f = dir.join("expected_error.json");
        if f.is_file() {
            let text = fs::read_to_string(&f).unwrap();
            error_matches(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        }
    }
}
