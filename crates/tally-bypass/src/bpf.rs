//! The XDP side, without clang or libbpf: BPF instructions assembled in Rust, an XSKMAP,
//! `BPF_PROG_LOAD` with the verifier log in the error, `BPF_LINK_CREATE` attach (native
//! with a fallback to generic), and the `BPF_PROG_TEST_RUN` live-frames generator used
//! by the benches.
//!
//! The steering program ([`XdpFilter`]) redirects IPv4/UDP frames whose destination port
//! is in the configured set (or every frame, with [`XdpFilter::All`]) into the XSKMAP slot
//! of the receive queue; everything else (ARP, ICMP, other ports, fragments) gets
//! `XDP_PASS` and reaches the kernel stack. An empty XSKMAP slot also means `XDP_PASS`.
//!
//! The program is attached through a BPF link, so it is detached when the [`XdpLink`] is
//! dropped and also when the process dies.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::error::{BypassError, Result};
use crate::sys;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_LINK_CREATE: libc::c_long = 28;

const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP_ATTACH: u32 = 37;
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;

/// XDP verdicts.
const XDP_PASS: i32 = 2;
const XDP_TX: i32 = 3;

/// The most destination ports one filter program compares against.
pub const MAX_FILTER_PORTS: usize = 64;

/// One BPF instruction (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct Insn {
    code: u8,
    /// `dst_reg` in the low nibble, `src_reg` in the high nibble (little-endian layout).
    regs: u8,
    off: i16,
    imm: i32,
}

const _: () = assert!(size_of::<Insn>() == 8);

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Self {
            code,
            regs: (dst & 0xf) | ((src & 0xf) << 4),
            off,
            imm,
        }
    }
}

// Opcodes (class | size/op | source).
const LDX_W: u8 = 0x61;
const LDX_H: u8 = 0x69;
const LDX_B: u8 = 0x71;
const MOV64_X: u8 = 0xbf;
const MOV64_K: u8 = 0xb7;
const ADD64_K: u8 = 0x07;
const ADD64_X: u8 = 0x0f;
const AND64_K: u8 = 0x57;
const LSH64_K: u8 = 0x67;
const JA: u8 = 0x05;
const JEQ_K: u8 = 0x15;
const JNE_K: u8 = 0x55;
const JGT_X: u8 = 0x2d;
const JLT_K: u8 = 0xa5;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;
const LD_IMM64: u8 = 0x18;
const PSEUDO_MAP_FD: u8 = 1;

/// A tiny assembler with forward labels.
struct Asm {
    insns: Vec<Insn>,
    /// (instruction index, label) of jumps to patch.
    fixups: Vec<(usize, usize)>,
    labels: Vec<Option<usize>>,
}

impl Asm {
    fn new() -> Self {
        Self {
            insns: Vec::new(),
            fixups: Vec::new(),
            labels: Vec::new(),
        }
    }
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }
    fn bind(&mut self, label: usize) {
        if let Some(l) = self.labels.get_mut(label) {
            *l = Some(self.insns.len());
        }
    }
    fn op(&mut self, i: Insn) {
        self.insns.push(i);
    }
    fn jump(&mut self, code: u8, dst: u8, src: u8, imm: i32, label: usize) {
        self.fixups.push((self.insns.len(), label));
        self.insns.push(Insn::new(code, dst, src, 0, imm));
    }
    fn finish(mut self) -> Result<Vec<Insn>> {
        for (at, label) in self.fixups {
            let target = self.labels.get(label).copied().flatten();
            let off = target
                .and_then(|t| i16::try_from(t.cast_signed() - at.cast_signed() - 1).ok())
                .ok_or(BypassError::ProgramTooLarge {
                    insns: self.insns.len(),
                })?;
            if let Some(i) = self.insns.get_mut(at) {
                i.off = off;
            }
        }
        Ok(self.insns)
    }
}

/// Which frames the steering program redirects to the AF_XDP socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XdpFilter {
    /// Every frame arriving on the queue (ARP and ICMP too: the kernel then sees none).
    All,
    /// IPv4/UDP frames (not fragmented) whose destination port is in the list (at most
    /// [`MAX_FILTER_PORTS`]), untagged or priority-tagged (802.1Q with VLAN id 0);
    /// everything else, other VLANs' frames included, is passed to the kernel.
    UdpDstPorts(Vec<u16>),
}

