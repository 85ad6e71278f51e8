//! Backup initializers: what rows (or columns) without a past receive.
//!
//! [`Initializer`] is the configuration, with TensorFlow's names and defaults. [`InitSpec`] is
//! its resolved form for one variable: a [`Fill`] with concrete parameters (fans already taken
//! from the variable's full shape) and the Philox key and stream.
//!
//! Values are a function of (seed, variable name, global element index): element `i` of a
//! variable of full shape `[rows, cols]` (`i = row * cols + col`) takes lane `i % 4` of Philox
//! block `i / 4` with key = seed and stream = FNV-1a hash of the variable name. A table
//! therefore comes out bit-identical however it is partitioned or chunked, and on either
//! engine but for the normal fills (below).
//! Normal and truncated normal samples use the inverse CDF (`sqrt(2) * erfinv`), which needs
//! no rejection loop and no `sin`/`cos`, so the GPU follows the CPU closely (the tests allow
//! 1e-4 times the standard deviation, at least 1e-4).

use serde::{Deserialize, Serialize};

use crate::dtype::FloatType;
use crate::error::{Error, Result};
use crate::philox;

/// A seed as a plan gives it: any 64-bit integer, as TensorFlow takes; a negative one is its
/// two's complement (`-1` is `u64::MAX`).
fn seed<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    struct Seed;
    impl serde::de::Visitor<'_> for Seed {
        type Value = u64;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an integer seed")
        }
        fn visit_u64<E>(self, v: u64) -> std::result::Result<u64, E> {
            Ok(v)
        }
        fn visit_i64<E>(self, v: i64) -> std::result::Result<u64, E> {
            Ok(v as u64)
        }
    }
    d.deserialize_i64(Seed)
}

/// A backup initializer, as in TensorFlow (`backup_initializer` of `VocabInfo`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Initializer {
    /// All zeros (TensorFlow's default for warm starting).
    Zeros {},
    /// All ones.
    Ones {},
    /// One value everywhere.
    Constant {
        /// The value, rounded once to the variable's dtype.
        value: f64,
    },
    /// Uniform in `[minval, maxval)`: `minval + u * (maxval - minval)` in f32, with `u` in
    /// `[0, 1)` (the f32 arithmetic can still round a value up to `maxval`, as TensorFlow's
    /// same formula can).
    RandomUniform {
        /// Lower bound (default 0).
        #[serde(default)]
        minval: f64,
        /// Upper bound (default 1).
        #[serde(default = "one")]
        maxval: f64,
        /// Philox key (default 0).
        #[serde(default, deserialize_with = "seed")]
        seed: u64,
    },
    /// Normal with the given mean and standard deviation.
    RandomNormal {
        /// Mean (default 0).
        #[serde(default)]
        mean: f64,
        /// Standard deviation (default 1).
        #[serde(default = "one")]
        stddev: f64,
        /// Philox key (default 0).
        #[serde(default, deserialize_with = "seed")]
        seed: u64,
    },
    /// Normal truncated to within two standard deviations of the mean.
    TruncatedNormal {
        /// Mean (default 0).
        #[serde(default)]
        mean: f64,
        /// Standard deviation before truncation (default 1).
        #[serde(default = "one")]
        stddev: f64,
        /// Philox key (default 0).
        #[serde(default, deserialize_with = "seed")]
        seed: u64,
    },
    /// TensorFlow's `VarianceScaling`, fans taken from the variable's full shape.
    VarianceScaling {
        /// Scale (default 1, must be positive).
        #[serde(default = "one")]
        scale: f64,
        /// Which fan divides the scale (default `fan_in`).
        #[serde(default)]
        mode: FanMode,
        /// The distribution (default `truncated_normal`).
        #[serde(default)]
        distribution: Distribution,
        /// Philox key (default 0).
        #[serde(default, deserialize_with = "seed")]
        seed: u64,
    },
    /// `VarianceScaling(1, fan_avg, uniform)`.
    GlorotUniform {
        /// Philox key (default 0).
        #[serde(default, deserialize_with = "seed")]
        seed: u64,
    },
    /// `VarianceScaling(1, fan_avg, truncated_normal)`.
    GlorotNormal {
        /// Philox key (default 0).
        #[serde(default, deserialize_with = "seed")]
        seed: u64,
    },
}

fn one() -> f64 {
    1.0
}

/// The fan of [`Initializer::VarianceScaling`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FanMode {
    /// Number of input units.
    #[default]
    FanIn,
    /// Number of output units.
    FanOut,
    /// Their average.
    FanAvg,
}

