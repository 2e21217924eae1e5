//! Reading segments back: replay, verification and the recovery decision (torn tail or
//! corruption).
#![deny(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::JournalError;
use super::format::{
    HEADER_BYTES, HeaderProblem, RECORD_ALIGN, RECORD_HEADER_BYTES, RecordHead, SegmentHeader,
    check_record, frame_bytes, peek_header,
};

/// A segment file found in the journal directory.
#[derive(Debug, Clone)]
pub(crate) struct SegFile {
    pub index: u64,
    pub path: PathBuf,
}

pub(crate) fn seg_name(index: u64) -> String {
    format!("seg-{index:016x}.tjl")
}

pub(crate) fn free_name(index: u64) -> String {
    format!("free-{index:016x}.tjl")
}

fn parse_name(name: &str, prefix: &str) -> Option<u64> {
    let hex = name.strip_prefix(prefix)?.strip_suffix(".tjl")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Largest segment number in a file name: far beyond any real journal (one segment per
/// 2^62), it leaves room to number the next segments without overflowing a `u64`. A
/// `free-` name above it is not the journal's (left alone); a `seg-` name is corruption.
const MAX_SEGMENT_INDEX: u64 = 1 << 62;

/// Live segments sorted by index, and recyclable ones.
pub(crate) fn list_segments(dir: &Path) -> Result<(Vec<SegFile>, Vec<SegFile>), JournalError> {
    let mut live = Vec::new();
    let mut free = Vec::new();
    let rd = std::fs::read_dir(dir)
        .map_err(|source| JournalError::io(dir, "list the journal directory", source))?;
    for entry in rd {
        let entry =
            entry.map_err(|source| JournalError::io(dir, "list the journal directory", source))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(index) = parse_name(name, "seg-") {
            if index > MAX_SEGMENT_INDEX {
                return Err(JournalError::Corrupt {
                    segment: entry.path(),
                    offset: 0,
                    reason: "segment number out of range (above 2^62): the file was not written by the journal",
                });
            }
            live.push(SegFile {
                index,
                path: entry.path(),
            });
        } else if let Some(index) = parse_name(name, "free-")
            && index <= MAX_SEGMENT_INDEX
        {
            free.push(SegFile {
                index,
                path: entry.path(),
            });
        }
    }
    live.sort_by_key(|s| s.index);
    free.sort_by_key(|s| s.index);
    Ok((live, free))
}

/// Buffered positional reader over one segment file.
pub(crate) struct Reader {
    file: File,
    path: PathBuf,
    buf: Vec<u8>,
    buf_off: u64,
    buf_len: usize,
    pub file_len: u64,
}

impl Reader {
    pub fn open(path: &Path, window_bytes: usize) -> Result<Self, JournalError> {
        let file = File::open(path)
            .map_err(|source| JournalError::io(path, "open a segment for reading", source))?;
        let file_len = file
            .metadata()
            .map_err(|source| JournalError::io(path, "stat a segment", source))?
            .len();
        Ok(Self {
            file,
            path: path.to_path_buf(),
            buf: vec![
                0;
                window_bytes
                    .min(usize::try_from(file_len).unwrap_or(usize::MAX))
                    .max(4096)
            ],
            buf_off: 0,
            buf_len: 0,
            file_len,
        })
    }

    /// Up to `want` bytes at `off` (fewer only at the end of the file). The buffer grows
    /// when `want` is larger than it, so a record as large as the segment's `max_record`
    /// can always be read whole, whatever window the reader was opened with.
    pub fn window(&mut self, off: u64, want: usize) -> Result<&[u8], JournalError> {
        if want > self.buf.len() {
            // Never more than the file holds: `want` comes from a segment header, which is
            // checked (CRC) but could still claim a huge `max_record`.
            let cap = usize::try_from(self.file_len).unwrap_or(usize::MAX);
            let grow_to = want.min(cap);
            if grow_to > self.buf.len() {
                self.buf
                    .try_reserve_exact(grow_to - self.buf.len())
                    .map_err(|_| {
                        JournalError::io(
                            &self.path,
                            "allocate a read buffer for the segment's largest record",
                            io::Error::new(
                                io::ErrorKind::OutOfMemory,
                                "out of memory: free memory, or read the journal on a machine with more",
                            ),
                        )
                    })?;
                self.buf.resize(grow_to, 0);
                // The old contents stay valid at the start of the larger buffer.
            }
        }
        let want = want.min(self.buf.len());
        let have_end = self.buf_off + self.buf_len as u64;
        let need_end = (off + want as u64).min(self.file_len);
        if off < self.buf_off || need_end > have_end {
            self.buf_off = off;
            self.buf_len = 0;
            let target = usize::try_from(self.file_len.saturating_sub(off))
                .unwrap_or(usize::MAX)
                .min(self.buf.len());
            while self.buf_len < target {
                let dst = self.buf.get_mut(self.buf_len..target).unwrap_or(&mut []);
                match self.file.read_at(dst, off + self.buf_len as u64) {
                    Ok(0) => break,
                    Ok(n) => self.buf_len += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(source) => {
                        return Err(JournalError::io(&self.path, "read a segment", source));
                    }
                }
            }
        }
        let start = usize::try_from(off - self.buf_off).unwrap_or(0);
        let end = (start + want).min(self.buf_len);
        Ok(self.buf.get(start..end).unwrap_or(&[]))
    }
}

impl Reader {
    /// `fdatasync`s the segment, so that records read from it are durable before they
    /// are delivered. A read-only file system (`EROFS`) holds nothing unsynced, and a file
    /// system without sync support (`EINVAL`) cannot make anything more durable: both are
    /// taken as done.
    fn sync_data(&self) -> Result<(), JournalError> {
        match self.file.sync_data() {
            Err(e) if !matches!(e.raw_os_error(), Some(libc::EROFS | libc::EINVAL)) => {
                Err(JournalError::io(
                    &self.path,
                    "sync a segment before delivering its records",
                    e,
                ))
            }
            _ => Ok(()),
        }
    }
}

/// What [`scan`] may deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deliver {
    /// Records as they are read (recovery in `open`, which syncs the segment it
    /// continues before it reports anything durable).
    AsRead,
    /// Durable records only: a segment that may hold records a writer wrote but never
    /// synced (a killed writer's page cache) is synced before any of them is delivered.
    Durable,
}

/// A segment whose records were read.
#[derive(Debug, Clone)]
pub(crate) struct LiveSeg {
    pub index: u64,
    pub path: PathBuf,
    pub header: SegmentHeader,
    /// Offset just past the last valid record.
    pub end_off: u64,
}

/// Where the log was cut.
#[derive(Debug, Clone)]
pub(crate) struct Torn {
    /// Segment file holding the first damaged record (or the half-created segment).
    pub path: PathBuf,
    /// Position of that segment in the live list.
    pub seg_pos: usize,
    /// Offset of the damaged record.
    pub offset: u64,
    /// End of the furthest intact record of the torn group found past `offset` in the same
    /// segment (to be zeroed on open), or `offset`.
    pub zero_until: u64,
    /// Intact records of the torn group found past the damage (discarded).
    pub orphans: u64,
}

/// The result of reading every segment.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scan {
    pub live: Vec<LiveSeg>,
    pub all: Vec<SegFile>,
    pub free: Vec<SegFile>,
    pub records: u64,
    pub payload_bytes: u64,
    pub first_seq: Option<u64>,
    /// The sequence number the next record gets.
    pub next_seq: u64,
    pub torn: Option<Torn>,
}

