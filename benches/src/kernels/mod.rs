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
