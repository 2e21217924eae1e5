//! `bench-compare` on git refs: each ref is checked out in a temporary git worktree,
//! built once, and benched in interleaved rounds that alternate which side goes first
//! (base, head, head, base, ...) so that slow drift of a shared machine lands on both
//! sides alike. The rounds are combined per
//! bench by taking the median of each of median, low and high.
//!
//! Both worktrees build into one target directory (`<target>/bench-compare/target`), so
//! dependencies build once and stay cached between invocations. Cargo names the
//! workspace's own artefacts by their path relative to the workspace root, so each
//! side's executables are copied away right after its build.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bench::{self, BenchOptions};
use crate::error::{Error, Result};
use crate::results::{BenchResult, Results, WallClock};
use crate::util::{self, Progress};

/// A side of the comparison: a results file, or a git commit to build and bench.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Side {
    /// A `tally-bench/1` file.
    File(PathBuf),
    /// A git ref as the user wrote it and the commit it resolves to.
    Ref {
        /// The ref as given.
        name: String,
        /// The full commit id.
        commit: String,
    },
}

/// Decides whether `arg` is a file (an existing path) or a git ref of the repository at
/// `root`.
///
/// # Errors
/// `BadInput` when it is neither.
pub fn resolve(root: &Path, arg: &str) -> Result<Side> {
    let path = Path::new(arg);
    if path.is_file() {
        return Ok(Side::File(path.to_path_buf()));
    }
    let out = Command::new("git")
        .current_dir(root)
        .args(["rev-parse", "--verify", "--quiet", "--end-of-options"])
        .arg(format!("{arg}^{{commit}}"))
        .output();
    match out {
        Ok(o) if o.status.success() => Ok(Side::Ref {
            name: arg.to_owned(),
            commit: String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        }),
        _ => Err(Error::bad_input(format!(
            "{arg:?} is neither a results file nor a git ref of {} (give a file written by `cargo xtask bench --save`, or a branch, tag or commit)",
            root.display()
        ))),
    }
}

/// Takes the exclusive lock of the work directory `work` (`<work>/.lock`), waiting, with a
/// message, while another `bench-compare` holds it. The lock goes with the returned file.
///
/// # Errors
/// `Failed` when the directory or lock file cannot be created or locked.
pub fn lock_work_dir(work: &Path) -> Result<std::fs::File> {
    if let Some(f) = try_lock_work_dir(work)? {
        return Ok(f);
    }
    eprintln!(
        "bench-compare: another bench-compare is using {}; waiting for it to finish (or set CARGO_TARGET_DIR to run in another target directory)",
        work.display()
    );
    let f = open_lock(work)?;
    f.lock().map_err(|e| lock_err(work, &e))?;
    Ok(f)
}

/// As [`lock_work_dir`], but returns `None` at once when another process holds the lock.
///
/// # Errors
/// `Failed` when the directory or lock file cannot be created or locked.
pub fn try_lock_work_dir(work: &Path) -> Result<Option<std::fs::File>> {
    let f = open_lock(work)?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(lock_err(work, &e)),
    }
}

fn open_lock(work: &Path) -> Result<std::fs::File> {
    std::fs::create_dir_all(work)
        .map_err(|e| Error::failed(format!("cannot create {}: {e}", work.display())))?;
    let path = work.join(".lock");
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::failed(format!("cannot open {}: {e}", path.display())))
}

fn lock_err(work: &Path, e: &std::io::Error) -> Error {
    Error::failed(format!(
        "cannot lock {}: {e}; remove the file if no bench-compare is running",
        work.join(".lock").display()
    ))
}

/// A git worktree that is removed again when dropped, or, when `xtask` is killed (Ctrl-C
/// during a long bench run, a closed terminal, SIGKILL), by its janitor: a small `sh`
/// process in a process group of its own (so the terminal's Ctrl-C does not reach it)
/// that waits for the end of a pipe only this process holds, and removes the worktree
/// when it closes. Drop handlers do not run when a signal kills the process, so without
/// the janitor a Ctrl-C left the checkout and its `git worktree` registration behind.
struct Worktree {
    repo: PathBuf,
    path: PathBuf,
    janitor: Option<std::process::Child>,
}

/// The janitor's script: `$1` the repository, `$2` the worktree. It ignores the signals
/// that stop `xtask`, keeps the work directory's lock (given as its stdout) on fd 3 until
/// the clean-up is done, so that a `bench-compare` waiting for the lock does not start
/// while the worktree is being removed, and waits for end of file on stdin.
const JANITOR: &str = r#"trap '' INT TERM HUP QUIT
exec 3>&1 >/dev/null 2>&1
cat
git -C "$1" worktree remove --force "$2"
rm -rf "$2"
git -C "$1" worktree prune
"#;