fn header_of(r: &mut Reader) -> Result<Result<SegmentHeader, HeaderProblem>, JournalError> {
    let b = r.window(0, 64)?;
    Ok(SegmentHeader::decode(b))
}

/// The record whose frame starts at `off`, with its payload, if it is intact and `seq_ok`
/// accepts its sequence number. Reads the header first and then exactly the frame it
/// announces, so the reader's window grows only for records that are really that large.
fn record_at<'r>(
    r: &'r mut Reader,
    off: u64,
    salt: u64,
    max_record: u32,
    seq_ok: &impl Fn(u64) -> bool,
) -> Result<Option<(RecordHead, &'r [u8])>, JournalError> {
    let Some((len, _, seq, back)) = peek_header(r.window(off, RECORD_HEADER_BYTES)?) else {
        return Ok(None);
    };
    // The cheap checks of `check_record`, before a large frame is read.
    if len > max_record || !seq_ok(seq) || u64::from(back) >= seq {
        return Ok(None);
    }
    let w = r.window(off, frame_bytes(len as usize))?;
    let Some(rec) = check_record(w, salt, max_record, seq_ok) else {
        return Ok(None);
    };
    let payload = w
        .get(RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + rec.len as usize)
        .unwrap_or(&[]);
    Ok(Some((rec, payload)))
}

