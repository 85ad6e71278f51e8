//! Initialisation of the cells without a past (`shaders/fill_missing.wgsl`): whole rows whose
//! row has no source, and the new columns of rows that have one.

use std::sync::OnceLock;

use bytemuck::{Pod, Zeroable};

use super::compile_checked;
use super::kernels::{Binding, Control, InitUniform, Kernel, RowSet};
use crate::error::{Error, Result};

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
    /// 1: every cell of the rows; 0: only the columns col_map marks MISSING.
    pub whole: u32,
    pub _pad: [u32; 2],
    /// The initializer.
    pub init: InitUniform,
}

const BINDINGS: [Binding; 4] = [
    Binding::Uniform(size_of::<Params>() as u64),
    Binding::Read,      // list: output rows
    Binding::Read,      // col_map (a placeholder when `whole` is 1)
    Binding::ReadWrite, // the output chunk
];

/// The compiled kernel: one pipeline per element size (2, 4 or 8 bytes, the shader's
/// `ESIZE`), since each element size inlines the initializers at call sites of its own.
/// Those asked for are compiled when the engine starts, the others when first needed (on the
/// software driver each takes 25-75 ms of CPU, all three together 120 ms).
pub(crate) struct FillMissing {
    device: wgpu::Device,
    by_size: [OnceLock<std::result::Result<Kernel, String>>; 3],
}

impl FillMissing {
    /// Compiles the pipelines for elements of `esizes` bytes now, the others on first use.
    pub(crate) fn new(device: &wgpu::Device, esizes: &[usize]) -> Result<Self> {
        let fill = FillMissing {
            device: device.clone(),
            by_size: Default::default(),
        };
        for &esize in esizes {
            fill.kernel(esize)?;
        }
        Ok(fill)
    }

    /// The pipeline for elements of `esize` bytes (2, 4 or 8), compiled on first use.
    pub(crate) fn kernel(&self, esize: usize) -> Result<&Kernel> {
        let slot = match esize {
            2 => 0,
            4 => 1,
            _ => 2,
        };
        self.by_size[slot]
            .get_or_init(|| {
                let constants = [("ESIZE", esize as f64)];
                compile_checked(&self.device, |d| {
                    Kernel::with_constants(d, "fill_missing", SOURCE, &BINDINGS, &constants)
                })
            })
            .as_ref()
            .map_err(|e| Error::Gpu(e.clone()))
    }

    /// The bind group of one dispatch of `kernel` (one of this kernel's pipelines).
    pub(crate) fn bind(
        kernel: &Kernel,
        device: &wgpu::Device,
        ctrl: Control<'_>,
        col_map: &wgpu::Buffer,
        out: &wgpu::Buffer,
    ) -> wgpu::BindGroup {
        let [params, list] = ctrl.bindings(size_of::<Params>());
        kernel.bind(
            device,
            &[
                params,
                list,
                col_map.as_entire_binding(),
                out.as_entire_binding(),
            ],
        )
    }
}
