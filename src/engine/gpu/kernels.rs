//! What the three kernels share: the WGSL library files, the uniform blocks `RowSet` and
//! `InitUniform` that every kernel's `Params` embeds, pipeline creation and dispatch sizing.
//!
//! Each kernel's source is its `.wgsl` file with the library files it needs concatenated in
//! front at compile time (`concat!(include_str!(..))`; WGSL has no includes). The Rust structs
//! here mirror the WGSL structs field for field; all fields are `u32` and every struct is a
//! multiple of 16 bytes, so the `#[repr(C)]` layout is the WGSL uniform layout.

use bytemuck::{Pod, Zeroable};

/// Threads per workgroup (`WORKGROUP` in `shaders/rows.wgsl`).
pub(crate) const WORKGROUP: u32 = 256;

/// Refuses a device whose limits cannot run the kernels (a caller's device opened with
/// `wgpu::Limits::downlevel_webgl2_defaults()`, which has no compute): they need workgroups
/// of [`WORKGROUP`] threads along x, up to four storage buffers and one uniform buffer.
pub(crate) fn check_limits(l: &wgpu::Limits) -> crate::Result<()> {
    let needs = [
        (
            "max_compute_workgroup_size_x",
            l.max_compute_workgroup_size_x,
            WORKGROUP,
        ),
        (
            "max_compute_invocations_per_workgroup",
            l.max_compute_invocations_per_workgroup,
            WORKGROUP,
        ),
        (
            "max_compute_workgroups_per_dimension",
            l.max_compute_workgroups_per_dimension,
            1,
        ),
        (
            "max_storage_buffers_per_shader_stage",
            l.max_storage_buffers_per_shader_stage,
            4,
        ),
        (
            "max_uniform_buffers_per_shader_stage",
            l.max_uniform_buffers_per_shader_stage,
            1,
        ),
    ];
    let mut short: Vec<String> = (needs.iter())
        .filter(|(_, has, need)| has < need)
        .map(|(name, has, need)| format!("{name} {has} (needs {need})"))
        .collect();
    let binding = l.max_storage_buffer_binding_size;
    if binding < 16 {
        short.push(format!(
            "max_storage_buffer_binding_size {binding} (needs 16)"
        ));
    }
    if short.is_empty() {
        return Ok(());
    }
    Err(crate::Error::gpu(
        crate::GpuFailure::Usage,
        format!(
            "the device's limits cannot run the engine's compute kernels: {}; request the \
             adapter's limits (adapter.limits()) or wgpu's defaults",
            short.join(", ")
        ),
    ))
}

/// `ROWS_LIST` in `shaders/rows.wgsl`: the rows are entries of the list binding.
pub(crate) const ROWS_LIST: u32 = 0;
/// `ROWS_RANGE` in `shaders/rows.wgsl`: the rows are an arithmetic progression.
pub(crate) const ROWS_RANGE: u32 = 1;

/// The output rows of one dispatch (`RowSet` in `shaders/rows.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub(crate) struct RowSet {
    /// Rows in this dispatch.
    pub count: u32,
    /// [`ROWS_LIST`] or [`ROWS_RANGE`].
    pub mode: u32,
    /// List mode: index (in u32 words) of the first entry in the list binding.
    pub list_offset: u32,
    /// Range mode: distance between consecutive rows (1, or 2 when split by parity).
    pub step: u32,
    /// Range mode: first output row, chunk-local.
    pub out_row0: u32,
    /// Range mode: its source row, window-local.
    pub src_row0: u32,
    /// Words of a row's span: `ceil(row_bytes / 4)` (gather_rows: in its unit).
    pub words_per_row: u32,
    /// gather_rows: consecutive words a thread copies per item.
    pub span: u32,
}