/// Starts the janitor of the worktree `path` of `repo` (see [`Worktree`]), handing it a
/// clone of `lock`; `None` when it cannot start (the worktree is then removed on drop
/// only).
fn spawn_janitor(repo: &Path, path: &Path, lock: &std::fs::File) -> Option<std::process::Child> {
    use std::os::unix::process::CommandExt as _;
    use std::process::Stdio;
    let lock = lock.try_clone().map_or_else(|_| Stdio::null(), Stdio::from);
    Command::new("sh")
        .args(["-c", JANITOR, "xtask-worktree-janitor"])
        .arg(repo)
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(lock)
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .ok()
}

impl Worktree {
    fn add(repo: &Path, path: &Path, commit: &str, lock: &std::fs::File) -> Result<Worktree> {
        remove_worktree(repo, path);
        // The janitor starts first: a Ctrl-C from here on leaves no worktree behind.
        let worktree = Worktree {
            repo: repo.to_path_buf(),
            path: path.to_path_buf(),
            janitor: spawn_janitor(repo, path, lock),
        };
        util::output(
            Command::new("git")
                .current_dir(repo)
                .args(["worktree", "add", "--detach", "--force"])
                .arg(path)
                .arg(commit),
        )
        .map_err(|e| Error::bad_input(format!("cannot check out {commit} in a worktree: {e}")))?;
        Ok(worktree)
    }
}

impl Drop for Worktree {
    fn drop(&mut self) {
        if let Some(mut janitor) = self.janitor.take() {
            // Closing its stdin starts the janitor's clean-up; wait until it is done.
            drop(janitor.stdin.take());
            let _ = janitor.wait();
        }
        remove_worktree(&self.repo, &self.path);
    }
}

fn remove_worktree(repo: &Path, path: &Path) {
    if path.exists() {
        let _ = Command::new("git")
            .current_dir(repo)
            .args(["worktree", "remove", "--force"])
            .arg(path)
            .output();
        let _ = std::fs::remove_dir_all(path);
    }
    let _ = Command::new("git")
        .current_dir(repo)
        .args(["worktree", "prune"])
        .output();
}

/// One ref side prepared for benching, and what was measured on it.
struct Prepared {
    label: &'static str,
    commit: String,
    worktree: Worktree,
    exes: Vec<(String, PathBuf)>,
    icount: Option<PathBuf>,
    wall_rounds: Vec<Vec<BenchResult>>,
    counts: BTreeMap<String, u64>,
}

/// Checks out `commit` in `<work>/<label>` and builds what `opts` needs there.
fn prepare(
    root: &Path,
    work: &Path,
    lock: &std::fs::File,
    label: &'static str,
    name: &str,
    commit: &str,
    opts: &BenchOptions,
) -> Result<Prepared> {
    eprintln!("== {label}: {name} ({commit}): checking out and building");
    let target = work.join("target");
    let worktree = Worktree::add(root, &work.join(label), commit, lock)?;
    let build_err = |e: Error| {
        Error::bad_input(format!(
            "{label} ref {name} ({commit}) does not build its benches: {e}"
        ))
    };
    // Cargo hashes workspace members by their path relative to the workspace root, so
    // both checkouts build their executables to the *same* file names in the shared
    // target directory: copy each side's executables away before the other side builds.
    let keep = |built: &Path, name: &str| -> Result<PathBuf> {
        let dir = work.join(format!("exe-{label}"));
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::failed(format!("cannot create {}: {e}", dir.display())))?;
        let copy = dir.join(name);
        std::fs::copy(built, &copy).map_err(|e| {
            Error::failed(format!(
                "cannot copy {} to {}: {e}",
                built.display(),
                copy.display()
            ))
        })?;
        Ok(copy)
    };
    let mut exes = Vec::new();
    if opts.wall {
        for (name, built) in
            bench::build_bench_exes(&worktree.path, Some(&target)).map_err(build_err)?
        {
            let copy = keep(&built, &format!("bench-{name}"))?;
            exes.push((name, copy));
        }
    }
    let icount = if opts.instructions {
        let built = bench::build_icount(&worktree.path, Some(&target)).map_err(build_err)?;
        Some(keep(&built, "icount")?)
    } else {
        None
    };
    Ok(Prepared {
        label,
        commit: commit.to_owned(),
        worktree,
        exes,
        icount,
        wall_rounds: Vec::new(),
        counts: BTreeMap::new(),
    })
}

