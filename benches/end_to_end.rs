//! End-to-end benchmark: the CLI, file to file, on generated recommender and language-model
//! workloads, against a plain copy of the old checkpoint measured in the same run.
//!
//! ```text
//! cargo bench --bench end_to_end -- [--workloads 1m,2m,lm,huge] [--backend cpu|gpu|auto|cpu,gpu]
//!                                   [--reps 3] [--dir /path/with/space] [--keep]
//! ```
//!
//! Per workload it generates, once, an old checkpoint (one table of random values), a new
//! model file (sparse: its values are never read) and old/new vocabularies, then alternates
//! `reps` times: (1) copy the old checkpoint file and flush it to disk (`fs::copy` +
//! `fsync`: the same bytes read and written once, through the page cache), (2) copy it through
//! warmstart's own output writer (direct I/O: the I/O floor of the tool), (3) `warmstart run`
//! with the given backend, whose output is flushed to disk too (with several backends, each in
//! turn, and a last table of each one's time over the first one's). It reports medians of the
//! wall time and of the CPU time of the `warmstart` process (user + system, all its threads:
//! on the software Vulkan driver that includes the shaders), GB/s of output, the ratio to the
//! copy, and the peak anonymous memory of the process (RssAnon sampled every 5 ms:
//! file-backed pages of the memory maps do not count), next to the peak of a `--dry-run`
//! (planning alone: the vocabulary index).
//!
//! Workloads (tokens are 90% kept / 10% new unless said, truncated_normal backup, 2 OOV):
//! `1m`: 1M x 128 f32 (512 MB); `2m`: 2M x 128 f32 (1 GB); `lm`: 128k x 4096 bf16 (1 GB, 2% new
//! tokens); `huge`: a table larger than a quarter of this machine's RAM (f32, 128 columns);
//! `8g`: 16M x 128 f32 (8.6 GB).
//!
//! `--warmstart PATH` runs another build of the CLI; `--vram-budget B` is passed to it.
//! `small` (100k x 64) is for trying the harness out.
//!
//! `--to-device` times instead, in this process, what a trainer embedding the crate does to
//! get the warm-started tables into GPU memory: the CPU engine remapping straight into device
//! buffers mapped at creation (wgpu then uploads them), against the GPU engine remapping on
//! the device (`GpuEngine::to_device`), both on the same device and waited for, alternating;
//! planning (the same for both) is left out.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use warmstart::engine::Sink;
use warmstart::{Engine, Job};

struct Workload {
    name: &'static str,
    rows: usize,
    cols: usize,
    bf16: bool,
    kept_percent: usize,
}

fn workloads(ram: u64) -> Vec<Workload> {
    let huge_rows = ((ram / 4) / (128 * 4)) as usize * 11 / 10; // a tenth over a quarter of RAM
    vec![
        Workload {
            name: "small",
            rows: 100_000,
            cols: 64,
            bf16: false,
            kept_percent: 90,
        },
        Workload {
            name: "1m",
            rows: 1 << 20,
            cols: 128,
            bf16: false,
            kept_percent: 90,
        },
        Workload {
            name: "2m",
            rows: 2 << 20,
            cols: 128,
            bf16: false,
            kept_percent: 90,
        },
        Workload {
            name: "lm",
            rows: 128 << 10,
            cols: 4096,
            bf16: true,
            kept_percent: 98,
        },
        Workload {
            name: "huge",
            rows: huge_rows,
            cols: 128,
            bf16: false,
            kept_percent: 90,
        },
        Workload {
            name: "8g",
            rows: 16 << 20,
            cols: 128,
            bf16: false,
            kept_percent: 90,
        },
    ]
}

const OOV: usize = 2;

impl Workload {
    fn elem(&self) -> usize {
        if self.bf16 {
            2
        } else {
            4
        }
    }

