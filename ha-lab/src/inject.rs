//! Arbitrary Ethernet frames out of a lab host's `eth0`: what an attacker (or a fuzzer) on the
//! LAN can send, spoofed addresses and broken headers included.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use anyhow::{Context, Result};

use crate::Host;

/// An `AF_PACKET` socket bound to a host's LAN interface; receives nothing.
pub struct FrameSender {
    fd: OwnedFd,
}

impl FrameSender {
    pub fn open(host: &Host) -> Result<Self> {
        let iface = host.iface().to_string();
        // Protocol 0: the socket is for sending only, no frame is ever queued to it.
        let fd = host
            .run_in(move || open_packet_socket(&iface, 0))?
            .with_context(|| format!("opening a packet socket on {} in {}", host.iface(), host.name()))?;
        Ok(FrameSender { fd })
    }

    /// Sends one frame as it is (blocks while the interface's queue is full).
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        send_frame(&self.fd, frame)
    }
}

/// Sends one frame out of the interface a socket of [`open_packet_socket`] is bound to.
pub(crate) fn send_frame(fd: &OwnedFd, frame: &[u8]) -> io::Result<()> {
    // SAFETY: valid fd and buffer; the socket is bound, so no address is needed.
    let n = unsafe { libc::send(fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// An `AF_PACKET` socket bound to `iface` (in the calling thread's namespace) that receives the
/// frames of EtherType `protocol` (0: none).
pub(crate) fn open_packet_socket(iface: &str, protocol: u16) -> Result<OwnedFd> {
    let name = std::ffi::CString::new(iface).context("interface name")?;
    // SAFETY: valid C string.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(io::Error::last_os_error()).context("if_nametoindex");
    }
    let protocol = i32::from(protocol.to_be());
    // SAFETY: plain syscall.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, protocol) };
    if raw < 0 {
        return Err(io::Error::last_os_error()).context("socket(AF_PACKET)");
    }
    // SAFETY: a fresh fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: sockaddr_ll is plain data; zero is a valid start.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = ifindex as i32;
    addr.sll_protocol = protocol as u16;
    // SAFETY: valid fd and a sockaddr_ll of the given size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error()).context("bind(AF_PACKET)");
    }
    Ok(fd)
}
