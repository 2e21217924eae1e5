//! Runs one instruction-count kernel: `icount KERNEL_ID ITERS`, or `icount --list`.
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
            let sum = (kernel.run)(iters);
            println!("{id} {iters} {sum}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("usage: icount KERNEL_ID ITERS | icount --list");
            ExitCode::from(2)
        }
    }
}