    fn dtype(&self) -> &'static str {
        if self.bf16 {
            "BF16"
        } else {
            "F32"
        }
    }

    fn old_bytes(&self) -> u64 {
        (self.rows * self.cols * self.elem()) as u64
    }

    fn new_rows(&self) -> usize {
        self.rows + OOV
    }

    /// Writes old.safetensors, model.safetensors (sparse), the vocabularies and plan.toml.
    fn generate(&self, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        if dir.join("plan.toml").exists() {
            return;
        }
        let t = Instant::now();
        // Old vocabulary: tok0..; new: a shuffled kept share, then new tokens.
        let old: Vec<String> = (0..self.rows).map(|i| format!("tok{i}")).collect();
        let kept = self.rows * self.kept_percent / 100;
        let mut order: Vec<usize> = (0..self.rows).collect();
        shuffle(&mut order, 0x5eed);
        let mut new: Vec<String> = order[..kept].iter().map(|&i| old[i].clone()).collect();
        new.extend((0..self.rows - kept).map(|i| format!("new{i}")));
        write_lines(&dir.join("old_vocab.txt"), &old);
        write_lines(&dir.join("new_vocab.txt"), &new);
        drop((old, new, order));

        write_table(
            &dir.join("old.safetensors"),
            self.dtype(),
            self.rows,
            self.cols,
            self.elem(),
            true,
        );
        write_table(
            &dir.join("model.safetensors"),
            self.dtype(),
            self.new_rows(),
            self.cols,
            self.elem(),
            false,
        );
        let plan = format!(
            "checkpoint = \"old.safetensors\"\nmodel = \"model.safetensors\"\noutput = \"out.safetensors\"\n\n\
             [vocab.emb]\nnew_vocab = \"new_vocab.txt\"\nnew_vocab_size = {}\nnum_oov_buckets = {OOV}\n\
             old_vocab = \"old_vocab.txt\"\nbackup_initializer = {{ type = \"truncated_normal\", stddev = 0.01, seed = 42 }}\n",
            self.rows
        );
        std::fs::write(dir.join("plan.toml"), plan).unwrap();
        eprintln!(
            "  generated {} in {:.1} s",
            dir.display(),
            t.elapsed().as_secs_f64()
        );
    }
}