impl XdpFilter {
    /// Whether `self` and `other` steer the same frames: port lists compare as sets, so
    /// their order and repeated ports do not matter.
    pub fn steers_same(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::All, Self::All) => true,
            (Self::UdpDstPorts(a), Self::UdpDstPorts(b)) => port_set(a) == port_set(b),
            _ => false,
        }
    }
}

/// The distinct ports of `ports`, sorted: what a port filter matches.
pub(crate) fn port_set(ports: &[u16]) -> Vec<u16> {
    let mut set = ports.to_vec();
    set.sort_unstable();
    set.dedup();
    set
}

/// Builds the steering program for `filter`, redirecting into the XSKMAP `map_fd`.
/// Repeated ports are compared once.
///
/// # Errors
/// [`BypassError::InvalidOption`] for an empty port list or more than
/// [`MAX_FILTER_PORTS`] distinct ports.
pub fn steering_program(filter: &XdpFilter, map_fd: i32) -> Result<Vec<Insn>> {
    let mut a = Asm::new();
    let redirect = a.label();
    let pass = a.label();
    if let XdpFilter::UdpDstPorts(ports) = filter {
        let ports = port_set(ports);
        if ports.is_empty() || ports.len() > MAX_FILTER_PORTS {
            return Err(BypassError::InvalidOption {
                what: "number of distinct UDP ports in the XDP filter (1..=64)",
                value: ports.len() as u64,
            });
        }
        // BPF loads are host-endian: compare against the wire bytes read as host u16.
        let ne16 = |v: u16| i32::from(u16::from_ne_bytes(v.to_be_bytes()));
        let ipv4 = a.label();
        a.op(Insn::new(MOV64_X, 6, 1, 0, 0)); // r6 = ctx
        a.op(Insn::new(LDX_W, 2, 1, 0, 0)); // r2 = ctx->data
        a.op(Insn::new(LDX_W, 3, 1, 4, 0)); // r3 = ctx->data_end
        a.op(Insn::new(MOV64_X, 4, 2, 0, 0));
        a.op(Insn::new(ADD64_K, 4, 0, 0, 42)); // eth + ipv4 + udp
        a.jump(JGT_X, 4, 3, 0, pass);
        // A priority tag (802.1Q, VLAN id 0) belongs to this interface: step over it, so
        // that r2 + 12 is the inner EtherType. Other VLANs belong to their VLAN
        // interfaces and go to the kernel (the inner EtherType test below fails for them).
        a.op(Insn::new(LDX_H, 5, 2, 12, 0)); // EtherType
        a.jump(JNE_K, 5, 0, ne16(0x8100), ipv4);
        a.op(Insn::new(LDX_H, 5, 2, 14, 0)); // TCI
        a.op(Insn::new(AND64_K, 5, 0, 0, ne16(0x0fff)));
        a.jump(JNE_K, 5, 0, 0, pass); // another VLAN
        a.op(Insn::new(ADD64_K, 2, 0, 0, 4)); // r2 = data + 4
        a.op(Insn::new(MOV64_X, 4, 2, 0, 0));
        a.op(Insn::new(ADD64_K, 4, 0, 0, 42));
        a.jump(JGT_X, 4, 3, 0, pass);
        a.bind(ipv4);
        a.op(Insn::new(LDX_H, 5, 2, 12, 0)); // EtherType (inner, after a priority tag)
        a.jump(JNE_K, 5, 0, ne16(0x0800), pass);
        a.op(Insn::new(LDX_B, 5, 2, 23, 0)); // protocol
        a.jump(JNE_K, 5, 0, 17, pass);
        a.op(Insn::new(LDX_H, 5, 2, 20, 0)); // flags + fragment offset
        a.op(Insn::new(AND64_K, 5, 0, 0, ne16(0x3fff)));
        a.jump(JNE_K, 5, 0, 0, pass); // fragments go to the kernel
        a.op(Insn::new(LDX_B, 5, 2, 14, 0)); // version/IHL
        a.op(Insn::new(AND64_K, 5, 0, 0, 0x0f));
        a.op(Insn::new(LSH64_K, 5, 0, 0, 2));
        a.jump(JLT_K, 5, 0, 20, pass);
        a.op(Insn::new(ADD64_X, 2, 5, 0, 0)); // r2 = data + ihl
        a.op(Insn::new(MOV64_X, 4, 2, 0, 0));
        a.op(Insn::new(ADD64_K, 4, 0, 0, 14 + 8));
        a.jump(JGT_X, 4, 3, 0, pass);
        a.op(Insn::new(LDX_H, 5, 2, 14 + 2, 0)); // UDP destination port
        for &p in &ports {
            a.jump(JEQ_K, 5, 0, ne16(p), redirect);
        }
        a.jump(JA, 0, 0, 0, pass);
        a.bind(redirect);
        a.op(Insn::new(LDX_W, 2, 6, 16, 0)); // r2 = ctx->rx_queue_index
    } else {
        a.bind(redirect);
        a.op(Insn::new(LDX_W, 2, 1, 16, 0));
    }
    a.op(Insn::new(LD_IMM64, 1, PSEUDO_MAP_FD, 0, map_fd));
    a.op(Insn::new(0, 0, 0, 0, 0));
    a.op(Insn::new(MOV64_K, 3, 0, 0, XDP_PASS)); // verdict when the slot is empty
    a.op(Insn::new(CALL, 0, 0, 0, BPF_FUNC_REDIRECT_MAP));
    a.op(Insn::new(EXIT, 0, 0, 0, 0));
    if matches!(filter, XdpFilter::UdpDstPorts(_)) {
        // (The verifier rejects unreachable instructions, so only when something jumps here.)
        a.bind(pass);
        a.op(Insn::new(MOV64_K, 0, 0, 0, XDP_PASS));
        a.op(Insn::new(EXIT, 0, 0, 0, 0));
    }
    a.finish()
}

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    _rest: [u64; 4],
}

