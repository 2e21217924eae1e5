//! Network namespaces and veth pairs for tests, benches and demos, released by guards.
//!
//! [`VethPair::new`] creates two fresh network namespaces (unique names with the process
//! id and a counter), joins them with a veth pair created directly inside them (one rx
//! and one tx queue each, fixed MAC addresses, addresses from 198.18.0.0/15), and brings
//! everything up. Nothing is created in the caller's own namespace. Dropping the pair
//! (also while unwinding from a panic) deletes both namespaces, which deletes the veth
//! pair and detaches any XDP program on it.
//!
//! Work runs inside a namespace on a dedicated thread: [`VethPair::run_in`] for scoped
//! work, [`VethPair::spawn_in`] for a background thread. `setns(2)` moves only that
//! thread; sockets it opens stay in the namespace for their whole life, so you can open
//! a transport inside [`VethPair::run_in`] and use it from there.
//!
//! Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and the `ip` tool of iproute2.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{BypassError, Result};
use crate::packet::MacAddr;
use crate::sys;

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

fn run_ip(args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| BypassError::Netns {
            what: format!("running `ip {}`", args.join(" ")),
            detail: e.to_string(),
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(BypassError::Netns {
            what: format!("`ip {}`", args.join(" ")),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// One named network namespace (`ip netns add`), deleted on drop.
#[derive(Debug)]
pub struct NetnsGuard {
    name: String,
}

impl NetnsGuard {
    /// Creates the namespace `name` (with its loopback up).
    ///
    /// # Errors
    /// [`BypassError::Netns`] (for example without root).
    pub fn new(name: &str) -> Result<Self> {
        run_ip(&["netns", "add", name])?;
        let guard = Self {
            name: name.to_owned(),
        };
        run_ip(&["-n", name, "link", "set", "lo", "up"])?;
        Ok(guard)
    }

    /// The namespace's name (as `ip netns list` shows it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether a namespace of this name exists.
    pub fn exists(name: &str) -> bool {
        std::path::Path::new("/var/run/netns").join(name).exists()
    }

    /// Moves the calling thread into this namespace.
    ///
    /// # Errors
    /// [`BypassError::Netns`].
    pub fn enter_current_thread(&self) -> Result<()> {
        let path = format!("/var/run/netns/{}", self.name);
        let f = File::open(&path).map_err(|e| BypassError::Netns {
            what: format!("open {path}"),
            detail: e.to_string(),
        })?;
        sys::setns_net(f.as_raw_fd()).map_err(|e| BypassError::Netns {
            what: format!("setns into {}", self.name),
            detail: e.to_string(),
        })
    }

    /// Runs `f` on a scoped thread inside the namespace and returns its result (a panic
    /// in `f` is resumed on the caller's thread).
    ///
    /// # Errors
    /// [`BypassError::Netns`] when the thread cannot enter the namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                self.enter_current_thread()?;
                Ok(f())
            });
            match h.join() {
                Ok(r) => r,
                Err(p) => std::panic::resume_unwind(p),
            }
        })
    }

    /// Spawns a background thread inside the namespace running `f`.
    ///
    /// # Errors
    /// The join handle yields [`BypassError::Netns`] when the thread could not enter the
    /// namespace.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<Result<T>> {
        let path = format!("/var/run/netns/{}", self.name);
        let name = self.name.clone();
        std::thread::spawn(move || {
            let file = File::open(&path).map_err(|e| BypassError::Netns {
                what: format!("open {path}"),
                detail: e.to_string(),
            })?;
            sys::setns_net(file.as_raw_fd()).map_err(|e| BypassError::Netns {
                what: format!("setns into {name}"),
                detail: e.to_string(),
            })?;
            Ok(f())
        })
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = run_ip(&["netns", "del", &self.name]);
    }
}

/// Deletes namespaces named like [`VethPair`]'s (`tally-<tag>-<pid>-<n>-a|b`) whose
/// creating process no longer exists (it was killed before its guards could run).
/// Returns how many were deleted. [`VethPair::new`] calls it first.
pub fn cleanup_stale() -> usize {
    let Ok(dir) = std::fs::read_dir("/var/run/netns") else {
        return 0;
    };
    let mut deleted = 0;
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("tally-") else {
            continue;
        };
        let mut parts = rest.rsplit('-');
        let (Some(side), Some(n), Some(pid)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let well_formed =
            matches!(side, "a" | "b") && n.parse::<u32>().is_ok() && parts.next().is_some();
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if well_formed
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            && run_ip(&["netns", "del", &name]).is_ok()
        {
            deleted += 1;
        }
    }
    deleted
}

/// Addresses of a [`VethPair`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethConfig {
    /// Interface name in namespace A.
    pub if_a: String,
    /// Interface name in namespace B.
    pub if_b: String,
    /// MAC of `if_a`.
    pub mac_a: MacAddr,
    /// MAC of `if_b`.
    pub mac_b: MacAddr,
    /// IPv4 address of `if_a`.
    pub ip_a: Ipv4Addr,
    /// IPv4 address of `if_b`.
    pub ip_b: Ipv4Addr,
    /// Prefix length of both addresses.
    pub prefix_len: u8,
    /// Rx and tx queues per side (1 puts all traffic on queue 0).
    pub queues: u32,
    /// Static neighbour entries on both sides (no ARP needed; for `XdpFilter::All`).
    pub static_neighbours: bool,
}

