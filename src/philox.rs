//! Philox4x32-10, the counter-based generator TensorFlow uses, and the transforms from its
//! 32-bit outputs to floats. `shaders/philox.wgsl` and `shaders/init.wgsl` are the GPU twins of
//! this file; they compute the same bits (uniform exactly, normal up to the last bits of `log`).
//!
//! Counter scheme (see [`crate::initializer`]): key = the initializer's seed, counter =
//! (element index / 4 as 64 bits, 64-bit hash of the variable name); element `i` takes lane
//! `i % 4` of its block. So every element's value depends only on (seed, variable, index).

const W32A: u32 = 0x9E37_79B9;
const W32B: u32 = 0xBB67_AE85;
const M4X32A: u32 = 0xD251_1F53;
const M4X32B: u32 = 0xCD9E_8D57;

#[inline(always)]
fn round(c: [u32; 4], k: [u32; 2]) -> [u32; 4] {
    let p0 = M4X32A as u64 * c[0] as u64;
    let p1 = M4X32B as u64 * c[2] as u64;
    [
        (p1 >> 32) as u32 ^ c[1] ^ k[0],
        p1 as u32,
        (p0 >> 32) as u32 ^ c[3] ^ k[1],
        p0 as u32,
    ]
}

/// One Philox4x32-10 block, exactly as `tensorflow/core/lib/random/philox_random.h`.
#[inline]
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for _ in 0..9 {
        c = round(c, k);
        k = [k[0].wrapping_add(W32A), k[1].wrapping_add(W32B)];
    }
    round(c, k)
}

/// The 4 outputs of block `block` of the stream (key, stream).
#[inline]
pub fn block(key: [u32; 2], stream: [u32; 2], block: u64) -> [u32; 4] {
    philox4x32_10(
        [block as u32, (block >> 32) as u32, stream[0], stream[1]],
        key,
    )
}

/// Blocks `first..first + N` of the stream (key, stream), as [`block`] computes them, the N
/// blocks side by side so that the rounds run on vector registers.
#[inline(always)]
pub fn blocks<const N: usize>(key: [u32; 2], stream: [u32; 2], first: u64) -> [[u32; 4]; N] {
    let mut c: [[u32; N]; 4] = [[0; N], [0; N], [stream[0]; N], [stream[1]; N]];
    let [c0, c1, c2, c3] = &mut c;
    for (l, (lo, hi)) in c0.iter_mut().zip(c1.iter_mut()).enumerate() {
        let b = first.wrapping_add(l as u64);
        (*lo, *hi) = (b as u32, (b >> 32) as u32);
    }
    let mut k = key;
    for r in 0..10 {
        let lanes = c0
            .iter_mut()
            .zip(c1.iter_mut())
            .zip(c2.iter_mut())
            .zip(c3.iter_mut());
        for (((x0, x1), x2), x3) in lanes {
            let p0 = M4X32A as u64 * *x0 as u64;
            let p1 = M4X32B as u64 * *x2 as u64;
            *x0 = (p1 >> 32) as u32 ^ *x1 ^ k[0];
            *x1 = p1 as u32;
            *x2 = (p0 >> 32) as u32 ^ *x3 ^ k[1];
            *x3 = p0 as u32;
        }
        if r < 9 {
            k = [k[0].wrapping_add(W32A), k[1].wrapping_add(W32B)];
        }
    }
    std::array::from_fn(|l| [c[0][l], c[1][l], c[2][l], c[3][l]])
}

/// 64-bit FNV-1a, used to give every variable its own Philox stream.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// TensorFlow's `Uint32ToFloat`: the low 23 bits as a float in `[0, 1)`, exactly `k / 2^23`.
#[inline]
pub fn unit_f32(bits: u32) -> f32 {
    (bits & 0x7F_FFFF) as f32 * (1.0 / 8_388_608.0)
}

/// The low 23 bits as the midpoint float `(2k + 1 - 2^23) / 2^23`, in `(-1, 1)`, exact and
/// symmetric: the argument of [`erfinv`] for inverse-CDF sampling.
#[inline]
pub fn centered_f32(bits: u32) -> f32 {
    let k = (bits & 0x7F_FFFF) as i32;
    (2 * k + 1 - 8_388_608) as f32 * (1.0 / 8_388_608.0)
}

