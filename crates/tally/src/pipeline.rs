//! `tally pipeline`: sets up the network (two namespaces and a veth pair as root, UDP
//! over loopback otherwise), signs the session pool, runs the coordinator and the load
//! generator, and reports.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tally_bypass::netns::{Side, VethConfig, VethPair};
use tally_bypass::{Transport, TransportChoice, TransportOptions};
use tally_mpc::frost::VerifyingShare;

use crate::coordinator::{self, CoordConfig, CoordStats, VerifyMode};
use crate::generator::{self, GenConfig, GenResult, PoolEntry, Progress};
use crate::net::{BypassNet, Net, UdpNet};
use crate::report::RunReport;
use crate::signer::Group;

/// UDP port the coordinator listens on.
pub const PORT: u16 = 9000;

/// Which transport to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportArg {
    /// AF_XDP in a namespace when root, else AF_PACKET, else UDP over loopback.
    Auto,
    /// AF_XDP (root only).
    AfXdp,
    /// AF_PACKET (root only).
    AfPacket,
    /// A UDP socket (over a veth pair when root, else loopback).
    Udp,
}

/// Settings of one pipeline run.
#[derive(Debug, Clone)]
#[allow(clippy::struct_excessive_bools, reason = "command-line switches")]
pub struct Settings {
    /// Seconds to send.
    pub duration: Duration,
    /// Sessions in flight.
    pub window: usize,
    /// Fraction of invalid shares.
    pub invalid_ratio: f64,
    /// Staged coordinator.
    pub stages: bool,
    /// What the coordinator's cross-session batch verifies.
    pub verify: VerifyMode,
    /// Transport request.
    pub transport: TransportArg,
    /// Journal directory (a fresh temporary one when `None`).
    pub journal_dir: Option<PathBuf>,
    /// Keep the temporary journal.
    pub keep_journal: bool,
    /// Inject four bad datagrams every this many sessions (0: never).
    pub bad_wire_every: u64,
    /// Pin threads to cores.
    pub pin: bool,
    /// Print the live progress line.
    pub progress: bool,
    /// Most sessions per verification batch.
    pub max_batch: usize,
}

