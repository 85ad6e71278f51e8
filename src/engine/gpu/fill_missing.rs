//! Initialisation of the cells without a past (`shaders/fill_missing.wgsl`): whole rows whose
//! row has no source, and the new columns of rows that have one.

use std::sync::OnceLock;

use bytemuck::{Pod, Zeroable};

use super::compile_checked;
use super::device::Fault;
use super::kernels::{Binding, Control, InitUniform, Kernel, RowSet};
use crate::dtype::FloatType;
use crate::error::{GpuFailure, Result};
use crate::initializer::{Fill, Initializer};

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

/// What a pipeline is specialised for: the table's element type and the kind of fill, the
/// shader's pipeline constants `DTYPE`, `FILL` (and `ESIZE`, the element's bytes). The
/// software driver runs both sides of every branch it cannot prove uniform, so one pipeline
/// for all would compute every kind of fill and every encoding for each element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Variant {
    dtype: FloatType,
    /// `FILL_*` of `shaders/init.wgsl`.
    kind: u32,
}

/// `FILL_*` of `shaders/init.wgsl`.
const FILL_CONSTANT: u32 = 0;
const FILL_UNIFORM: u32 = 1;
const FILL_NORMAL: u32 = 2;
const FILL_TRUNCATED: u32 = 3;

impl Variant {
    /// The pipeline filling elements of `dtype` with `fill`.
    pub(crate) fn new(dtype: FloatType, fill: &Fill) -> Self {
        let kind = match fill {
            Fill::Constant(_) => FILL_CONSTANT,
            Fill::Uniform { .. } => FILL_UNIFORM,
            Fill::Normal { .. } => FILL_NORMAL,
            Fill::TruncatedNormal { .. } => FILL_TRUNCATED,
        };
        Variant { dtype, kind }
    }

    /// Every pipeline that `types` x `initializers` need (an initializer with invalid
    /// parameters needs none: planning refuses it).
    pub(crate) fn all_of(types: &[FloatType], initializers: &[Initializer]) -> Vec<Variant> {
        let mut variants = Vec::new();
        for init in initializers {
            // the kind of fill does not depend on the shape
            let Ok(spec) = init.resolve("", &[1, 1], "") else {
                continue;
            };
            for &dtype in types {
                let v = Variant::new(dtype, &spec.fill);
                if !variants.contains(&v) {
                    variants.push(v);
                }
            }
        }
        variants
    }

    /// `DTYPE_*` of `shaders/init.wgsl`.
    fn dtype_code(self) -> u32 {
        match self.dtype {
            FloatType::F32 => 0,
            FloatType::F64 => 1,
            FloatType::F16 => 2,
            FloatType::BF16 => 3,
        }
    }

    /// The slot of this pipeline in [`FillMissing`].
    fn index(self) -> usize {
        (self.dtype_code() * 4 + self.kind) as usize
    }

    /// The shader's pipeline constants.
    fn constants(self) -> [(&'static str, f64); 3] {
        [
            ("ESIZE", self.dtype.size() as f64),
            ("DTYPE", f64::from(self.dtype_code())),
            ("FILL", f64::from(self.kind)),
        ]
    }
}

/// The compiled kernel: one pipeline per [`Variant`]. Those asked for are compiled when the
/// engine starts, the others when first needed (on the software driver each takes 25-50 ms
/// of CPU). A compile that ran out of device memory is not kept (the next use compiles
/// again); any other failure is.
pub(crate) struct FillMissing {
    device: wgpu::Device,
    pipelines: [OnceLock<std::result::Result<Kernel, Fault>>; 16],
}

impl FillMissing {
    /// Compiles the pipelines of `variants` now, the others on first use.
    pub(crate) fn new(device: &wgpu::Device, variants: &[Variant]) -> Result<Self> {
        let fill = FillMissing {
            device: device.clone(),
            pipelines: Default::default(),
        };
        for &v in variants {
            fill.kernel(v)?;
        }
        Ok(fill)
    }

    /// The pipeline of `variant`, compiled on first use.
    pub(crate) fn kernel(&self, variant: Variant) -> Result<&Kernel> {
        let slot = &self.pipelines[variant.index()];
        if slot.get().is_none() {
            let constants = variant.constants();
            match compile_checked(&self.device, |d| {
                Kernel::with_constants(d, "fill_missing", SOURCE, &BINDINGS, &constants)
            }) {
                // may pass: the next use compiles again
                Err(f) if f.kind == GpuFailure::OutOfMemory => return Err(f.into()),
                compiled => {
                    let _ = slot.set(compiled); // (or another thread's, the same)
                }
            }
        }
        match slot.get() {
            Some(Ok(kernel)) => Ok(kernel),
            Some(Err(f)) => Err(f.clone().into()),
            None => unreachable!("set above"),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::initializer::{Distribution, FanMode};

    /// The pipelines compiled as the engine starts are those of every type and every kind of
    /// fill the initializers resolve to, once each; an invalid initializer needs none.
    #[test]
    fn initializers_name_their_kinds_of_fill() {
        let scaling = |distribution| Initializer::VarianceScaling {
            scale: 1.0,
            mode: FanMode::FanAvg,
            distribution,
            seed: 0,
        };
        let kinds = |inits: &[Initializer]| -> Vec<u32> {
            Variant::all_of(&[FloatType::BF16], inits)
                .iter()
                .map(|v| v.kind)
                .collect()
        };
        assert_eq!(kinds(&[Initializer::Zeros {}]), [FILL_CONSTANT]);
        assert_eq!(
            kinds(&[Initializer::GlorotUniform { seed: 1 }]),
            [FILL_UNIFORM]
        );
        assert_eq!(
            kinds(&[Initializer::GlorotNormal { seed: 1 }]),
            [FILL_TRUNCATED]
        );
        assert_eq!(
            kinds(&[scaling(Distribution::UntruncatedNormal)]),
            [FILL_NORMAL]
        );
        assert_eq!(kinds(&[scaling(Distribution::Uniform)]), [FILL_UNIFORM]);
        let normal = Initializer::RandomNormal {
            mean: 0.0,
            stddev: 1.0,
            seed: 1,
        };
        let invalid = Initializer::RandomNormal {
            mean: f64::NAN,
            stddev: 1.0,
            seed: 1,
        };
        let ones = Initializer::Ones {};
        assert_eq!(
            kinds(&[normal.clone(), invalid, ones, normal]),
            [FILL_NORMAL, FILL_CONSTANT]
        );

        let both = Variant::all_of(&[FloatType::F32, FloatType::F16], &[Initializer::Zeros {}]);
        let types: Vec<FloatType> = both.iter().map(|v| v.dtype).collect();
        assert_eq!(types, [FloatType::F32, FloatType::F16]);
        // every variant has a slot of its own
        let mut slots: Vec<usize> = FloatType::ALL
            .iter()
            .flat_map(|&dtype| (0..4).map(move |kind| Variant { dtype, kind }.index()))
            .collect();
        slots.sort_unstable();
        slots.dedup();
        assert_eq!(slots, (0..16).collect::<Vec<_>>());
    }
}
