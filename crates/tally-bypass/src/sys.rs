//! Thin, checked wrappers over the raw system calls this crate uses (`bpf(2)`, socket
//! options, `poll`, `sendto` kicks, `mmap` of kernel rings, `setns`). Every `unsafe`
//! block that talks to the kernel through libc lives here or in the ring modules.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

/// Plain-old-data kernel structures: `repr(C)`, only integer fields, valid for any bit
/// pattern, no padding that the kernel could mis-read (callers zero-initialise).
///
/// # Safety
/// Implement only for `repr(C)` structs of integers (or arrays of them) that are valid
/// for every bit pattern.
pub(crate) unsafe trait Pod: Copy {
    fn zeroed() -> Self {
        // SAFETY: the trait contract says every bit pattern, including all zeros, is valid.
        unsafe { core::mem::zeroed() }
    }
}

// SAFETY: integer-only repr(C) structs from libc's uapi bindings.
unsafe impl Pod for libc::xdp_mmap_offsets {}
// SAFETY: as above.
unsafe impl Pod for libc::xdp_statistics {}
// SAFETY: as above.
unsafe impl Pod for libc::xdp_options {}
// SAFETY: as above.
unsafe impl Pod for libc::xdp_umem_reg {}
// SAFETY: as above.
unsafe impl Pod for libc::sockaddr_xdp {}
// SAFETY: as above.
unsafe impl Pod for libc::tpacket_req3 {}
// SAFETY: as above.
unsafe impl Pod for libc::tpacket_stats_v3 {}
// SAFETY: plain integer.
unsafe impl Pod for libc::c_int {}
// SAFETY: integers only.
unsafe impl Pod for libc::sockaddr_ll {}
// SAFETY: a length and a raw pointer; any bit pattern (including null) is a valid value.
unsafe impl Pod for libc::sock_fprog {}
// SAFETY: plain integer.
unsafe impl Pod for u32 {}
// SAFETY: integers only.
unsafe impl Pod for libc::sockaddr_in {}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `socket(domain, ty | SOCK_CLOEXEC, protocol)`.
pub(crate) fn socket(
    domain: libc::c_int,
    ty: libc::c_int,
    protocol: libc::c_int,
) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = cvt(unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, protocol) })?;
    // SAFETY: `fd` is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt` with a POD value.
pub(crate) fn setsockopt<T: Pod>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    let len = libc::socklen_t::try_from(size_of::<T>())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `value` points to `len` readable bytes for the duration of the call.
    cvt(unsafe { libc::setsockopt(fd, level, name, core::ptr::from_ref(value).cast(), len) })?;
    Ok(())
}

/// `getsockopt` into a zeroed POD value; returns it and the length the kernel wrote.
pub(crate) fn getsockopt<T: Pod>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<(T, usize)> {
    let mut value = T::zeroed();
    let mut len = libc::socklen_t::try_from(size_of::<T>())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `value` is writable for `len` bytes; the kernel writes at most `len` bytes
    // and any bit pattern is a valid `T` (Pod).
    cvt(unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            core::ptr::from_mut(&mut value).cast(),
            &raw mut len,
        )
    })?;
    Ok((value, len as usize))
}

/// `bind` with a POD socket address.
pub(crate) fn bind<T: Pod>(fd: RawFd, addr: &T) -> io::Result<()> {
    let len = libc::socklen_t::try_from(size_of::<T>())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `addr` is a valid sockaddr of `len` bytes.
    cvt(unsafe { libc::bind(fd, core::ptr::from_ref(addr).cast(), len) })?;
    Ok(())
}

/// An IPv4 UDP socket bound to `0.0.0.0:port`, with `SO_REUSEPORT` when `reuse_port` (so
/// that several sockets that all set it may bind the same port).
pub(crate) fn udp_bound(port: u16, reuse_port: bool) -> io::Result<std::net::UdpSocket> {
    let fd = socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
    if reuse_port {
        setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT, &1)?;
    }
    let mut sin: libc::sockaddr_in = Pod::zeroed();
    sin.sin_family = libc::sa_family_t::try_from(libc::AF_INET).unwrap_or(0);
    sin.sin_port = port.to_be();
    bind(fd.as_raw_fd(), &sin)?;
    Ok(std::net::UdpSocket::from(fd))
}

