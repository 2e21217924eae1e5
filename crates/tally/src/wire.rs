//! The pipeline's datagram format (specified in `docs/wire.md`).
//!
//! Every datagram is one message: a 4-byte header (`'T' 'L'`, version 1, type) and a
//! body; all integers are big-endian. Points are 33-byte SEC1 compressed, scalars 32-byte
//! big-endian, as in RFC 9591.
//!
//! | type | name | direction | body |
//! |---|---|---|---|
//! | 1 | `PACKAGE` | signers -> coordinator | session u64, group u16, t u8, 0u8, msg `[32]`, t x (id u16, hiding `[33]`, binding `[33]`) |
//! | 2 | `SHARE` | signer -> coordinator | session u64, id u16, z `[32]` |
//! | 3 | `SIGNED` | coordinator -> signers | session u64, journal seq u64, signature R `[33]` z `[32]` |
//! | 4 | `REJECTED` | coordinator -> signers | session u64, journal seq u64, k u8, k x culprit id u16 |

/// First two bytes of every datagram.
pub const MAGIC: [u8; 2] = *b"TL";
/// Wire version.
pub const VERSION: u8 = 1;
/// Header bytes.
pub const HEADER: usize = 4;
/// Largest threshold a `PACKAGE` may carry.
pub const MAX_T: usize = 16;
/// `PACKAGE` message type.
pub const T_PACKAGE: u8 = 1;
/// `SHARE` message type.
pub const T_SHARE: u8 = 2;
/// `SIGNED` message type.
pub const T_SIGNED: u8 = 3;
/// `REJECTED` message type.
pub const T_REJECTED: u8 = 4;
/// Bytes of a `SHARE` datagram.
pub const SHARE_LEN: usize = HEADER + 8 + 2 + 32;
/// Bytes of a `SIGNED` datagram.
pub const SIGNED_LEN: usize = HEADER + 8 + 8 + 65;
/// Largest datagram of this format.
pub const MAX_DATAGRAM: usize = package_len(MAX_T);

/// Bytes of a `PACKAGE` datagram with `t` signers.
pub const fn package_len(t: usize) -> usize {
    HEADER + 8 + 2 + 2 + 32 + t * 68
}

/// Why a datagram was rejected by the parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Shorter than its type requires.
    #[error("datagram truncated: {got} bytes, this message type needs {need}")]
    Truncated {
        /// Bytes received.
        got: usize,
        /// Bytes needed.
        need: usize,
    },
    /// Longer than its type allows.
    #[error("datagram has {got} bytes, this message type has exactly {want}")]
    TrailingBytes {
        /// Bytes received.
        got: usize,
        /// Bytes expected.
        want: usize,
    },
    /// Not `'T' 'L'`.
    #[error("bad magic {0:02x?}: not a Tally datagram")]
    BadMagic([u8; 2]),
    /// Unknown version.
    #[error("wire version {0} is not supported (this build speaks version 1)")]
    BadVersion(u8),
    /// Unknown message type.
    #[error("unknown message type {0}")]
    BadType(u8),
    /// A `PACKAGE` with threshold 0 or above [`MAX_T`].
    #[error("threshold {0} out of range 1..={MAX_T}")]
    BadThreshold(u8),
    /// A `REJECTED` naming more than [`MAX_T`] culprits.
    #[error("{0} culprits named, a session has at most {MAX_T} signers")]
    BadCulpritCount(u8),
}

/// A parsed message, borrowing the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg<'a> {
    /// Round-one commitments of a session.
    Package(Package<'a>),
    /// A signature share.
    Share(Share),
    /// The coordinator's durable answer: the signature.
    Signed(Signed),
    /// The coordinator's durable answer: the session failed, these signers cheated.
    Rejected(Rejected),
}

/// A `PACKAGE` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Package<'a> {
    /// Session identifier.
    pub session: u64,
    /// Group (key) identifier.
    pub group: u16,
    /// The message to sign.
    pub msg: &'a [u8; 32],
    entries: &'a [u8],
}