#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

fn name16(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (d, s) in out.iter_mut().take(15).zip(name.bytes()) {
        *d = s;
    }
    out
}

fn fd_u32(fd: &OwnedFd) -> u32 {
    u32::try_from(fd.as_raw_fd()).unwrap_or(u32::MAX)
}

/// An XSKMAP: queue index -> AF_XDP socket.
#[derive(Debug)]
pub struct XskMap {
    fd: OwnedFd,
    entries: u32,
}

impl XskMap {
    /// Creates an XSKMAP with `entries` slots (one per receive queue).
    ///
    /// # Errors
    /// [`BypassError::Bpf`] when the kernel refuses (needs CAP_BPF or CAP_SYS_ADMIN).
    pub fn new(entries: u32) -> Result<Self> {
        let mut attr = MapCreateAttr {
            map_type: BPF_MAP_TYPE_XSKMAP,
            key_size: 4,
            value_size: 4,
            max_entries: entries,
            map_name: name16("tally_xsks"),
            ..Default::default()
        };
        let fd = sys::bpf(BPF_MAP_CREATE, &mut attr)
            .and_then(sys::owned_fd)
            .map_err(|source| BypassError::Bpf {
                op: "BPF_MAP_CREATE (XSKMAP)",
                source,
            })?;
        Ok(Self { fd, entries })
    }

    /// Puts the AF_XDP socket `xsk_fd` in slot `queue`.
    ///
    /// # Errors
    /// [`BypassError::Bpf`] (for example when `queue` is out of range).
    pub fn insert(&self, queue: u32, xsk_fd: i32) -> Result<()> {
        let key = queue;
        let value = xsk_fd;
        let mut attr = MapElemAttr {
            map_fd: fd_u32(&self.fd),
            key: core::ptr::from_ref(&key) as u64,
            value: core::ptr::from_ref(&value) as u64,
            ..Default::default()
        };
        sys::bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map_err(|source| BypassError::Bpf {
            op: "BPF_MAP_UPDATE_ELEM (XSKMAP)",
            source,
        })?;
        Ok(())
    }