/// The distribution of [`Initializer::VarianceScaling`]. Read as TensorFlow's v1
/// `VarianceScaling` reads it: in any case, and `normal` as the deprecated alias of
/// `truncated_normal`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", try_from = "String")]
pub enum Distribution {
    /// Truncated normal, stddev corrected for the truncation.
    #[default]
    TruncatedNormal,
    /// Normal.
    UntruncatedNormal,
    /// Uniform in `[-limit, limit)`.
    Uniform,
}

impl TryFrom<String> for Distribution {
    type Error = String;

    fn try_from(name: String) -> std::result::Result<Self, String> {
        match name.to_lowercase().as_str() {
            "truncated_normal" | "normal" => Ok(Distribution::TruncatedNormal),
            "untruncated_normal" => Ok(Distribution::UntruncatedNormal),
            "uniform" => Ok(Distribution::Uniform),
            _ => Err(format!(
                "unknown distribution {name:?}: expected truncated_normal (or normal), \
                 untruncated_normal or uniform"
            )),
        }
    }
}

impl Default for Initializer {
    fn default() -> Self {
        Initializer::Zeros {}
    }
}

/// What a missing element receives, with concrete parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fill {
    /// The same value everywhere (zeros, ones, constant), rounded once to the dtype.
    Constant(f64),
    /// `minval + unit * range`, with `unit = k / 2^23` from 23 random bits.
    Uniform {
        /// Lower bound.
        minval: f32,
        /// `maxval - minval`, rounded to f32.
        range: f32,
    },
    /// `mean + stddev * z`, `z` standard normal.
    Normal {
        /// Mean.
        mean: f32,
        /// Standard deviation.
        stddev: f32,
    },
    /// `mean + stddev * z`, `z` standard normal truncated to `(-2, 2)`.
    TruncatedNormal {
        /// Mean.
        mean: f32,
        /// Standard deviation before truncation.
        stddev: f32,
    },
}

impl Fill {
    /// The smallest and largest values a random fill gives, as computed (in f32, before
    /// rounding to the variable's dtype): each sample is monotonic in the 23 random bits it
    /// uses, so they come from the extreme bits. `None` for a constant.
    pub fn extremes(&self) -> Option<(f32, f32)> {
        let at = |f: &dyn Fn(u32) -> f32| {
            let (a, b) = (f(0), f(0x7F_FFFF));
            (a.min(b), a.max(b))
        };
        match *self {
            Fill::Constant(_) => None,
            Fill::Uniform { minval, range } => Some(at(&|b| uniform(minval, range, b))),
            Fill::Normal { mean, stddev } => Some(at(&|b| normal(mean, stddev, b))),
            Fill::TruncatedNormal { mean, stddev } => {
                Some(at(&|b| truncated_normal(mean, stddev, b)))
            }
        }
    }
}

/// An initializer resolved for one variable: the fill and its Philox key and stream.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InitSpec {
    /// What missing elements receive.
    pub fill: Fill,
    /// Philox key: the seed's low and high 32 bits.
    pub key: [u32; 2],
    /// Philox counter's high 64 bits: the variable name's hash.
    pub stream: [u32; 2],
}

/// TensorFlow's `_compute_fans`.
pub fn compute_fans(shape: &[usize]) -> (f64, f64) {
    match shape {
        [] => (1.0, 1.0),
        [n] => (*n as f64, *n as f64),
        [a, b] => (*a as f64, *b as f64),
        [.., a, b] => {
            let receptive: f64 = shape[..shape.len() - 2].iter().map(|&d| d as f64).product();
            (*a as f64 * receptive, *b as f64 * receptive)
        }
    }
}

/// `sqrt(scale) / 0.879...`: the stddev of a normal whose truncation to 2 stddev has variance
/// `scale` (TensorFlow's `VarianceScaling` constant).
const TRUNCATION_CORRECTION: f64 = 0.879_625_661_034_239_8;

