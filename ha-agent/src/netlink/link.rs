//! The interface's link state, kept current by a thread that follows the kernel's link
//! notifications (rtnetlink), so the run loop reads a flag instead of asking the kernel on every
//! wake: at rest that ioctl was a fixed cost 100 times a second at a 10 ms interval.
//!
//! The flags in a notification are those SIOCGIFFLAGS reports (both come from the kernel's
//! `dev_get_flags`), and the kernel notifies at the moment they change, so the flag changes when
//! the ioctl's answer would have. When notifications were lost, the ioctl is asked again.
use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
};

use rtnetlink::{
    packet_core::{NetlinkMessage, NetlinkPayload},
    packet_route::{RouteNetlinkMessage, link::LinkFlags},
    sys::{Socket as NetlinkSocket, protocols::NETLINK_ROUTE},
};
use socket2::{Domain, Socket, Type};

use super::address::{Messages, recv_datagram};
use crate::nudge::Waker;

/// linux/rtnetlink.h: the link notification group.
const RTNLGRP_LINK: u32 = 1;

pub struct LinkWatch {
    up: Arc<AtomicBool>,
    stop: OwnedFd,
    thread: Option<JoinHandle<()>>,
}

impl LinkWatch {
    /// Reads the state once (failing if the interface cannot be asked), then follows it,
    /// waking the run loop through `waker` at each change: the loop does not look at the flag
    /// on the wakes that only send a heartbeat.
    pub fn new(iface: &str, waker: Waker) -> io::Result<Self> {
        let query = FlagsQuery::new(iface)?;
        // Subscribe before the first query, so no change falls between the two.
        let events = subscribe()?;
        let ifindex = super::iface::index(iface)?;
        let up = Arc::new(AtomicBool::new(query.is_up()?));
        let stop = eventfd()?;
        let (shared, stop_fd) = (Arc::clone(&up), stop.as_raw_fd());
        let iface = iface.to_string();
        let thread = thread::Builder::new()
            .name("link-watch".into())
            .spawn(move || follow(&events, stop_fd, ifindex, &query, &Flag { up: &shared, waker: &waker }, &iface))?;
        Ok(Self { up, stop, thread: Some(thread) })
    }

    /// Administratively up and with carrier (IFF_UP and IFF_RUNNING), as last notified.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }
}

impl Drop for LinkWatch {
    fn drop(&mut self) {
        let one = 1u64;
        // SAFETY: writes 8 bytes from a valid u64 to our eventfd; wakes the thread's poll.
        unsafe { libc::write(self.stop.as_raw_fd(), (&raw const one).cast(), 8) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The shared flag and whom to wake when it changes.
struct Flag<'a> {
    up: &'a AtomicBool,
    waker: &'a Waker,
}

impl Flag<'_> {
    fn set(&self, up: bool) {
        if self.up.swap(up, Ordering::AcqRel) != up {
            self.waker.wake();
        }
    }
}

/// The thread: blocks until a notification or the stop request, never on a timer.
fn follow(events: &NetlinkSocket, stop: i32, ifindex: u32, query: &FlagsQuery, up: &Flag<'_>, iface: &str) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let mut fds = [
            libc::pollfd { fd: events.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: stop, events: libc::POLLIN, revents: 0 },
        ];
        // SAFETY: two valid pollfds.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                log::warn!("waiting for link notifications of {iface}: {e}");
                return;
            }
            continue;
        }
        if fds[1].revents != 0 {
            return;
        }
        let n = match recv_datagram(events, &mut buf) {
            Ok(n) => n,
            // Nothing there after all (the socket does not block).
            Err(e) if e.kind() == io::ErrorKind::TimedOut => continue,
            // Notifications were lost: ask the kernel instead.
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                match query.is_up() {
                    Ok(now) => up.set(now),
                    Err(e) => log::debug!("reading link state of {iface}: {e}"),
                }
                continue;
            }
            Err(e) => {
                log::warn!("reading link notifications of {iface}: {e}");
                return;
            }
        };
        if let Some(flags) = last_flags_of(&buf[..n], ifindex) {
            up.set(is_up(flags));
        }
    }
}

fn is_up(flags: u32) -> bool {
    LinkFlags::from_bits_retain(flags).contains(LinkFlags::Up | LinkFlags::Running)
}

