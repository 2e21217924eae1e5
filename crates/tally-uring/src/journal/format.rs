//! On-disk format: segment header and record framing (all integers little-endian).
//!
//! ```text
//! segment header (HEADER_BYTES = 4096, records start right after it)
//!   0  magic        [u8; 8] = "TALLYJNL"
//!   8  version      u32     = FORMAT_VERSION (this offset never changes between versions)
//!  12  header_bytes u32     = 4096
//!  16  index        u64     segment number, contiguous from the oldest retained segment
//!  24  first_seq    u64     sequence number of the segment's first record (1..=2^62)
//!  32  salt         u64     random per segment use; mixed into every record CRC
//!  40  segment_bytes u64    file size (preallocated)
//!  48  max_record   u32     largest payload the writer accepted
//!  52  header_crc   u32     CRC32C of bytes 0..52
//!
//! record (8-byte aligned, padded with zeros)
//!   0  len          u32     payload bytes
//!   4  crc          u32     CRC32C(salt || seq || group_back || len || payload)
//!   8  seq          u64
//!  16  group_back   u32     seq - (first seq not yet durable when the record's commit
//!                           group was opened: the group's own first record, or an earlier
//!                           one while flushes of earlier groups were still in flight)
//!  20  payload      [u8; len]
//! ```
//! The salt makes records left over from a recycled segment's previous life (or from a
//! discarded torn tail) fail their CRC; `group_back` lets recovery tell a torn final commit
//! group (records of one group written out of order by the page cache) from mid-log
//! corruption (a bad record followed by records of a later, separately synced group).
#![deny(unsafe_code)]

/// Segment file magic.
pub const MAGIC: [u8; 8] = *b"TALLYJNL";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes reserved for the segment header; the first record starts here.
pub const HEADER_BYTES: u64 = 4096;
/// Bytes of a record header.
pub const RECORD_HEADER_BYTES: usize = 20;
/// Records start at multiples of this.
pub const RECORD_ALIGN: usize = 8;
/// Largest first sequence number a segment header may carry. Far beyond any real journal
/// (2^62 records), it leaves room to count every record a segment can hold without
/// overflowing a `u64`, whatever a damaged or crafted header says.
pub const MAX_FIRST_SEQ: u64 = 1 << 62;

const _: () = assert!(RECORD_HEADER_BYTES.is_multiple_of(4) && RECORD_ALIGN.is_power_of_two());

/// Bytes a record with `len` payload bytes occupies on disk.
pub const fn frame_bytes(len: usize) -> usize {
    (RECORD_HEADER_BYTES + len + RECORD_ALIGN - 1) & !(RECORD_ALIGN - 1)
}

/// A parsed segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Segment number.
    pub index: u64,
    /// First record's sequence number.
    pub first_seq: u64,
    /// Salt mixed into record CRCs.
    pub salt: u64,
    /// Size of the segment file.
    pub segment_bytes: u64,
    /// Largest payload accepted by the writer.
    pub max_record: u32,
}

/// Why a header was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderProblem {
    /// Not a journal segment (magic missing, e.g. a zero-filled file).
    NoMagic,
    /// Written by another format version.
    Version(u32),
    /// The header checksum does not match.
    BadCrc,
    /// Fields are out of range.
    BadFields,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

fn put(b: &mut [u8], at: usize, v: &[u8]) {
    if let Some(s) = b.get_mut(at..at + v.len()) {
        s.copy_from_slice(v);
    }
}

impl SegmentHeader {
    /// The 64 meaningful header bytes (the rest of [`HEADER_BYTES`] is zero).
    pub fn encode(&self) -> [u8; 64] {
        self.encode_version(FORMAT_VERSION)
    }

    /// Encodes with an explicit version (tests write other versions with it).
    pub fn encode_version(&self, version: u32) -> [u8; 64] {
        let mut b = [0u8; 64];
        put(&mut b, 0, &MAGIC);
        put(&mut b, 8, &version.to_le_bytes());
        put(
            &mut b,
            12,
            &u32::try_from(HEADER_BYTES).unwrap_or(0).to_le_bytes(),
        );
        put(&mut b, 16, &self.index.to_le_bytes());
        put(&mut b, 24, &self.first_seq.to_le_bytes());
        put(&mut b, 32, &self.salt.to_le_bytes());
        put(&mut b, 40, &self.segment_bytes.to_le_bytes());
        put(&mut b, 48, &self.max_record.to_le_bytes());
        let crc = crc32c::crc32c(b.get(..52).unwrap_or(&[]));
        put(&mut b, 52, &crc.to_le_bytes());
        b
    }

    /// Parses and checks a header.
    ///
    /// # Errors
    /// The [`HeaderProblem`]. The version is checked before the checksum, so a header
    /// from another version is always reported as such.
    pub fn decode(b: &[u8]) -> Result<Self, HeaderProblem> {
        if b.get(..8) != Some(&MAGIC[..]) {
            return Err(HeaderProblem::NoMagic);
        }
        let version = u32_at(b, 8);
        if version != FORMAT_VERSION {
            return Err(HeaderProblem::Version(version));
        }
        if crc32c::crc32c(b.get(..52).unwrap_or(&[])) != u32_at(b, 52) {
            return Err(HeaderProblem::BadCrc);
        }
        let h = Self {
            index: u64_at(b, 16),
            first_seq: u64_at(b, 24),
            salt: u64_at(b, 32),
            segment_bytes: u64_at(b, 40),
            max_record: u32_at(b, 48),
        };
        if u64::from(u32_at(b, 12)) != HEADER_BYTES
            || h.segment_bytes <= HEADER_BYTES
            || h.first_seq == 0
            || h.first_seq > MAX_FIRST_SEQ
        {
            return Err(HeaderProblem::BadFields);
        }
        Ok(h)
    }
}