impl Initializer {
    /// Resolves the initializer for `variable` of full shape `full_shape`, validating its
    /// parameters. `context` names where it was configured, for errors.
    pub fn resolve(&self, variable: &str, full_shape: &[usize], context: &str) -> Result<InitSpec> {
        let bad = |message: String| Error::setting(context, message);
        let finite = |name: &str, v: f64| {
            if v.is_finite() && (v as f32).is_finite() {
                Ok(v)
            } else {
                Err(bad(format!("{name} must be a finite f32 value, got {v}")))
            }
        };
        let stddev_ok = |v: f64| {
            let v = finite("stddev", v)?;
            if v < 0.0 {
                return Err(bad(format!("stddev must not be negative, got {v}")));
            }
            Ok(v as f32)
        };
        let (fill, seed) = match *self {
            Initializer::Zeros {} => (Fill::Constant(0.0), 0),
            Initializer::Ones {} => (Fill::Constant(1.0), 0),
            Initializer::Constant { value } => {
                if value.is_nan() {
                    return Err(bad("constant value must not be NaN".into()));
                }
                (Fill::Constant(value), 0)
            }
            Initializer::RandomUniform {
                minval,
                maxval,
                seed,
            } => {
                let (lo, hi) = (
                    finite("minval", minval)? as f32,
                    finite("maxval", maxval)? as f32,
                );
                let range = hi - lo;
                if !range.is_finite() {
                    return Err(bad(format!(
                        "maxval - minval overflows f32 ({minval}, {maxval})"
                    )));
                }
                (Fill::Uniform { minval: lo, range }, seed)
            }
            Initializer::RandomNormal { mean, stddev, seed } => (
                Fill::Normal {
                    mean: finite("mean", mean)? as f32,
                    stddev: stddev_ok(stddev)?,
                },
                seed,
            ),
            Initializer::TruncatedNormal { mean, stddev, seed } => (
                Fill::TruncatedNormal {
                    mean: finite("mean", mean)? as f32,
                    stddev: stddev_ok(stddev)?,
                },
                seed,
            ),
            Initializer::VarianceScaling {
                scale,
                mode,
                distribution,
                seed,
            } => {
                if !(scale > 0.0 && scale.is_finite()) {
                    return Err(bad(format!("scale must be a positive number, got {scale}")));
                }
                (
                    variance_scaling(scale, mode, distribution, full_shape),
                    seed,
                )
            }
            Initializer::GlorotUniform { seed } => (
                variance_scaling(1.0, FanMode::FanAvg, Distribution::Uniform, full_shape),
                seed,
            ),
            Initializer::GlorotNormal { seed } => (
                variance_scaling(
                    1.0,
                    FanMode::FanAvg,
                    Distribution::TruncatedNormal,
                    full_shape,
                ),
                seed,
            ),
        };
        let stream = philox::fnv1a64(variable.as_bytes());
        Ok(InitSpec {
            fill,
            key: [seed as u32, (seed >> 32) as u32],
            stream: [stream as u32, (stream >> 32) as u32],
        })
    }
}

fn variance_scaling(
    scale: f64,
    mode: FanMode,
    distribution: Distribution,
    shape: &[usize],
) -> Fill {
    let (fan_in, fan_out) = compute_fans(shape);
    let fan = match mode {
        FanMode::FanIn => fan_in,
        FanMode::FanOut => fan_out,
        FanMode::FanAvg => (fan_in + fan_out) / 2.0,
    };
    let scale = scale / fan.max(1.0);
    match distribution {
        Distribution::TruncatedNormal => Fill::TruncatedNormal {
            mean: 0.0,
            stddev: (scale.sqrt() / TRUNCATION_CORRECTION) as f32,
        },
        Distribution::UntruncatedNormal => Fill::Normal {
            mean: 0.0,
            stddev: scale.sqrt() as f32,
        },
        Distribution::Uniform => {
            let limit = (3.0 * scale).sqrt() as f32;
            Fill::Uniform {
                minval: -limit,
                range: limit - -limit,
            }
        }
    }
}

/// `fn $name(&self, dtype, first, out, value)`: `fill_values(dtype, first, out, true, value)`
/// compiled with the x86-64 target features given (`value` inlined into it).
macro_rules! wide_fill_compiled_for {
    ($name:ident, $features:literal) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        fn $name(&self, dtype: FloatType, first: u64, out: &mut [u8], value: impl Fn(u32) -> f32) {
            self.fill_values(dtype, first, out, true, value)
        }
    };
}

impl InitSpec {
    /// The f32 value of global element `index` for the random fills (constant fills ignore
    /// the index).
    #[inline]
    pub fn value_f32(&self, index: u64) -> f32 {
        self.value_with_block(index, &philox::block(self.key, self.stream, index / 4))
    }

    #[inline(always)]
    fn value_with_block(&self, index: u64, block: &[u32; 4]) -> f32 {
        self.value_of_bits(block[(index % 4) as usize])
    }

    /// The f32 value a random fill makes of one 32-bit Philox output.
    #[inline(always)]
    fn value_of_bits(&self, bits: u32) -> f32 {
        match self.fill {
            Fill::Constant(v) => v as f32,
            Fill::Uniform { minval, range } => uniform(minval, range, bits),
            Fill::Normal { mean, stddev } => normal(mean, stddev, bits),
            Fill::TruncatedNormal { mean, stddev } => truncated_normal(mean, stddev, bits),
        }
    }

    /// The element bits of a constant fill in `dtype`, or `None` for random fills.
    pub fn constant_bits(&self, dtype: FloatType) -> Option<u64> {
        match self.fill {
            Fill::Constant(v) => Some(dtype.bits_from_f64(v)),
            _ => None,
        }
    }

