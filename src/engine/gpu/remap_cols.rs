//! The element-wise remap (`shaders/remap_cols.wgsl`): each output element taken from the old
//! column its column index names (new and OOV columns are left to the fill), one dispatch per
//! window of the old table. Used for axis 1, and with identity columns for the rows of
//! odd-width f16/bf16 tables, which `gather_rows` cannot move as whole words.

use bytemuck::{Pod, Zeroable};

use super::kernels::{Binding, Control, Kernel, RowSet};

/// The kernel's source: `rows.wgsl` + `remap_cols.wgsl`.
pub(crate) const SOURCE: &str = concat!(
    include_str!("../../../shaders/rows.wgsl"),
    "\n",
    include_str!("../../../shaders/remap_cols.wgsl"),
);

/// Uniform parameters of one dispatch (`Params` in the shader).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub(crate) struct Params {
    /// Output rows and their source rows in the window.
    pub rows: RowSet,
    /// Columns of the output.
    pub cols: u32,
    /// Columns of the old table.
    pub old_cols: u32,
    /// Bytes per element: 2, 4 or 8.
    pub esize: u32,
    /// 1: no column map, column c is old column c.
    pub identity: u32,
    /// The window's lead in words (`host_memory.rs`).
    pub old_offset: u32,
    pub _pad: [u32; 3],
}

/// The compiled kernel.
pub(crate) struct RemapCols(Kernel);

impl RemapCols {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        RemapCols(Kernel::new(
            device,
            "remap_cols",
            SOURCE,
            &[
                Binding::Uniform(size_of::<Params>() as u64),
                Binding::Read,      // list: (output row, window row) pairs
                Binding::Read,      // the old window
                Binding::Read,      // col_map (a placeholder with identity columns)
                Binding::ReadWrite, // the output chunk
            ],
        ))
    }

    /// The bind group of one dispatch.
    pub(crate) fn bind(
        &self,
        device: &wgpu::Device,
        ctrl: Control<'_>,
        window: &wgpu::Buffer,
        col_map: &wgpu::Buffer,
        out: &wgpu::Buffer,
    ) -> wgpu::BindGroup {
        let [params, list] = ctrl.bindings(size_of::<Params>());
        self.0.bind(
            device,
            &[
                params,
                list,
                window.as_entire_binding(),
                col_map.as_entire_binding(),
                out.as_entire_binding(),
            ],
        )
    }

    pub(crate) fn kernel(&self) -> &Kernel {
        &self.0
    }
}