/// The index of a network interface in the caller's network namespace.
pub(crate) fn if_nametoindex(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a NUL-terminated string alive for the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(idx)
    }
}

/// `poll` one descriptor for `events`; `Ok(true)` when one of `events` is ready.
///
/// A pending socket error (`POLLERR`, for example `ENETDOWN` when the interface of an
/// AF_PACKET socket goes down) is taken with `SO_ERROR`, which clears it, and returned as
/// the error: left pending, it would make every later `poll` return at once.
pub(crate) fn poll_one(fd: RawFd, events: libc::c_short, timeout_ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&raw mut p, 1, timeout_ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(e);
    }
    if p.revents & libc::POLLNVAL != 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    if p.revents & libc::POLLERR != 0
        && let Some(e) = take_socket_error(fd)?
    {
        return Err(e);
    }
    Ok(p.revents & events != 0)
}

/// The interface index an AF_PACKET socket is bound to (`getsockname`); the kernel
/// reports -1 once that interface was deleted.
pub(crate) fn packet_bound_ifindex(fd: RawFd) -> io::Result<i32> {
    let mut addr: libc::sockaddr_ll = Pod::zeroed();
    let mut len = libc::socklen_t::try_from(size_of::<libc::sockaddr_ll>())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `addr` is writable for `len` bytes and any bit pattern is valid (Pod).
    cvt(unsafe { libc::getsockname(fd, core::ptr::from_mut(&mut addr).cast(), &raw mut len) })?;
    Ok(addr.sll_ifindex)
}

/// The system page size (4096 when `sysconf` cannot say).
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|n| *n > 0).unwrap_or(4096)
}

/// The socket's pending error (`SO_ERROR`, which clears it), if any.
pub(crate) fn take_socket_error(fd: RawFd) -> io::Result<Option<io::Error>> {
    let (err, _) = getsockopt::<libc::c_int>(fd, libc::SOL_SOCKET, libc::SO_ERROR)?;
    Ok((err != 0).then(|| io::Error::from_raw_os_error(err)))
}

