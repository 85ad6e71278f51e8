//! Every WGSL file under `shaders/`, and every kernel as compiled (library files concatenated),
//! parses and validates with naga. No device needed.
//!
//! Validation uses no optional capability: the kernels must run on any WebGPU-class device
//! (no f16, no 64-bit integers, no `pack2x16float`). The exceptions are the `vec2<u64>`
//! gathers, used only on devices with 64-bit integers: they are validated with that
//! capability alone.

use std::path::Path;

fn validate(name: &str, source: &str) {
    let module = naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("{name} does not parse:\n{}", e.emit_to_string(source)));
    let capabilities = match name.contains("u64") {
        true => naga::valid::Capabilities::SHADER_INT64,
        false => naga::valid::Capabilities::empty(),
    };
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name} does not validate:\n{}", e.emit_to_string(source)));
}

#[test]
fn every_wgsl_file_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 7,
        "expected the kernel and library files, found {files:?}"
    );
    // A file is validated with the library files it needs in front of it, as in the kernels.
    let needs = |name: &str| -> &'static [&'static str] {
        match name {
            "philox.wgsl" => &[],
            // the unit files of gather_rows.wgsl use its bindings
            "word_vec4_split.wgsl" | "word_u64x2_split.wgsl" => &["rows.wgsl", "gather_rows.wgsl"],
            w if w.starts_with("word_") => &["rows.wgsl", "copy_span.wgsl", "gather_rows.wgsl"],
            "copy_span.wgsl" => &["rows.wgsl", "word_u32.wgsl", "gather_rows.wgsl"],
            "rows.wgsl" => &["kernel stub"],
            "float.wgsl" => &["philox.wgsl"],
            "init.wgsl" => &["philox.wgsl", "float.wgsl"],
            "gather_rows.wgsl" => &["rows.wgsl", "word_u32.wgsl", "copy_span.wgsl"],
            "remap_cols.wgsl" => &["rows.wgsl"],
            _ => &["philox.wgsl", "float.wgsl", "init.wgsl", "rows.wgsl"],
        }
    };
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let mut source = String::new();
        for lib in needs(&name) {
            if *lib == "kernel stub" {
                // rows.wgsl calls these two functions of the kernel it is part of
                source += "fn set_row(i: u32) -> vec2<u32> { return vec2<u32>(i, i); }\n\
                           fn do_words(row: vec2<u32>, first: u32, end: u32) {}\n";
                continue;
            }
            source += &std::fs::read_to_string(dir.join(lib)).unwrap();
            source += "\n";
        }
        source += &std::fs::read_to_string(file).unwrap();
        validate(&name, &source);
    }
}

#[test]
fn every_kernel_validates() {
    for (name, source) in warmstart::engine::gpu::kernel_sources() {
        validate(name, source);
        assert!(source.contains("fn main("), "{name} has no entry point");
    }
}

#[test]
fn every_kernel_file_is_compiled() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let sources = warmstart::engine::gpu::kernel_sources();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            sources.iter().any(|(_, s)| s.contains(&text)),
            "{} is part of no kernel",
            path.display()
        );
    }
}
