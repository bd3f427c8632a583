//! The interface's link state, asked of the kernel with SIOCGIFFLAGS on a socket: that works in
//! any network namespace (sysfs shows the namespace that mounted it, not ours).
use std::{io, os::fd::AsRawFd};

use socket2::{Domain, Socket, Type};

pub struct LinkWatch {
    socket: Socket,
    name: [libc::c_char; libc::IFNAMSIZ],
}

impl LinkWatch {
    pub fn new(iface: &str) -> io::Result<Self> {
        if iface.is_empty() || iface.len() >= libc::IFNAMSIZ {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad interface name {iface:?}")));
        }
        let mut name = [0 as libc::c_char; libc::IFNAMSIZ];
        for (dst, src) in name.iter_mut().zip(iface.bytes()) {
            *dst = src as libc::c_char;
        }
        let watch = Self { socket: Socket::new(Domain::IPV4, Type::DGRAM, None)?, name };
        watch.is_up()?;
        Ok(watch)
    }

    /// Administratively up and with carrier (IFF_UP and IFF_RUNNING).
    pub fn is_up(&self) -> io::Result<bool> {
        // SAFETY: ifreq is plain data; we set the name and read the flags the kernel wrote.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        req.ifr_name = self.name;
        let rc = unsafe { libc::ioctl(self.socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let flags = unsafe { req.ifr_ifru.ifru_flags } as libc::c_int;
        Ok(flags & libc::IFF_UP != 0 && flags & libc::IFF_RUNNING != 0)
    }
}
