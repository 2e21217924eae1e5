//! The steering program of an interface, shared by every [`XskSocket`](super::XskSocket)
//! of this process on it.
//!
//! An interface takes one XDP link, so the sockets of its queues (one per queue is how
//! AF_XDP uses several queues) share one program and one XSKMAP: the first socket loads
//! and attaches them, the others put themselves in their queue's slot, and the last one
//! to close detaches the program. Sharing is keyed by network namespace and interface
//! index, and only sockets whose [`XdpFilter`]s steer the same frames can share (the same
//! ports in any order, repeats allowed).
//!
//! A socket opening while the last one closes waits (briefly) until the old link is
//! released instead of failing to attach next to it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use crate::bpf::{XdpFilter, XdpLink, XdpModeChoice, XdpProgram, XskMap, steering_program};
use crate::error::{BypassError, Result};

/// XSKMAP slots: the map is shared by the sockets of every queue of the interface, so
/// the first socket cannot size it by its own queue. 4096 (the most queues `ip link`
/// creates a device with) costs the kernel 8 bytes a slot.
const MAP_SLOTS: u32 = 4096;
/// How long an open waits for the previous steering of its interface to be released.
const RELEASE_WAIT: Duration = Duration::from_secs(2);

/// Sets its flag when dropped.
#[derive(Debug)]
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// The program, map and link of one interface.
#[derive(Debug)]
pub(crate) struct Steering {
    // Drop order: the link first (stop steering), then the map and the program, and
    // `released` last.
    pub(crate) link: XdpLink,
    pub(crate) map: XskMap,
    _prog: XdpProgram,
    filter: XdpFilter,
    _released: SetOnDrop,
}

/// `(device, inode)` of the calling thread's network namespace.
type NetnsId = (u64, u64);

struct Entry {
    netns: NetnsId,
    ifindex: u32,
    steering: Weak<Steering>,
    /// Set once the steering's link, map and program are closed.
    released: Arc<AtomicBool>,
}

static REGISTRY: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

fn netns_id() -> Option<NetnsId> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata("/proc/thread-self/ns/net").ok()?;
    Some((m.dev(), m.ino()))
}

/// Whether a program attached in `mode` is what `choice` asks for.
fn mode_satisfies(mode: crate::bpf::XdpMode, choice: XdpModeChoice) -> bool {
    use crate::bpf::XdpMode;
    matches!(
        (mode, choice),
        (_, XdpModeChoice::Auto)
            | (XdpMode::Native, XdpModeChoice::Native)
            | (XdpMode::Generic, XdpModeChoice::Generic)
    )
}

/// One socket's share of the steering of its interface; empties the queue's XSKMAP slot
/// when dropped.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::XdpMode;

    #[test]
    fn an_explicit_mode_is_only_met_by_that_mode() {
        for mode in [XdpMode::Native, XdpMode::Generic] {
            assert!(mode_satisfies(mode, XdpModeChoice::Auto));
        }
        assert!(mode_satisfies(XdpMode::Native, XdpModeChoice::Native));
        assert!(mode_satisfies(XdpMode::Generic, XdpModeChoice::Generic));
        assert!(!mode_satisfies(XdpMode::Generic, XdpModeChoice::Native));
        assert!(!mode_satisfies(XdpMode::Native, XdpModeChoice::Generic));
    }
}

#[derive(Debug)]
pub(crate) struct SteeringHandle {
    steering: Arc<Steering>,
    queue: u32,
}

impl SteeringHandle {
    /// The steering of `ifindex` in the calling thread's namespace: the existing one when
    /// another socket of this process has it, else a newly loaded and attached program.
    /// The socket is not in the map yet ([`SteeringHandle::insert`]).
    pub(crate) fn acquire(
        ifindex: u32,
        queue: u32,
        filter: &XdpFilter,
        mode: XdpModeChoice,
    ) -> Result<Self> {
        let netns = netns_id();
        let deadline = std::time::Instant::now() + RELEASE_WAIT;
        loop {
            let mut reg = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
            reg.retain(|e| e.steering.strong_count() > 0 || !e.released.load(Ordering::Acquire));
            let mine = |e: &&Entry| Some(e.netns) == netns && e.ifindex == ifindex;
            if let Some(s) = reg.iter().filter(mine).find_map(|e| e.steering.upgrade()) {
                if !s.filter.steers_same(filter) {
                    return Err(BypassError::SteeringConflict {
                        ifindex,
                        queue,
                        existing: s.filter.clone(),
                        requested: filter.clone(),
                    });
                }
                let existing = s.link.mode();
                if !mode_satisfies(existing, mode) {
                    return Err(BypassError::XdpModeConflict {
                        ifindex,
                        queue,
                        existing,
                        requested: mode,
                    });
                }
                return Ok(Self { steering: s, queue });
            }
            if reg.iter().any(|e| mine(&e)) && std::time::Instant::now() < deadline {
                // The last socket on this interface is closing: wait for its link.
                drop(reg);
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            let map = XskMap::new(queue.saturating_add(1).max(MAP_SLOTS))?;
            let prog = XdpProgram::load(&steering_program(filter, map.raw_fd())?, "tally_xsk")?;
            let link = XdpLink::attach(&prog, ifindex, mode)?;
            let released = Arc::new(AtomicBool::new(false));
            let s = Arc::new(Steering {
                link,
                map,
                _prog: prog,
                filter: filter.clone(),
                _released: SetOnDrop(Arc::clone(&released)),
            });
            if let Some(netns) = netns {
                reg.push(Entry {
                    netns,
                    ifindex,
                    steering: Arc::downgrade(&s),
                    released,
                });
            }
            return Ok(Self { steering: s, queue });
        }
    }

    /// The shared steering.
    pub(crate) fn steering(&self) -> &Steering {
        &self.steering
    }

    /// Puts the socket `xsk_fd` in the queue's slot.
    pub(crate) fn insert(&self, xsk_fd: i32) -> Result<()> {
        self.steering.map.insert(self.queue, xsk_fd)
    }
}

impl Drop for SteeringHandle {
    fn drop(&mut self) {
        // Stop steering this queue before its socket closes (the kernel would also clear
        // the slot when the socket is released). An already empty slot is fine.
        let _ = self.steering.map.remove(self.queue);
    }
}
