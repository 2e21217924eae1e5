//! Instruction-count kernels for `tally-core-types` (filled in with the ring benches).

use super::Kernel;

/// The kernels of this module.
pub const KERNELS: &[Kernel] = &[];
