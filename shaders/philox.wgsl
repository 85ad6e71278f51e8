// philox.wgsl: Philox4x32-10, the counter-based generator of TensorFlow and of `src/philox.rs`.
//
// Library file (no entry point): concatenated in front of the kernels that need it. WGSL has no
// 64-bit integers without an optional feature, so the 32x32 -> 64-bit products are built from
// 16-bit limbs and 64-bit counters travel as (lo, hi) pairs of u32.

const PHILOX_W32A: u32 = 0x9E3779B9u;
const PHILOX_W32B: u32 = 0xBB67AE85u;
const PHILOX_M4X32A: u32 = 0xD2511F53u;
const PHILOX_M4X32B: u32 = 0xCD9E8D57u;

// The full 64-bit product a * b as (hi, lo).
fn mul_hi_lo(a: u32, b: u32) -> vec2<u32> {
    let a_lo = a & 0xFFFFu;
    let a_hi = a >> 16u;
    let b_lo = b & 0xFFFFu;
    let b_hi = b >> 16u;
    let ll = a_lo * b_lo;
    let lh = a_lo * b_hi;
    let hl = a_hi * b_lo;
    let hh = a_hi * b_hi;
    // < 2^18: no overflow
    let mid = (ll >> 16u) + (lh & 0xFFFFu) + (hl & 0xFFFFu);
    return vec2<u32>(hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u), a * b);
}

fn philox_round(c: vec4<u32>, k: vec2<u32>) -> vec4<u32> {
    let p0 = mul_hi_lo(PHILOX_M4X32A, c.x);
    let p1 = mul_hi_lo(PHILOX_M4X32B, c.z);
    return vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
}

// One Philox4x32-10 block, as `philox::philox4x32_10`.
fn philox4x32_10(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = key;
    for (var i = 0u; i < 9u; i++) {
        c = philox_round(c, k);
        k += vec2<u32>(PHILOX_W32A, PHILOX_W32B);
    }
    return philox_round(c, k);
}

// (lo, hi) + x, with carry.
fn add64(v: vec2<u32>, x: u32) -> vec2<u32> {
    let lo = v.x + x;
    return vec2<u32>(lo, v.y + select(0u, 1u, lo < x));
}

// The random bits of global element `index` (lo, hi) are lane index % 4 of block index / 4 of
// the stream (key, stream), as `InitSpec::value_f32` on the CPU: that block's four outputs.
fn philox_block_of(key: vec2<u32>, stream: vec2<u32>, index: vec2<u32>) -> vec4<u32> {
    let block = vec2<u32>((index.x >> 2u) | (index.y << 30u), index.y >> 2u);
    return philox4x32_10(vec4<u32>(block.x, block.y, stream.x, stream.y), key);
}