fn shuffle(v: &mut [usize], mut seed: u64) {
    for i in (1..v.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut f = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    for l in lines {
        f.write_all(l.as_bytes()).unwrap();
        f.write_all(b"\n").unwrap();
    }
    f.flush().unwrap();
}

/// One tensor `emb`; random values when `fill`, else a sparse file of zeros.
fn write_table(path: &Path, dtype: &str, rows: usize, cols: usize, elem: usize, fill: bool) {
    let bytes = rows * cols * elem;
    let mut header = format!(
        "{{\"emb\":{{\"dtype\":\"{dtype}\",\"shape\":[{rows},{cols}],\"data_offsets\":[0,{bytes}]}}}}"
    );
    while (header.len() + 8) % 8 != 0 {
        header.push(' ');
    }
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(&(header.len() as u64).to_le_bytes()).unwrap();
    f.write_all(header.as_bytes()).unwrap();
    if !fill {
        f.set_len((8 + header.len() + bytes) as u64).unwrap();
        return;
    }
    let chunk = 64 << 20;
    let mut buf = vec![0u8; chunk];
    let mut written = 0usize;
    while written < bytes {
        let n = chunk.min(bytes - written);
        let base = written;
        buf[..n]
            .par_chunks_mut(1 << 16)
            .enumerate()
            .for_each(|(i, c)| {
                let mut s = (base + i * (1 << 16)) as u64 | 1;
                for w in c.chunks_mut(2) {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    // small finite values in both f32 and bf16: exponent byte kept low
                    let v = ((s >> 40) as u16 & 0x3FFF) | 0x3800;
                    w.copy_from_slice(&v.to_le_bytes()[..w.len()]);
                }
            });
        f.write_all(&buf[..n]).unwrap();
        written += n;
    }
    f.sync_all().unwrap();
}

fn copy_baseline(dir: &Path) -> f64 {
    let dst = dir.join("copy.safetensors");
    let t = Instant::now();
    std::fs::copy(dir.join("old.safetensors"), &dst).unwrap();
    std::fs::File::open(&dst).unwrap().sync_all().unwrap();
    let s = t.elapsed().as_secs_f64();
    std::fs::remove_file(&dst).unwrap();
    s
}

/// The same bytes copied through warmstart's own output writer (direct I/O on Linux, flushed,
/// renamed): the I/O floor of the tool's design, without planning or computing.
fn direct_copy(dir: &Path) -> f64 {
    use std::io::Read;
    let dst = dir.join("dcopy.safetensors");
    let t = Instant::now();
    let mut src = std::fs::File::open(dir.join("old.safetensors")).unwrap();
    let len = src.metadata().unwrap().len() as usize;
    let mut out = warmstart::writer::OutputFile::create(&dst).unwrap();
    // Read straight into the writer's staging buffers.
    out.append(len, &mut |_, piece| src.read_exact(piece).unwrap())
        .unwrap();
    out.commit().unwrap();
    let s = t.elapsed().as_secs_f64();
    std::fs::remove_file(&dst).unwrap();
    s
}

/// Runs the CLI `bin` (with `extra` arguments) on the workload in `dir`: (wall seconds, CPU
/// seconds, peak anonymous bytes).
#[allow(clippy::zombie_processes)] // the child is reaped by `wait4`, which `Child` cannot see
fn run_cli(bin: &Path, dir: &Path, backend: &str, extra: &[&str]) -> (f64, f64, u64) {
    let out = dir.join("out.safetensors");
    let _ = std::fs::remove_file(&out);
    let t = Instant::now();
    let child = Command::new(bin)
        .args(["run", "plan.toml", "--quiet", "--backend", backend])
        .args(extra)
        .stdout(std::process::Stdio::null())
        .current_dir(dir)
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let status_path = format!("/proc/{pid}/status");
    let mut peak = 0u64;
    // (wait4 rather than try_wait: it also gives the child's CPU time)
    let (status, usage) = loop {
        let mut status = 0;
        // SAFETY: plain struct of integers, filled by wait4.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: waits for our own child, writing into the two locals.
        match unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) } {
            0 => {}
            p if p == pid => break (status, usage),
            _ => panic!("wait4: {}", std::io::Error::last_os_error()),
        }
        if let Ok(text) = std::fs::read_to_string(&status_path) {
            peak = peak.max(rss_anon(&text));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let s = t.elapsed().as_secs_f64();
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    assert!(ok, "warmstart failed in {}", dir.display());
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let cpu = seconds(usage.ru_utime) + seconds(usage.ru_stime);
    let _ = std::fs::remove_file(&out);
    (s, cpu, peak)
}

fn rss_anon(status: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The host's CPU (model name, family and model numbers, from `/proc/cpuinfo` on Linux) and
/// the CPUs this process may use: figures from a software adapter depend on them (the shaders
/// run on these cores), and machines of one kind may differ in them.
fn host_cpu() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        (info.lines())
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == key))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    match (field("model name"), field("cpu family"), field("model")) {
        (Some(name), Some(family), Some(model)) => {
            format!("{name} (family {family}, model {model}), {cpus} CPUs available")
        }
        _ => format!("{cpus} CPUs available"),
    }
}

/// The GPU's own buffer-to-buffer copy bandwidth (bytes copied per second), the yardstick for
/// the GPU engine's GB/s: median of 5 copies of 1 GiB (or what one buffer may hold).
fn device_copy_bandwidth() -> Option<(String, f64)> {
    let engine = warmstart::GpuEngine::new(Default::default()).ok()?;
    let (device, queue) = (engine.device(), engine.queue());
    let limits = device.limits();
    println!(
        "device limits: max_buffer_size {}, max_storage_buffer_binding_size {}, \
         min_storage_buffer_offset_alignment {}; the engine's VRAM budget {:?}",
        limits.max_buffer_size,
        limits.max_storage_buffer_binding_size,
        limits.min_storage_buffer_offset_alignment,
        warmstart::Engine::vram_budget(&engine),
    );
    let size = (1u64 << 30).min(device.limits().max_buffer_size) & !3;
    let buffer = |usage| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size,
            usage,
            mapped_at_creation: false,
        })
    };
    let src = buffer(wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::STORAGE);
    let dst = buffer(wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::STORAGE);
    let mut times = Vec::new();
    for _ in 0..6 {
        let mut enc = device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(&src, 0, &dst, 0, size);
        let t = Instant::now();
        let index = queue.submit([enc.finish()]);
        device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(index),
                timeout: Some(Duration::from_secs(60)),
            })
            .ok()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.remove(0); // first use
    Some((
        engine.adapter_name().to_string(),
        size as f64 / median(times),
    ))
}

/// A sink writing into a slice from its start (a buffer mapped at creation).
struct Slice<'a>(&'a mut [u8], usize);

