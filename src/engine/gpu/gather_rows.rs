//! The row gather of axis 0 (`shaders/gather_rows.wgsl`): output rows of a chunk copied from
//! the old rows their index names, one dispatch per window of the old table. Rows move in
//! units of 16 bytes when their byte width is a multiple of 16, else of `u32`; rows that are
//! not whole words (odd-width f16/bf16) go through `remap_cols` instead.
//!
//! A 16-byte unit is a `vec4<u32>`, or a `vec2<u64>` on a software adapter with 64-bit
//! integers (see [`GatherRows::new`]).
//!
//! A window's rows start `lead` bytes into its buffer (`host_memory.rs`), a multiple of 4 but
//! not always of 16: rows moved in 16-byte units are then assembled from two neighbouring
//! units of the window (`word_vec4_split.wgsl`, `word_u64x2_split.wgsl`).

use bytemuck::{Pod, Zeroable};

use super::kernels::{Binding, Control, Kernel, RowSet};

/// The kernel's source moving `u32` units: `rows.wgsl`, `word_u32.wgsl`, `copy_span.wgsl`,
/// `gather_rows.wgsl`.
pub(crate) const SOURCE_U32: &str = concat!(
    include_str!("../../../shaders/rows.wgsl"),
    "\n",
    include_str!("../../../shaders/word_u32.wgsl"),
    "\n",
    include_str!("../../../shaders/copy_span.wgsl"),
    "\n",
    include_str!("../../../shaders/gather_rows.wgsl"),
);

/// The kernel's source moving `vec4<u32>` units.
pub(crate) const SOURCE_VEC4: &str = concat!(
    include_str!("../../../shaders/rows.wgsl"),
    "\n",
    include_str!("../../../shaders/word_vec4.wgsl"),
    "\n",
    include_str!("../../../shaders/copy_span.wgsl"),
    "\n",
    include_str!("../../../shaders/gather_rows.wgsl"),
);

/// The kernel's source moving `vec4<u32>` units off 16-byte boundaries of the window.
pub(crate) const SOURCE_VEC4_SPLIT: &str = concat!(
    include_str!("../../../shaders/rows.wgsl"),
    "\n",
    include_str!("../../../shaders/word_vec4_split.wgsl"),
    "\n",
    include_str!("../../../shaders/gather_rows.wgsl"),
);

/// The kernel's source moving 16-byte units as `vec2<u64>`.
pub(crate) const SOURCE_U64X2: &str = concat!(
    include_str!("../../../shaders/rows.wgsl"),
    "\n",
    include_str!("../../../shaders/word_u64x2.wgsl"),
    "\n",
    include_str!("../../../shaders/copy_span.wgsl"),
    "\n",
    include_str!("../../../shaders/gather_rows.wgsl"),
);

/// The kernel's source moving 16-byte units as `vec2<u64>` off 16-byte boundaries of the
/// window.
pub(crate) const SOURCE_U64X2_SPLIT: &str = concat!(
    include_str!("../../../shaders/rows.wgsl"),
    "\n",
    include_str!("../../../shaders/word_u64x2_split.wgsl"),
    "\n",
    include_str!("../../../shaders/gather_rows.wgsl"),
);

/// Uniform parameters of one dispatch (`Params` in the shader).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub(crate) struct Params {
    /// Output rows and their source rows in the window; `words_per_row` in units.
    pub rows: RowSet,
    /// The window's lead in whole units...
    pub old_offset: u32,
    /// ...and in `u32` words (the split kernel: 1 to 3).
    pub old_shift: u32,
    pub _pad: [u32; 2],
}

impl Params {
    /// A dispatch over `rows` of a window with a lead of `lead` bytes, in units of `unit`.
    pub(crate) fn new(rows: RowSet, unit: usize, lead: u64) -> Self {
        Params {
            rows,
            old_offset: (lead / unit as u64) as u32,
            old_shift: (lead % unit as u64 / 4) as u32,
            _pad: [0; 2],
        }
    }
}

/// Whether rows moved in units of `unit` bytes from a window with a lead of `lead` bytes are
/// off the window's unit boundaries (the split kernel).
fn split(unit: usize, lead: u64) -> bool {
    unit == 16 && !lead.is_multiple_of(16)
}

/// The compiled kernel, in both unit sizes, and in 16-byte units off unit boundaries.
pub(crate) struct GatherRows {
    u32s: Kernel,
    units16: Kernel,
    units16_split: Kernel,
}

impl GatherRows {
    /// Compiles the kernel; with `wide` (a device with `SHADER_INT64`), 16-byte units as
    /// `vec2<u64>`. The software Vulkan driver moves every component of every lane on its
    /// own, so half the components is about half the work: a 256 MiB row gather on lavapipe
    /// took 137-151 ms against 166-220 ms with `vec4<u32>` (three runs of each, alternating).
    pub(crate) fn new(device: &wgpu::Device, wide: bool) -> Self {
        let bindings = [
            Binding::Uniform(size_of::<Params>() as u64),
            Binding::Read,      // list: (output row, window row) pairs
            Binding::Read,      // the old window
            Binding::ReadWrite, // the output chunk
        ];
        let (units16, units16_split) = match wide {
            true => (SOURCE_U64X2, SOURCE_U64X2_SPLIT),
            false => (SOURCE_VEC4, SOURCE_VEC4_SPLIT),
        };
        GatherRows {
            u32s: Kernel::new(device, "gather_rows (u32)", SOURCE_U32, &bindings),
            units16: Kernel::new(device, "gather_rows (16 bytes)", units16, &bindings),
            units16_split: Kernel::new(
                device,
                "gather_rows (16 bytes, split)",
                units16_split,
                &bindings,
            ),
        }
    }

    /// The kernel moving units of `unit` bytes (4 or 16) from a window with a lead of `lead`
    /// bytes.
    pub(crate) fn kernel(&self, unit: usize, lead: u64) -> &Kernel {
        match (unit, split(unit, lead)) {
            (16, true) => &self.units16_split,
            (16, false) => &self.units16,
            _ => &self.u32s,
        }
    }

    /// The bind group of one dispatch: its params entry and list, the old window, the output
    /// chunk.
    pub(crate) fn bind(
        &self,
        device: &wgpu::Device,
        (unit, lead): (usize, u64),
        ctrl: Control<'_>,
        window: &wgpu::Buffer,
        out: &wgpu::Buffer,
    ) -> wgpu::BindGroup {
        let [params, list] = ctrl.bindings(size_of::<Params>());
        self.kernel(unit, lead).bind(
            device,
            &[
                params,
                list,
                window.as_entire_binding(),
                out.as_entire_binding(),
            ],
        )
    }
}
