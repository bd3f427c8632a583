//! The one clock of the agent: `CLOCK_MONOTONIC`, the same clock as `bpf_ktime_get_ns()`, so
//! kernel-side reception times compare directly with user-side "now".

/// Nanoseconds of `CLOCK_MONOTONIC`.
pub fn monotonic_ns() -> u64 {
    read(libc::CLOCK_MONOTONIC)
}

/// Microseconds of `CLOCK_REALTIME`: the heartbeat epoch, larger after every restart.
pub fn realtime_us() -> u64 {
    realtime_ns() / 1_000
}

/// Nanoseconds of `CLOCK_REALTIME`: the clock of socket receive timestamps.
pub fn realtime_ns() -> u64 {
    read(libc::CLOCK_REALTIME)
}

fn read(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec; these clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sleeps until an absolute `CLOCK_MONOTONIC` deadline: no drift from loop overhead.
pub fn sleep_until_ns(deadline_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (deadline_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (deadline_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: valid timespec; EINTR just ends the sleep early, which the caller's loop absorbs.
    unsafe { libc::clock_nanosleep(libc::CLOCK_MONOTONIC, libc::TIMER_ABSTIME, &ts, std::ptr::null_mut()) };
}
