//! Registry of instruction-count kernels, one module per crate.

pub mod bypass;
pub mod core_types;
pub mod mpc;
pub mod uring;

/// One instruction-count kernel.
#[derive(Clone, Copy)]
pub struct Kernel {
    /// Bench id, `group/name`, matching the criterion bench it twins where there is one.
    pub id: &'static str,
    /// Runs `iters` iterations after a set-up that does not depend on `iters`, and returns
    /// a checksum so that the work cannot be optimised away.
    pub run: fn(iters: u64) -> u64,
    /// The checksum `run(iters)` returns when every iteration did all its work (every
    /// verification passed, every item went through, every operation succeeded). A kernel
    /// that skipped work, or measured an error path, returns something else, and
    /// [`Kernel::run_checked`] refuses it: otherwise it would be counted as a fast kernel.
    pub expect: fn(iters: u64) -> u64,
}

/// Why a kernel run is not a measurement.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KernelError {
    /// The checksum differs from the one every successful iteration adds up to.
    #[error(
        "kernel {id} returned checksum {got} after {iters} iterations, expected {expected}: \
         an iteration failed or skipped its work (a verification error, a refused item, \
         io_uring refused); fix the kernel or the code it measures before counting it"
    )]
    WrongChecksum {
        /// Kernel id.
        id: &'static str,
        /// Iterations run.
        iters: u64,
        /// Checksum returned.
        got: u64,
        /// Checksum expected.
        expected: u64,
    },
}

impl Kernel {
    /// Runs `iters` iterations and checks the checksum against [`Kernel::expect`].
    ///
    /// # Errors
    /// [`KernelError::WrongChecksum`] when an iteration failed or skipped its work.
    pub fn run_checked(&self, iters: u64) -> Result<u64, KernelError> {
        let got = (self.run)(iters);
        let expected = (self.expect)(iters);
        if got == expected {
            Ok(got)
        } else {
            Err(KernelError::WrongChecksum {
                id: self.id,
                iters,
                got,
                expected,
            })
        }
    }
}

/// Whether a verification accepts the genuine input (`verifies(true)`) and refuses a
/// tampered one (`verifies(false)`). A verification kernel's checksum counts the
/// verifications that passed, which a verifier that skipped its work and answered "valid"
/// would pass too; so each checks this once before its loop, a cost that cancels in the
/// difference of two runs, and returns 0 (a wrong checksum) when it fails.
pub fn tells_apart(verifies: impl Fn(bool) -> bool) -> bool {
    verifies(true) && !verifies(false)
}

/// Every kernel, from every crate's module.
pub fn all() -> impl Iterator<Item = &'static Kernel> {
    core_types::KERNELS
        .iter()
        .chain(mpc::KERNELS)
        .chain(uring::KERNELS)
        .chain(bypass::KERNELS)
}

/// The kernel with this id, if any.
pub fn find(id: &str) -> Option<&'static Kernel> {
    all().find(|k| k.id == id)
}

#[cfg(test)]
mod tests {
    use super::{Kernel, KernelError, all};

    /// Whether this machine lets us create an io_uring (containers often refuse it).
    fn io_uring_allowed() -> bool {
        io_uring::IoUring::new(8).is_ok()
    }

    /// Every kernel does all of its work: each verification passes, each item goes
    /// through, each operation succeeds. A kernel that measured an error path would
    /// report the (small) cost of failing as its instruction count.
    #[test]
    fn every_kernel_does_all_its_work() {
        let uring_ok = io_uring_allowed();
        if !uring_ok {
            assert!(
                std::env::var_os("CI").is_none(),
                "io_uring is refused on CI: the uring kernels must run there"
            );
            eprintln!("skipping the uring/ kernels: this kernel refuses io_uring_setup");
        }
        let mut ids = std::collections::BTreeSet::new();
        for k in all() {
            assert!(ids.insert(k.id), "kernel id {} appears twice", k.id);
            if k.id.starts_with("uring/") && !uring_ok {
                continue;
            }
            for iters in [1, 3] {
                if let Err(e) = k.run_checked(iters) {
                    panic!("{e}");
                }
            }
        }
    }

    /// A verifier that accepts everything (or nothing) is refused before it is counted.
    #[test]
    fn a_verifier_that_does_not_verify_is_refused() {
        assert!(super::tells_apart(|genuine| genuine));
        assert!(!super::tells_apart(|_| true));
        assert!(!super::tells_apart(|_| false));
        // Each Tally verification kernel makes the check: with every verification
        // passing, its checksum is the expected one.
        for id in [
            "mpc/bip340_verify/tally_cold",
            "mpc/bip340_verify/tally_precomputed",
            "mpc/bip340_batch8/tally",
            "mpc/frost_share3/tally",
            "mpc/frost_share3/tally_precomputed",
            "mpc/frost_verify/tally",
            "mpc/frost_verify/tally_precomputed",
            "mpc/frost_coord32/tally_signatures",
            "mpc/frost_coord32/tally_shares",
        ] {
            let k = super::find(id).unwrap();
            assert!(k.run_checked(1).is_ok(), "{id}");
        }
    }

    #[test]
    fn a_wrong_checksum_is_refused() {
        let skips_one = Kernel {
            id: "test/skips_one",
            run: |n| n.saturating_sub(1),
            expect: |n| n,
        };
        let err = skips_one.run_checked(5).unwrap_err();
        assert!(
            matches!(
                err,
                KernelError::WrongChecksum {
                    got: 4,
                    expected: 5,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("test/skips_one"), "{err}");
    }
}