    /// Writes global elements `first, first + 1, ...` as little-endian `dtype` into `out`
    /// (whose length must be a multiple of the element size).
    pub fn fill(&self, dtype: FloatType, first: u64, out: &mut [u8]) {
        let size = dtype.size();
        debug_assert_eq!(out.len() % size, 0);
        if let Some(bits) = self.constant_bits(dtype) {
            // 64 bytes of the element repeated, copied as a whole: vector stores, not one
            // element at a time (16 MiB in 1 ms where it took 11). Single cells (new columns)
            // are copied as they are.
            let element = &bits.to_le_bytes()[..size];
            if out.len() < 64 {
                for cell in out.chunks_exact_mut(size) {
                    cell.copy_from_slice(element);
                }
                return;
            }
            let mut pattern = [0u8; 64];
            for cell in pattern.chunks_exact_mut(size) {
                cell.copy_from_slice(element);
            }
            let mut chunks = out.chunks_exact_mut(pattern.len());
            for chunk in &mut chunks {
                chunk.copy_from_slice(&pattern);
            }
            let rest = chunks.into_remainder();
            rest.copy_from_slice(&pattern[..rest.len()]);
            return;
        }
        self.fill_random(Simd::detect(), dtype, first, out);
    }

    /// [`InitSpec::fill`] of a random fill, on the vector instructions `simd` names.
    fn fill_random(&self, simd: Simd, dtype: FloatType, first: u64, out: &mut [u8]) {
        match self.fill {
            Fill::Constant(_) => unreachable!("constants are filled by `fill`"),
            Fill::Uniform { minval, range } => {
                self.fill_wide_with(simd, dtype, first, out, |b| uniform(minval, range, b))
            }
            Fill::Normal { mean, stddev } => {
                self.fill_wide_with(simd, dtype, first, out, |b| normal(mean, stddev, b))
            }
            Fill::TruncatedNormal { mean, stddev } => {
                self.fill_wide_with(simd, dtype, first, out, |b| {
                    truncated_normal(mean, stddev, b)
                })
            }
        }
    }

    /// [`InitSpec::fill_values`] of a branch-free `value` (the uniform and truncated normal
    /// fills), [`WIDE`] elements at a time on the vector instructions `simd` names. Every
    /// path performs the same operations in the same order, never fused, so they give the
    /// same bits; wider vectors run the eight Philox blocks and the 32 values of a step in
    /// fewer instructions (truncated normal on one core: AVX2 1.25x the baseline x86-64
    /// build, AVX-512 2x AVX2).
    #[inline(always)]
    fn fill_wide_with(
        &self,
        simd: Simd,
        dtype: FloatType,
        first: u64,
        out: &mut [u8],
        value: impl Fn(u32) -> f32,
    ) {
        match simd {
            Simd::Baseline => self.fill_values(dtype, first, out, true, value),
            // SAFETY (both): `Simd` names only what the CPU has (see `Simd::available`).
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => unsafe { self.fill_values_avx2(dtype, first, out, value) },
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => unsafe { self.fill_values_avx512(dtype, first, out, value) },
        }
    }

    wide_fill_compiled_for!(fill_values_avx2, "avx2");
    wide_fill_compiled_for!(fill_values_avx512, "avx512f,avx512vl,avx512dq,avx512bw");

    /// Fills `out` with `value` of each element's Philox output, rounded to `dtype`; [`WIDE`]
    /// elements at a time if `wide` (for branch-free `value`).
    #[inline(always)]
    fn fill_values(
        &self,
        dtype: FloatType,
        first: u64,
        out: &mut [u8],
        wide: bool,
        value: impl Fn(u32) -> f32,
    ) {
        match dtype {
            FloatType::F32 => self.fill_bits::<4>(first, out, wide, |b| value(b).to_bits() as u64),
            FloatType::F64 => {
                self.fill_bits::<8>(first, out, wide, |b| (value(b) as f64).to_bits())
            }
            FloatType::BF16 => {
                self.fill_bits::<2>(first, out, wide, |b| bf16_bits(value(b)) as u64)
            }
            FloatType::F16 => self.fill_bits::<2>(first, out, wide, |b| f16_bits(value(b)) as u64),
        }
    }

    #[inline(always)]
    fn fill_bits<const SIZE: usize>(
        &self,
        first: u64,
        out: &mut [u8],
        wide: bool,
        bits_of: impl Fn(u32) -> u64,
    ) {
        if wide {
            self.fill_wide::<SIZE>(first, out, bits_of)
        } else {
            self.fill_blocks::<SIZE>(first, out, bits_of)
        }
    }