impl<'a> Package<'a> {
    /// Number of signers.
    pub fn t(&self) -> usize {
        self.entries.len() / 68
    }

    /// The signers' `(id, hiding, binding)`.
    pub fn commitments(&self) -> impl Iterator<Item = (u16, &'a [u8; 33], &'a [u8; 33])> + 'a {
        self.entries.chunks_exact(68).filter_map(|c| {
            let (id, rest) = c.split_first_chunk::<2>()?;
            let (h, b) = rest.split_first_chunk::<33>()?;
            Some((u16::from_be_bytes(*id), h, b.first_chunk::<33>()?))
        })
    }
}

/// A `SHARE` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// Session identifier.
    pub session: u64,
    /// Signer identifier.
    pub id: u16,
    /// The share `z_i`.
    pub z: [u8; 32],
}

/// A `SIGNED` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signed {
    /// Session identifier.
    pub session: u64,
    /// Journal sequence number of the durable record.
    pub seq: u64,
    /// `R || z`.
    pub sig: [u8; 65],
}

/// A `REJECTED` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// Session identifier.
    pub session: u64,
    /// Journal sequence number of the durable record.
    pub seq: u64,
    /// Culprits (first `count`).
    pub culprits: [u16; MAX_T],
    /// Number of culprits.
    pub count: u8,
}

impl Rejected {
    /// The culprits' identifiers.
    pub fn culprits(&self) -> &[u16] {
        self.culprits
            .get(..usize::from(self.count))
            .unwrap_or(&self.culprits)
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u16::from_be_bytes)
}

fn exact(b: &[u8], want: usize) -> Result<(), WireError> {
    match b.len() {
        n if n < want => Err(WireError::Truncated { got: n, need: want }),
        n if n > want => Err(WireError::TrailingBytes { got: n, want }),
        _ => Ok(()),
    }
}

/// Parses one datagram.
///
/// # Errors
/// [`WireError`] for anything that is not exactly one well-formed message.
pub fn parse(b: &[u8]) -> Result<Msg<'_>, WireError> {
    let Some((hdr, _)) = b.split_first_chunk::<HEADER>() else {
        return Err(WireError::Truncated {
            got: b.len(),
            need: HEADER,
        });
    };
    let [m0, m1, version, ty] = *hdr;
    if [m0, m1] != MAGIC {
        return Err(WireError::BadMagic([m0, m1]));
    }
    if version != VERSION {
        return Err(WireError::BadVersion(version));
    }
    match ty {
        T_PACKAGE => {
            let fixed = package_len(0);
            if b.len() < fixed {
                return Err(WireError::Truncated {
                    got: b.len(),
                    need: fixed,
                });
            }
            let t = b.get(HEADER + 10).copied().unwrap_or(0);
            if t == 0 || usize::from(t) > MAX_T {
                return Err(WireError::BadThreshold(t));
            }
            exact(b, package_len(usize::from(t)))?;
            let msg = b
                .get(HEADER + 12..HEADER + 44)
                .and_then(|s| s.first_chunk::<32>())
                .ok_or(WireError::Truncated {
                    got: b.len(),
                    need: fixed,
                })?;
            Ok(Msg::Package(Package {
                session: u64_at(b, HEADER),
                group: u16_at(b, HEADER + 8),
                msg,
                entries: b.get(fixed..).unwrap_or(&[]),
            }))
        }
        T_SHARE => {
            exact(b, SHARE_LEN)?;
            let mut z = [0u8; 32];
            z.copy_from_slice(b.get(HEADER + 10..SHARE_LEN).unwrap_or(&[0u8; 32]));
            Ok(Msg::Share(Share {
                session: u64_at(b, HEADER),
                id: u16_at(b, HEADER + 8),
                z,
            }))
        }
        T_SIGNED => {
            exact(b, SIGNED_LEN)?;
            let mut sig = [0u8; 65];
            sig.copy_from_slice(b.get(HEADER + 16..SIGNED_LEN).unwrap_or(&[0u8; 65]));
            Ok(Msg::Signed(Signed {
                session: u64_at(b, HEADER),
                seq: u64_at(b, HEADER + 8),
                sig,
            }))
        }
        T_REJECTED => {
            let fixed = HEADER + 17;
            if b.len() < fixed {
                return Err(WireError::Truncated {
                    got: b.len(),
                    need: fixed,
                });
            }
            let count = b.get(HEADER + 16).copied().unwrap_or(0);
            if usize::from(count) > MAX_T {
                return Err(WireError::BadCulpritCount(count));
            }
            exact(b, fixed + 2 * usize::from(count))?;
            let mut culprits = [0u16; MAX_T];
            for (i, c) in culprits.iter_mut().take(usize::from(count)).enumerate() {
                *c = u16_at(b, fixed + 2 * i);
            }
            Ok(Msg::Rejected(Rejected {
                session: u64_at(b, HEADER),
                seq: u64_at(b, HEADER + 8),
                culprits,
                count,
            }))
        }
        other => Err(WireError::BadType(other)),
    }
}

