//! CRC32C (Castagnoli) for the journal's record frames. The second module of this crate
//! with `unsafe` code: calls into SSE4.2 functions after checking that the CPU has it.
//!
//! Journal records are short (tens of bytes to a few KiB) and each CRC covers a 24-byte
//! prefix and the payload. The `crc32c` crate is built for long buffers; for short ones its
//! per-call set-up (alignment loops, the three-way parallel path) cost about 400
//! instructions per record CRC in `uring/journal_group64`. This module feeds the prefix to
//! the `crc32` instruction as three words and payloads up to [`SHORT`] bytes 8 bytes at a
//! time; longer payloads, and CPUs without SSE4.2, use the crate. Both compute the same
//! standard CRC32C (tested).

/// Inputs longer than this go to the `crc32c` crate's parallel path.
const SHORT: usize = 256;

/// Continues the CRC32C `crc` (0 for a fresh one) over `data`, like
/// `crc32c::crc32c_append` (the tests' reference for the short path).
#[cfg(test)]
fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if data.len() <= SHORT && std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: `short_hw` needs SSE4.2, which the CPU has (checked just above).
        return unsafe { short_hw(crc, data) };
    }
    crc32c::crc32c_append(crc, data)
}

/// The CRC32C of the 24 little-endian bytes of `words` followed by `data` (a record's
/// salt, sequence fields and length, then its payload) in one call.
#[inline]
pub(crate) fn crc32c_words_then(words: [u64; 3], data: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: `words_then_hw` needs SSE4.2, which the CPU has (checked just above).
        return unsafe { words_then_hw(words, data) };
    }
    let mut head = [0u8; 24];
    for (dst, w) in head.chunks_exact_mut(8).zip(words) {
        dst.copy_from_slice(&w.to_le_bytes());
    }
    crc32c::crc32c_append(crc32c::crc32c_append(0, &head), data)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
#[allow(
    clippy::cast_possible_truncation,
    reason = "the crc32 instruction's 64-bit form returns the CRC in the low 32 bits"
)]
fn words_then_hw(words: [u64; 3], data: &[u8]) -> u32 {
    use std::arch::x86_64::_mm_crc32_u64;
    let mut c = u64::from(!0u32);
    for w in words {
        c = _mm_crc32_u64(c, w);
    }
    let head = !(c as u32);
    if data.len() <= SHORT {
        short_hw(head, data)
    } else {
        crc32c::crc32c_append(head, data)
    }
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
        let data: Vec<u8> = (0..1200u32)
            .map(|i| (i * 131 + 7).to_le_bytes()[0])
            .collect();
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
        // Prefix words then data: the same as the bytes in one pass.
        for len in [0usize, 1, 7, 8, 64, 255, 256, 257, 1024, 1199] {
            let words = [
                0x0123_4567_89ab_cdefu64,
                len as u64 * 977,
                0xfeed_0000_0000_beef,
            ];
            let mut bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            bytes.extend_from_slice(&data[..len]);
            assert_eq!(
                crc32c_words_then(words, &data[..len]),
                crc32c::crc32c(&bytes),
                "len {len}"
            );
        }
        // Standard check value of CRC-32C.
        assert_eq!(crc32c_append(0, b"123456789"), 0xe306_9283);
    }
}
