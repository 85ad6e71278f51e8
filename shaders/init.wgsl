// init.wgsl: the initializers, as `InitSpec::fill` on the CPU (src/initializer.rs, src/philox.rs).
//
// Library file (no entry point); needs philox.wgsl and float.wgsl in front of it.
//
// Element `index` (the global row-major index g * cols + c of the variable, 64 bits) takes the
// Philox bits of lane index % 4 of block index / 4, keyed by the seed, with the variable's
// stream. The f32 value is then encoded in the table's dtype.
//
// * constant: the host passes the element bits, already rounded to the dtype;
// * uniform: minval + unit * range, computed exactly in integers (float.wgsl): bit-identical;
// * normal, truncated normal: mean + stddev * sqrt(2) * erfinv(x), with x exact and the same
//   logarithm, polynomials and branches as the CPU; the device may still round differently in
//   the last bits (WGSL's division and sqrt are not correctly rounded, and a driver may fuse
//   a * b + c), so these agree with the CPU to about 1e-7 relative, not bit for bit.

// The kind of fill and the table's dtype are the pipeline's: FILL_* and DTYPE_*, set when it
// is compiled. A pipeline then holds only its own paths: the software driver executes both
// sides of every branch whose condition it cannot prove uniform, so one pipeline for every
// kind computed all four fills and all four encodings for each element (2.3x the time of
// a truncated normal fill alone).
override FILL: u32;
override DTYPE: u32;

// A fill's parameters. Mirrors `InitUniform` in src/engine/gpu/kernels.rs (12 u32 = 48
// bytes, a multiple of 16 as uniform buffers require of nested structs).
struct InitSpec {
    // FILL_CONSTANT: the element's bits (lo, hi)
    const_lo: u32,
    const_hi: u32,
    // FILL_UNIFORM: minval and range bits; FILL_NORMAL / FILL_TRUNCATED: mean and stddev bits
    a: u32,
    b: u32,
    key_lo: u32,
    key_hi: u32,
    stream_lo: u32,
    stream_hi: u32,
    // global element index of element 0 of the output chunk
    base_lo: u32,
    base_hi: u32,
    _pad0: u32,
    _pad1: u32,
}

const FILL_CONSTANT: u32 = 0u;
const FILL_UNIFORM: u32 = 1u;
const FILL_NORMAL: u32 = 2u;
const FILL_TRUNCATED: u32 = 3u;

const DTYPE_F32: u32 = 0u;
const DTYPE_F64: u32 = 1u;
const DTYPE_F16: u32 = 2u;
const DTYPE_BF16: u32 = 3u;

// erf(sqrt(2)) and the largest f32 below 2 (`philox::ERF_SQRT2`, `philox::TRUNCATED_MAX`).
const ERF_SQRT2: f32 = 0.9544997f;
const TRUNCATED_MAX: f32 = 1.9999999f;
const SQRT_2: f32 = 1.41421356237309504880168872420969808f;

// `philox::centered_f32`: (2k + 1 - 2^23) / 2^23 from the low 23 bits, exact.
fn centered_f32(bits: u32) -> f32 {
    let k = i32(bits & 0x7FFFFFu);
    return f32(2 * k + 1 - 8388608) * (1.0f / 8388608.0f);
}

// `philox::ln_f32`: natural logarithm of a positive normal f32 without a library call:
// x = 2^e m with m in [2/3, 4/3), ln m = 2 atanh(s), s = (m - 1) / (m + 1), as a polynomial in
// s^2. (WGSL's `log` is both slower on the software driver and less predictable.)
const LN2_HI: f32 = 0.69314575f;
const LN2_LO: f32 = 1.4286068e-6f;

fn ln_f32(x: f32) -> f32 {
    let ix = i32(bitcast<u32>(x) - 0x3f2aaaabu);
    let e = f32(ix >> 23u);
    let m = bitcast<f32>((u32(ix) & 0x007fffffu) + 0x3f2aaaabu);
    let f = m - 1.0f;
    let s = f / (2.0f + f);
    let z = s * s;
    let p = 1.0f + z * (1.0f / 3.0f + z * (1.0f / 5.0f + z * (1.0f / 7.0f + z * (1.0f / 9.0f))));
    return e * LN2_HI + (2.0f * s * p + e * LN2_LO);
}