/// The parameters of the missing cells' initializer (`InitSpec` in `shaders/init.wgsl`); its
/// kind (`FILL_*`) and the dtype (`DTYPE_*`) are the pipeline's (`fill_missing.rs`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub(crate) struct InitUniform {
    /// Constant fill: the element's bits, low and high word.
    pub const_lo: u32,
    pub const_hi: u32,
    /// Uniform: minval and range as f32 bits; normal: mean and stddev.
    pub a: u32,
    pub b: u32,
    /// Philox key (the seed).
    pub key_lo: u32,
    pub key_hi: u32,
    /// Philox stream (hash of the variable name).
    pub stream_lo: u32,
    pub stream_hi: u32,
    /// Global element index of the chunk's first element.
    pub base_lo: u32,
    pub base_hi: u32,
    pub _pad: [u32; 2],
}

/// How a kernel's binding is declared.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Binding {
    /// `var<uniform>` of the given size in bytes.
    Uniform(u64),
    /// `var<storage, read>`.
    Read,
    /// `var<storage, read_write>`.
    ReadWrite,
}

/// A compiled kernel: its pipeline and bind group layout.
pub(crate) struct Kernel {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) layout: wgpu::BindGroupLayout,
}

impl Kernel {
    /// Compiles `source` (entry point `main`) with bindings 0.. of group 0 as given.
    pub(crate) fn new(
        device: &wgpu::Device,
        name: &'static str,
        source: &'static str,
        bindings: &[Binding],
    ) -> Self {
        Self::with_constants(device, name, source, bindings, &[])
    }

    /// [`Kernel::new`] with values for the source's `override` constants.
    pub(crate) fn with_constants(
        device: &wgpu::Device,
        name: &'static str,
        source: &'static str,
        bindings: &[Binding],
        constants: &[(&str, f64)],
    ) -> Self {
        let entries: Vec<wgpu::BindGroupLayoutEntry> = bindings
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: match b {
                        Binding::Uniform(_) => wgpu::BufferBindingType::Uniform,
                        Binding::Read => wgpu::BufferBindingType::Storage { read_only: true },
                        Binding::ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                    },
                    has_dynamic_offset: false,
                    min_binding_size: match b {
                        Binding::Uniform(size) => wgpu::BufferSize::new(*size),
                        _ => None,
                    },
                },
                count: None,
            })
            .collect();
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(name),
            entries: &entries,
        });
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(name),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(name),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(name),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some("main"),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                ..Default::default()
            },
            cache: None,
        });
        Kernel { pipeline, layout }
    }

    /// A bind group with `resources` at bindings 0...
    pub(crate) fn bind(
        &self,
        device: &wgpu::Device,
        resources: &[wgpu::BindingResource<'_>],
    ) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry> = resources
            .iter()
            .enumerate()
            .map(|(i, r)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: r.clone(),
            })
            .collect();
        device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &self.layout,
            entries: &entries,
        })
    }

    /// Records a dispatch for `threads` work items (one thread each), with at most
    /// `max_groups` workgroups: the kernels loop with a grid stride over what the grid does
    /// not cover.
    pub(crate) fn dispatch(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        bind_group: &wgpu::BindGroup,
        threads: u32,
        max_groups: u32,
    ) {
        if threads == 0 {
            return;
        }
        let groups = threads.div_ceil(WORKGROUP).clamp(1, max_groups.max(1));
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, bind_group, &[]);
        pass.dispatch_workgroups(groups, 1, 1);
    }
}

/// Where a dispatch finds its uniform parameters and its row list: its entry and the list in
/// the chunk's control buffer.
#[derive(Clone, Copy)]
pub(crate) struct Control<'a> {
    pub buffer: &'a wgpu::Buffer,
    /// Offset of the dispatch's parameter entry.
    pub params: u64,
    /// Offset and size of the list.
    pub list: (u64, u64),
}

impl<'a> Control<'a> {
    /// The uniform binding of a `Params` of `size` bytes, and the list binding.
    pub(crate) fn bindings(&self, size: usize) -> [wgpu::BindingResource<'a>; 2] {
        [
            slice(self.buffer, self.params, size as u64),
            slice(self.buffer, self.list.0, self.list.1),
        ]
    }
}

/// A binding of `size` bytes of `buffer` at `offset`.
pub(crate) fn slice(buffer: &wgpu::Buffer, offset: u64, size: u64) -> wgpu::BindingResource<'_> {
    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer,
        offset,
        size: wgpu::BufferSize::new(size),
    })
}
