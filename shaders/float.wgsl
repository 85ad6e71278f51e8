// float.wgsl: exact binary32 arithmetic and dtype encodings, in integer operations only.
//
// Library file (no entry point). Why integers: a WGSL implementation may fuse `a * b + c` into
// one fused multiply-add (naga emits no NoContraction decoration) and may flush subnormals to
// zero, so float arithmetic on the device is not guaranteed to round like the CPU. These
// routines round to nearest, ties to even, with subnormals, exactly as IEEE 754 (and Rust's
// f32 operators) do, so uniform samples are bit-identical to the CPU engine's.
//
// Values are passed as their f32 bit patterns (u32). Inputs are finite (the host refuses
// infinite and NaN parameters).

// The f32 nearest to m * 2^x (ties to even), with sign bit `sign` (0 or 0x80000000).
// Requires 0 < m < 2^31. Overflows to infinity, underflows through subnormals to zero.
fn f32_round_pack(sign: u32, m: u32, x: i32) -> u32 {
    let n = i32(firstLeadingBit(m)); // m in [2^n, 2^(n+1))
    let e = n + x + 127; // biased exponent when the result is normal
    if (e >= 255) {
        return sign | 0x7F800000u;
    }
    // Right shift that leaves 24 significant bits (normal) or aligns to 2^-149 (subnormal).
    var shift: i32;
    if (e >= 1) {
        shift = n - 23;
    } else {
        shift = -149 - x;
    }
    var q: u32;
    if (shift <= 0) {
        q = m << u32(-shift); // exact; -shift <= 23
    } else {
        if (shift >= 32) {
            return sign; // below half the smallest subnormal
        }
        q = m >> u32(shift);
        let rem = m & ((1u << u32(shift)) - 1u);
        let half = 1u << u32(shift - 1);
        if (rem > half || (rem == half && (q & 1u) == 1u)) {
            q += 1u;
        }
    }
    if (e >= 1) {
        // q in [2^23, 2^24]: adding carries a rounded-up 2^24 into the exponent (up to infinity).
        return sign | ((u32(e - 1) << 23u) + q);
    }
    return sign | q; // subnormal; q == 2^23 encodes the smallest normal, as it should
}

// Splits finite f32 bits into (significand, exponent) with value = m * 2^x.
fn f32_significand(bits: u32) -> u32 {
    let f = bits & 0x7FFFFFu;
    return select(f | 0x800000u, f, ((bits >> 23u) & 0xFFu) == 0u);
}

fn f32_exponent(bits: u32) -> i32 {
    let e = i32((bits >> 23u) & 0xFFu);
    return select(e - 150, -149, e == 0);
}

// (k / 2^23) * b rounded to f32, for 0 <= k < 2^23 (the uniform `unit`) and finite b.
fn f32_mul_unit(k: u32, b: u32) -> u32 {
    let sign = b & 0x80000000u; // the unit is >= 0: the product has b's sign, zeros included
    let mb = f32_significand(b);
    if (k == 0u || mb == 0u) {
        return sign;
    }
    let p = mul_hi_lo(k, mb); // exact, < 2^47
    var x = f32_exponent(b) - 23;
    var m = p.y;
    if (p.x != 0u || p.y >= 0x80000000u) {
        // Shift right so the top bit lands on bit 29, keeping a sticky bit for what falls
        // off: the rounding position stays >= 6 bits above it, so rounding is unaffected.
        let n = select(firstLeadingBit(p.y), 32u + firstLeadingBit(p.x), p.x != 0u);
        let s = n - 29u; // 2..17
        let lost = p.y & ((1u << s) - 1u);
        m = (p.y >> s) | (p.x << (32u - s)) | select(0u, 1u, lost != 0u);
        x += i32(s);
    }
    return f32_round_pack(sign, m, x);
}

