//! Element types: any safetensors dtype can be copied; the four float types can be remapped
//! and initialised.

use half::{bf16, f16};
pub use safetensors::Dtype;

/// Bytes taken by `elements` elements of `dtype`, or `None` when that is not a whole number of
/// bytes (sub-byte dtypes) or overflows.
pub fn byte_len(dtype: Dtype, elements: usize) -> Option<usize> {
    let bits = elements.checked_mul(dtype.bitsize())?;
    (bits % 8 == 0).then_some(bits / 8)
}

/// The float types a vocabulary-indexed table may have: its rows are remapped and its missing
/// rows are written by an initializer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FloatType {
    /// IEEE binary32.
    F32,
    /// IEEE binary64.
    F64,
    /// IEEE binary16.
    F16,
    /// bfloat16.
    BF16,
}

impl FloatType {
    /// The four float types.
    pub const ALL: [FloatType; 4] = [Self::F32, Self::F64, Self::F16, Self::BF16];

    /// The float type of a safetensors dtype, if it is one of the four.
    pub fn from_dtype(dtype: Dtype) -> Option<Self> {
        match dtype {
            Dtype::F32 => Some(Self::F32),
            Dtype::F64 => Some(Self::F64),
            Dtype::F16 => Some(Self::F16),
            Dtype::BF16 => Some(Self::BF16),
            _ => None,
        }
    }

    /// The safetensors dtype.
    pub fn dtype(self) -> Dtype {
        match self {
            Self::F32 => Dtype::F32,
            Self::F64 => Dtype::F64,
            Self::F16 => Dtype::F16,
            Self::BF16 => Dtype::BF16,
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F64 => 8,
            Self::F16 | Self::BF16 => 2,
        }
    }

    /// Little-endian bits of `value` in this type: f32 as is, f64 widened exactly, f16 and
    /// bf16 rounded to nearest even (NaN stays NaN). Returned in the low bytes of a `u64`.
    pub fn bits_from_f32(self, value: f32) -> u64 {
        match self {
            Self::F32 => value.to_bits() as u64,
            Self::F64 => (value as f64).to_bits(),
            Self::F16 => f16::from_f32(value).to_bits() as u64,
            Self::BF16 => bf16::from_f32(value).to_bits() as u64,
        }
    }

    /// Little-endian bits of a constant given as f64, rounded once to nearest even. (Not
    /// `half`'s `from_f64`: it rounds through f32 on x86 with F16C, and truncates the low bits
    /// of the f64 elsewhere, so a value near a tie could round either way by CPU.)
    pub fn bits_from_f64(self, value: f64) -> u64 {
        match self {
            Self::F32 => (value as f32).to_bits() as u64,
            Self::F64 => value.to_bits(),
            Self::F16 => f16::from_f32(f32_round_to_odd(value)).to_bits() as u64,
            Self::BF16 => bf16::from_f32(f32_round_to_odd(value)).to_bits() as u64,
        }
    }

    /// Decodes one little-endian element to f64 (for reports and tests).
    pub fn decode(self, bytes: &[u8]) -> f64 {
        match self {
            Self::F32 => f32::from_le_bytes(bytes[..4].try_into().unwrap()) as f64,
            Self::F64 => f64::from_le_bytes(bytes[..8].try_into().unwrap()),
            Self::F16 => f16::from_le_bytes(bytes[..2].try_into().unwrap()).to_f64(),
            Self::BF16 => bf16::from_le_bytes(bytes[..2].try_into().unwrap()).to_f64(),
        }
    }
}

/// `value` in f32, rounded toward zero with the last bit set if that lost anything (round to
/// odd): rounding the result to nearest even in a type of at least two fewer significand
/// bits (f16: 11, bf16: 8, against f32's 24) gives what rounding `value` itself would.
fn f32_round_to_odd(value: f64) -> f32 {
    let near = value as f32;
    if !value.is_finite() || near as f64 == value {
        return near;
    }
    // the f32 neighbour toward zero (sign and magnitude: one less in the bits)
    let toward_zero = match (near as f64).abs() > value.abs() {
        true => f32::from_bits(near.to_bits() - 1),
        false => near,
    };
    f32::from_bits(toward_zero.to_bits() | 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Constants near a tie of f16 or bf16 round once: the expected bits are exact rational
    /// round-to-nearest-even of each f64 (numpy's float64-to-float16 cast agrees for f16).
    #[test]
    fn constants_from_f64_round_once() {
        let cases: [(f64, u64, u64); 8] = [
            // value, f16 bits, bf16 bits
            (1.0 + 3.0 * 2f64.powi(-11) - 2f64.powi(-30), 0x3C01, 0x3F80),
            (1.0 + 2f64.powi(-11) + 2f64.powi(-40), 0x3C01, 0x3F80),
            (1.0 + 2f64.powi(-8) + 2f64.powi(-40), 0x3C04, 0x3F81),
            (1.0 + 2f64.powi(-8) - 2f64.powi(-40), 0x3C04, 0x3F80),
            (0.1, 0x2E66, 0x3DCD),
            (-2.5, 0xC100, 0xC020),
            (1e-6, 0x0011, 0x3586),
            (65519.99, 0x7BFF, 0x4780),
        ];
        for (value, f16, bf16) in cases {
            assert_eq!(FloatType::F16.bits_from_f64(value), f16, "f16 of {value:?}");
            assert_eq!(
                FloatType::BF16.bits_from_f64(value),
                bf16,
                "bf16 of {value:?}"
            );
        }
        assert_eq!(
            FloatType::F16.bits_from_f64(65520.0),
            0x7C00,
            "rounds to infinity"
        );
        assert_eq!(FloatType::BF16.bits_from_f64(3e38), 0x7F62);
        assert_eq!(FloatType::BF16.bits_from_f64(1e300), 0x7F80);
        assert_eq!(FloatType::F16.bits_from_f64(-1e-30), 0x8000);
        assert_eq!(FloatType::BF16.bits_from_f64(1e-50), 0x0000);
    }

    #[test]
    fn conversions_round_to_nearest_even() {
        // 1 + 2^-11 is halfway between two f16 values: ties to even (1.0).
        let x = 1.0f32 + f32::powi(2.0, -11);
        assert_eq!(FloatType::F16.bits_from_f32(x), 0x3C00);
        // 1 + 3*2^-11 is halfway: ties to even (1 + 2^-9).
        let y = 1.0f32 + 3.0 * f32::powi(2.0, -11);
        assert_eq!(FloatType::F16.bits_from_f32(y), 0x3C02);
        // bf16 keeps the top 16 bits, rounding to nearest even.
        assert_eq!(
            FloatType::BF16.bits_from_f32(f32::from_bits(0x3F80_8000)),
            0x3F80
        );
        assert_eq!(
            FloatType::BF16.bits_from_f32(f32::from_bits(0x3F81_8000)),
            0x3F82
        );
        assert_eq!(FloatType::F64.bits_from_f32(0.1), (0.1f32 as f64).to_bits());
        assert_eq!(FloatType::F32.bits_from_f64(0.1), 0.1f32.to_bits() as u64);
    }

    #[test]
    fn byte_len_refuses_partial_bytes() {
        assert_eq!(byte_len(Dtype::F32, 3), Some(12));
        assert_eq!(byte_len(Dtype::F4, 3), None);
        assert_eq!(byte_len(Dtype::F4, 4), Some(2));
        assert_eq!(byte_len(Dtype::F64, usize::MAX), None);
    }
}
