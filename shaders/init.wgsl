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
//   polynomial as the CPU; only WGSL's `log`/`sqrt` may differ in the last bits.

// What a missing element receives. Mirrors `InitUniform` in src/engine/gpu/kernels.rs
// (12 u32 = 48 bytes, a multiple of 16 as uniform buffers require of nested structs).
struct InitSpec {
    fill: u32, // FILL_*
    dtype: u32, // DTYPE_*
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

// `philox::erfinv`: Giles' single-precision inverse error function, same coefficients (the
// `f` literals parse exactly as Rust's f32 literals).
fn erfinv(x: f32) -> f32 {
    var w = -log((1.0f - x) * (1.0f + x));
    var p: f32;
    if (w < 5.0f) {
        w = w - 2.5f;
        p = 2.81022636e-8f;
        p = 3.43273939e-7f + p * w;
        p = -3.5233877e-6f + p * w;
        p = -4.39150654e-6f + p * w;
        p = 2.1858087e-4f + p * w;
        p = -1.25372503e-3f + p * w;
        p = -4.17768164e-3f + p * w;
        p = 2.46640727e-1f + p * w;
        p = 1.50140941f + p * w;
    } else {
        w = sqrt(w) - 3.0f;
        p = -2.00214257e-4f;
        p = 1.00950558e-4f + p * w;
        p = 1.34934322e-3f + p * w;
        p = -3.67342844e-3f + p * w;
        p = 5.73950773e-3f + p * w;
        p = -7.6224613e-3f + p * w;
        p = 9.43887047e-3f + p * w;
        p = 1.00167406f + p * w;
        p = 2.83297682f + p * w;
    }
    return p * x;
}

// The f32 bits of a random fill for the Philox bits `bits`.
fn random_value(spec: InitSpec, bits: u32) -> u32 {
    if (spec.fill == FILL_UNIFORM) {
        return f32_add(f32_mul_unit(bits & 0x7FFFFFu, spec.b), spec.a);
    }
    let mean = bitcast<f32>(spec.a);
    let stddev = bitcast<f32>(spec.b);
    var z: f32;
    if (spec.fill == FILL_NORMAL) {
        z = SQRT_2 * erfinv(centered_f32(bits));
    } else {
        z = SQRT_2 * erfinv(centered_f32(bits) * ERF_SQRT2);
        z = clamp(z, -TRUNCATED_MAX, TRUNCATED_MAX);
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

// The bits (lo, hi) of element `e` of the output chunk (chunk-local flat index).
fn init_element(spec: InitSpec, e: u32) -> vec2<u32> {
    if (spec.fill == FILL_CONSTANT) {
        return vec2<u32>(spec.const_lo, spec.const_hi);
    }
    let index = add64(vec2<u32>(spec.base_lo, spec.base_hi), e);
    let key = vec2<u32>(spec.key_lo, spec.key_hi);
    let stream = vec2<u32>(spec.stream_lo, spec.stream_hi);
    return encode(spec.dtype, random_value(spec, philox_element(key, stream, index)));
}