    /// Empties slot `queue` (frames for it are then passed to the kernel).
    ///
    /// # Errors
    /// [`BypassError::Bpf`].
    pub fn remove(&self, queue: u32) -> Result<()> {
        let key = queue;
        let mut attr = MapElemAttr {
            map_fd: fd_u32(&self.fd),
            key: core::ptr::from_ref(&key) as u64,
            ..Default::default()
        };
        sys::bpf(BPF_MAP_DELETE_ELEM, &mut attr).map_err(|source| BypassError::Bpf {
            op: "BPF_MAP_DELETE_ELEM (XSKMAP)",
            source,
        })?;
        Ok(())
    }

    /// Number of slots.
    pub fn entries(&self) -> u32 {
        self.entries
    }

    /// The map's file descriptor.
    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}

/// A loaded XDP program.
#[derive(Debug)]
pub struct XdpProgram {
    fd: OwnedFd,
    insns: usize,
}

impl XdpProgram {
    /// Loads raw instructions as an XDP program (license GPL, needed for
    /// `bpf_redirect_map`). On rejection the error carries the verifier log.
    ///
    /// # Errors
    /// [`BypassError::Verifier`] with the log when the verifier rejects the program;
    /// [`BypassError::Bpf`] for other refusals.
    pub fn load(insns: &[Insn], name: &str) -> Result<Self> {
        const LOG_BYTES: usize = 64 * 1024;
        let license = c"GPL";
        let mut log = vec![0u8; LOG_BYTES];
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt: u32::try_from(insns.len())
                .map_err(|_| BypassError::ProgramTooLarge { insns: insns.len() })?,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: 0,
            log_size: 0,
            log_buf: 0,
            prog_name: name16(name),
            expected_attach_type: BPF_XDP_ATTACH,
            ..Default::default()
        };
        match sys::bpf(BPF_PROG_LOAD, &mut attr) {
            Ok(fd) => {
                let fd = sys::owned_fd(fd).map_err(|source| BypassError::Bpf {
                    op: "BPF_PROG_LOAD",
                    source,
                })?;
                Ok(Self {
                    fd,
                    insns: insns.len(),
                })
            }
            Err(first) => {
                // Load again with the log on so that the error can say why.
                attr.log_level = 1;
                attr.log_size = u32::try_from(LOG_BYTES).unwrap_or(0);
                attr.log_buf = log.as_mut_ptr() as u64;
                let second = sys::bpf(BPF_PROG_LOAD, &mut attr);
                if let Ok(fd) = second {
                    let fd = sys::owned_fd(fd).map_err(|source| BypassError::Bpf {
                        op: "BPF_PROG_LOAD",
                        source,
                    })?;
                    return Ok(Self {
                        fd,
                        insns: insns.len(),
                    });
                }
                let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
                let text = String::from_utf8_lossy(log.get(..end).unwrap_or(&[])).into_owned();
                if text.trim().is_empty() {
                    Err(BypassError::Bpf {
                        op: "BPF_PROG_LOAD",
                        source: first,
                    })
                } else {
                    Err(BypassError::Verifier {
                        source: first,
                        log: text,
                    })
                }
            }
        }
    }

    /// Number of instructions.
    pub fn len_insns(&self) -> usize {
        self.insns
    }

    /// The program's file descriptor.
    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// Runs the program on `frame` with `BPF_PROG_TEST_RUN` and
    /// `BPF_F_TEST_XDP_LIVE_FRAMES`, `repeat` times, as if it arrived on `ifindex` queue 0:
    /// frames the program returns `XDP_TX` for are really transmitted from that interface
    /// (and `XDP_PASS` ones enter its stack). The kernel-side traffic generator.
    ///
    /// # Errors
    /// [`BypassError::Bpf`] when the kernel refuses.
    pub fn run_live_frames(
        &self,
        frame: &[u8],
        ifindex: u32,
        repeat: u32,
        batch_size: u32,
    ) -> Result<()> {
        #[repr(C)]
        #[derive(Default)]
        struct XdpMd {
            data: u32,
            data_end: u32,
            data_meta: u32,
            ingress_ifindex: u32,
            rx_queue_index: u32,
            egress_ifindex: u32,
        }
        let ctx = XdpMd {
            data_end: u32::try_from(frame.len()).unwrap_or(0),
            ingress_ifindex: ifindex,
            ..Default::default()
        };
        let mut attr = TestRunAttr {
            prog_fd: fd_u32(&self.fd),
            data_size_in: u32::try_from(frame.len()).unwrap_or(0),
            data_in: frame.as_ptr() as u64,
            repeat,
            ctx_size_in: u32::try_from(size_of::<XdpMd>()).unwrap_or(0),
            ctx_in: core::ptr::from_ref(&ctx) as u64,
            flags: BPF_F_TEST_XDP_LIVE_FRAMES,
            batch_size,
            ..Default::default()
        };
        sys::bpf(BPF_PROG_TEST_RUN, &mut attr).map_err(|source| BypassError::Bpf {
            op: "BPF_PROG_TEST_RUN (live frames)",
            source,
        })?;
        Ok(())
    }

    /// The two-instruction `return XDP_TX` program used by the live-frames generator.
    ///
    /// # Errors
    /// As [`XdpProgram::load`].
    pub fn load_xdp_tx() -> Result<Self> {
        Self::load(
            &[
                Insn::new(MOV64_K, 0, 0, 0, XDP_TX),
                Insn::new(EXIT, 0, 0, 0, 0),
            ],
            "tally_xdp_tx",
        )
    }
}