/// erf(sqrt(2)) = P(|Z| < 2) for a standard normal Z, rounded to f32.
pub const ERF_SQRT2: f32 = 0.954_499_7;

/// Natural logarithm of a positive, normal f32, within 3 ulp: `x = 2^e m` with `m` in
/// `[2/3, 4/3)`, `ln m = 2 atanh(s)` with `s = (m - 1) / (m + 1)` as a polynomial in `s²`.
/// No libm call: the GPU twin can compute the same formula.
#[inline(always)]
pub fn ln_f32(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let ix = x.to_bits().wrapping_sub(0x3f2a_aaab) as i32;
    let e = (ix >> 23) as f32;
    let m = f32::from_bits((ix as u32 & 0x007f_ffff).wrapping_add(0x3f2a_aaab));
    let f = m - 1.0;
    let s = f / (2.0 + f);
    let z = s * s;
    let p = 1.0 + z * (1.0 / 3.0 + z * (1.0 / 5.0 + z * (1.0 / 7.0 + z * (1.0 / 9.0))));
    e * LN2_HI + (2.0 * s * p + e * LN2_LO)
}

/// Inverse error function, single precision (M. Giles, "Approximating the erfinv function",
/// GPU Computing Gems, 2011): absolute error below 5e-7 on `(-1, 1)`. The coefficients are
/// the published ones, written out in full.
#[inline(always)]
pub fn erfinv(x: f32) -> f32 {
    let w = -ln_f32((1.0 - x) * (1.0 + x));
    // Both branches, then a select: no branch, so that fills run it on vector registers
    // (the tail's few operations cost less than a branch per lane).
    let central = erfinv_central(w);
    let tail = erfinv_tail(w);
    (if w < 5.0 { central } else { tail }) * x
}

/// Giles' polynomial for `w = -ln(1 - x²) < 5` (`|x| < 0.9966`).
#[inline(always)]
#[allow(clippy::excessive_precision)]
fn erfinv_central(w: f32) -> f32 {
    let c = w - 2.5;
    let mut p = 2.810_226_36e-8;
    p = 3.432_739_39e-7 + p * c;
    p = -3.523_387_7e-6 + p * c;
    p = -4.391_506_54e-6 + p * c;
    p = 2.185_808_7e-4 + p * c;
    p = -1.253_725_03e-3 + p * c;
    p = -4.177_681_64e-3 + p * c;
    p = 2.466_407_27e-1 + p * c;
    1.501_409_41 + p * c
}

/// Giles' polynomial for `w >= 5`.
#[inline(always)]
#[allow(clippy::excessive_precision)]
fn erfinv_tail(w: f32) -> f32 {
    let t = w.sqrt() - 3.0;
    let mut q = -2.002_142_57e-4;
    q = 1.009_505_58e-4 + q * t;
    q = 1.349_343_22e-3 + q * t;
    q = -3.673_428_44e-3 + q * t;
    q = 5.739_507_73e-3 + q * t;
    q = -7.622_461_3e-3 + q * t;
    q = 9.438_870_47e-3 + q * t;
    q = 1.001_674_06 + q * t;
    2.832_976_82 + q * t
}

/// A standard normal sample by inverse CDF: `sqrt(2) * erfinv(x)`, `x` from [`centered_f32`].
#[inline(always)]
pub fn normal_f32(bits: u32) -> f32 {
    std::f32::consts::SQRT_2 * erfinv(centered_f32(bits))
}

/// The largest f32 below 2.0: truncated-normal samples are clamped to `[-this, this]`.
pub const TRUNCATED_MAX: f32 = 1.999_999_9;