// a + b rounded to f32 (finite inputs), with IEEE signed zeros: x + (-x) = +0, -0 + -0 = -0.
fn f32_add(a: u32, b: u32) -> u32 {
    let abs_a = a & 0x7FFFFFFFu;
    let abs_b = b & 0x7FFFFFFFu;
    if (abs_a == 0u && abs_b == 0u) {
        return a & b;
    }
    if (abs_b == 0u) {
        return a;
    }
    if (abs_a == 0u) {
        return b;
    }
    // big has the larger magnitude, hence the larger (or equal) exponent.
    let swap = abs_b > abs_a;
    let big = select(a, b, swap);
    let small = select(b, a, swap);
    let x = f32_exponent(big);
    let d = u32(x - f32_exponent(small));
    // Three extra low bits (guard, round, sticky) make the sum round correctly.
    let m_big = f32_significand(big) << 3u;
    var m_small = f32_significand(small) << 3u;
    if (d >= 31u) {
        m_small = 1u; // only stickiness is left
    } else if (d > 0u) {
        let lost = m_small & ((1u << d) - 1u);
        m_small = (m_small >> d) | select(0u, 1u, lost != 0u);
    }
    var r: u32;
    if (((big ^ small) & 0x80000000u) == 0u) {
        r = m_big + m_small;
    } else {
        r = m_big - m_small;
    }
    if (r == 0u) {
        return 0u; // exact cancellation gives +0 when rounding to nearest
    }
    return f32_round_pack(big & 0x80000000u, r, x - 3);
}

// f32 bits -> f16 bits, round to nearest even (as `half::f16::from_f32`).
fn f32_to_f16(x: u32) -> u32 {
    let sign = (x >> 16u) & 0x8000u;
    let a = x & 0x7FFFFFFFu;
    if (a > 0x7F800000u) {
        return sign | 0x7E00u | ((a >> 13u) & 0x3FFu); // NaN stays NaN (quiet)
    }
    if (a >= 0x477FF000u) {
        return sign | 0x7C00u; // rounds past the largest f16: infinity
    }
    if (a < 0x38800000u) {
        // f16 subnormal or zero
        if (a < 0x33000000u) {
            return sign; // at most half the smallest subnormal: zero
        }
        let e = a >> 23u;
        let m = (a & 0x7FFFFFu) | 0x800000u;
        let shift = 126u - e; // 14..24
        let q = m >> shift;
        let rem = m & ((1u << shift) - 1u);
        let half = 1u << (shift - 1u);
        return sign | (q + select(0u, 1u, rem > half || (rem == half && (q & 1u) == 1u)));
    }
    let r = a - 0x38000000u; // exponent bias 127 -> 15
    let q = r >> 13u;
    let rem = r & 0x1FFFu;
    return sign | (q + select(0u, 1u, rem > 0x1000u || (rem == 0x1000u && (q & 1u) == 1u)));
}

// f32 bits -> bf16 bits, round to nearest even, NaN kept quiet (as `half::bf16::from_f32`).
fn f32_to_bf16(x: u32) -> u32 {
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) {
        return (x >> 16u) | 0x40u;
    }
    return (x + 0x7FFFu + ((x >> 16u) & 1u)) >> 16u;
}

// f32 bits -> f64 bits (lo, hi): exact widening, subnormals normalised.
fn f32_to_f64(x: u32) -> vec2<u32> {
    let sign = x & 0x80000000u;
    let e = (x >> 23u) & 0xFFu;
    var m = x & 0x7FFFFFu;
    var e64: u32;
    if (e == 255u) {
        e64 = 0x7FFu; // infinity or NaN (not produced by the initializers)
    } else if (e == 0u) {
        if (m == 0u) {
            return vec2<u32>(0u, sign);
        }
        let n = firstLeadingBit(m); // value = m * 2^-149, top bit n in 0..22
        e64 = n + 874u; // (n - 149) + 1023
        m = (m << (23u - n)) & 0x7FFFFFu;
    } else {
        e64 = e + 896u; // (e - 127) + 1023
    }
    return vec2<u32>(m << 29u, sign | (e64 << 20u) | (m >> 3u));
}
