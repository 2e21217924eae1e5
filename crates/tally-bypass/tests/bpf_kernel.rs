//! The BPF side against the real kernel: a rejected program returns the verifier log;
//! native and generic attach report their mode and detach on drop; a second socket on a
//! busy queue fails after the bounded EBUSY retry with an error that says what to do.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

mod common;

use std::time::Instant;

use tally_bypass::netns::{Side, VethConfig};
use tally_bypass::{
    BypassError, XdpFilter, XdpLink, XdpMode, XdpModeChoice, XdpProgram, XskConfig, XskMap,
    XskSocket, bpf::steering_program,
};

#[test]
fn verifier_rejection_carries_the_log() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this test as root"
        );
        eprintln!("SKIP: bpf(2) needs root");
        return;
    }
    let map = XskMap::new(4).unwrap();
    let steer = steering_program(&XdpFilter::All, map.raw_fd()).unwrap();
    // Without its final `exit` (EINVAL), and without the `r2 = ctx->rx_queue_index` load
    // so that the helper call reads r2 before it is written (EACCES): the verifier must
    // refuse both.
    let mut no_exit = steer.clone();
    no_exit.truncate(no_exit.len() - 1);
    let uninit_r2 = steer[1..].to_vec();
    for (what, insns, errno) in [
        ("no exit", no_exit, libc::EINVAL),
        ("uninitialised r2", uninit_r2, libc::EACCES),
    ] {
        match XdpProgram::load(&insns, "tally_bad") {
            Err(e @ BypassError::Verifier { .. }) => {
                let BypassError::Verifier { log, source } = &e else {
                    unreachable!()
                };
                eprintln!("{what}: verifier log ({source}): {log}");
                assert!(!log.trim().is_empty());
                assert_eq!(source.raw_os_error(), Some(errno), "{what}");
                // EACCES is how the kernel reports a rejected program; callers that skip
                // on "permission denied" must not skip this.
                assert!(
                    !e.is_permission_denied(),
                    "{what}: a verifier rejection looks like a permission skip: {e}"
                );
                assert!(e.to_string().contains("not a permissions problem"), "{e}");
            }
            other => panic!("{what}: expected a verifier error, got {other:?}"),
        }
    }
    let good = XdpProgram::load(
        &steering_program(&XdpFilter::UdpDstPorts(vec![1, 2, 3]), map.raw_fd()).unwrap(),
        "ok",
    );
    assert!(good.is_ok(), "{good:?}");
}

#[test]
fn native_and_generic_attach_and_detach_on_drop() {
    let Some(pair) = common::veth_or_skip("xattach", VethConfig::default()) else {
        return;
    };
    let ifb = pair.config().if_b.clone();
    for (choice, mode) in [
        (XdpModeChoice::Native, XdpMode::Native),
        (XdpModeChoice::Generic, XdpMode::Generic),
    ] {
        let ifb = ifb.clone();
        let link_mode = pair
            .run_in(Side::B, move || {
                let map = XskMap::new(4).unwrap();
                let prog = XdpProgram::load(
                    &steering_program(&XdpFilter::UdpDstPorts(vec![9]), map.raw_fd()).unwrap(),
                    "t",
                )
                .unwrap();
                let c = std::ffi::CString::new(ifb.as_str()).unwrap();
                // SAFETY: valid C string; runs inside namespace B.
                let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) };
                assert_ne!(ifindex, 0);
                let link = XdpLink::attach(&prog, ifindex, choice).unwrap();
                (link.mode(), link)
            })
            .unwrap();
        assert_eq!(link_mode.0, mode);
        assert!(pair.xdp_attached(Side::B).unwrap());
        drop(link_mode);
        assert!(
            !pair.xdp_attached(Side::B).unwrap(),
            "{mode:?} link must detach on drop"
        );
    }
}

#[test]
fn busy_queue_fails_after_bounded_retry() {
    let Some(pair) = common::veth_or_skip("xbusy", VethConfig::default()) else {
        return;
    };
    let ifb = pair.config().if_b.clone();
    let (attempts, secs, msg) = pair
        .run_in(Side::B, move || {
            let _first = XskSocket::open(&ifb, 0, XskConfig::default()).unwrap();
            let t = Instant::now();
            let err = XskSocket::open(&ifb, 0, XskConfig::default()).unwrap_err();
            let attempts = match &err {
                BypassError::Bind { attempts, .. } => *attempts,
                other => panic!("expected a bind error, got {other}"),
            };
            (attempts, t.elapsed().as_secs_f64(), err.to_string())
        })
        .unwrap();
    eprintln!("{msg} ({secs:.2} s)");
    assert!(msg.contains("EBUSY"));
    assert!(
        attempts > 1 && attempts <= 40,
        "bounded retries: {attempts}"
    );
    assert!(secs < 10.0);
}

#[test]
fn stale_namespaces_of_dead_processes_are_removed() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this test as root"
        );
        eprintln!("SKIP: namespaces need root");
        return;
    }
    // A pid that cannot be alive (above the kernel's maximum, 2^22).
    let name = "tally-stale-4999999-0-a";
    let st = std::process::Command::new("ip")
        .args(["netns", "add", name])
        .status()
        .unwrap();
    assert!(st.success());
    // (A parallel test's VethPair::new may clean it up first: only the outcome counts.)
    tally_bypass::netns::cleanup_stale();
    assert!(!tally_bypass::netns::NetnsGuard::exists(name));
}