/// A small append-only writer over a caller's buffer (no allocation).
struct W<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl W<'_> {
    fn put(&mut self, bytes: &[u8]) {
        if let Some(dst) = self.buf.get_mut(self.at..self.at + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
        self.at += bytes.len();
    }
    fn header(&mut self, ty: u8) {
        self.put(&[MAGIC[0], MAGIC[1], VERSION, ty]);
    }
    /// Bytes written, or 0 if the buffer was too small.
    fn done(self) -> usize {
        if self.at <= self.buf.len() {
            self.at
        } else {
            0
        }
    }
}

/// Writes a `PACKAGE`; returns its length (0 if `out` is too small or `t` out of range).
pub fn write_package(
    out: &mut [u8],
    session: u64,
    group: u16,
    msg: &[u8; 32],
    commitments: &[(u16, [u8; 33], [u8; 33])],
) -> usize {
    let Ok(t) = u8::try_from(commitments.len()) else {
        return 0;
    };
    if t == 0 || usize::from(t) > MAX_T {
        return 0;
    }
    let mut w = W { buf: out, at: 0 };
    w.header(T_PACKAGE);
    w.put(&session.to_be_bytes());
    w.put(&group.to_be_bytes());
    w.put(&[t, 0]);
    w.put(msg);
    for (id, h, b) in commitments {
        w.put(&id.to_be_bytes());
        w.put(h);
        w.put(b);
    }
    w.done()
}

/// Writes a `SHARE`; returns its length (0 if `out` is too small).
pub fn write_share(out: &mut [u8], session: u64, id: u16, z: &[u8; 32]) -> usize {
    let mut w = W { buf: out, at: 0 };
    w.header(T_SHARE);
    w.put(&session.to_be_bytes());
    w.put(&id.to_be_bytes());
    w.put(z);
    w.done()
}

/// Writes a `SIGNED`; returns its length (0 if `out` is too small).
pub fn write_signed(out: &mut [u8], session: u64, seq: u64, sig: &[u8; 65]) -> usize {
    let mut w = W { buf: out, at: 0 };
    w.header(T_SIGNED);
    w.put(&session.to_be_bytes());
    w.put(&seq.to_be_bytes());
    w.put(sig);
    w.done()
}

