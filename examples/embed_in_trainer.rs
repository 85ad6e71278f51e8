//! Warm-starting inside a wgpu-based trainer: the trainer owns its `wgpu::Device`, hands it to
//! the GPU engine, and gets every warm-started tensor back as a device buffer it can bind
//! directly. The output never goes through the host; this example reads one buffer back only
//! to print it.
//!
//! ```text
//! cargo run --example embed_in_trainer
//! ```
//!
//! Needs a GPU adapter (Mesa's software Vulkan driver will do: `WGPU_BACKEND=vulkan`).

use std::error::Error;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::Dtype;
use warmstart::{GpuEngine, Initializer, Model, Plan, Variable, VocabInfo, WarmStartSettings};

fn main() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let (shape, values) = run(dir.path())?;
    println!("emb {shape:?}, warm-started on the trainer's device:");
    for (token, row) in ["c", "a", "d", "e", "<oov>"]
        .iter()
        .zip(values.chunks(shape[1]))
    {
        println!("  {token:>5}: {row:?}");
    }
    Ok(())
}

/// Warm-starts an embedding whose vocabulary changed from `a b c` to `c a d e` (+1 OOV
/// bucket) on a device created here as a trainer would, and returns the new table's shape
/// and values, read back from the device buffer. Files go to `dir`.
pub fn run(dir: &Path) -> Result<(Vec<usize>, Vec<f32>), Box<dyn Error>> {
    // The previous run: an embedding of 3 tokens x 4 dims, and its vocabulary.
    let old: Vec<u8> = (0..12).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let checkpoint = safetensors::serialize(
        [("emb", TensorView::new(Dtype::F32, vec![3, 4], &old)?)],
        None,
    )?;
    std::fs::write(dir.join("old.safetensors"), checkpoint)?;
    std::fs::write(dir.join("old_vocab.txt"), "a\nb\nc\n")?;
    std::fs::write(dir.join("new_vocab.txt"), "c\na\nd\ne\n")?;

    // The new model, declared in code; new rows get a truncated normal.
    let model = Model::new(vec![Variable::new("emb", Dtype::F32, vec![5, 4])])?;
    let vocab = VocabInfo::new(dir.join("new_vocab.txt"), 4, 1, dir.join("old_vocab.txt"))
        .backup_initializer(Initializer::TruncatedNormal {
            mean: 0.0,
            stddev: 0.02,
            seed: 7,
        });
    let settings = WarmStartSettings::new(dir.join("old.safetensors")).vocab_info("emb", vocab);
    let plan = Plan::new(&settings, &model)?;

    // The trainer's own device. wgpu's default limits cap a buffer at 256 MiB and a storage
    // binding at 128 MiB: a trainer with real embedding tables asks for the adapter's own
    // (tables larger than one buffer are refused by `to_device`; `to_host` or `remap_into`
    // slices of one table still work). On a software adapter (lavapipe) the engine is faster
    // with SHADER_INT64 and MAPPABLE_PRIMARY_BUFFERS, where the device has them.
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&Default::default()))?;
    let wanted = match adapter.get_info().device_type {
        wgpu::DeviceType::Cpu => {
            wgpu::Features::SHADER_INT64 | wgpu::Features::MAPPABLE_PRIMARY_BUFFERS
        }
        _ => wgpu::Features::empty(),
    };
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: adapter.limits(),
        required_features: adapter.features() & wanted,
        ..Default::default()
    }))?;

    // Hand it in: every warm-started tensor comes back as a buffer on that device
    // (STORAGE | COPY_SRC | COPY_DST), ready to be bound by the trainer's own pipelines.
    let mut engine = GpuEngine::from_device(device.clone(), queue.clone())?;
    let tensors = engine.to_device(&plan)?;
    let emb = &tensors[0];

    // Only to show it: read the buffer back.
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size: emb.buffer.size(),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(&emb.buffer, 0, &staging, 0, emb.buffer.size());
    let submission = queue.submit([encoder.finish()]);
    staging.map_async(wgpu::MapMode::Read, .., |r| {
        r.expect("mapping the readback buffer");
    });
    device.poll(wgpu::PollType::Wait {
        submission_index: Some(submission),
        timeout: Some(std::time::Duration::from_secs(60)),
    })?;
    // (mapped whole: a mapped range is a multiple of 4 bytes, which an f16 tensor of odd
    // length is not; the buffer is)
    let mut bytes = staging.get_mapped_range(..)?.to_vec();
    bytes.truncate(emb.byte_len as usize);
    staging.unmap();
    let values = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok((emb.shape.clone(), values))
}
