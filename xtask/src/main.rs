//! `cargo xtask` entry point: see the library docs (`xtask/src/lib.rs`) for the commands.

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(xtask::run(std::env::args().skip(1).collect()))
}