/// `sendto(fd, NULL, 0, MSG_DONTWAIT)`: the AF_XDP / AF_PACKET transmit kick.
pub(crate) fn kick_tx(fd: RawFd) -> io::Result<()> {
    // SAFETY: a zero-length send with null buffers is how these sockets are kicked.
    let r = unsafe {
        libc::sendto(
            fd,
            core::ptr::null(),
            0,
            libc::MSG_DONTWAIT,
            core::ptr::null(),
            0,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `recvfrom(fd, NULL, 0, MSG_DONTWAIT)`: the AF_XDP fill-ring wake-up.
pub(crate) fn wake_rx(fd: RawFd) {
    // SAFETY: a zero-length receive with null buffers only wakes the driver.
    let _ = unsafe {
        libc::recvfrom(
            fd,
            core::ptr::null_mut(),
            0,
            libc::MSG_DONTWAIT,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
        )
    };
}

/// `bpf(cmd, attr, size_of(attr))`.
pub(crate) fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a repr(C) bpf_attr prefix of the right layout for `cmd`,
    // writable for its size; the kernel checks that the size covers what it needs.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            core::ptr::from_mut(attr),
            size_of::<T>(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Wraps a descriptor returned by `bpf(2)`.
pub(crate) fn owned_fd(raw: libc::c_long) -> io::Result<OwnedFd> {
    let fd = RawFd::try_from(raw).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: the kernel just returned this descriptor to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A shared mapping of kernel memory (ring), unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; access synchronisation is the rings' job.
unsafe impl Send for Mapping {}

impl Mapping {
    /// `mmap(NULL, len, RW, MAP_SHARED | MAP_POPULATE, fd, offset)`.
    pub(crate) fn new(fd: &OwnedFd, len: usize, offset: u64) -> io::Result<Self> {
        let off = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a fresh shared mapping; the kernel validates fd, len and offset.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                off,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>())
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))?;
        Ok(Self { ptr, len })
    }

    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` came from a successful mmap and are unmapped once.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// Moves the calling thread into the network namespace open at `fd`.
pub(crate) fn setns_net(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain syscall; affects only the calling thread's network namespace.
    cvt(unsafe { libc::setns(fd, libc::CLONE_NEWNET) })?;
    Ok(())
}

/// A zeroed `ifreq` naming `ifname` (`InvalidInput` when the name does not fit).
fn ifreq_named(ifname: &str) -> io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain old data; zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { core::mem::zeroed() };
    let name = ifname.as_bytes();
    if name.len() >= ifr.ifr_name.len() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    for (d, s) in ifr.ifr_name.iter_mut().zip(name) {
        *d = libc::c_char::from_ne_bytes([*s]);
    }
    Ok(ifr)
}

/// `struct ethtool_drvinfo` of `<linux/ethtool.h>`.
#[repr(C)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

const _: () = assert!(size_of::<EthtoolDrvinfo>() == 196);

/// The driver behind `ifname` in the calling thread's namespace (`ETHTOOL_GDRVINFO`
/// through `SIOCETHTOOL`), for example `veth` or `ice`.
pub(crate) fn driver_name(ifname: &str) -> io::Result<String> {
    const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;
    let sock = socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
    let mut info = EthtoolDrvinfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        version: [0; 32],
        fw_version: [0; 32],
        bus_info: [0; 32],
        erom_version: [0; 32],
        reserved2: [0; 12],
        n_priv_flags: 0,
        n_stats: 0,
        testinfo_len: 0,
        eedump_len: 0,
        regdump_len: 0,
    };
    let mut ifr = ifreq_named(ifname)?;
    ifr.ifr_ifru.ifru_data = (&raw mut info).cast();
    // SAFETY: SIOCETHTOOL with an ifreq whose data points at a live ethtool_drvinfo, of
    // which the kernel writes at most its size.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &raw mut ifr) })?;
    let len = info.driver.iter().position(|&b| b == 0).unwrap_or(32);
    let name = String::from_utf8_lossy(info.driver.get(..len).unwrap_or_default()).into_owned();
    if name.is_empty() {
        return Err(io::Error::from(io::ErrorKind::NotFound));
    }
    Ok(name)
}

/// `ETHTOOL_SGRO` through `SIOCETHTOOL` on a datagram socket: turns GRO on or off.
pub(crate) fn set_gro(ifname: &str, on: bool) -> io::Result<()> {
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    const ETHTOOL_SGRO: u32 = 0x0000_002c;
    let sock = socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
    let mut value = EthtoolValue {
        cmd: ETHTOOL_SGRO,
        data: u32::from(on),
    };
    let mut ifr = ifreq_named(ifname)?;
    ifr.ifr_ifru.ifru_data = (&raw mut value).cast();
    // SAFETY: SIOCETHTOOL with an ifreq whose data points at a live ethtool_value.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &raw mut ifr) })?;
    Ok(())
}

/// The hardware address of `ifname` in the calling thread's namespace (`SIOCGIFHWADDR`).
pub(crate) fn if_hwaddr(ifname: &str) -> io::Result<[u8; 6]> {
    let sock = socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
    let mut ifr = ifreq_named(ifname)?;
    // SAFETY: SIOCGIFHWADDR fills `ifr_hwaddr` of a valid ifreq.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR, &raw mut ifr) })?;
    // SAFETY: the kernel wrote the sockaddr member of the union.
    let data = unsafe { ifr.ifr_ifru.ifru_hwaddr.sa_data };
    let mut mac = [0u8; 6];
    for (d, s) in mac.iter_mut().zip(data.iter()) {
        *d = s.to_ne_bytes()[0];
    }
    Ok(mac)
}

/// The MTU of `ifname` (`SIOCGIFMTU`), asked through the socket `fd`: the kernel looks the
/// name up in the network namespace of that socket, whichever namespace the calling thread
/// is in now.
pub(crate) fn if_mtu(fd: RawFd, ifname: &str) -> io::Result<u32> {
    let mut ifr = ifreq_named(ifname)?;
    // SAFETY: SIOCGIFMTU fills `ifr_mtu` of a valid ifreq.
    cvt(unsafe { libc::ioctl(fd, libc::SIOCGIFMTU, &raw mut ifr) })?;
    // SAFETY: the kernel wrote the `ifr_mtu` member of the union.
    let mtu = unsafe { ifr.ifr_ifru.ifru_mtu };
    u32::try_from(mtu).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}
