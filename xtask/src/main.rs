//! `cargo xtask`: project automation (lint, bench, bench-compare, ci). Filled in by the
//! xtask issue.
fn main() {}
