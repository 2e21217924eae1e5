//! `tally probe`: what this machine offers for low latency, each line with what to change.

use std::fs;
use std::path::Path;
use std::process::ExitCode;

use io_uring::opcode;
use serde_json::{Value, json};
use tally_uring::{Ring, RingOptions};

/// One finding.
#[derive(Debug)]
struct Line {
    item: &'static str,
    value: String,
    good: bool,
    advice: String,
}

fn read(path: impl AsRef<Path>) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

fn kernel() -> Line {
    let rel = read("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into());
    let mut parts = rel.split(['.', '-']).filter_map(|p| p.parse::<u32>().ok());
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    let good = (major, minor) >= (6, 1);
    Line {
        item: "kernel",
        value: rel,
        good,
        advice: if good {
            "6.1+: io_uring send-zc, multishot recv, XDP via BPF links are available".into()
        } else {
            "upgrade to 6.1 or later for io_uring send-zc/multishot and AF_XDP need_wakeup fixes"
                .into()
        },
    }
}

fn uring() -> Vec<Line> {
    match Ring::new(RingOptions::new(8)) {
        Ok(ring) => {
            let p = *ring.probe();
            let ops = [
                ("read_fixed", opcode::ReadFixed::CODE),
                ("write_fixed", opcode::WriteFixed::CODE),
                ("fsync", opcode::Fsync::CODE),
                ("send_zc", opcode::SendZc::CODE),
                ("recv_multi", opcode::RecvMulti::CODE),
                ("link_timeout", opcode::LinkTimeout::CODE),
            ];
            let missing: Vec<&str> = ops.iter().filter(|(_, c)| !p.supports(*c)).map(|(n, _)| *n).collect();
            let have: Vec<&str> = ops.iter().filter(|(_, c)| p.supports(*c)).map(|(n, _)| *n).collect();
            let feats = [
                ("nodrop", p.nodrop),
                ("submit_stable", p.submit_stable),
                ("fast_poll", p.fast_poll),
                ("ext_arg", p.ext_arg),
                ("linked_file", p.linked_file),
            ];
            let fmissing: Vec<&str> = feats.iter().filter(|(_, b)| !b).map(|(n, _)| *n).collect();
            let fhave: Vec<&str> = feats.iter().filter(|(_, b)| *b).map(|(n, _)| *n).collect();
            vec![
                Line {
                    item: "io_uring opcodes",
                    value: format!("{} supported; used by Tally: {}", p.supported_count(), have.join(" ")),
                    good: missing.is_empty(),
                    advice: if missing.is_empty() {
                        "everything the journal and the ring engine use is there".into()
                    } else {
                        format!("missing {}: upgrade the kernel (6.1+)", missing.join(" "))
                    },
                },
                Line {
                    item: "io_uring features",
                    value: fhave.join(" "),
                    good: fmissing.is_empty(),
                    advice: if fmissing.is_empty() {
                        "ok".into()
                    } else {
                        format!("missing {}: upgrade the kernel", fmissing.join(" "))
                    },
                },
            ]
        }
        Err(e) => vec![Line {
            item: "io_uring",
            value: format!("unavailable: {e}"),
            good: false,
            advice: "enable io_uring: sysctl kernel.io_uring_disabled=0 (and allow it in seccomp/container policy)".into(),
        }],
    }
}

/// Drivers with native (driver-mode) XDP, and those with AF_XDP zero-copy.
const NATIVE_XDP: &[&str] = &[
    "veth",
    "virtio_net",
    "tun",
    "ixgbe",
    "ixgbevf",
    "i40e",
    "ice",
    "igb",
    "igc",
    "mlx4_core",
    "mlx5_core",
    "bnxt_en",
    "nfp",
    "ena",
    "qede",
    "gve",
    "xen-netfront",
    "stmmac",
    "dpaa2-eth",
    "bond",
    "netdevsim",
    "sfc",
    "hv_netvsc",
    "thunder_nicvf",
    "cpsw",
    "mvneta",
    "mvpp2",
    "atlantic",
];
const ZEROCOPY_XDP: &[&str] = &[
    "ixgbe",
    "i40e",
    "ice",
    "igc",
    "mlx5_core",
    "stmmac",
    "gve",
    "netdevsim",
    "dpaa2-eth",
    "bnxt_en",
];

/// The interfaces of this thread's network namespace, from `/proc/thread-self/net/dev`
/// (`/sys/class/net` shows the namespace `/sys` was mounted in, which a thread that
/// entered another namespace with `setns` does not see).
fn interface_names() -> Vec<String> {
    read("/proc/thread-self/net/dev")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(name, _)| name.trim().to_owned())
        .filter(|name| !name.is_empty() && !name.contains('|'))
        .collect()
}

