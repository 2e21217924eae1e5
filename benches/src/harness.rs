//! Helpers for the benches with their own `main` (`harness = false` without criterion):
//! they take the same filter argument as the criterion benches, so that
//! `cargo bench -p tally-benches -- ring/` and `cargo xtask bench --filter ring/` do not
//! also run minutes of journal or veth benches whose ids cannot match.

/// Whether the bench `name` runs for this command line (program name excluded): yes
/// without a filter; with one (the first argument not starting with `-`, regex escapes
/// removed, as `cargo xtask bench` passes it), when `name` contains the filter or the
/// filter starts with `name`.
pub fn selected(name: &str, args: impl IntoIterator<Item = String>) -> bool {
    let Some(filter) = args.into_iter().find(|a| !a.starts_with('-')) else {
        return true;
    };
    let filter = filter.replace('\\', "");
    name.contains(&filter) || filter.starts_with(name)
}

#[cfg(test)]
mod tests {
    use super::selected;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn filters_like_the_criterion_benches() {
        assert!(selected("uring_journal", args(&["--bench"])));
        assert!(selected("uring_journal", args(&[])));
        assert!(!selected("uring_journal", args(&["--bench", "ring/"])));
        assert!(!selected("bypass_veth", args(&["--bench", "mpc/bip340"])));
        assert!(selected("uring_journal", args(&["--bench", "uring"])));
        assert!(selected("bypass_veth", args(&["--bench", r"bypass\_veth"])));
        assert!(selected(
            "bypass_veth",
            args(&["--bench", "bypass_veth/live"])
        ));
    }
}
