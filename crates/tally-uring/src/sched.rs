//! Scheduling-class switch for the journal's keep-awake threads.

/// Moves the calling thread to `SCHED_IDLE`: it then runs only when no other thread of
/// any normal or real-time class wants its CPU, and any such thread that wakes preempts it.
pub(crate) fn make_current_thread_idle() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `sched_setscheduler` reads the `sched_param` behind a valid pointer to a
    // live local and changes only the calling thread's policy (pid 0).
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &raw const param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
