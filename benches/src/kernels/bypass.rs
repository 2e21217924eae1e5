//! Instruction-count kernels for `tally-bypass` (added with that crate's benches).

use super::Kernel;

/// The kernels of this module.
pub const KERNELS: &[Kernel] = &[];