impl Sink for Slice<'_> {
    fn append(
        &mut self,
        len: usize,
        fill: &mut dyn FnMut(usize, &mut [u8]),
    ) -> warmstart::Result<()> {
        fill(0, &mut self.0[self.1..self.1 + len]);
        self.1 += len;
        Ok(())
    }
}

/// `--to-device`: median seconds of `reps` runs of each way into GPU memory (see the module
/// docs): (CPU engine and upload, GPU engine), and the adapter's name.
fn to_device(dir: &Path, reps: usize) -> (f64, f64, String) {
    let plan = warmstart::PlanFile::read(dir.join("plan.toml"))
        .and_then(|p| p.plan())
        .unwrap();
    let mut gpu = warmstart::GpuEngine::new(Default::default()).expect("a GPU adapter");
    let (device, queue) = (gpu.device().clone(), gpu.queue().clone());
    let wait = || {
        let index = queue.submit([]);
        device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(index),
                timeout: Some(Duration::from_secs(600)),
            })
            .unwrap();
    };
    let (mut uploaded, mut remapped) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let t = Instant::now();
        let mut cpu = warmstart::CpuEngine::new();
        let mut buffers = Vec::new();
        for tensor in plan.tensors().iter().filter(|t| t.is_warm_started()) {
            let buffer = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(&tensor.name),
                size: (tensor.byte_len() as u64).next_multiple_of(4).max(4),
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: true,
            });
            {
                let mut view = buffer.get_mapped_range_mut(..).unwrap();
                let mut range = view.slice(..);
                let len = range.len();
                // SAFETY: the mapping is valid and initialised (zeros) for `len` bytes, and
                // only this slice touches it while `view` lives (the engine only writes).
                let bytes = unsafe {
                    std::slice::from_raw_parts_mut(range.as_raw_ptr().cast::<u8>().as_ptr(), len)
                };
                let mut sink = Slice(bytes, 0);
                match &tensor.job {
                    Job::Remap(job) => cpu.remap(job, &mut sink).unwrap(),
                    Job::Copy { source, bytes } => {
                        for piece in source.pieces(bytes.clone()) {
                            sink.write(piece).unwrap();
                        }
                    }
                    Job::Keep(_) => unreachable!("not warm-started"),
                }
            }
            buffer.unmap();
            buffers.push(buffer);
        }
        wait();
        uploaded.push(t.elapsed().as_secs_f64());
        drop(buffers);

        // (the old table's windows from the run before are not reused)
        gpu.clear_cache();
        let t = Instant::now();
        let tensors = gpu.to_device(&plan).unwrap();
        wait();
        remapped.push(t.elapsed().as_secs_f64());
        drop(tensors);
    }
    let name = gpu.adapter_name().to_string();
    (median(uploaded), median(remapped), name)
}

/// The workload `name` of `all`, generated under `dir` if it is not there yet, and its folder.
fn prepare<'a>(all: &'a [Workload], name: &str, dir: &Path) -> (&'a Workload, PathBuf) {
    let w = all
        .iter()
        .find(|w| w.name == name)
        .unwrap_or_else(|| panic!("no workload {name}"));
    let wdir = dir.join(w.name);
    w.generate(&wdir);
    (w, wdir)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ram_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .map(|v| {
                    v.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .unwrap_or(0)
                })
        })
        .map_or(16 << 30, |kb| kb * 1024)
}