/// Runs the criterion benches of all prepared sides, interleaved: round 1 of every side,
/// then round 2 of every side in the reverse order, and so on ([`side_order`]).
fn run_rounds(
    prepared: &mut [Prepared],
    work: &Path,
    opts: &BenchOptions,
    rounds: usize,
) -> Result<()> {
    let steps: usize = prepared.iter().map(|p| p.exes.len()).sum::<usize>() * rounds;
    if steps == 0 {
        return Ok(());
    }
    let mut progress = Progress::new("bench run", steps);
    for round in 1..=rounds {
        for k in side_order(round, prepared.len()) {
            let Some(p) = prepared.get_mut(k) else {
                continue;
            };
            let home = work.join(format!("criterion-{}-{round}", p.label));
            let found = bench::run_criterion_fresh(
                &p.exes,
                opts.filter.as_deref(),
                &home,
                &p.worktree.path.join("benches"),
                &mut progress,
                &format!("round {round}/{rounds} {}: ", p.label),
            )?;
            p.wall_rounds.push(found);
        }
    }
    Ok(())
}

/// The order in which the sides run in round `round` (1-based): listed order in odd
/// rounds, reversed in even ones (base, head, head, base, ...). With the base always
/// first, a machine that drifts slower over the run would make every head round later
/// than its base round and bias the head; alternating makes each side's mean position
/// the same over every two rounds.
pub fn side_order(round: usize, sides: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..sides).collect();
    if round.is_multiple_of(2) {
        order.reverse();
    }
    order
}

/// Counts instructions of the kernels on every prepared side that built `icount`.
fn count_all(prepared: &mut [Prepared], opts: &BenchOptions) -> Result<()> {
    let mut lists = Vec::new();
    for p in prepared.iter() {
        if let Some(icount) = &p.icount {
            lists.push(bench::select_kernels(&bench::list_kernels(icount)?, opts)?);
        } else {
            lists.push(Vec::new());
        }
    }
    let mut progress = Progress::new("kernel", lists.iter().map(Vec::len).sum());
    for (p, kernels) in prepared.iter_mut().zip(&lists) {
        if let Some(icount) = &p.icount {
            let label = format!("{}: ", p.label);
            p.counts = bench::count_kernels(icount, kernels, &mut progress, &label)?;
        }
    }
    Ok(())
}

/// Median of a non-empty list (mean of the middle two for an even count).
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    match (xs.get(n.saturating_sub(1) / 2), xs.get(n / 2)) {
        (Some(a), Some(b)) => (a + b) / 2.0,
        _ => f64::NAN,
    }
}

/// Combines per-round wall-clock results: per bench, the median of the rounds' medians,
/// lows and highs. Benches missing from some rounds use the rounds they appear in; a
/// round whose unit differs from the bench's first round (a bench that changed its unit
/// between rounds cannot, but a mix is no median) is left out.
pub fn combine_rounds(rounds: &[Vec<BenchResult>]) -> Vec<BenchResult> {
    let mut by_id: BTreeMap<&str, Vec<&WallClock>> = BTreeMap::new();
    for round in rounds {
        for r in round {
            if let Some(w) = &r.wall {
                by_id.entry(&r.id).or_default().push(w);
            }
        }
    }
    by_id
        .into_iter()
        .filter_map(|(id, ws)| {
            let unit = ws.first()?.unit.clone();
            let ws: Vec<&WallClock> = ws.into_iter().filter(|w| w.unit == unit).collect();
            let median_of = |f: fn(&WallClock) -> f64| median(ws.iter().map(|w| f(w)).collect());
            let mid = median_of(|w| w.median);
            Some(BenchResult {
                id: id.to_owned(),
                wall: Some(WallClock {
                    median: mid,
                    low: median_of(|w| w.low).min(mid),
                    high: median_of(|w| w.high).max(mid),
                    unit,
                }),
                instructions: None,
            })
        })
        .collect()
}

