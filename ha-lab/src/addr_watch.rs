//! When an address appears on a host, to the microsecond: a netlink socket in the host's
//! namespace, subscribed to IPv4 address changes, read by a real-time thread. Polling with `ip`
//! costs a process start per look, which under load is several milliseconds of error.
use std::{
    net::Ipv4Addr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{host::Host, probe::measuring_thread};

const RTM_NEWADDR: u16 = 20;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const NLMSG_HDR: usize = 16;
const IFADDRMSG: usize = 8;

/// Watches one host for `addr` being added; stops when dropped.
pub struct AddrWatch {
    added: mpsc::Receiver<Instant>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AddrWatch {
    /// Starts watching `host` for `addr`; only additions after this call are reported.
    pub fn start(host: &Host, addr: Ipv4Addr) -> Result<AddrWatch> {
        let sock = host.run_in(open_address_socket)??;
        let (tx, added) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            thread::Builder::new()
                .name("ha-lab-addr-watch".into())
                .spawn(move || {
                    measuring_thread();
                    watch(&sock, addr, &tx, &stop);
                })
                .context("starting the address watcher")?
        };
        Ok(AddrWatch { added, stop, thread: Some(thread) })
    }

    /// When `addr` was added (the moment the watcher read the kernel's notice), waiting up to
    /// `timeout`.
    pub fn added_within(&self, timeout: Duration) -> Option<Instant> {
        self.added.recv_timeout(timeout).ok()
    }
}

impl Drop for AddrWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn open_address_socket() -> Result<OwnedFd> {
    // SAFETY: plain socket call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
    if fd < 0 {
        bail!("netlink socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor we own.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: zeroed sockaddr_nl is valid; fields set below.
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as u16;
    sa.nl_groups = RTMGRP_IPV4_IFADDR;
    // SAFETY: valid pointer and length of a sockaddr_nl.
    let rc = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&sa as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        bail!("binding the netlink socket: {}", std::io::Error::last_os_error());
    }
    // A receive timeout, so that the thread notices `stop`.
    let tv = libc::timeval { tv_sec: 0, tv_usec: 50_000 };
    // SAFETY: valid pointer and length of a timeval.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        bail!("netlink receive timeout: {}", std::io::Error::last_os_error());
    }
    Ok(sock)
}

fn watch(sock: &OwnedFd, addr: Ipv4Addr, added: &mpsc::Sender<Instant>, stop: &AtomicBool) {
    let mut buf = vec![0u8; 16 * 1024];
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: `buf` is valid for its length.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        let now = Instant::now();
        let Ok(n) = usize::try_from(n) else { continue };
        if adds(&buf[..n], addr) && added.send(now).is_err() {
            return;
        }
    }
}

/// Whether a batch of netlink messages adds `addr`.
fn adds(mut buf: &[u8], addr: Ipv4Addr) -> bool {
    while buf.len() >= NLMSG_HDR {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        if len < NLMSG_HDR || len > buf.len() {
            return false;
        }
        if kind == RTM_NEWADDR && names(&buf[NLMSG_HDR..len], addr) {
            return true;
        }
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
    }
    false
}

/// Whether an address message (`ifaddrmsg` and its attributes) is about `addr`.
fn names(msg: &[u8], addr: Ipv4Addr) -> bool {
    let mut attrs = msg.get(IFADDRMSG..).unwrap_or(&[]);
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if len < 4 || len > attrs.len() {
            return false;
        }
        if (kind == IFA_LOCAL || kind == IFA_ADDRESS) && attrs[4..len] == addr.octets() {
            return true;
        }
        attrs = &attrs[len.next_multiple_of(4).min(attrs.len())..];
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u16, addr: [u8; 4]) -> Vec<u8> {
        let mut m = vec![0u8; NLMSG_HDR + IFADDRMSG];
        m[4..6].copy_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&8u16.to_ne_bytes());
        m.extend_from_slice(&IFA_LOCAL.to_ne_bytes());
        m.extend_from_slice(&addr);
        let len = m.len() as u32;
        m[0..4].copy_from_slice(&len.to_ne_bytes());
        m
    }

    #[test]
    fn finds_the_address_in_an_added_message_only() {
        let vip = Ipv4Addr::new(10, 0, 0, 100);
        assert!(adds(&message(RTM_NEWADDR, vip.octets()), vip));
        assert!(!adds(&message(RTM_NEWADDR, [10, 0, 0, 1]), vip), "another address");
        assert!(!adds(&message(RTM_NEWADDR + 1, vip.octets()), vip), "a removal");
        let mut two = message(RTM_NEWADDR, [10, 0, 0, 1]);
        two.extend(message(RTM_NEWADDR, vip.octets()));
        assert!(adds(&two, vip), "the second message of a batch");
        assert!(!adds(&two[..10], vip), "truncated");
    }
}