/// Writes a `REJECTED`; returns its length (0 if `out` is too small or too many culprits).
pub fn write_rejected(out: &mut [u8], session: u64, seq: u64, culprits: &[u16]) -> usize {
    let Ok(k) = u8::try_from(culprits.len()) else {
        return 0;
    };
    if usize::from(k) > MAX_T {
        return 0;
    }
    let mut w = W { buf: out, at: 0 };
    w.header(T_REJECTED);
    w.put(&session.to_be_bytes());
    w.put(&seq.to_be_bytes());
    w.put(&[k]);
    for c in culprits {
        w.put(&c.to_be_bytes());
    }
    w.done()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let mut buf = [0u8; MAX_DATAGRAM];
        let c = [(1u16, [2u8; 33], [3u8; 33]), (4, [5; 33], [6; 33])];
        let n = write_package(&mut buf, 7, 9, &[8; 32], &c);
        assert_eq!(n, package_len(2));
        let Msg::Package(p) = parse(&buf[..n]).unwrap() else {
            panic!()
        };
        assert_eq!((p.session, p.group, p.t(), *p.msg), (7, 9, 2, [8; 32]));
        let got: Vec<_> = p.commitments().map(|(i, h, b)| (i, *h, *b)).collect();
        assert_eq!(got, c.to_vec());
        let n = write_share(&mut buf, 11, 3, &[1; 32]);
        assert_eq!(
            parse(&buf[..n]).unwrap(),
            Msg::Share(Share {
                session: 11,
                id: 3,
                z: [1; 32]
            })
        );
        let n = write_signed(&mut buf, 12, 99, &[4; 65]);
        assert_eq!(
            parse(&buf[..n]).unwrap(),
            Msg::Signed(Signed {
                session: 12,
                seq: 99,
                sig: [4; 65]
            })
        );
        let n = write_rejected(&mut buf, 13, 100, &[2, 5]);
        let Msg::Rejected(r) = parse(&buf[..n]).unwrap() else {
            panic!()
        };
        assert_eq!((r.session, r.seq, r.culprits()), (13, 100, &[2u16, 5][..]));
    }

    #[test]
    fn rejects_malformed_input_without_panicking() {
        let mut buf = [0u8; MAX_DATAGRAM];
        let n = write_share(&mut buf, 1, 1, &[0; 32]);
        for cut in 0..n {
            assert!(parse(&buf[..cut]).is_err(), "cut {cut}");
        }
        assert!(matches!(
            parse(&buf[..=n]),
            Err(WireError::TrailingBytes { .. })
        ));
        let mut bad = buf;
        bad[0] = b'X';
        assert!(matches!(parse(&bad[..n]), Err(WireError::BadMagic(_))));
        let mut bad = buf;
        bad[2] = 2;
        assert!(matches!(parse(&bad[..n]), Err(WireError::BadVersion(2))));
        let mut bad = buf;
        bad[3] = 77;
        assert!(matches!(parse(&bad[..n]), Err(WireError::BadType(77))));
        let n = write_package(&mut buf, 1, 0, &[0; 32], &[(1, [0; 33], [0; 33])]);
        buf[HEADER + 10] = 0;
        assert!(matches!(parse(&buf[..n]), Err(WireError::BadThreshold(0))));
        buf[HEADER + 10] = 200;
        assert!(matches!(
            parse(&buf[..n]),
            Err(WireError::BadThreshold(200))
        ));
        // Every prefix and every single-byte corruption of every type parses or errors.
        for len in 0..MAX_DATAGRAM {
            for v in [0u8, 1, 0xff] {
                let mut b = buf;
                b[len % 16] = v;
                let _ = parse(&b[..len]);
            }
        }
        assert_eq!(write_share(&mut [0u8; 10], 1, 1, &[0; 32]), 0);
    }

    /// A `REJECTED` naming more culprits than a session can have is refused with an error
    /// about the culprit count, not about a `PACKAGE` threshold.
    #[test]
    fn too_many_culprits_is_its_own_error() {
        let mut buf = [0u8; MAX_DATAGRAM];
        let n = write_rejected(&mut buf, 1, 2, &[1; MAX_T]);
        assert!(parse(&buf[..n]).is_ok());
        buf[HEADER + 16] = 17;
        let err = parse(&buf[..n]).unwrap_err();
        assert_eq!(err, WireError::BadCulpritCount(17));
        assert!(err.to_string().contains("culprit"), "{err}");
    }
}