/// Initial read window. [`Reader::window`] grows it when a record's frame is larger
/// (records may be as large as a whole group buffer).
const WINDOW: usize = 4 << 20;

/// Reads every live segment in order, delivering intact records, and decides whether a
/// damaged record is a torn tail or corruption.
#[allow(
    clippy::too_many_lines,
    reason = "one pass over the log; the recovery rules read best in order"
)]
pub(crate) fn scan(
    dir: &Path,
    mode: Deliver,
    mut deliver: impl FnMut(u64, &[u8]),
) -> Result<Scan, JournalError> {
    let (segs, free) = list_segments(dir)?;
    let mut out = Scan {
        all: segs.clone(),
        free,
        next_seq: 1,
        ..Scan::default()
    };
    for pair in segs.windows(2) {
        if let [a, b] = pair
            && b.index != a.index + 1
        {
            return Err(JournalError::MissingSegment {
                dir: dir.to_path_buf(),
                index: a.index + 1,
            });
        }
    }
    let last_pos = segs.len().saturating_sub(1);
    let mut expected: Option<u64> = None;
    for (pos, sf) in segs.iter().enumerate() {
        let mut r = Reader::open(&sf.path, WINDOW)?;
        let h = match header_of(&mut r)? {
            Ok(h) => h,
            Err(HeaderProblem::Version(found)) => {
                return Err(JournalError::UnsupportedVersion {
                    segment: sf.path.clone(),
                    found,
                    supported: super::format::FORMAT_VERSION,
                });
            }
            Err(problem) => {
                return Err(JournalError::Corrupt {
                    segment: sf.path.clone(),
                    offset: 0,
                    reason: match problem {
                        HeaderProblem::NoMagic => "segment header has no journal magic",
                        HeaderProblem::BadCrc => "segment header checksum mismatch",
                        _ => "segment header fields out of range",
                    },
                });
            }
        };
        if h.index != sf.index || h.segment_bytes != r.file_len {
            return Err(JournalError::Corrupt {
                segment: sf.path.clone(),
                offset: 0,
                reason: "segment header does not match the file name or size",
            });
        }
        let e0 = *expected.get_or_insert(h.first_seq);
        if h.first_seq != e0 {
            return Err(JournalError::Corrupt {
                segment: sf.path.clone(),
                offset: 0,
                reason: "segment does not start with the next sequence number (records are missing)",
            });
        }
        if out.first_seq.is_none() {
            out.first_seq = Some(h.first_seq);
        }
        let next_first = match segs.get(pos + 1) {
            Some(next) => {
                let mut nr = Reader::open(&next.path, 4096)?;
                header_of(&mut nr)?.ok().map(|nh| nh.first_seq)
            }
            None => None,
        };
        // Records below the next segment's first sequence number were synced before that
        // segment was created (see below); any other record may still be only in the page
        // cache of a killed writer, and is delivered durable only after a sync.
        let mut synced = mode == Deliver::AsRead;
        let mut off = HEADER_BYTES;
        let mut e = e0;
        while let Some((rec, _)) = record_at(&mut r, off, h.salt, h.max_record, &|s| s == e)? {
            if !synced && next_first.is_none_or(|first| rec.seq >= first) {
                r.sync_data()?;
                synced = true;
            }
            // The frame was just read whole into the window: no read happens here, these
            // are the bytes `record_at` checked.
            let payload = r.window(off + RECORD_HEADER_BYTES as u64, rec.len as usize)?;
            deliver(rec.seq, payload);
            out.records += 1;
            out.payload_bytes += u64::from(rec.len);
            e += 1;
            off += frame_bytes(rec.len as usize) as u64;
        }
        expected = Some(e);
        out.next_seq = e;
        out.live.push(LiveSeg {
            index: h.index,
            path: sf.path.clone(),
            header: h,
            end_off: off,
        });
        // The first bad position `off` in this segment. Clean end if the next segment
        // starts exactly at `e` (the writer rotated because the next record did not fit).
        // The writer creates a segment only once every record before its first sequence
        // number is synced (a rotation waits for the commits in flight and syncs what it
        // leaves behind; `open` syncs the segment it recovered). A next segment that
        // starts later than `e` proves that records from `e` on were durable: their damage
        // is corruption, never a torn tail to cut (that would drop acknowledged records).
        if next_first.is_some_and(|first| first > e) {
            return Err(JournalError::Corrupt {
                segment: sf.path.clone(),
                offset: off,
                reason: "a damaged record is followed by a segment that starts at a later sequence number (the records before that segment were durable)",
            });
        }
        let next_starts_at_e = next_first == Some(e);
        let mut orphans = 0u64;
        let mut zero_until = off;
        // Look for intact records with seq >= e after the damage.
        let mut later: Vec<(usize, u64)> = vec![(pos, off + RECORD_ALIGN as u64)];
        if !next_starts_at_e {
            later.extend((pos + 1..segs.len()).map(|p| (p, HEADER_BYTES)));
        }
        for (p, start) in later {
            let Some(lf) = segs.get(p) else { continue };
            let mut other;
            let (lr, lh) = if p == pos {
                (&mut r, h)
            } else {
                other = Reader::open(&lf.path, WINDOW)?;
                match header_of(&mut other)? {
                    Ok(lh) => (&mut other, lh),
                    Err(HeaderProblem::Version(found)) => {
                        return Err(JournalError::UnsupportedVersion {
                            segment: lf.path.clone(),
                            found,
                            supported: super::format::FORMAT_VERSION,
                        });
                    }
                    // The journal never leaves a segment without a valid header (each is
                    // renamed into place after its header is synced): this is damage, and
                    // the segment may hold acknowledged records. Cutting the log here as a
                    // torn tail would discard them (and recycle the file) without a word.
                    Err(_) => {
                        return Err(JournalError::Corrupt {
                            segment: lf.path.clone(),
                            offset: 0,
                            reason: "a segment after the end of the intact records has a damaged header (it may hold acknowledged records)",
                        });
                    }
                }
            };
            let mut at = start;
            while at + RECORD_HEADER_BYTES as u64 <= lr.file_len {
                let found = record_at(lr, at, lh.salt, lh.max_record, &|s| {
                    s >= e && s - e < (1 << 40)
                })?;
                if let Some((rec, _)) = found {
                    if next_starts_at_e || rec.group_first > e {
                        return Err(JournalError::Corrupt {
                            segment: sf.path.clone(),
                            offset: off,
                            reason: "a damaged record is followed by intact, separately committed records (mid-log corruption)",
                        });
                    }
                    orphans += 1;
                    let end = at + frame_bytes(rec.len as usize) as u64;
                    if p == pos {
                        zero_until = zero_until.max(end);
                    }
                    at = end;
                } else {
                    at += RECORD_ALIGN as u64;
                }
            }
        }
        if next_starts_at_e {
            continue;
        }
        // Last segment, or records missing before the next one: the log ends here. It is
        // reported as torn when something of this segment's life was written past the end
        // (a record header carrying the expected sequence number, or intact records of the
        // same commit group); zeros and leftovers of a recycled segment are a clean end.
        let w = r.window(off, RECORD_HEADER_BYTES)?;
        let half_written = super::format::peek_header(w).is_some_and(|(_, _, seq, _)| seq == e);
        if pos != last_pos || orphans > 0 || half_written {
            out.torn = Some(Torn {
                path: sf.path.clone(),
                seg_pos: pos,
                offset: off,
                zero_until,
                orphans,
            });
        }
        break;
    }
    Ok(out)
}
