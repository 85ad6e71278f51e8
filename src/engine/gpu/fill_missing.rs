//! Initialisation of the cells without a past (`shaders/fill_missing.wgsl`): whole rows whose
//! row has no source, and the new columns of rows that have one.

use bytemuck::{Pod, Zeroable};

use super::kernels::{Binding, Control, InitUniform, Kernel, RowSet};

/// The kernel's source: the Philox, float and initializer libraries, `rows.wgsl` and
/// `fill_missing.wgsl`.
pub(crate) const SOURCE: &str = concat!(
    include_str!("../../../shaders/philox.wgsl"),
    "\n",
    include_str!("../../../shaders/float.wgsl"),
    "\n",
    include_str!("../../../shaders/init.wgsl"),
    "\n",
    include_str!("../../../shaders/rows.wgsl"),
    "\n",
    include_str!("../../../shaders/fill_missing.wgsl"),
);

/// Uniform parameters of one dispatch (`Params` in the shader).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub(crate) struct Params {
    /// The output rows.
    pub rows: RowSet,
    /// Columns of the output.
    pub cols: u32,
    /// Bytes per element: 2, 4 or 8.
    pub esize: u32,
    /// 1: every cell of the rows; 0: only the columns col_map marks MISSING.
    pub whole: u32,
    pub _pad: u32,
    /// The initializer.
    pub init: InitUniform,
}

/// The compiled kernel.
pub(crate) struct FillMissing(Kernel);

impl FillMissing {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        FillMissing(Kernel::new(
            device,
            "fill_missing",
            SOURCE,
            &[
                Binding::Uniform(size_of::<Params>() as u64),
                Binding::Read,      // list: output rows
                Binding::Read,      // col_map (a placeholder when `whole` is 1)
                Binding::ReadWrite, // the output chunk
            ],
        ))
    }

    /// The bind group of one dispatch.
    pub(crate) fn bind(
        &self,
        device: &wgpu::Device,
        ctrl: Control<'_>,
        col_map: &wgpu::Buffer,
        out: &wgpu::Buffer,
    ) -> wgpu::BindGroup {
        let [params, list] = ctrl.bindings(size_of::<Params>());
        self.0.bind(
            device,
            &[
                params,
                list,
                col_map.as_entire_binding(),
                out.as_entire_binding(),
            ],
        )
    }

    pub(crate) fn kernel(&self) -> &Kernel {
        &self.0
    }
}
