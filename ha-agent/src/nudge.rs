//! Wakes the run loop at once, from a signal handler or another thread. In event mode the loop
//! sleeps until its next deadline or a kernel event, and a holder whose kernel answers for it
//! has its next deadline up to half a heartbeat horizon away: a SIGTERM, a SIGHUP or an
//! operator's command must not wait for it.
use std::{
    io::{self, Read, Write},
    os::{
        fd::{AsFd, BorrowedFd},
        unix::net::UnixStream,
    },
    sync::Arc,
};

pub struct Nudge {
    read: UnixStream,
    write: UnixStream,
}

/// A handle that wakes the loop; clones share one socket.
#[derive(Clone)]
pub struct Waker(Arc<UnixStream>);

impl Nudge {
    pub fn new() -> io::Result<Self> {
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        Ok(Self { read, write })
    }

    /// `signal` wakes the loop too (besides what its handler does; signal-hook runs both).
    pub fn on_signal(&self, signal: i32) -> io::Result<()> {
        signal_hook::low_level::pipe::register(signal, self.write.try_clone()?).map(drop)
    }

    pub fn waker(&self) -> io::Result<Waker> {
        Ok(Waker(Arc::new(self.write.try_clone()?)))
    }

    /// What the loop polls besides its own.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    /// Empties the socket: the loop is awake and looks at everything anyway.
    pub fn drain(&self) {
        let mut buf = [0u8; 64];
        while matches!((&self.read).read(&mut buf), Ok(n) if n > 0) {}
    }
}

impl Waker {
    pub fn wake(&self) {
        // A full socket already holds a wake: nothing is lost by dropping this one.
        let _ = (&*self.0).write(&[1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wake_makes_the_fd_readable_until_drained() {
        let nudge = Nudge::new().expect("socket pair");
        let readable = |n: &Nudge| {
            let mut pfd =
                libc::pollfd { fd: std::os::fd::AsRawFd::as_raw_fd(&n.fd()), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, 0) == 1 }
        };
        assert!(!readable(&nudge));
        let waker = nudge.waker().expect("waker");
        for _ in 0..3 {
            waker.wake();
        }
        assert!(readable(&nudge));
        nudge.drain();
        assert!(!readable(&nudge), "drained");
    }
}