/// The CRC of a record: salt, then header bytes 8..20, then the payload.
#[inline]
pub fn record_crc(salt: u64, seq: u64, group_back: u32, payload: &[u8]) -> u32 {
    // salt || seq || group_back || len (24 little-endian bytes), then the payload.
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let words = [salt, seq, u64::from(group_back) | (u64::from(len) << 32)];
    crate::crc::crc32c_words_then(words, payload)
}

/// Writes a framed record into `out` (exactly `frame_bytes(payload.len())` long).
#[inline]
pub fn encode_record(out: &mut [u8], salt: u64, seq: u64, group_back: u32, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    put(out, 0, &len.to_le_bytes());
    put(
        out,
        4,
        &record_crc(salt, seq, group_back, payload).to_le_bytes(),
    );
    put(out, 8, &seq.to_le_bytes());
    put(out, 16, &group_back.to_le_bytes());
    put(out, RECORD_HEADER_BYTES, payload);
    let end = RECORD_HEADER_BYTES + payload.len();
    let frame = frame_bytes(payload.len());
    if frame - end < RECORD_ALIGN && out.len() == frame {
        // The usual case, a buffer of exactly one frame: the pad is the end of the last
        // 8-byte word (no memset call for 0-7 bytes).
        let pad_bits = (frame - end) * 8;
        let keep = u64::MAX
            .checked_shr(u32::try_from(pad_bits).unwrap_or(64))
            .unwrap_or(0);
        let word = u64_at(out, frame - RECORD_ALIGN) & keep;
        put(out, frame - RECORD_ALIGN, &word.to_le_bytes());
    } else if let Some(pad) = out.get_mut(end..) {
        pad.fill(0);
    }
}

/// Re-frames an encoded record (`frame` is exactly its frame) for another segment: sets
/// its sequence fields and recomputes its CRC with `salt`. The payload is unchanged.
pub fn reframe_record(frame: &mut [u8], salt: u64, seq: u64, group_back: u32) {
    let len = u32_at(frame, 0) as usize;
    let crc = frame
        .get(RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + len)
        .map_or(0, |payload| record_crc(salt, seq, group_back, payload));
    put(frame, 4, &crc.to_le_bytes());
    put(frame, 8, &seq.to_le_bytes());
    put(frame, 16, &group_back.to_le_bytes());
}

/// A record header that passed its checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHead {
    /// Payload length.
    pub len: u32,
    /// Sequence number.
    pub seq: u64,
    /// First sequence number of the record's commit group.
    pub group_first: u64,
}

/// Parses only the fixed header fields (no CRC check).
#[inline]
pub fn peek_header(b: &[u8]) -> Option<(u32, u32, u64, u32)> {
    if b.len() < RECORD_HEADER_BYTES {
        return None;
    }
    Some((u32_at(b, 0), u32_at(b, 4), u64_at(b, 8), u32_at(b, 16)))
}

/// Checks the record whose frame starts at `b[0]` (`b` holds at least the whole frame if
/// the length field is honest). `seq_ok` filters sequence numbers before the CRC is
/// computed.
#[inline]
pub fn check_record(
    b: &[u8],
    salt: u64,
    max_record: u32,
    seq_ok: impl Fn(u64) -> bool,
) -> Option<RecordHead> {
    let (len, crc, seq, back) = peek_header(b)?;
    if len > max_record || !seq_ok(seq) || u64::from(back) >= seq {
        return None;
    }
    let payload = b.get(RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + len as usize)?;
    if record_crc(salt, seq, back, payload) != crc {
        return None;
    }
    Some(RecordHead {
        len,
        seq,
        group_first: seq - u64::from(back),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_refusals() {
        let h = SegmentHeader {
            index: 3,
            first_seq: 17,
            salt: 99,
            segment_bytes: 1 << 20,
            max_record: 4096,
        };
        let b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        let mut bad = b;
        bad[20] ^= 1;
        assert_eq!(SegmentHeader::decode(&bad), Err(HeaderProblem::BadCrc));
        assert_eq!(
            SegmentHeader::decode(&h.encode_version(2)),
            Err(HeaderProblem::Version(2))
        );
        assert_eq!(
            SegmentHeader::decode(&[0u8; 64]),
            Err(HeaderProblem::NoMagic)
        );
    }

    #[test]
    fn record_round_trip_and_every_bit_flip_is_caught() {
        let payload = b"hello journal";
        let mut buf = vec![0u8; frame_bytes(payload.len())];
        assert_eq!(buf.len() % RECORD_ALIGN, 0);
        encode_record(&mut buf, 7, 42, 2, payload);
        let head = check_record(&buf, 7, 1024, |s| s == 42).unwrap();
        assert_eq!((head.len, head.seq, head.group_first), (13, 42, 40));
        assert!(
            check_record(&buf, 8, 1024, |_| true).is_none(),
            "wrong salt accepted"
        );
        assert!(check_record(&buf, 7, 1024, |s| s == 43).is_none());
        for bit in 0..(RECORD_HEADER_BYTES + payload.len()) * 8 {
            let mut b = buf.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(
                check_record(&b, 7, 1024, |_| true).is_none(),
                "flip of bit {bit} not detected"
            );
        }
        assert!(check_record(&[0u8; 64], 7, 1024, |_| true).is_none());
    }
}