fn driver_of(ifname: &str) -> String {
    // The driver's own name (`ETHTOOL_GDRVINFO`): `veth` has no `device` link in sysfs
    // and no DEVTYPE, and was reported as "virtual" (generic XDP only).
    if let Ok(name) = tally_bypass::interface_driver(ifname) {
        return name;
    }
    let link = Path::new("/sys/class/net")
        .join(ifname)
        .join("device/driver");
    if let Ok(target) = fs::read_link(&link)
        && let Some(name) = target.file_name()
    {
        return name.to_string_lossy().into_owned();
    }
    // Virtual devices have no `device`: read the kind from uevent (DEVTYPE) or the name.
    let uevent = read(Path::new("/sys/class/net").join(ifname).join("uevent")).unwrap_or_default();
    if let Some(t) = uevent.lines().find_map(|l| l.strip_prefix("DEVTYPE=")) {
        return t.to_owned();
    }
    if ifname == "lo" {
        "loopback".into()
    } else {
        "virtual".into()
    }
}

fn af_xdp() -> Vec<Line> {
    let mut out = Vec::new();
    let sock = crate::sys::try_af_xdp_socket();
    out.push(Line {
        item: "AF_XDP",
        value: match &sock {
            Ok(()) => "socket(AF_XDP) works".into(),
            Err(e) => format!("socket(AF_XDP) failed: {e}"),
        },
        good: sock.is_ok(),
        advice: match &sock {
            Ok(()) => "kernel bypass available; Tally attaches its XDP program through a BPF link (detached when the process exits)".into(),
            Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => "kernel built without CONFIG_XDP_SOCKETS: Tally falls back to AF_PACKET".into(),
            Err(_) => "run as root or grant CAP_NET_RAW, CAP_NET_ADMIN and CAP_BPF (e.g. setcap) to use AF_XDP".into(),
        },
    });
    let mut names = interface_names();
    names.sort();
    for ifname in names {
        let drv = driver_of(&ifname);
        let native = NATIVE_XDP.contains(&drv.as_str());
        let zc = ZEROCOPY_XDP.contains(&drv.as_str());
        out.push(Line {
            item: "XDP mode",
            value: format!(
                "{ifname} (driver {drv}): {}",
                match (native, zc) {
                    (true, true) => "native, AF_XDP zero-copy capable",
                    (true, false) => "native, AF_XDP copy mode",
                    _ => "generic (skb) only, copy mode",
                }
            ),
            good: native,
            advice: if zc {
                "best case: native XDP and zero-copy".into()
            } else if native {
                "native XDP works; zero-copy needs a NIC driver such as ice, i40e or mlx5_core".into()
            } else {
                "generic XDP runs after the skb is built (slower): use a NIC whose driver has native XDP".into()
            },
        });
    }
    out
}

fn cap_ipc_lock() -> Option<bool> {
    let status = read("/proc/self/status")?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim()
        .to_owned();
    let caps = u64::from_str_radix(&hex, 16).ok()?;
    Some(caps & (1 << 14) != 0)
}