    /// Fills `out` (elements of `SIZE` bytes from global index `first`) with `bits_of` of
    /// each element's Philox output, [`WIDE`] elements at a time where whole blocks allow:
    /// their generator rounds and `bits_of` then run on vector registers. For branch-free
    /// `bits_of` (with a branch, computing every lane both ways costs more than it gains).
    /// The same bits as [`InitSpec::fill_blocks`].
    #[inline(always)]
    fn fill_wide<const SIZE: usize>(
        &self,
        first: u64,
        out: &mut [u8],
        bits_of: impl Fn(u32) -> u64,
    ) {
        const BLOCKS: usize = WIDE / 4;
        let head = ((first.next_multiple_of(4) - first) as usize * SIZE).min(out.len());
        let (head, rest) = out.split_at_mut(head);
        self.fill_blocks::<SIZE>(first, head, &bits_of);
        let mut index = first + (head.len() / SIZE) as u64;
        let mut wide = rest.chunks_exact_mut(WIDE * SIZE);
        for now in &mut wide {
            let blocks = philox::blocks::<BLOCKS>(self.key, self.stream, index / 4);
            let bits: &[u32; WIDE] = bytemuck::cast_ref(&blocks);
            let mut values = [0u64; WIDE];
            for (v, &b) in values.iter_mut().zip(bits) {
                *v = bits_of(b);
            }
            for (cell, v) in now.chunks_exact_mut(SIZE).zip(values) {
                cell.copy_from_slice(&v.to_le_bytes()[..SIZE]);
            }
            index += WIDE as u64;
        }
        self.fill_blocks::<SIZE>(index, wide.into_remainder(), &bits_of);
    }

    /// Fills `out` (elements of `SIZE` bytes from global index `first`) with `bits_of` of
    /// each element's Philox output, one block of four elements at a time.
    #[inline(always)]
    fn fill_blocks<const SIZE: usize>(
        &self,
        first: u64,
        out: &mut [u8],
        bits_of: impl Fn(u32) -> u64,
    ) {
        let mut index = first;
        let mut rest = out;
        while !rest.is_empty() {
            let block = philox::block(self.key, self.stream, index / 4);
            let lane = (index % 4) as usize;
            let n = (4 - lane).min(rest.len() / SIZE);
            let (now, later) = rest.split_at_mut(n * SIZE);
            for (cell, &b) in now.chunks_exact_mut(SIZE).zip(&block[lane..lane + n]) {
                cell.copy_from_slice(&bits_of(b).to_le_bytes()[..SIZE]);
            }
            index += n as u64;
            rest = later;
        }
    }
}

/// The value of a uniform fill for one 32-bit Philox output.
#[inline(always)]
fn uniform(minval: f32, range: f32, bits: u32) -> f32 {
    philox::unit_f32(bits) * range + minval
}

/// The value of a normal fill for one 32-bit Philox output.
#[inline(always)]
fn normal(mean: f32, stddev: f32, bits: u32) -> f32 {
    mean + stddev * philox::normal_f32(bits)
}

/// The value of a truncated normal fill for one 32-bit Philox output.
#[inline(always)]
fn truncated_normal(mean: f32, stddev: f32, bits: u32) -> f32 {
    mean + stddev * philox::truncated_normal_f32(bits)
}

/// The bf16 nearest `value` (ties to even), as `half::bf16::from_f32` rounds, without a branch
/// (so that it vectorizes); NaN stays NaN (quiet).
#[inline(always)]
fn bf16_bits(value: f32) -> u16 {
    let x = value.to_bits();
    let rounded = (x.wrapping_add(0x7FFF + ((x >> 16) & 1)) >> 16) as u16;
    let nan = ((x >> 16) | 0x40) as u16;
    if value.is_nan() {
        nan
    } else {
        rounded
    }
}

/// The f16 nearest `value` (ties to even), as `half::f16::from_f32` rounds, with subnormals,
/// overflow to infinity, and NaN kept NaN (quiet, the top of its payload kept); computed every
/// way and selected, without a branch, so that it vectorizes.
#[inline(always)]
fn f16_bits(value: f32) -> u16 {
    let x = value.to_bits();
    let sign = (x >> 16) & 0x8000;
    let a = x & 0x7FFF_FFFF;
    // |value| >= 2^-14, a normal f16 (or too large): rebias the exponent from 127 to 15 and
    // round the mantissa's low 13 bits away, ties to even; a carry moves into the exponent,
    // up to infinity.
    let normal = a
        .wrapping_sub(112 << 23)
        .wrapping_add(0xFFF + ((a >> 13) & 1))
        >> 13;
    // |value| < 2^-14: adding 0.5 leaves the f16 subnormal's ten bits at the bottom of the
    // significand, rounded to nearest even by the addition itself.
    const HALF: f32 = 0.5;
    let subnormal = (f32::from_bits(a) + HALF).to_bits() - HALF.to_bits();
    let finite = if a < 113 << 23 {
        subnormal
    } else {
        normal.min(0x7C00)
    };
    let special = if a > 0x7F80_0000 {
        0x7E00 | ((a & 0x7F_FFFF) >> 13)
    } else {
        0x7C00
    };
    (sign | if a >= 0x7F80_0000 { special } else { finite }) as u16
}

