//! The row gather of axis 0 (`shaders/gather_rows.wgsl`): output rows of a chunk copied from
//! the old rows their index names, one dispatch per window of the old table.

use bytemuck::{Pod, Zeroable};

use super::kernels::{slice, Binding, Kernel, RowSet};

/// The kernel's source: `rows.wgsl` + `gather_rows.wgsl`.
pub(crate) const SOURCE: &str = concat!(
    include_str!("../../../shaders/rows.wgsl"),
    "\n",
    include_str!("../../../shaders/gather_rows.wgsl"),
);

/// Uniform parameters of one dispatch (`Params` in the shader).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub(crate) struct Params {
    /// Output rows and their source rows in the window.
    pub rows: RowSet,
    /// Bytes of a row (old and new rows have the same columns on axis 0).
    pub row_bytes: u32,
    /// Columns (elements per row).
    pub cols: u32,
    pub _pad: [u32; 2],
}

/// The compiled kernel.
pub(crate) struct GatherRows(Kernel);

impl GatherRows {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        GatherRows(Kernel::new(
            device,
            "gather_rows",
            SOURCE,
            &[
                Binding::Uniform(size_of::<Params>() as u64),
                Binding::Read,      // list: (output row, window row) pairs
                Binding::Read,      // the old window
                Binding::ReadWrite, // the output chunk
            ],
        ))
    }

    /// The bind group of one dispatch: its params entry and list in `ctrl`, the old window,
    /// the output chunk.
    pub(crate) fn bind(
        &self,
        device: &wgpu::Device,
        ctrl: &wgpu::Buffer,
        params_offset: u64,
        list: (u64, u64),
        window: &wgpu::Buffer,
        out: &wgpu::Buffer,
    ) -> wgpu::BindGroup {
        self.0.bind(
            device,
            &[
                slice(ctrl, params_offset, size_of::<Params>() as u64),
                slice(ctrl, list.0, list.1),
                window.as_entire_binding(),
                out.as_entire_binding(),
            ],
        )
    }

    pub(crate) fn kernel(&self) -> &Kernel {
        &self.0
    }
}
