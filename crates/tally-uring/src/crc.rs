//! CRC32C (Castagnoli) for the journal's record frames. The second module of this crate
//! with `unsafe` code: one call into an SSE4.2 function after checking that the CPU has it.
//!
//! Journal records are short (tens of bytes to a few KiB) and each CRC covers a 24-byte
//! prefix and the payload. The `crc32c` crate is built for long buffers; for short ones its
//! per-call set-up (alignment loops, the three-way parallel path) cost about 400
//! instructions per record CRC in `uring/journal_group64`. Up to [`SHORT`] bytes this
//! module runs the `crc32` instruction 8 bytes at a time instead; longer inputs, and CPUs
//! without SSE4.2, use the crate. Both compute the same standard CRC32C (tested).

/// Inputs longer than this go to the `crc32c` crate's parallel path.
const SHORT: usize = 256;

/// Continues the CRC32C `crc` (0 for a fresh one) over `data`, like
/// `crc32c::crc32c_append`.
#[inline]
pub(crate) fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if data.len() <= SHORT && std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: `short_hw` needs SSE4.2, which the CPU has (checked just above).
        return unsafe { short_hw(crc, data) };
    }
    crc32c::crc32c_append(crc, data)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
#[allow(
    clippy::cast_possible_truncation,
    reason = "the crc32 instruction's 64-bit form returns the CRC in the low 32 bits"
)]
fn short_hw(crc: u32, data: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u8, _mm_crc32_u64};
    let mut c = u64::from(!crc);
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        c = _mm_crc32_u64(c, u64::from_le_bytes(b));
    }
    let mut c = c as u32;
    for &b in words.remainder() {
        c = _mm_crc32_u8(c, b);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_crc_as_the_crc32c_crate_for_every_length_and_seed() {
        let data: Vec<u8> = (0..1200u32).map(|i| (i * 131 + 7).to_le_bytes()[0]).collect();
        for len in 0..data.len() {
            for seed in [0u32, 1, 0xdead_beef] {
                assert_eq!(
                    crc32c_append(seed, &data[..len]),
                    crc32c::crc32c_append(seed, &data[..len]),
                    "len {len} seed {seed}"
                );
            }
        }
        // Split anywhere: the same as one pass.
        let whole = crc32c_append(0, &data[..300]);
        for cut in 0..300 {
            assert_eq!(
                crc32c_append(crc32c_append(0, &data[..cut]), &data[cut..300]),
                whole
            );
        }
        // Standard check value of CRC-32C.
        assert_eq!(crc32c_append(0, b"123456789"), 0xe306_9283);
    }
}
