//! The row gather of axis 0 (`shaders/gather_rows.wgsl`): output rows of a chunk copied from
//! the old rows their index names, one dispatch per window of the old table. Rows move in
//! units of `vec4<u32>` when their byte width is a multiple of 16, else of `u32`; rows that are
//! not whole words (odd-width f16/bf16) go through `remap_cols` instead.

use bytemuck::{Pod, Zeroable};

use super::kernels::{Binding, Control, Kernel, RowSet};

/// The kernel's source moving `u32` units: `rows.wgsl`, `word_u32.wgsl`, `gather_rows.wgsl`.
pub(crate) const SOURCE_U32: &str = concat!(
    include_str!("../../../shaders/rows.wgsl"),
    "\n",
    include_str!("../../../shaders/word_u32.wgsl"),
    "\n",
    include_str!("../../../shaders/gather_rows.wgsl"),
);

/// The kernel's source moving `vec4<u32>` units.
pub(crate) const SOURCE_VEC4: &str = concat!(
    include_str!("../../../shaders/rows.wgsl"),
    "\n",
    include_str!("../../../shaders/word_vec4.wgsl"),
    "\n",
    include_str!("../../../shaders/gather_rows.wgsl"),
);

/// Uniform parameters of one dispatch (`Params` in the shader).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub(crate) struct Params {
    /// Output rows and their source rows in the window; `words_per_row` in units.
    pub rows: RowSet,
}

/// The compiled kernel, in both unit sizes.
pub(crate) struct GatherRows {
    u32s: Kernel,
    vec4s: Kernel,
}

impl GatherRows {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        let bindings = [
            Binding::Uniform(size_of::<Params>() as u64),
            Binding::Read,      // list: (output row, window row) pairs
            Binding::Read,      // the old window
            Binding::ReadWrite, // the output chunk
        ];
        GatherRows {
            u32s: Kernel::new(device, "gather_rows (u32)", SOURCE_U32, &bindings),
            vec4s: Kernel::new(device, "gather_rows (vec4)", SOURCE_VEC4, &bindings),
        }
    }

    /// The kernel moving units of `unit` bytes (4 or 16).
    pub(crate) fn kernel(&self, unit: usize) -> &Kernel {
        if unit == 16 {
            &self.vec4s
        } else {
            &self.u32s
        }
    }

    /// The bind group of one dispatch: its params entry and list, the old window, the output
    /// chunk.
    pub(crate) fn bind(
        &self,
        device: &wgpu::Device,
        unit: usize,
        ctrl: Control<'_>,
        window: &wgpu::Buffer,
        out: &wgpu::Buffer,
    ) -> wgpu::BindGroup {
        let [params, list] = ctrl.bindings(size_of::<Params>());
        self.kernel(unit).bind(
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