/// A standard normal sample truncated to `(-2, 2)` by inverse CDF: the uniform is scaled into
/// `(-erf(sqrt 2), erf(sqrt 2))` before `erfinv`, so no sample is rejected.
#[inline(always)]
pub fn truncated_normal_f32(bits: u32) -> f32 {
    // |x| < erf(sqrt 2) keeps w = -ln(1 - x²) below 2.5: Giles' central branch only.
    let x = centered_f32(bits) * ERF_SQRT2;
    let w = -ln_f32((1.0 - x) * (1.0 + x));
    let z = std::f32::consts::SQRT_2 * erfinv_central(w) * x;
    z.clamp(-TRUNCATED_MAX, TRUNCATED_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TensorFlow's stateless key scrambling (`GenerateKey` in stateless_random_ops.cc), used
    /// here only to check the block function against TensorFlow's published outputs.
    fn tf_stateless_key(seed0: u64, seed1: u64) -> ([u32; 2], [u32; 4]) {
        let mix = philox4x32_10(
            [
                seed0 as u32,
                (seed0 >> 32) as u32,
                seed1 as u32,
                (seed1 >> 32) as u32,
            ],
            [0x3ec8_f720, 0x0246_1e29],
        );
        ([mix[0], mix[1]], [0, 0, mix[2], mix[3]])
    }

    #[test]
    fn matches_tensorflow_stateless_uniform() {
        // tf.random.stateless_uniform([4], seed=(1, 2)) in TensorFlow 2.21.
        let (key, ctr) = tf_stateless_key(1, 2);
        let out =
            philox4x32_10(ctr, key).map(|b| f32::from_bits((127 << 23) | (b & 0x7F_FFFF)) - 1.0);
        assert_eq!(out, [0.844_060_4, 0.192_045_33, 0.996_223_2, 0.160_387_4]);
        // Our unit_f32 is the same number written without the bit trick.
        for b in philox4x32_10(ctr, key) {
            assert_eq!(
                unit_f32(b),
                f32::from_bits((127 << 23) | (b & 0x7F_FFFF)) - 1.0
            );
        }
    }

    #[test]
    fn side_by_side_blocks_are_the_blocks() {
        let (key, stream) = ([0x1234_5678, 0x9abc_def0], [7, 0xffff_ffff]);
        for first in [0u64, 5, u32::MAX as u64 - 3, u64::MAX - 2] {
            let wide = blocks::<8>(key, stream, first);
            for (l, got) in wide.iter().enumerate() {
                assert_eq!(*got, block(key, stream, first.wrapping_add(l as u64)));
            }
        }
    }

    #[test]
    fn ln_is_within_three_ulp() {
        let mut worst = 0f64;
        let mut x = f32::from_bits(0x3480_0000); // 2^-22, the smallest argument erfinv gives
        while x <= 1.0 {
            for k in 0..64u32 {
                let y = f32::from_bits(x.to_bits() + k * 977);
                let want = (y as f64).ln();
                let ulp = (want as f32).abs().max(f32::MIN_POSITIVE);
                let ulp = (f32::from_bits(ulp.to_bits() + 1) - ulp) as f64;
                worst = worst.max((ln_f32(y) as f64 - want).abs() / ulp);
            }
            x *= 1.01;
        }
        assert!(worst <= 3.0, "ln error {worst} ulp");
        assert_eq!(ln_f32(1.0), 0.0);
    }

    #[test]
    fn erfinv_inverts_erf() {
        let mut worst = 0f64;
        for k in (0..(1u32 << 23)).step_by(4099).chain([0, 1, (1 << 23) - 1]) {
            let x = centered_f32(k);
            let y = erfinv(x) as f64;
            // error in y, first order: (erf(y) - x) / erf'(y)
            let d =
                (libm::erf(y) - x as f64) / (2.0 / std::f64::consts::PI.sqrt() * (-y * y).exp());
            worst = worst.max(d.abs());
        }
        assert!(worst < 1e-6, "erfinv error {worst}");
    }

    #[test]
    fn truncated_normal_stays_inside_two() {
        for bits in [0u32, 1, 0x7F_FFFF, 0x40_0000, 0x3F_FFFF, u32::MAX] {
            let z = truncated_normal_f32(bits);
            assert!(z.abs() < 2.0, "{bits:#x} -> {z}");
        }
        assert!(truncated_normal_f32(0x7F_FFFF) > 1.99);
        assert!(normal_f32(0x7F_FFFF) > 5.0);
        assert_eq!(normal_f32(0x40_0000), -normal_f32(0x3F_FFFF));
    }

    #[test]
    fn fnv1a64_reference_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