/// Where an XDP program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum XdpMode {
    /// In the driver (`XDP_FLAGS_DRV_MODE`, "native"): fast, needs driver support
    /// (veth has it).
    Native,
    /// On the generic skb path (`XDP_FLAGS_SKB_MODE`): works everywhere, slower.
    Generic,
}

impl XdpMode {
    /// `"native"` or `"generic"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Generic => "generic",
        }
    }
}

/// Which XDP mode to ask for.
///
/// On a veth pair, native mode receives at the higher rate and generic mode gives the
/// shorter round trip (`bypass_veth` bench: 0.61-0.69x the p50 of busy-polling UDP
/// sockets with AF_XDP at both ends in generic mode, 0.73-0.84x in native mode). On a
/// NIC driver with XDP support, native mode is the one that can also bind zero-copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum XdpModeChoice {
    /// Native, falling back to generic when the driver refuses.
    #[default]
    Auto,
    /// Native only.
    Native,
    /// Generic only.
    Generic,
}

/// A program attached to an interface through a BPF link; detached on drop (and when the
/// process exits).
#[derive(Debug)]
pub struct XdpLink {
    _link: OwnedFd,
    mode: XdpMode,
    native_refused: Option<String>,
}

impl XdpLink {
    /// Attaches `prog` to `ifindex` with `BPF_LINK_CREATE`.
    ///
    /// # Errors
    /// [`BypassError::Attach`] naming the mode(s) tried and the kernel's reasons (EBUSY
    /// means another XDP program is attached to the interface).
    pub fn attach(prog: &XdpProgram, ifindex: u32, choice: XdpModeChoice) -> Result<Self> {
        let try_mode = |flags: u32| {
            let mut attr = LinkCreateAttr {
                prog_fd: fd_u32(&prog.fd),
                target_ifindex: ifindex,
                attach_type: BPF_XDP_ATTACH,
                flags,
                ..Default::default()
            };
            sys::bpf(BPF_LINK_CREATE, &mut attr).and_then(sys::owned_fd)
        };
        match choice {
            XdpModeChoice::Native => try_mode(XDP_FLAGS_DRV_MODE)
                .map(|l| Self {
                    _link: l,
                    mode: XdpMode::Native,
                    native_refused: None,
                })
                .map_err(|source| BypassError::Attach {
                    mode: "native",
                    ifindex,
                    source,
                }),
            XdpModeChoice::Generic => try_mode(XDP_FLAGS_SKB_MODE)
                .map(|l| Self {
                    _link: l,
                    mode: XdpMode::Generic,
                    native_refused: None,
                })
                .map_err(|source| BypassError::Attach {
                    mode: "generic",
                    ifindex,
                    source,
                }),
            XdpModeChoice::Auto => match try_mode(XDP_FLAGS_DRV_MODE) {
                Ok(l) => Ok(Self {
                    _link: l,
                    mode: XdpMode::Native,
                    native_refused: None,
                }),
                Err(native) => try_mode(XDP_FLAGS_SKB_MODE)
                    .map(|l| Self {
                        _link: l,
                        mode: XdpMode::Generic,
                        native_refused: Some(format!("native XDP attach refused: {native}")),
                    })
                    .map_err(|source| BypassError::Attach {
                        mode: "native then generic",
                        ifindex,
                        source,
                    }),
            },
        }
    }