/// Produces results for each side: files are loaded, refs are checked out, built and
/// benched with `rounds` interleaved rounds.
///
/// # Errors
/// `BadInput` for unreadable files or refs that cannot be checked out or built;
/// `Failed` when a bench run fails.
pub fn results_for(
    root: &Path,
    sides: [&Side; 2],
    opts: &BenchOptions,
    rounds: usize,
) -> Result<[Results; 2]> {
    let [base, head] = sides;
    if let (Side::File(a), Side::File(b)) = (base, head) {
        return Ok([Results::load(a)?, Results::load(b)?]);
    }
    // Check the file side before a long build of the ref side.
    for side in sides {
        if let Side::File(path) = side {
            Results::load(path)?;
        }
    }
    let work = util::target_dir(root)?.join("bench-compare");
    // Held until the results are in: a second bench-compare on the same target directory
    // would otherwise remove and re-create these worktrees under the first one.
    let lock = lock_work_dir(&work)?;
    let mut prepared = Vec::new();
    for (side, label) in [(base, "base"), (head, "head")] {
        if let Side::Ref { name, commit } = side {
            prepared.push(prepare(root, &work, &lock, label, name, commit, opts)?);
        }
    }
    run_rounds(&mut prepared, &work, opts, rounds)?;
    count_all(&mut prepared, opts)?;
    let finish = |side: &Side, label: &str| -> Result<Results> {
        if let Side::File(path) = side {
            return Results::load(path);
        }
        let p = prepared
            .iter()
            .find(|p| p.label == label)
            .ok_or_else(|| Error::failed(format!("internal: no {label} side prepared")))?;
        Ok(Results {
            commit: p.commit.clone(),
            machine: util::machine(),
            created_unix_s: Some(util::now_unix_s()),
            results: bench::merge(combine_rounds(&p.wall_rounds), &p.counts),
        })
    };
    Ok([finish(base, "base")?, finish(head, "head")?])
}
#[cfg(test)]
mod tests {
    use super::*;

    fn w(id: &str, m: f64, lo: f64, hi: f64) -> BenchResult {
        BenchResult {
            id: id.into(),
            wall: Some(WallClock::ns(m, lo, hi)),
            instructions: None,
        }
    }

    #[test]
    fn one_bench_compare_per_work_dir() {
        let scratch = crate::util::ScratchDir::new("lock").unwrap();
        let work = scratch.path().join("bench-compare");
        let held = lock_work_dir(&work).unwrap();
        // A second run on the same directory sees the lock instead of removing the
        // first run's worktrees.
        assert!(try_lock_work_dir(&work).unwrap().is_none());
        drop(held);
        assert!(try_lock_work_dir(&work).unwrap().is_some());
    }

    #[test]
    fn rounds_alternate_which_side_goes_first() {
        let order: Vec<Vec<usize>> = (1..=4).map(|r| side_order(r, 2)).collect();
        assert_eq!(order, [[0, 1], [1, 0], [0, 1], [1, 0]]);
        // Over every two rounds, both sides have the same mean position, so a linear
        // drift of the machine lands on both alike.
        let mut pos = [0usize; 2];
        for (round, o) in order.iter().enumerate() {
            for (slot, side) in o.iter().enumerate() {
                pos[*side] += round * 2 + slot;
            }
        }
        assert_eq!(pos[0], pos[1]);
        assert_eq!(side_order(1, 1), [0]);
        assert_eq!(side_order(2, 1), [0]);
    }

    #[test]
    fn combines_rounds_by_median() {
        let rounds = vec![
            vec![w("a", 10.0, 9.0, 11.0), w("b", 5.0, 4.0, 6.0)],
            vec![w("a", 20.0, 19.0, 21.0)],
            vec![w("a", 12.0, 11.0, 13.0)],
        ];
        let c = combine_rounds(&rounds);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].wall, Some(WallClock::ns(12.0, 11.0, 13.0)));
        assert_eq!(c[1].wall, Some(WallClock::ns(5.0, 4.0, 6.0)));
        // An even number of rounds, out of order: the mean of the middle two.
        let c = combine_rounds(&[
            vec![w("a", 30.0, 29.0, 31.0)],
            vec![w("a", 10.0, 9.0, 11.0)],
        ]);
        assert_eq!(c[0].wall, Some(WallClock::ns(20.0, 19.0, 21.0)));
    }

    /// Figures of the benches with their own `main` combine like criterion's estimates,
    /// and keep their unit and direction (a rate must still be judged as a rate).
    #[test]
    fn combines_figures_with_their_unit() {
        use crate::results::{Better, Unit};
        let unit = Unit::Figure {
            name: "rec/s".into(),
            better: Better::Higher,
        };
        let f = |m: f64| BenchResult {
            id: "uring_journal/tally1_64B".into(),
            wall: Some(WallClock {
                median: m,
                low: m - 1.0,
                high: m + 1.0,
                unit: unit.clone(),
            }),
            instructions: None,
        };
        let c = combine_rounds(&[vec![f(10.0)], vec![f(30.0)], vec![f(20.0)]]);
        assert_eq!(
            c[0].wall,
            Some(WallClock {
                median: 20.0,
                low: 19.0,
                high: 21.0,
                unit
            })
        );
    }
}