/// Elements generated together by [`InitSpec::fill`] (a multiple of 4).
const WIDE: usize = 32;

/// The vector instructions a fill is compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Simd {
    Baseline,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Simd {
    /// The widest this CPU runs (detected once).
    fn detect() -> Simd {
        static BEST: std::sync::OnceLock<Simd> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| *Simd::available().last().expect("baseline"))
    }

    /// Every variant this CPU runs, narrowest first.
    fn available() -> Vec<Simd> {
        #[allow(unused_mut)]
        let mut all = vec![Simd::Baseline];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") {
                all.push(Simd::Avx2);
            }
            if has!("avx512f") && has!("avx512vl") && has!("avx512dq") && has!("avx512bw") {
                all.push(Simd::Avx512);
            }
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seed is any 64-bit integer, as in TensorFlow: a negative one is its two's
    /// complement. A seed that is not an integer is refused, naming what was expected.
    #[test]
    fn seeds_are_any_64_bit_integer() {
        #[derive(Deserialize)]
        struct Plan {
            init: Initializer,
        }
        let parse = |text: &str| toml::from_str::<Plan>(&format!("init = {text}"));
        assert_eq!(
            parse(r#"{ type = "random_normal", seed = -1 }"#)
                .unwrap()
                .init,
            Initializer::RandomNormal {
                mean: 0.0,
                stddev: 1.0,
                seed: u64::MAX
            }
        );
        assert_eq!(
            parse(r#"{ type = "glorot_uniform", seed = 9223372036854775807 }"#)
                .unwrap()
                .init,
            Initializer::GlorotUniform {
                seed: i64::MAX as u64
            }
        );
        let e = parse(r#"{ type = "glorot_uniform", seed = 1.5 }"#)
            .err()
            .unwrap();
        assert!(e.to_string().contains("integer seed"), "{e}");
    }

    fn spec(init: Initializer, shape: &[usize]) -> InitSpec {
        init.resolve("emb", shape, "test").unwrap()
    }

    #[test]
    fn every_vector_path_gives_the_scalar_bits() {
        let paths = Simd::available();
        assert!(paths.contains(&Simd::detect()));
        for init in [
            Initializer::TruncatedNormal {
                mean: 0.25,
                stddev: 3.0,
                seed: 11,
            },
            Initializer::RandomUniform {
                minval: -0.05,
                maxval: 0.05,
                seed: 12,
            },
            Initializer::RandomNormal {
                mean: 1.0,
                stddev: 2.0,
                seed: 13,
            },
        ] {
            let s = spec(init.clone(), &[1000, 7]);
            for dtype in FloatType::ALL {
                let size = dtype.size();
                // Starts and lengths off the 4-element blocks and the 32-element steps.
                for (first, n) in [(0u64, 7000usize), (3, 1001), (33, 64), (1 << 40, 97)] {
                    let want: Vec<u8> = (first..first + n as u64)
                        .flat_map(|i| dtype.bits_from_f32(s.value_f32(i)).to_le_bytes())
                        .collect::<Vec<u8>>()
                        .chunks(8)
                        .flat_map(|c| c[..size].to_vec())
                        .collect();
                    for &simd in &paths {
                        let mut got = vec![0u8; n * size];
                        s.fill_random(simd, dtype, first, &mut got);
                        assert!(got == want, "{init:?} {simd:?} {dtype:?} from {first}");
                    }
                }
            }
        }
    }

    #[test]
    fn f16_rounding_matches_half() {
        // Every sign, exponent and top mantissa bit, with the low 16 bits covering the
        // rounding cases: the kept bit 13, the round bit 12, bits 14-15, and the sticky bits
        // below as none, one low, one high, all.
        let lows = (0..16u32).flat_map(|top| [0, 1, 0x800, 0xFFF].map(|low| (top << 12) | low));
        let lows: Vec<u32> = lows.collect();
        for high in 0..1u32 << 16 {
            for &low in &lows {
                let bits = (high << 16) | low;
                let v = f32::from_bits(bits);
                assert_eq!(f16_bits(v), half::f16::from_f32(v).to_bits(), "{bits:#x}");
            }
        }
    }

    #[test]
    fn bf16_rounding_matches_half() {
        let special = [
            0u32,
            0x8000_0000,
            0x7F80_0000,
            0xFF80_0000,
            0x7FC0_0000,
            0x7F80_0001,
            0xFFFF_FFFF,
            0x7F7F_FFFF,
            0x3F80_8000,
            0x3F81_8000,
            0x0000_8000,
            0x0001_8000,
        ];
        let mut x = 0x1234_5678u32;
        let random = (0..1_000_000).map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        });
        for bits in special.into_iter().chain(random) {
            let v = f32::from_bits(bits);
            assert_eq!(bf16_bits(v), half::bf16::from_f32(v).to_bits(), "{bits:#x}");
        }
    }

    #[test]
    fn tensorflow_fans() {
        assert_eq!(compute_fans(&[]), (1.0, 1.0));
        assert_eq!(compute_fans(&[7]), (7.0, 7.0));
        assert_eq!(compute_fans(&[3, 5]), (3.0, 5.0));
        assert_eq!(compute_fans(&[2, 2, 3, 5]), (12.0, 20.0));
    }

    #[test]
    fn glorot_uses_full_shape() {
        // fan_avg of [100, 28] = 64, limit = sqrt(3 / 64)
        let s = spec(Initializer::GlorotUniform { seed: 1 }, &[100, 28]);
        let limit = (3.0f64 / 64.0).sqrt() as f32;
        assert_eq!(
            s.fill,
            Fill::Uniform {
                minval: -limit,
                range: 2.0 * limit
            }
        );
        let s = spec(
            Initializer::VarianceScaling {
                scale: 2.0,
                mode: FanMode::FanIn,
                distribution: Distribution::UntruncatedNormal,
                seed: 0,
            },
            &[8, 3],
        );
        assert_eq!(
            s.fill,
            Fill::Normal {
                mean: 0.0,
                stddev: 0.5
            }
        );
    }

    #[test]
    fn values_depend_on_seed_variable_and_index_only() {
        let a = spec(
            Initializer::RandomUniform {
                minval: -1.0,
                maxval: 1.0,
                seed: 7,
            },
            &[10, 4],
        );
        let mut whole = vec![0u8; 40 * 4];
        a.fill(FloatType::F32, 0, &mut whole);
        // any split gives the same bytes
        for split in [1usize, 3, 17, 39] {
            let mut parts = vec![0u8; 40 * 4];
            let (x, y) = parts.split_at_mut(split * 4);
            a.fill(FloatType::F32, 0, x);
            a.fill(FloatType::F32, split as u64, y);
            assert_eq!(parts, whole);
        }
        let other_var = Initializer::RandomUniform {
            minval: -1.0,
            maxval: 1.0,
            seed: 7,
        }
        .resolve("other", &[10, 4], "t")
        .unwrap();
        assert_ne!(other_var.value_f32(0), a.value_f32(0));
        let other_seed = spec(
            Initializer::RandomUniform {
                minval: -1.0,
                maxval: 1.0,
                seed: 8,
            },
            &[10, 4],
        );
        assert_ne!(other_seed.value_f32(0), a.value_f32(0));
    }

    #[test]
    fn uniform_is_tensorflow_formula() {
        let s = spec(
            Initializer::RandomUniform {
                minval: 2.0,
                maxval: 5.0,
                seed: 3,
            },
            &[4],
        );
        let b = philox::block(s.key, s.stream, 0);
        for (i, bits) in b.into_iter().enumerate() {
            let u = f32::from_bits((127 << 23) | (bits & 0x7F_FFFF)) - 1.0;
            assert_eq!(s.value_f32(i as u64), u * 3.0 + 2.0);
        }
    }

    #[test]
    fn random_fills_have_the_right_moments() {
        let n = 200_000u64;
        for (init, mean, std, bound) in [
            (
                Initializer::RandomNormal {
                    mean: 1.0,
                    stddev: 2.0,
                    seed: 5,
                },
                1.0,
                2.0,
                None,
            ),
            // truncated at 2 sigma: variance factor 0.7737413
            (
                Initializer::TruncatedNormal {
                    mean: -1.0,
                    stddev: 0.5,
                    seed: 5,
                },
                -1.0,
                0.5 * 0.773_741_3f64.sqrt(),
                Some((-2.0, 0.0)),
            ),
            (
                Initializer::RandomUniform {
                    minval: -3.0,
                    maxval: 1.0,
                    seed: 5,
                },
                -1.0,
                4.0 / 12f64.sqrt(),
                Some((-3.0, 1.0)),
            ),
        ] {
            let s = spec(init.clone(), &[n as usize]);
            let xs: Vec<f64> = (0..n).map(|i| s.value_f32(i) as f64).collect();
            let m = xs.iter().sum::<f64>() / n as f64;
            let v = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n as f64;
            assert!((m - mean).abs() < 0.02, "{init:?}: mean {m}");
            assert!((v.sqrt() - std).abs() < 0.02, "{init:?}: std {}", v.sqrt());
            if let Some((lo, hi)) = bound {
                assert!(
                    xs.iter().all(|&x| x >= lo && x <= hi),
                    "{init:?} out of bounds"
                );
            }
        }
    }

    #[test]
    fn constants_round_once_to_dtype() {
        let s = spec(Initializer::Constant { value: 0.1 }, &[3]);
        let mut out = [0u8; 6];
        s.fill(FloatType::BF16, 0, &mut out);
        assert_eq!(out, [0xCD, 0x3D, 0xCD, 0x3D, 0xCD, 0x3D]);
        let mut out = [0u8; 8];
        s.fill(FloatType::F64, 5, &mut out);
        assert_eq!(f64::from_le_bytes(out), 0.1);
    }

    #[test]
    fn constants_fill_every_element_of_any_length() {
        let s = spec(Initializer::Constant { value: -2.5 }, &[3]);
        for dtype in FloatType::ALL {
            let size = dtype.size();
            let element = &dtype.bits_from_f64(-2.5).to_le_bytes()[..size];
            for n in [0, 1, 7, 31, 32, 33, 100, 257] {
                let mut out = vec![0u8; n * size];
                s.fill(dtype, 11, &mut out);
                for (i, cell) in out.chunks_exact(size).enumerate() {
                    assert_eq!(cell, element, "{dtype:?}, {n} elements, element {i}");
                }
            }
        }
    }

    #[test]
    fn invalid_parameters_are_refused() {
        for init in [
            Initializer::TruncatedNormal {
                mean: 0.0,
                stddev: -1.0,
                seed: 0,
            },
            Initializer::RandomUniform {
                minval: f64::NAN,
                maxval: 1.0,
                seed: 0,
            },
            Initializer::VarianceScaling {
                scale: 0.0,
                mode: FanMode::FanIn,
                distribution: Distribution::Uniform,
                seed: 0,
            },
            Initializer::Constant { value: f64::NAN },
        ] {
            assert!(
                init.resolve("v", &[2, 2], "vocab.\"v\"").is_err(),
                "{init:?}"
            );
        }
    }

    #[test]
    fn toml_form_refuses_unknown_types_and_fields() {
        #[derive(Deserialize)]
        struct W {
            i: Initializer,
        }
        let ok: W =
            toml::from_str(r#"i = { type = "truncated_normal", stddev = 0.01, seed = 42 }"#)
                .unwrap();
        assert_eq!(
            ok.i,
            Initializer::TruncatedNormal {
                mean: 0.0,
                stddev: 0.01,
                seed: 42
            }
        );
        let ok: W = toml::from_str(r#"i = { type = "zeros" }"#).unwrap();
        assert_eq!(ok.i, Initializer::Zeros {});
        for bad in [
            r#"i = { type = "he_normal" }"#,
            r#"i = { type = "truncated_normal", std = 0.01 }"#,
            r#"i = { type = "zeros", value = 1 }"#,
            r#"i = { type = "variance_scaling", mode = "fan_sideways" }"#,
            r#"i = { type = "random_uniform", seed = 1.5 }"#,
            r#"i = { type = "variance_scaling", distribution = "gaussian" }"#,
            r#"i = { type = "variance_scaling", mode = "FAN_IN" }"#,
        ] {
            assert!(toml::from_str::<W>(bad).is_err(), "{bad}");
        }
    }

    /// TensorFlow's v1 `VarianceScaling` lower-cases `distribution` and takes `normal` for
    /// `truncated_normal` (its `mode` it takes only as written).
    #[test]
    fn variance_scaling_distribution_as_tensorflow_reads_it() {
        #[derive(Deserialize)]
        struct W {
            i: Initializer,
        }
        for (name, want) in [
            ("normal", Distribution::TruncatedNormal),
            ("Normal", Distribution::TruncatedNormal),
            ("TRUNCATED_NORMAL", Distribution::TruncatedNormal),
            ("Untruncated_Normal", Distribution::UntruncatedNormal),
            ("Uniform", Distribution::Uniform),
        ] {
            let w: W = toml::from_str(&format!(
                r#"i = {{ type = "variance_scaling", distribution = "{name}" }}"#
            ))
            .unwrap();
            match w.i {
                Initializer::VarianceScaling { distribution, .. } => {
                    assert_eq!(distribution, want, "{name}")
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