    /// The mode the program runs in.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    /// Why native mode was not used, when [`XdpModeChoice::Auto`] fell back to generic.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.native_refused.as_deref()
    }
}

/// The kernel-side traffic generator: a `return XDP_TX` program run with
/// `BPF_F_TEST_XDP_LIVE_FRAMES` on an interface, which transmits one frame `count` times
/// from it. On a veth, the peer receives them (the peer needs native XDP attached or GRO
/// on, or the frames are silently dropped).
#[derive(Debug)]
pub struct LiveFrameGenerator {
    prog: XdpProgram,
    ifindex: u32,
}

impl LiveFrameGenerator {
    /// Loads the generator program for interface `ifname` (in the caller's namespace).
    ///
    /// # Errors
    /// [`BypassError::Interface`] or the errors of [`XdpProgram::load`].
    pub fn new(ifname: &str) -> Result<Self> {
        let ifindex = sys::if_nametoindex(ifname).map_err(|source| BypassError::Interface {
            name: ifname.to_owned(),
            source,
        })?;
        Ok(Self {
            prog: XdpProgram::load_xdp_tx()?,
            ifindex,
        })
    }

    /// Transmits `frame` `count` times (blocks until done; batch of 64).
    ///
    /// # Errors
    /// [`BypassError::Bpf`].
    pub fn send(&self, frame: &[u8], count: u32) -> Result<()> {
        self.prog.run_live_frames(frame, self.ifindex, count, 64)
    }
}

/// True when `e` means "not permitted" (no root / missing capability).
pub(crate) fn is_permission(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumps_resolve_forward() {
        let prog = steering_program(&XdpFilter::UdpDstPorts(vec![9000, 9001]), 3).unwrap();
        // Last two instructions: r0 = XDP_PASS; exit.
        assert_eq!(prog.last().unwrap().code, EXIT);
        assert_eq!(prog[prog.len() - 2].imm, XDP_PASS);
        let pass = prog.len() - 2;
        // The first conditional jump goes to `pass`.
        let j = prog.iter().position(|i| i.code == JGT_X).unwrap();
        assert_eq!(
            j.cast_signed() + 1 + prog[j].off as isize,
            pass.cast_signed()
        );
        // The port compares go to the redirect block (the ctx->rx_queue_index load).
        let redirect = prog
            .iter()
            .rposition(|i| i.code == LDX_W && i.off == 16)
            .unwrap();
        for (k, i) in prog.iter().enumerate().filter(|(_, i)| i.code == JEQ_K) {
            assert_eq!(k.cast_signed() + 1 + i.off as isize, redirect.cast_signed());
        }
        assert!(steering_program(&XdpFilter::UdpDstPorts(vec![]), 3).is_err());
        let too_many: Vec<u16> = (1..=65).collect();
        assert!(steering_program(&XdpFilter::UdpDstPorts(too_many), 3).is_err());
        assert_eq!(steering_program(&XdpFilter::All, 3).unwrap().len(), 6);
    }

    #[test]
    fn port_lists_are_sets() {
        let set = |p: &[u16]| XdpFilter::UdpDstPorts(p.to_vec());
        // The same ports in another order, or repeated, steer the same frames: sockets of
        // one interface built from unordered collections must be able to share.
        assert!(set(&[9000, 9001]).steers_same(&set(&[9001, 9000])));
        assert!(set(&[9000, 9001]).steers_same(&set(&[9001, 9000, 9001, 9000])));
        assert!(XdpFilter::All.steers_same(&XdpFilter::All));
        assert!(!set(&[9000]).steers_same(&set(&[9000, 9001])));
        assert!(!set(&[9000]).steers_same(&XdpFilter::All));
        assert!(!XdpFilter::All.steers_same(&set(&[9000])));
        // Repeats are compared once: 64 distinct ports fit however often they repeat.
        let distinct: Vec<u16> = (1..=64).collect();
        let repeated: Vec<u16> = distinct.iter().chain(&distinct).rev().copied().collect();
        assert_eq!(
            steering_program(&set(&repeated), 3).unwrap().len(),
            steering_program(&set(&distinct), 3).unwrap().len()
        );
    }
}
