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

use socket2::{Domain, Socket, Type};

/// linux/rtnetlink.h
const RTMGRP_LINK: u32 = 1;
const RTM_NEWLINK: u16 = 16;
/// sizeof(struct nlmsghdr), sizeof(struct ifinfomsg)
const NLMSG_HDR_LEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;

pub struct LinkWatch {
    up: Arc<AtomicBool>,
    stop: OwnedFd,
    thread: Option<JoinHandle<()>>,
}

impl LinkWatch {
    /// Reads the state once (failing if the interface cannot be asked), then follows it.
    pub fn new(iface: &str) -> io::Result<Self> {
        let query = FlagsQuery::new(iface)?;
        // Subscribe before the first query, so no change falls between the two.
        let events = subscribe()?;
        let ifindex = ifindex_of(iface)?;
        let up = Arc::new(AtomicBool::new(query.is_up()?));
        let stop = eventfd()?;
        let (shared, stop_fd) = (Arc::clone(&up), stop.as_raw_fd());
        let iface = iface.to_string();
        let thread = thread::Builder::new()
            .name("link-watch".into())
            .spawn(move || follow(&events, stop_fd, ifindex, &query, &shared, &iface))?;
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

/// The thread: blocks until a notification or the stop request, never on a timer.
fn follow(events: &Socket, stop: i32, ifindex: i32, query: &FlagsQuery, up: &AtomicBool, iface: &str) {
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
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::recv(events.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN | libc::EINTR) => {}
                // Notifications were lost: ask the kernel instead.
                Some(libc::ENOBUFS) => match query.is_up() {
                    Ok(now) => up.store(now, Ordering::Release),
                    Err(e) => log::debug!("reading link state of {iface}: {e}"),
                },
                _ => {
                    log::warn!("reading link notifications of {iface}: {e}");
                    return;
                }
            }
            continue;
        }
        if let Some(flags) = last_flags_of(&buf[..n as usize], ifindex) {
            up.store(is_up(flags), Ordering::Release);
        }
    }
}

fn is_up(flags: u32) -> bool {
    let flags = flags as libc::c_int;
    flags & libc::IFF_UP != 0 && flags & libc::IFF_RUNNING != 0
}

/// The interface flags in the last RTM_NEWLINK for `ifindex` in a datagram, if any. A deleted
/// interface (RTM_DELLINK) changes nothing, as the ioctl's error changed nothing before.
fn last_flags_of(datagram: &[u8], ifindex: i32) -> Option<u32> {
    let (mut rest, mut found) = (datagram, None);
    while rest.len() >= NLMSG_HDR_LEN {
        let len = u32::from_ne_bytes(rest[0..4].try_into().ok()?) as usize;
        if len < NLMSG_HDR_LEN || len > rest.len() {
            break;
        }
        let kind = u16::from_ne_bytes(rest[4..6].try_into().ok()?);
        let body = &rest[NLMSG_HDR_LEN..len];
        if kind == RTM_NEWLINK && body.len() >= IFINFOMSG_LEN {
            let index = i32::from_ne_bytes(body[4..8].try_into().ok()?);
            if index == ifindex {
                found = Some(u32::from_ne_bytes(body[8..12].try_into().ok()?));
            }
        }
        // Messages are 4-byte aligned within the datagram.
        rest = rest.get(len.next_multiple_of(4)..).unwrap_or(&[]);
    }
    found
}

/// A netlink socket in the link notification group of the calling thread's namespace.
fn subscribe() -> io::Result<Socket> {
    let socket = Socket::new(Domain::from(libc::AF_NETLINK), Type::RAW, Some(libc::NETLINK_ROUTE.into()))?;
    // SAFETY: sockaddr_nl is plain data; all zero but the family and groups.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_groups = RTMGRP_LINK;
    // SAFETY: a valid sockaddr_nl and its length.
    let rc = unsafe {
        libc::bind(socket.as_raw_fd(), (&raw const addr).cast(), size_of::<libc::sockaddr_nl>() as libc::socklen_t)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: no pointers; a new fd or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ifindex_of(iface: &str) -> io::Result<i32> {
    let name = std::ffi::CString::new(iface).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: a valid NUL-terminated name.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(io::Error::last_os_error()),
        index => Ok(index as i32),
    }
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

    /// One netlink message: header, ifinfomsg, then `extra` attribute bytes.
    fn link_msg(kind: u16, index: i32, flags: u32, extra: usize) -> Vec<u8> {
        let len = NLMSG_HDR_LEN + IFINFOMSG_LEN + extra;
        let mut m = Vec::new();
        m.extend((len as u32).to_ne_bytes());
        m.extend(kind.to_ne_bytes());
        m.extend([0u8; 10]);
        m.extend([0u8, 0, 1, 0]); // family, pad, type
        m.extend(index.to_ne_bytes());
        m.extend(flags.to_ne_bytes());
        m.extend(0xffff_ffffu32.to_ne_bytes());
        m.extend(vec![0u8; extra]);
        m.resize(len.next_multiple_of(4), 0);
        m
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
        assert_eq!(last_flags_of(&link_msg(17, 3, 0, 0), 3), None, "RTM_DELLINK");
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