impl Default for VethConfig {
    fn default() -> Self {
        Self {
            if_a: "tva".to_owned(),
            if_b: "tvb".to_owned(),
            mac_a: MacAddr([0x02, 0x54, 0x41, 0x4c, 0x00, 0x01]),
            mac_b: MacAddr([0x02, 0x54, 0x41, 0x4c, 0x00, 0x02]),
            ip_a: Ipv4Addr::new(198, 18, 0, 1),
            ip_b: Ipv4Addr::new(198, 18, 0, 2),
            prefix_len: 24,
            queues: 1,
            static_neighbours: false,
        }
    }
}

/// Which end of a [`VethPair`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Namespace A (`if_a`).
    A,
    /// Namespace B (`if_b`).
    B,
}

/// Two network namespaces joined by a veth pair; both deleted on drop.
///
/// ```no_run
/// use tally_bypass::netns::{Side, VethConfig, VethPair};
/// # fn main() -> Result<(), tally_bypass::BypassError> {
/// let pair = VethPair::new("demo", VethConfig::default())?;
/// let addr = pair.config().ip_b;
/// pair.run_in(Side::B, || {
///     let sock = std::net::UdpSocket::bind((addr, 9000)).expect("bind");
///     // ... receive here, or open an XskSocket on pair.config().if_b
///     drop(sock);
/// })?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct VethPair {
    // Declared so that B (usually the receiver) is deleted first.
    b: NetnsGuard,
    a: NetnsGuard,
    config: VethConfig,
}

impl VethPair {
    /// Creates namespaces `tally-<tag>-<pid>-<n>-{a,b}` and the veth pair between them,
    /// after deleting stale ones left by killed processes ([`cleanup_stale`]).
    ///
    /// # Errors
    /// [`BypassError::Netns`] (root and iproute2 are needed). Whatever was created is
    /// deleted again.
    pub fn new(tag: &str, config: VethConfig) -> Result<Self> {
        cleanup_stale();
        let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let base = format!("tally-{tag}-{}-{n}", std::process::id());
        let a = NetnsGuard::new(&format!("{base}-a"))?;
        let b = NetnsGuard::new(&format!("{base}-b"))?;
        let q = config.queues.to_string();
        let (mac_a, mac_b) = (config.mac_a.to_string(), config.mac_b.to_string());
        run_ip(&[
            "-n",
            a.name(),
            "link",
            "add",
            &config.if_a,
            "address",
            &mac_a,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            &config.if_b,
            "netns",
            b.name(),
            "address",
            &mac_b,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
        ])?;
        for (ns, ifname, ip, peer_ip, peer_mac) in [
            (&a, &config.if_a, config.ip_a, config.ip_b, &mac_b),
            (&b, &config.if_b, config.ip_b, config.ip_a, &mac_a),
        ] {
            let cidr = format!("{ip}/{}", config.prefix_len);
            run_ip(&["-n", ns.name(), "addr", "add", &cidr, "dev", ifname])?;
            run_ip(&["-n", ns.name(), "link", "set", ifname, "up"])?;
            if config.static_neighbours {
                run_ip(&[
                    "-n",
                    ns.name(),
                    "neigh",
                    "replace",
                    &peer_ip.to_string(),
                    "lladdr",
                    peer_mac,
                    "dev",
                    ifname,
                    "nud",
                    "permanent",
                ])?;
            }
        }
        Ok(Self { b, a, config })
    }

    /// The addresses and names.
    pub fn config(&self) -> &VethConfig {
        &self.config
    }

    /// The namespace of one side.
    pub fn netns(&self, side: Side) -> &NetnsGuard {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }

    /// The interface name of one side.
    pub fn ifname(&self, side: Side) -> &str {
        match side {
            Side::A => &self.config.if_a,
            Side::B => &self.config.if_b,
        }
    }

    /// Runs `f` on a thread inside one side's namespace (see [`NetnsGuard::run`]).
    ///
    /// # Errors
    /// [`BypassError::Netns`].
    pub fn run_in<T: Send>(&self, side: Side, f: impl FnOnce() -> T + Send) -> Result<T> {
        self.netns(side).run(f)
    }

    /// Spawns a background thread in one side's namespace (see [`NetnsGuard::spawn`]).
    pub fn spawn_in<T: Send + 'static>(
        &self,
        side: Side,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<Result<T>> {
        self.netns(side).spawn(f)
    }

    /// Turns GRO on or off on one side's interface (`ETHTOOL_SGRO`, no ethtool binary
    /// needed). A veth needs GRO on, or native XDP attached, to receive frames redirected
    /// into it (`XDP_TX` on the peer, the live-frames generator).
    ///
    /// # Errors
    /// [`BypassError::Netns`].
    pub fn set_gro(&self, side: Side, on: bool) -> Result<()> {
        let ifname = self.ifname(side).to_owned();
        self.run_in(side, move || sys::set_gro(&ifname, on))?
            .map_err(|e| BypassError::Netns {
                what: "ETHTOOL_SGRO".to_owned(),
                detail: e.to_string(),
            })
    }

    /// Whether an XDP program is attached to one side's interface (from `ip -d link`).
    ///
    /// # Errors
    /// [`BypassError::Netns`].
    pub fn xdp_attached(&self, side: Side) -> Result<bool> {
        let out = run_ip(&[
            "-n",
            self.netns(side).name(),
            "-d",
            "link",
            "show",
            "dev",
            self.ifname(side),
        ])?;
        Ok(out.contains(" xdp") || out.contains("prog/xdp"))
    }

    /// The names of both namespaces (to check afterwards that they are gone).
    pub fn netns_names(&self) -> [String; 2] {
        [self.a.name().to_owned(), self.b.name().to_owned()]
    }
}