fn memlock() -> Line {
    let lim = crate::sys::memlock_limit();
    let ipc = cap_ipc_lock();
    let fmt = |v: u64| {
        if v == u64::MAX {
            "unlimited".to_owned()
        } else {
            format!("{} KiB", v / 1024)
        }
    };
    let (soft, hard) = lim.unwrap_or((0, 0));
    let good = ipc == Some(true) || soft >= (64 << 20);
    Line {
        item: "memlock",
        value: format!(
            "RLIMIT_MEMLOCK soft {} hard {}; CAP_IPC_LOCK {}",
            fmt(soft),
            fmt(hard),
            match ipc {
                Some(true) => "yes",
                Some(false) => "no",
                None => "unknown",
            }
        ),
        good,
        advice: if good {
            "AF_XDP UMEMs and mlocked frame pools of any size can be registered".into()
        } else {
            "UMEMs above the limit fail with ENOBUFS: raise it (ulimit -l unlimited, LimitMEMLOCK=infinity in systemd) or grant CAP_IPC_LOCK".into()
        },
    }
}

fn meminfo(key: &str) -> Option<u64> {
    read("/proc/meminfo")?
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn hugepages() -> Line {
    let total = meminfo("HugePages_Total:").unwrap_or(0);
    let free = meminfo("HugePages_Free:").unwrap_or(0);
    let size = meminfo("Hugepagesize:").unwrap_or(0);
    Line {
        item: "huge pages",
        value: format!("{total} x {size} KiB reserved, {free} free"),
        good: total > 0,
        advice: if total > 0 {
            "FramePool can map UMEM and journal buffers on huge pages (fewer TLB misses)".into()
        } else {
            "reserve some: echo 64 > /proc/sys/vm/nr_hugepages (or hugepages=64 on the kernel command line)".into()
        },
    }
}

/// What to do about CPU isolation, given the isolated CPUs (`/sys/devices/system/cpu/
/// isolated`, empty when none) and the number of CPUs online.
fn isolation_advice(isolated: &str, cpus: usize) -> String {
    if !isolated.is_empty() {
        // `pin` picks from the CPUs the process may run on, and isolated CPUs are outside
        // the default affinity mask.
        return format!(
            "run the pipeline under `taskset -c {isolated}`: it pins its threads to the CPUs it may run on"
        );
    }
    if cpus >= 4 {
        let (a, b) = (cpus - 2, cpus - 1);
        format!(
            "isolate two cores for the pinned pipeline threads (isolcpus={a}-{b} on the kernel command line, or a cpuset), then run it under `taskset -c {a}-{b}`"
        )
    } else {
        format!(
            "with {cpus} CPUs, isolating cores would leave the rest of the system none: on a machine with 4 or more, isolate two for the pinned pipeline threads"
        )
    }
}

fn isolation() -> Vec<Line> {
    let iso = read("/sys/devices/system/cpu/isolated").unwrap_or_default();
    let nohz = read("/sys/devices/system/cpu/nohz_full").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    vec![
        Line {
            item: "isolated CPUs",
            value: if iso.is_empty() {
                format!("none ({cpus} CPUs online)")
            } else {
                iso.clone()
            },
            good: !iso.is_empty(),
            advice: isolation_advice(&iso, cpus),
        },
        Line {
            item: "nohz_full",
            value: if nohz.is_empty() || nohz == "(null)" {
                "off".into()
            } else {
                nohz.clone()
            },
            good: !(nohz.is_empty() || nohz == "(null)"),
            advice: if nohz.is_empty() || nohz == "(null)" {
                "add nohz_full=<isolated cores> rcu_nocbs=<same> to stop the scheduler tick on busy-polling cores".into()
            } else {
                "tick is off on these cores".into()
            },
        },
    ]
}

fn governor() -> Line {
    let mut govs: Vec<String> = fs::read_dir("/sys/devices/system/cpu")
        .map(|d| {
            d.flatten()
                .filter_map(|e| read(e.path().join("cpufreq/scaling_governor")))
                .collect()
        })
        .unwrap_or_default();
    govs.sort();
    govs.dedup();
    let idle =
        read("/sys/devices/system/cpu/cpuidle/current_driver").unwrap_or_else(|| "none".into());
    if govs.is_empty() {
        return Line {
            item: "cpufreq governor",
            value: format!(
                "no cpufreq interface (frequency set by the host or firmware); cpuidle driver {idle}"
            ),
            good: true,
            advice: if idle == "haltpoll" {
                "VM guest: raise /sys/module/haltpoll/parameters/guest_halt_poll_ns to cut wake-up latency".into()
            } else {
                "nothing to change here".into()
            },
        };
    }
    let good = govs.iter().all(|g| g == "performance");
    Line {
        item: "cpufreq governor",
        value: format!("{}; cpuidle driver {idle}", govs.join(", ")),
        good,
        advice: if good {
            "ok".into()
        } else {
            "set performance: cpupower frequency-set -g performance (and limit C-states: idle=poll or intel_idle.max_cstate=1)".into()
        },
    }
}

fn thp() -> Line {
    let v = read("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_else(|| "unknown".into());
    let sel = v
        .split_whitespace()
        .find(|w| w.starts_with('['))
        .map_or("unknown", |w| w.trim_matches(['[', ']']))
        .to_owned();
    let good = sel == "madvise" || sel == "never";
    Line {
        item: "transparent huge pages",
        value: sel.clone(),
        good,
        advice: if good {
            "ok: no khugepaged compaction stalls outside regions that ask for it".into()
        } else {
            "set madvise: echo madvise > /sys/kernel/mm/transparent_hugepage/enabled (always can stall on compaction)".into()
        },
    }
}

/// Runs the probe and prints the report (a closed stdout, as in `tally probe | head -1`,
/// ends the output quietly).
pub fn run(as_json: bool) -> ExitCode {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let mut lines = vec![kernel()];
    lines.extend(uring());
    lines.extend(af_xdp());
    lines.push(memlock());
    lines.push(hugepages());
    lines.extend(isolation());
    lines.push(governor());
    lines.push(thp());
    if as_json {
        let v: Vec<Value> = lines
            .iter()
            .map(|l| json!({"item": l.item, "value": l.value, "ok": l.good, "advice": l.advice}))
            .collect();
        let _ = writeln!(stdout, "{}", json!({ "probe": v }));
    } else {
        for l in &lines {
            let _ = writeln!(
                stdout,
                "[{}] {:<24} {}\n       -> {}",
                if l.good { " ok " } else { "warn" },
                l.item,
                l.value,
                l.advice
            );
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use tally_bypass::netns::{Side, VethConfig};

    use super::*;

    /// Inside a namespace holding one end of a veth pair, the probe names the driver
    /// (`veth`) and says it runs XDP natively; it used to say "driver virtual: generic
    /// (skb) only".
    #[test]
    fn the_probe_sees_native_xdp_on_a_veth() {
        let Some(pair) = crate::sys::veth_or_skip("probe", VethConfig::default()) else {
            return;
        };
        let ifb = pair.config().if_b.clone();
        let lines = pair.run_in(Side::B, af_xdp).unwrap();
        let line = lines
            .iter()
            .find(|l| l.item == "XDP mode" && l.value.starts_with(&format!("{ifb} ")))
            .unwrap_or_else(|| panic!("no XDP mode line for {ifb}: {lines:?}"));
        assert!(
            line.value.contains("(driver veth): native"),
            "{}",
            line.value
        );
        assert!(line.good);
    }

    /// The isolation advice names cores this machine has: it used to say isolcpus=2-3
    /// whatever the machine (on this 2-CPU VM, two cores it does not have).
    #[test]
    fn the_isolation_advice_fits_the_machine() {
        assert!(isolation_advice("", 8).contains("isolcpus=6-7"));
        assert!(isolation_advice("", 4).contains("taskset -c 2-3"));
        let two = isolation_advice("", 2);
        assert!(!two.contains("isolcpus="), "{two}");
        assert!(two.contains("with 2 CPUs"), "{two}");
        assert!(isolation_advice("2-3", 4).contains("taskset -c 2-3"));
    }
}