fn main() {
    let mut names = "1m,2m,lm".to_string();
    let mut backend = "cpu".to_string();
    let mut reps = 3usize;
    let mut dir = std::env::temp_dir().join("warmstart-bench");
    let mut keep = false;
    let mut into_device = false;
    let mut bin = PathBuf::from(env!("CARGO_BIN_EXE_warmstart"));
    let mut extra: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--workloads" => names = args.next().expect("--workloads LIST"),
            "--backend" => backend = args.next().expect("--backend NAME"),
            "--reps" => reps = args.next().expect("--reps N").parse().expect("a number"),
            "--dir" => dir = PathBuf::from(args.next().expect("--dir PATH")),
            "--keep" => keep = true,
            "--to-device" => into_device = true,
            // (absolute: the CLI runs in the workload's folder)
            "--warmstart" => {
                bin = std::path::absolute(args.next().expect("--warmstart PATH")).unwrap()
            }
            "--vram-budget" => extra.extend([
                "--vram-budget".into(),
                args.next().expect("--vram-budget BYTES"),
            ]),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let all = workloads(ram_bytes());
    println!("host: {}", host_cpu());
    if into_device {
        println!(
            "| workload | table | CPU engine into mapped buffers s | GPU engine s | gpu / cpu | adapter |"
        );
        println!("|---|---|---|---|---|---|");
        for name in names.split(',') {
            let (w, wdir) = prepare(&all, name, &dir);
            copy_baseline(&wdir); // the old table in the page cache
            let (cpu, gpu, adapter) = to_device(&wdir, reps);
            println!(
                "| {} | {} x {} {} ({:.2} GB) | {cpu:.3} | {gpu:.3} | {:.2} | {adapter} |",
                w.name,
                w.rows,
                w.cols,
                w.dtype(),
                w.old_bytes() as f64 / 1e9,
                gpu / cpu,
            );
        }
        return;
    }
    let backends: Vec<&str> = backend.split(',').collect();
    if backends.contains(&"gpu") {
        match device_copy_bandwidth() {
            Some((name, bw)) => println!(
                "device {name}: buffer-to-buffer copy {:.1} GB/s\n",
                bw / 1e9
            ),
            None => println!("no GPU adapter for the device copy measurement\n"),
        }
    }
    println!("| workload | table | backend | copy s | direct copy s | warmstart s | CPU s | GB/s | ratio to copy | ratio to direct copy | peak anon MiB | planning alone MiB |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut versus = Vec::new();
    for name in names.split(',') {
        let (w, wdir) = prepare(&all, name, &dir);
        // Warm the page cache the same way for both: read the old file once.
        copy_baseline(&wdir);
        let (mut copies, mut directs) = (Vec::new(), Vec::new());
        let mut runs = vec![Vec::new(); backends.len()];
        let mut cpus = vec![Vec::new(); backends.len()];
        let mut peaks = vec![0u64; backends.len()];
        for _ in 0..reps {
            copies.push(copy_baseline(&wdir));
            directs.push(direct_copy(&wdir));
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            for (b, backend) in backends.iter().enumerate() {
                let (s, cpu, peak) = run_cli(&bin, &wdir, backend, &extra);
                runs[b].push(s);
                cpus[b].push(cpu);
                peaks[b] = peaks[b].max(peak);
            }
        }
        let (copy, direct) = (median(copies), median(directs));
        // The vocabulary index and other planning structures: a dry run's peak.
        let (_, _, plan_peak) = run_cli(&bin, &wdir, "cpu", &["--dry-run"]);
        let out_bytes = (w.new_rows() * w.cols * w.elem()) as f64;
        let runs: Vec<f64> = runs.into_iter().map(median).collect();
        let cpus: Vec<f64> = cpus.into_iter().map(median).collect();
        for (((backend, &run), cpu), peak) in backends.iter().zip(&runs).zip(&cpus).zip(&peaks) {
            println!(
                "| {} | {} x {} {} ({:.2} GB) | {backend} | {copy:.2} | {direct:.2} | {run:.2} | {cpu:.2} | {:.2} | {:.2} | {:.2} | {:.0} | {:.0} |",
                w.name,
                w.rows,
                w.cols,
                w.dtype(),
                w.old_bytes() as f64 / 1e9,
                out_bytes / run / 1e9,
                run / copy,
                run / direct,
                *peak as f64 / (1 << 20) as f64,
                plan_peak as f64 / (1 << 20) as f64,
            );
        }
        for ((backend, run), cpu) in backends.iter().zip(&runs).zip(&cpus).skip(1) {
            versus.push(format!(
                "| {} | {backend} / {} | {:.2} | {:.2} |",
                w.name,
                backends[0],
                run / runs[0],
                cpu / cpus[0]
            ));
        }
        if !keep && (w.name == "huge" || w.name == "8g") {
            let _ = std::fs::remove_dir_all(&wdir);
        }
    }
    if !versus.is_empty() {
        println!("\n| workload | backends | ratio of median seconds (same run, interleaved) | ratio of median CPU seconds |");
        println!("|---|---|---|---|");
        for line in versus {
            println!("{line}");
        }
    }
}