/// The interface flags in the last RTM_NEWLINK for `ifindex` in a datagram, if any. A deleted
/// interface (RTM_DELLINK) changes nothing, as the ioctl's error changed nothing before.
fn last_flags_of(datagram: &[u8], ifindex: u32) -> Option<u32> {
    Messages::new(datagram)
        .filter_map(Result::ok)
        .filter_map(|msg: NetlinkMessage<RouteNetlinkMessage>| match msg.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) if link.header.index == ifindex => {
                Some(link.header.flags.bits())
            }
            _ => None,
        })
        .last()
}

/// A netlink socket in the link notification group of the calling thread's namespace.
fn subscribe() -> io::Result<NetlinkSocket> {
    let mut socket = NetlinkSocket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.add_membership(RTNLGRP_LINK)?;
    socket.set_non_blocking(true)?;
    Ok(socket)
}

pub(super) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: no pointers; a new fd or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// SIOCGIFFLAGS on a socket: works in any network namespace (sysfs shows the namespace that
/// mounted it, not ours).
struct FlagsQuery {
    socket: Socket,
    name: [libc::c_char; libc::IFNAMSIZ],
}

impl FlagsQuery {
    fn new(iface: &str) -> io::Result<Self> {
        if iface.is_empty() || iface.len() >= libc::IFNAMSIZ {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad interface name {iface:?}")));
        }
        let mut name = [0 as libc::c_char; libc::IFNAMSIZ];
        for (dst, src) in name.iter_mut().zip(iface.bytes()) {
            *dst = src as libc::c_char;
        }
        Ok(Self { socket: Socket::new(Domain::IPV4, Type::DGRAM, None)?, name })
    }

    fn is_up(&self) -> io::Result<bool> {
        // SAFETY: ifreq is plain data; we set the name and read the flags the kernel wrote.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        req.ifr_name = self.name;
        let rc = unsafe { libc::ioctl(self.socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let flags = unsafe { req.ifr_ifru.ifru_flags } as u16;
        Ok(is_up(u32::from(flags)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};

    const RTM_NEWLINK: u16 = 16;
    const RTM_DELLINK: u16 = 17;

    /// One serialized link notification; `extra` bytes of interface name pad its attributes.
    fn link_msg(kind: u16, index: u32, flags: u32, extra: usize) -> Vec<u8> {
        let mut link = LinkMessage::default();
        link.header.index = index;
        link.header.flags = LinkFlags::from_bits_retain(flags);
        if extra > 0 {
            link.attributes.push(LinkAttribute::IfName("e".repeat(extra)));
        }
        let inner = match kind {
            RTM_NEWLINK => RouteNetlinkMessage::NewLink(link),
            _ => RouteNetlinkMessage::DelLink(link),
        };
        let mut msg = NetlinkMessage::from(inner);
        msg.finalize();
        let mut buf = vec![0; msg.buffer_len()];
        msg.serialize(&mut buf);
        buf.resize(buf.len().next_multiple_of(4), 0);
        buf
    }

    const UP: u32 = (libc::IFF_UP | libc::IFF_RUNNING) as u32;

    #[test]
    fn takes_the_last_notification_for_our_interface_only() {
        let mut d = link_msg(RTM_NEWLINK, 3, UP, 5);
        d.extend(link_msg(RTM_NEWLINK, 7, 0, 0));
        assert_eq!(last_flags_of(&d, 3), Some(UP));
        d.extend(link_msg(RTM_NEWLINK, 3, libc::IFF_UP as u32, 0));
        assert_eq!(last_flags_of(&d, 3), Some(libc::IFF_UP as u32));
        assert_eq!(last_flags_of(&d, 9), None);
    }

    #[test]
    fn deleted_or_malformed_changes_nothing() {
        assert_eq!(last_flags_of(&link_msg(RTM_DELLINK, 3, 0, 0), 3), None, "RTM_DELLINK");
        let mut bad = link_msg(RTM_NEWLINK, 3, 0, 0);
        bad[0] = 200; // longer than the datagram
        assert_eq!(last_flags_of(&bad, 3), None);
        assert_eq!(last_flags_of(&bad[..10], 3), None);
    }

    #[test]
    fn up_needs_both_admin_up_and_running() {
        assert!(is_up(UP));
        assert!(!is_up(libc::IFF_UP as u32), "no carrier");
        assert!(!is_up(libc::IFF_RUNNING as u32), "administratively down");
    }
}