// `philox::erfinv`: Giles' single-precision inverse error function, same coefficients (the
// `f` literals parse exactly as Rust's f32 literals) and the same branches.
fn erfinv(x: f32) -> f32 {
    let w = -ln_f32((1.0f - x) * (1.0f + x));
    if (w < 5.0f) {
        return erfinv_central(w) * x;
    }
    return erfinv_tail(w) * x;
}

// Giles' polynomial for w = -ln(1 - x^2) < 5.
fn erfinv_central(w: f32) -> f32 {
    let c = w - 2.5f;
    var p = 2.81022636e-8f;
    p = 3.43273939e-7f + p * c;
    p = -3.5233877e-6f + p * c;
    p = -4.39150654e-6f + p * c;
    p = 2.1858087e-4f + p * c;
    p = -1.25372503e-3f + p * c;
    p = -4.17768164e-3f + p * c;
    p = 2.46640727e-1f + p * c;
    return 1.50140941f + p * c;
}

// Giles' polynomial for w >= 5.
fn erfinv_tail(w: f32) -> f32 {
    let t = sqrt(w) - 3.0f;
    var q = -2.00214257e-4f;
    q = 1.00950558e-4f + q * t;
    q = 1.34934322e-3f + q * t;
    q = -3.67342844e-3f + q * t;
    q = 5.73950773e-3f + q * t;
    q = -7.6224613e-3f + q * t;
    q = 9.43887047e-3f + q * t;
    q = 1.00167406f + q * t;
    return 2.83297682f + q * t;
}

// The f32 bits of a random fill for the Philox bits `bits`.
fn random_value(spec: InitSpec, bits: u32) -> u32 {
    if (FILL == FILL_UNIFORM) {
        return f32_add(f32_mul_unit(bits & 0x7FFFFFu, spec.b), spec.a);
    }
    let mean = bitcast<f32>(spec.a);
    let stddev = bitcast<f32>(spec.b);
    var z: f32;
    if (FILL == FILL_NORMAL) {
        z = SQRT_2 * erfinv(centered_f32(bits));
    } else {
        // `philox::truncated_normal_f32`: |x| < erf(sqrt 2) keeps w below 2.5, so only the
        // central polynomial is needed.
        let x = centered_f32(bits) * ERF_SQRT2;
        let w = -ln_f32((1.0f - x) * (1.0f + x));
        z = clamp(SQRT_2 * erfinv_central(w) * x, -TRUNCATED_MAX, TRUNCATED_MAX);
    }
    return bitcast<u32>(mean + stddev * z);
}

// f32 bits encoded in `dtype`: (lo, hi) words of the element's bits.
fn encode(dtype: u32, x: u32) -> vec2<u32> {
    switch dtype {
        case DTYPE_F64: {
            return f32_to_f64(x);
        }
        case DTYPE_F16: {
            return vec2<u32>(f32_to_f16(x), 0u);
        }
        case DTYPE_BF16: {
            return vec2<u32>(f32_to_bf16(x), 0u);
        }
        default: {
            return vec2<u32>(x, 0u);
        }
    }
}

// The global index (lo, hi) of element `e` of the output chunk (chunk-local flat index); its
// random bits are lane index.x & 3 of `init_block(spec, index)`.
fn init_index(spec: InitSpec, e: u32) -> vec2<u32> {
    return add64(vec2<u32>(spec.base_lo, spec.base_hi), e);
}

// The Philox block holding the random bits of global element `index` and its neighbours.
fn init_block(spec: InitSpec, index: vec2<u32>) -> vec4<u32> {
    let key = vec2<u32>(spec.key_lo, spec.key_hi);
    return philox_block_of(key, vec2<u32>(spec.stream_lo, spec.stream_hi), index);
}

// The bits (lo, hi) of element `e` of the output chunk (chunk-local flat index).
fn init_element(spec: InitSpec, e: u32) -> vec2<u32> {
    if (FILL == FILL_CONSTANT) {
        return vec2<u32>(spec.const_lo, spec.const_hi);
    }
    let index = init_index(spec, e);
    return encode(DTYPE, random_value(spec, init_block(spec, index)[index.x & 3u]));
}
