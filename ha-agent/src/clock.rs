//! The one clock of the agent: `CLOCK_MONOTONIC`, the same clock as `bpf_ktime_get_ns()`, so
//! kernel-side reception times compare directly with user-side "now".

/// Nanoseconds of `CLOCK_MONOTONIC`.
pub fn monotonic_ns() -> u64 {
    read(libc::CLOCK_MONOTONIC)
}

/// A new epoch for this run of the agent: microseconds of `CLOCK_REALTIME` (so it is larger
/// after every restart, and peers accept the counter starting again) shifted left, with 12
/// random bits below (so a clock set back, or a reboot to the same second, does not repeat an
/// earlier run's epoch, which peers' recorded echoes could then confirm).
pub fn new_epoch() -> u64 {
    let mut random = [0u8; 2];
    // SAFETY: writes at most `random.len()` bytes into the buffer.
    let got = unsafe { libc::getrandom(random.as_mut_ptr().cast(), random.len(), 0) };
    let low = if got == 2 { u64::from(u16::from_ne_bytes(random)) & 0xfff } else { realtime_ns() & 0xfff };
    (realtime_us() << 12) | low
}

/// Microseconds of `CLOCK_REALTIME`.
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

/// The most fds [`wait_readable_until_ns`] watches: the kernel's events and the loop's wake-up
/// socket. Held on the stack, as the wait is in the run loop's hot path.
pub const MAX_WAIT_FDS: usize = 2;

/// Sleeps until an absolute `CLOCK_MONOTONIC` deadline or until one of `fds` (at most
/// [`MAX_WAIT_FDS`]) is readable, whichever comes first (`ppoll`: nanosecond timeout, no epoll
/// instance to keep). True when one of `fds` is readable.
pub fn wait_readable_until_ns(fds: &[std::os::fd::BorrowedFd<'_>], deadline_ns: u64) -> bool {
    debug_assert!(fds.len() <= MAX_WAIT_FDS, "{} fds to wait on", fds.len());
    use std::os::fd::AsRawFd as _;
    let left = deadline_ns.saturating_sub(monotonic_ns());
    let ts = libc::timespec {
        tv_sec: (left / 1_000_000_000) as libc::time_t,
        tv_nsec: (left % 1_000_000_000) as libc::c_long,
    };
    let mut pfds = [libc::pollfd { fd: -1, events: libc::POLLIN, revents: 0 }; MAX_WAIT_FDS];
    for (pfd, fd) in pfds.iter_mut().zip(fds) {
        pfd.fd = fd.as_raw_fd();
    }
    let n = fds.len().min(pfds.len()) as libc::nfds_t;
    // SAFETY: `n` valid pollfds and a timespec; EINTR or an early return is absorbed by the loop.
    let ready = unsafe { libc::ppoll(pfds.as_mut_ptr(), n, &ts, std::ptr::null()) };
    ready > 0
}
