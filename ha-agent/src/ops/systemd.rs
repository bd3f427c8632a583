//! Running under systemd: whether stderr is the journal (`JOURNAL_STREAM`), and the service
//! manager's notifications (`NOTIFY_SOCKET`): `READY=1` once the agent has listened for its
//! first tolerance (its first decision is then an informed one), `WATCHDOG=1` at half the
//! `WatchdogSec=` period, `STOPPING=1` when the clean stop begins. A few datagrams on a unix
//! socket (sd_notify's protocol), so no libsystemd.
use std::{
    io::{self, IsTerminal as _},
    os::{
        fd::AsFd as _,
        unix::{fs::MetadataExt as _, net::UnixDatagram},
    },
    time::Duration,
};

/// Whether stderr is the stream systemd connected to the journal: `JOURNAL_STREAM` names its
/// device and inode, and a redirected stderr (a child's pipe, a file) no longer matches.
pub fn stderr_is_journal() -> bool {
    let Some(var) = std::env::var_os("JOURNAL_STREAM") else { return false };
    let stderr = io::stderr();
    if stderr.is_terminal() {
        return false;
    }
    let Ok(fd) = stderr.as_fd().try_clone_to_owned() else { return false };
    let Ok(meta) = std::fs::File::from(fd).metadata() else { return false };
    names_stream(&var.to_string_lossy(), meta.dev(), meta.ino())
}

/// `JOURNAL_STREAM` is `<device>:<inode>`, both decimal.
fn names_stream(var: &str, dev: u64, ino: u64) -> bool {
    var.split_once(':').is_some_and(|(d, i)| d.parse() == Ok(dev) && i.parse() == Ok(ino))
}

/// Notifications to the service manager; inert without `NOTIFY_SOCKET`.
#[derive(Debug)]
pub struct Notifier {
    socket: Option<(UnixDatagram, std::os::unix::net::SocketAddr)>,
    /// When to say READY=1 (monotonic ns); None once said.
    ready_at: Option<u64>,
    /// Half the watchdog period, and when the next WATCHDOG=1 is due (monotonic ns).
    watchdog: Option<(u64, u64)>,
}

impl Notifier {
    /// From the environment systemd gives a `Type=notify` service; ready `listen` after `now_ns`.
    pub fn from_env(now_ns: u64, listen: Duration) -> Self {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|path| match connect(&path.to_string_lossy()) {
            Ok(socket) => Some(socket),
            Err(e) => {
                log::warn!("NOTIFY_SOCKET {}: {e}; systemd will not hear that the agent is ready", path.display());
                None
            }
        });
        let for_us = std::env::var("WATCHDOG_PID").map_or(true, |pid| pid.parse() == Ok(std::process::id()));
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|us| us.parse::<u64>().ok())
            .filter(|us| *us > 0 && for_us && socket.is_some())
            .map(|us| (us * 1_000 / 2, now_ns));
        let listen_ns = u64::try_from(listen.as_nanos()).unwrap_or(u64::MAX);
        Self { socket, ready_at: Some(now_ns.saturating_add(listen_ns)), watchdog }
    }

    /// Sends what is due at `now_ns`.
    pub fn poll(&mut self, now_ns: u64) {
        if self.socket.is_none() {
            return;
        }
        if self.ready_at.is_some_and(|at| now_ns >= at) {
            self.ready_at = None;
            self.send("READY=1");
        }
        if let Some((half, due)) = self.watchdog
            && now_ns >= due
        {
            self.watchdog = Some((half, now_ns.saturating_add(half)));
            self.send("WATCHDOG=1");
        }
    }

    /// When `poll` next has something to send (monotonic ns), if ever.
    pub fn next_due(&self) -> Option<u64> {
        self.socket.as_ref()?;
        [self.ready_at, self.watchdog.map(|(_, due)| due)].into_iter().flatten().min()
    }

    pub fn stopping(&mut self) {
        self.send("STOPPING=1");
    }

    fn send(&mut self, message: &str) {
        if let Some((socket, addr)) = &self.socket
            && let Err(e) = socket.send_to_addr(message.as_bytes(), addr)
        {
            log::warn!("telling systemd {message}: {e}");
        }
    }
}

/// A datagram socket to the manager's: a path, or `@name` for the abstract namespace.
fn connect(path: &str) -> io::Result<(UnixDatagram, std::os::unix::net::SocketAddr)> {
    use std::os::linux::net::SocketAddrExt as _;
    let addr = match path.strip_prefix('@') {
        Some(name) => std::os::unix::net::SocketAddr::from_abstract_name(name)?,
        None => std::os::unix::net::SocketAddr::from_pathname(path)?,
    };
    Ok((UnixDatagram::unbound()?, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_names_device_and_inode() {
        assert!(names_stream("8:12345", 8, 12345));
        assert!(!names_stream("8:12345", 8, 12346));
        assert!(!names_stream("8", 8, 12345));
        assert!(!names_stream("", 0, 0));
    }

    #[test]
    fn ready_after_the_listening_time_and_watchdog_at_half_its_period() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify");
        let manager = UnixDatagram::bind(&path).expect("bind");
        manager.set_nonblocking(true).expect("nonblocking");
        let mut n = Notifier {
            socket: Some(connect(&path.to_string_lossy()).expect("connect")),
            ready_at: Some(1_000),
            watchdog: Some((400, 0)),
        };
        let heard = |n: &mut Notifier, now| {
            n.poll(now);
            let mut got = Vec::new();
            let mut buf = [0u8; 64];
            while let Ok(len) = manager.recv(&mut buf) {
                got.push(String::from_utf8_lossy(&buf[..len]).into_owned());
            }
            got
        };
        assert_eq!(heard(&mut n, 0), ["WATCHDOG=1"]);
        assert_eq!(n.next_due(), Some(400));
        assert!(heard(&mut n, 399).is_empty());
        assert_eq!(heard(&mut n, 400), ["WATCHDOG=1"]);
        assert_eq!(n.next_due(), Some(800));
        assert_eq!(heard(&mut n, 1_000), ["READY=1", "WATCHDOG=1"]);
        assert!(heard(&mut n, 1_100).is_empty(), "READY=1 once");
        assert_eq!(n.next_due(), Some(1_400));
    }

    #[test]
    fn without_a_socket_nothing_is_due() {
        let n = Notifier { socket: None, ready_at: Some(5), watchdog: None };
        assert_eq!(n.next_due(), None);
    }
}