/// Why the pipeline could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// Key generation or pool signing failed.
    #[error("signing the session pool failed: {0}")]
    Signer(#[from] crate::signer::SignerError),
    /// The coordinator failed.
    #[error("coordinator: {0}")]
    Coordinator(#[from] coordinator::CoordError),
    /// A socket or thread failed.
    #[error("{what}: {detail}")]
    Setup {
        /// What was being done.
        what: &'static str,
        /// The error.
        detail: String,
    },
    /// The journal could not be replayed after the run.
    #[error("replaying the journal after the run: {0}")]
    Replay(#[from] tally_uring::JournalError),
    /// Ctrl-C (or SIGTERM) arrived before the timed run started.
    #[error("interrupted while signing the session pool; nothing was run")]
    Interrupted,
    /// The baseline failed.
    #[cfg(feature = "baseline")]
    #[error("baseline: {0}")]
    Baseline(#[from] crate::baseline::BaselineError),
}

fn setup_err(what: &'static str, e: impl std::fmt::Display) -> PipelineError {
    PipelineError::Setup {
        what,
        detail: e.to_string(),
    }
}

/// The network the run uses: a namespace pair, or loopback.
pub enum Env {
    /// Two namespaces joined by a veth pair (root).
    Netns(VethPair),
    /// The loopback interface of the current namespace.
    Loopback,
}

impl Env {
    /// As root, a fresh namespace pair; otherwise loopback. Returns why.
    pub fn new(transport: TransportArg) -> (Self, String) {
        // SAFETY-free check: geteuid has no preconditions.
        let root = crate::sys::is_root();
        if !root {
            return (
                Self::Loopback,
                "not root, so no network namespaces or kernel bypass: UDP over loopback \
                 (run as root, e.g. `sudo -E cargo run --release -p tally -- pipeline`, for AF_XDP)"
                    .to_owned(),
            );
        }
        let cfg = VethConfig {
            static_neighbours: true,
            ..VethConfig::default()
        };
        match VethPair::new("pipe", cfg) {
            Ok(p) => {
                let [a, b] = p.netns_names();
                (
                    Self::Netns(p),
                    format!(
                        "root: veth pair {a} (198.18.0.1) <-> {b} (198.18.0.2), removed on exit{}",
                        if transport == TransportArg::Udp {
                            "; UDP sockets as asked"
                        } else {
                            ""
                        }
                    ),
                )
            }
            Err(e) => (
                Self::Loopback,
                format!("creating the namespace pair failed ({e}); UDP over loopback"),
            ),
        }
    }

    /// Namespace names, to check afterwards that they are gone.
    pub fn netns_names(&self) -> Option<[String; 2]> {
        match self {
            Self::Netns(p) => Some(p.netns_names()),
            Self::Loopback => None,
        }
    }
}

/// The group and the signed pool shared by every run of one command.
pub struct Workload {
    /// The group.
    pub group: Group,
    /// Pre-signed sessions.
    pub pool: Arc<Vec<PoolEntry>>,
}

impl Workload {
    /// Deals a `t`-of-`n` group and signs `pool` sessions.
    ///
    /// # Errors
    /// [`PipelineError::Signer`]; [`PipelineError::Interrupted`] on Ctrl-C.
    pub fn new(t: u16, n: u16, pool: usize) -> Result<Self, PipelineError> {
        let group = Group::deal(t, n)?;
        let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let pool = generator::build_pool(&group, pool.max(1), threads)?;
        if crate::sys::interrupted() {
            return Err(PipelineError::Interrupted);
        }
        Ok(Self {
            group,
            pool: Arc::new(pool),
        })
    }
}

/// The cores this process may run on, read once before any thread is pinned:
/// `get_core_ids` reads the calling thread's affinity mask, which a thread inherits from
/// its creator, so asking after one thread was pinned would put every later thread on
/// that same core.
static CORES: std::sync::OnceLock<Vec<core_affinity::CoreId>> = std::sync::OnceLock::new();

fn pin(core: usize, on: bool) {
    if !on {
        return;
    }
    let ids = CORES.get_or_init(|| core_affinity::get_core_ids().unwrap_or_default());
    if let Some(id) = ids.get(core % ids.len().max(1)) {
        let _ = core_affinity::set_for_current(*id);
    }
}

fn coord_config(s: &Settings, w: &Workload, dir: PathBuf) -> CoordConfig {
    let mut vs: Vec<Option<VerifyingShare>> = vec![None; usize::from(w.group.n) + 1];
    for sk in &w.group.signers {
        if let Some(slot) = vs.get_mut(usize::from(sk.id)) {
            *slot = Some(sk.verifying_share);
        }
    }
    CoordConfig {
        group_id: 1,
        key: w.group.key,
        verifying_shares: vs,
        threshold: w.group.t,
        journal_dir: dir,
        stages: s.stages,
        verify: s.verify,
        max_batch_sessions: s.max_batch,
        session_timeout: Duration::from_secs(2),
        table_capacity: (s.window * 4).max(1024),
    }
}

fn gen_config(s: &Settings, w: &Workload, target: SocketAddr, bind: SocketAddr) -> GenConfig {
    GenConfig {
        target,
        bind,
        group_id: 1,
        n: w.group.n,
        window: s.window,
        duration: s.duration,
        invalid_ratio: s.invalid_ratio,
        bad_wire_every: s.bad_wire_every,
        reply_timeout: Duration::from_secs(3),
        first_session: 1,
    }
}

/// A fresh journal directory and whether to delete it afterwards.
/// A temporary journal directory's base, removed when dropped (also when a run fails
/// part-way); `None` for a directory the user chose or asked to keep.
struct TempJournal(Option<PathBuf>);

impl Drop for TempJournal {
    fn drop(&mut self) {
        if let Some(base) = self.0.take() {
            let _ = std::fs::remove_dir_all(base);
        }
    }
}

fn journal_dir(s: &Settings, tag: &str) -> Result<(PathBuf, TempJournal), PipelineError> {
    if let Some(d) = &s.journal_dir {
        let d = d.join(tag);
        if d.exists() {
            std::fs::remove_dir_all(&d)
                .map_err(|e| setup_err("clearing the journal directory", e))?;
        }
        return Ok((d, TempJournal(None)));
    }
    let base = std::env::temp_dir().join(format!(
        "tally-pipeline-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let dir = base.join(tag);
    Ok((dir, TempJournal((!s.keep_journal).then_some(base))))
}

/// The live progress line, until `done`.
fn progress_loop(
    progress: &Progress,
    done: &AtomicBool,
    gen_stop: &AtomicBool,
    show: bool,
    label: &str,
) {
    let start = Instant::now();
    let mut last = (Instant::now(), 0u64);
    while !done.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(100));
        if crate::sys::interrupted() {
            gen_stop.store(true, Ordering::Relaxed);
        }
        let now = Instant::now();
        if show && now.duration_since(last.0) >= Duration::from_secs(1) {
            let completed = progress.completed.load(Ordering::Relaxed);
            #[allow(clippy::cast_precision_loss, reason = "display")]
            let rate = (completed - last.1.min(completed)) as f64
                / now.duration_since(last.0).as_secs_f64();
            last = (now, completed);
            let mut err = std::io::stderr().lock();
            #[allow(clippy::cast_precision_loss, reason = "display")]
            let p99_ms = progress.p99_us.load(Ordering::Relaxed) as f64 / 1000.0;
            let _ = write!(
                err,
                "\r[{label} {:>4.0}s] {:>9} sent {:>9} done {:>8.0} sessions/s  p99 so far {:>7.2} ms   ",
                now.duration_since(start).as_secs_f64(),
                progress.sent.load(Ordering::Relaxed),
                completed,
                rate,
                p99_ms
            );
            let _ = err.flush();
        }
    }
    if show {
        let _ = writeln!(std::io::stderr());
    }
}

/// What a coordinator (Tally's or the baseline's) reports once it takes traffic.
struct Ready {
    /// Where the generator sends.
    addr: SocketAddr,
    /// Transport name.
    kind: &'static str,
    /// Transport details.
    detail: String,
}

/// The channel on which a coordinator body reports that it is ready (or why it is not).
type ReadyTx = std::sync::mpsc::Sender<Result<Ready, String>>;

/// Binds the UDP socket of a coordinator: port [`PORT`] inside the namespace, any port on
/// loopback. Reports a failure on `tx`.
fn bind_udp(ip: Ipv4Addr, in_netns: bool, tx: &ReadyTx) -> Result<UdpSocket, PipelineError> {
    let port = if in_netns { PORT } else { 0 };
    UdpSocket::bind(SocketAddrV4::new(ip, port)).map_err(|e| {
        let _ = tx.send(Err(format!("binding the coordinator's UDP socket: {e}")));
        setup_err("binding the coordinator's UDP socket", e)
    })
}

/// The coordinator's local address, reporting a failure on `tx`.
fn local_addr(sock: &UdpSocket, tx: &ReadyTx) -> Result<SocketAddr, PipelineError> {
    sock.local_addr().map_err(|e| {
        let _ = tx.send(Err(format!("reading the socket address: {e}")));
        setup_err("reading the socket address", e)
    })
}

/// Runs one coordinator body (Tally's or the baseline's) in the coordinator's namespace
/// (or on loopback) against the load generator in the other one, with the live progress
/// line, and returns what both saw. `body` gets the coordinator's address, the interface
/// name inside a namespace, the ready channel and the stop flag.
fn drive<F>(
    s: &Settings,
    w: &Workload,
    env: &Env,
    label: &'static str,
    body: F,
) -> Result<(GenResult, CoordStats, Ready), PipelineError>
where
    F: FnOnce(Ipv4Addr, Option<String>, ReadyTx, &AtomicBool) -> Result<CoordStats, PipelineError>
        + Send
        + 'static,
{
    let coord_stop = Arc::new(AtomicBool::new(false));
    let gen_stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(Progress::default());
    let done = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<Ready, String>>();
    let pin_on = s.pin;
    let stop2 = Arc::clone(&coord_stop);
    let body = move |ip: Ipv4Addr, ifname: Option<String>| {
        pin(1, pin_on);
        body(ip, ifname, ready_tx, &stop2)
    };
    let (coord_handle, gen_bind): (
        std::thread::JoinHandle<Result<CoordStats, PipelineError>>,
        SocketAddr,
    ) = match env {
        Env::Netns(pair) => {
            let ifname = pair.ifname(Side::B).to_owned();
            let ip = pair.config().ip_b;
            let h = pair.spawn_in(Side::B, move || body(ip, Some(ifname)));
            (
                std::thread::spawn(move || match h.join() {
                    Ok(Ok(r)) => r,
                    Ok(Err(e)) => Err(setup_err("entering the coordinator's namespace", e)),
                    Err(p) => std::panic::resume_unwind(p),
                }),
                SocketAddr::V4(SocketAddrV4::new(pair.config().ip_a, 0)),
            )
        }
        Env::Loopback => (
            std::thread::spawn(move || body(Ipv4Addr::LOCALHOST, None)),
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)),
        ),
    };
    let Ok(Ok(ready)) = ready_rx.recv_timeout(Duration::from_secs(30)) else {
        coord_stop.store(true, Ordering::Relaxed);
        return match coord_handle.join() {
            Ok(Err(e)) => Err(e),
            _ => Err(setup_err(
                "starting the coordinator",
                "it stopped without a reason",
            )),
        };
    };
    let gcfg = gen_config(s, w, ready.addr, gen_bind);
    let pool = Arc::clone(&w.pool);
    let (gs, gp) = (Arc::clone(&gen_stop), Arc::clone(&progress));
    let gen_body = move || {
        pin(0, pin_on);
        generator::run(&gcfg, &pool, &gs, &gp)
    };
    let gen_handle: std::thread::JoinHandle<Result<GenResult, PipelineError>> = match env {
        Env::Netns(pair) => {
            let h = pair.spawn_in(Side::A, gen_body);
            std::thread::spawn(move || match h.join() {
                Ok(Ok(r)) => r.map_err(|e| setup_err("load generator", e)),
                Ok(Err(e)) => Err(setup_err("entering the generator's namespace", e)),
                Err(p) => std::panic::resume_unwind(p),
            })
        }
        Env::Loopback => {
            std::thread::spawn(move || gen_body().map_err(|e| setup_err("load generator", e)))
        }
    };
    let d2 = Arc::clone(&done);
    let watcher = {
        let (p, g) = (Arc::clone(&progress), Arc::clone(&gen_stop));
        let show = s.progress;
        std::thread::spawn(move || progress_loop(&p, &d2, &g, show, label))
    };
    // A coordinator that stopped on its own (an error) stops the generator, so that its
    // error is reported now rather than after the whole `--duration`.
    while !gen_handle.is_finished() {
        if coord_handle.is_finished() {
            gen_stop.store(true, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let load = gen_handle.join();
    done.store(true, Ordering::Release);
    let _ = watcher.join();
    coord_stop.store(true, Ordering::Relaxed);
    let coord = coord_handle.join();
    let load = match load {
        Ok(r) => r?,
        Err(p) => std::panic::resume_unwind(p),
    };
    let coord = match coord {
        Ok(r) => r?,
        Err(p) => std::panic::resume_unwind(p),
    };
    Ok((load, coord, ready))
}

/// Runs the Tally pipeline once in `env`.
///
/// # Errors
/// [`PipelineError`].
pub fn run_tally(
    s: &Settings,
    w: &Workload,
    env: &Env,
    env_why: &str,
) -> Result<RunReport, PipelineError> {
    let (dir, _temp) = journal_dir(s, "tally")?;
    let cfg = coord_config(s, w, dir.clone());
    let choice = s.transport;
    let body = move |ip: Ipv4Addr,
                     ifname: Option<String>,
                     ready_tx: ReadyTx,
                     stop: &AtomicBool|
          -> Result<CoordStats, PipelineError> {
        let fail = |what: &'static str, e: String| {
            let _ = ready_tx.send(Err(format!("{what}: {e}")));
            setup_err(what, e)
        };
        match (ifname, choice) {
            (Some(ifname), TransportArg::Auto | TransportArg::AfXdp | TransportArg::AfPacket) => {
                let mut opts = TransportOptions::udp_ports(&[PORT]);
                opts.choice = match choice {
                    TransportArg::AfXdp => TransportChoice::AfXdp,
                    TransportArg::AfPacket => TransportChoice::AfPacket,
                    _ => TransportChoice::Auto,
                };
                opts.packet.retire_timeout_ms = 1;
                let t = Transport::open(&ifname, 0, &opts)
                    .map_err(|e| fail("opening the bypass transport", e.to_string()))?;
                let detail = match &t {
                    Transport::AfXdp(x) => format!(
                        "AF_XDP on {ifname} queue 0: XDP {} mode{}, bind {}{}",
                        x.info().xdp_mode.as_str(),
                        x.info()
                            .xdp_fallback_reason
                            .as_ref()
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default(),
                        x.info().bind_mode.as_str(),
                        x.info()
                            .bind_fallback_reason
                            .as_ref()
                            .map(|r| format!(" (zero-copy refused: {r})"))
                            .unwrap_or_default(),
                    ),
                    Transport::AfPacket(_, why) => format!(
                        "AF_PACKET TPACKET_V3 on {ifname}{}",
                        why.as_ref()
                            .map(|r| format!(" (AF_XDP unavailable: {r})"))
                            .unwrap_or_default()
                    ),
                };
                let net = BypassNet::new(t);
                let kind = net.kind();
                let addr = SocketAddr::V4(SocketAddrV4::new(ip, PORT));
                Ok(coordinator::run(cfg, net, stop, || {
                    let _ = ready_tx.send(Ok(Ready { addr, kind, detail }));
                })?)
            }
            (ifname, _) => {
                let sock = bind_udp(ip, ifname.is_some(), &ready_tx)?;
                let addr = local_addr(&sock, &ready_tx)?;
                let net = UdpNet::new(sock)
                    .map_err(|e| fail("configuring the UDP socket", e.to_string()))?;
                Ok(coordinator::run(cfg, net, stop, || {
                    let _ = ready_tx.send(Ok(Ready {
                        addr,
                        kind: "udp",
                        detail: format!("UDP socket {addr}"),
                    }));
                })?)
            }
        }
    };
    let label = if s.stages { "tally/staged" } else { "tally" };
    let (load, coord, ready) = drive(s, w, env, label, body)?;
    let replay = tally_uring::Journal::replay(&dir, |_, _| {})?;
    Ok(RunReport {
        mode: "tally",
        shape: if s.stages {
            "staged"
        } else {
            "run_to_completion"
        },
        verify: s.verify.as_str(),
        transport: ready.kind,
        transport_why: format!("{}; {env_why}", ready.detail),
        t: w.group.t,
        n: w.group.n,
        load,
        coord,
        journal_replayed: replay.records,
    })
}

/// Runs the baseline once in `env`.
///
/// # Errors
/// [`PipelineError`].
#[cfg(feature = "baseline")]
pub fn run_baseline(
    s: &Settings,
    w: &Workload,
    env: &Env,
    env_why: &str,
) -> Result<RunReport, PipelineError> {
    let (dir, _temp) = journal_dir(s, "baseline")?;
    let group = w.group.clone();
    let dir2 = dir.clone();
    let body = move |ip: Ipv4Addr,
                     ifname: Option<String>,
                     ready_tx: ReadyTx,
                     stop: &AtomicBool|
          -> Result<CoordStats, PipelineError> {
        let sock = bind_udp(ip, ifname.is_some(), &ready_tx)?;
        let addr = local_addr(&sock, &ready_tx)?;
        let _ = ready_tx.send(Ok(Ready {
            addr,
            kind: "udp",
            detail: String::new(),
        }));
        Ok(crate::baseline::run(&group, 1, &sock, &dir2, stop)?)
    };
    let (load, coord, _) = drive(s, w, env, "baseline", body)?;
    let replayed = crate::baseline::count_records(&dir).unwrap_or(0);
    Ok(RunReport {
        mode: "baseline",
        shape: "baseline",
        verify: "each_share",
        transport: "udp",
        transport_why: format!(
            "std UDP socket, frost-secp256k1 verify per share, write+fdatasync per signature; {env_why}"
        ),
        t: w.group.t,
        n: w.group.n,
        load,
        coord,
        journal_replayed: replayed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(journal_dir: Option<PathBuf>, keep_journal: bool) -> Settings {
        Settings {
            duration: Duration::from_secs(30),
            window: 4,
            invalid_ratio: 0.0,
            stages: false,
            verify: VerifyMode::Signatures,
            transport: TransportArg::Udp,
            journal_dir,
            keep_journal,
            bad_wire_every: 0,
            pin: false,
            progress: false,
            max_batch: 4,
        }
    }

    /// A temporary journal directory goes away with its guard, which a run that fails
    /// part-way drops too; a kept one, or one the user named, stays.
    #[test]
    fn temporary_journal_directories_are_removed_also_on_failure() {
        let run = |s: &Settings| -> Result<PathBuf, PipelineError> {
            let (dir, _temp) = journal_dir(s, "tally")?;
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("segment"), b"x").unwrap();
            // A run failing here returns early, dropping `_temp`.
            Ok(dir)
        };
        let dir = run(&settings(None, false)).unwrap();
        assert!(
            !dir.exists() && !dir.parent().unwrap().exists(),
            "{dir:?} left behind"
        );
        let kept = run(&settings(None, true)).unwrap();
        assert!(
            kept.join("segment").exists(),
            "--keep-journal removed {kept:?}"
        );
        std::fs::remove_dir_all(kept.parent().unwrap()).unwrap();
        let mine = tempfile::tempdir().unwrap();
        let named = run(&settings(Some(mine.path().to_path_buf()), false)).unwrap();
        assert!(
            named.join("segment").exists(),
            "removed the user's {named:?}"
        );
    }

    /// A coordinator that fails after it started taking traffic ends the run promptly
    /// with its error, instead of the load generator sending for the whole `--duration`.
    #[test]
    fn a_coordinator_failing_mid_run_ends_the_run_with_its_error() {
        let s = settings(None, false);
        let w = Workload::new(2, 3, 2).unwrap();
        let t0 = Instant::now();
        let body = |ip: Ipv4Addr, _: Option<String>, tx: ReadyTx, _: &AtomicBool| {
            // Takes traffic (and never answers), then fails.
            let sock = UdpSocket::bind(SocketAddrV4::new(ip, 0)).unwrap();
            let addr = sock.local_addr().unwrap();
            let _ = tx.send(Ok(Ready {
                addr,
                kind: "udp",
                detail: String::new(),
            }));
            std::thread::sleep(Duration::from_millis(200));
            Err(setup_err("test coordinator", "journal failed"))
        };
        let r = drive(&s, &w, &Env::Loopback, "test", body);
        let took = t0.elapsed();
        let Err(e) = r else {
            panic!("the coordinator's error was lost")
        };
        assert!(e.to_string().contains("journal failed"), "{e}");
        assert!(
            took < Duration::from_secs(8),
            "the run went on for {took:?} after the coordinator failed"
        );
    }
}
