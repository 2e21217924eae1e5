//! Runs one instruction-count kernel: `icount KERNEL_ID ITERS`, or `icount --list`.
//! Exits 3 when the kernel's checksum is not the one every successful iteration adds up
//! to (see [`tally_benches::kernels::Kernel::expect`]), 2 on a usage error.
//!
//! Meant to run under `valgrind --tool=callgrind` (see `cargo xtask bench --instructions`).
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag] if flag == "--list" => {
            for k in tally_benches::kernels::all() {
                println!("{}", k.id);
            }
            ExitCode::SUCCESS
        }
        [id, iters] => {
            let Ok(iters) = iters.parse::<u64>() else {
                eprintln!("icount: ITERS must be a whole number, got {iters:?}");
                return ExitCode::from(2);
            };
            let Some(kernel) = tally_benches::kernels::find(id) else {
                eprintln!("icount: no kernel {id:?}; `icount --list` shows the ids");
                return ExitCode::from(2);
            };
            // A run whose checksum is wrong skipped work or measured an error path: exit
            // 3, so that `cargo xtask bench --instructions` reports it instead of a count.
            match kernel.run_checked(iters) {
                Ok(sum) => {
                    println!("{id} {iters} {sum}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("icount: {e}");
                    ExitCode::from(3)
                }
            }
        }
        _ => {
            eprintln!("usage: icount KERNEL_ID ITERS | icount --list");
            ExitCode::from(2)
        }
    }
}
