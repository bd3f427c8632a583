//! The interface's own IPv4 addresses, from getifaddrs. Shared addresses we added carry the
//! label `<iface>:ha`, so they are told apart from the node's own. And its driver, from ethtool.
use std::{ffi::CStr, io, net::Ipv4Addr, os::fd::AsRawFd};

/// The index of `iface` in the calling thread's network namespace (NotFound: no such interface).
pub fn index(iface: &str) -> io::Result<u32> {
    let missing = || io::Error::new(io::ErrorKind::NotFound, format!("no interface named {iface}"));
    let name = std::ffi::CString::new(iface).map_err(|_| missing())?;
    // SAFETY: `name` is a valid NUL-terminated string for the whole call.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => {
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::ENODEV | libc::ENXIO | libc::EINVAL) | None => Err(missing()),
                _ => Err(err),
            }
        }
        index => Ok(index),
    }
}

/// IPv4 addresses of `iface` that are not labelled as shared, in kernel order (primary first).
pub fn own_ipv4_addrs(iface: &str) -> io::Result<Vec<Ipv4Addr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: out pointer; freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut addrs = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: a node of the list getifaddrs returned, valid until freeifaddrs.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || unsafe { (*ifa.ifa_addr).sa_family } as i32 != libc::AF_INET {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string for every entry.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) }.to_string_lossy();
        if name != iface {
            continue; // another interface, or a labelled (shared) address
        }
        // SAFETY: family is AF_INET, so this is a sockaddr_in.
        let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
        addrs.push(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
    }
    // SAFETY: head came from getifaddrs.
    unsafe { libc::freeifaddrs(head) };
    Ok(addrs)
}

/// The interface's driver name as ethtool reports it (`veth`, `macvlan`, `802.1Q VLAN Support`),
/// asked with SIOCETHTOOL on a socket, so it answers for the calling thread's namespace.
pub fn driver(iface: &str) -> io::Result<String> {
    const ETHTOOL_GDRVINFO: u32 = 0x3;
    if iface.is_empty() || iface.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad interface name {iface:?}")));
    }
    // struct ethtool_drvinfo: cmd (u32), then driver[32]; 196 bytes in all, room to spare.
    let mut info = [0u32; 64];
    info[0] = ETHTOOL_GDRVINFO;
    // SAFETY: ifreq is plain data; all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(iface.bytes()) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_data = info.as_mut_ptr().cast();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    // SAFETY: req names the interface and points at a buffer larger than ethtool_drvinfo.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCETHTOOL, &mut req) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let bytes: Vec<u8> = info[1..9].iter().flat_map(|w| w.to_ne_bytes()).collect();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    Ok(String::from_utf8_lossy(&bytes[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn unknown_or_bad_interface_names_are_errors() {
        assert!(super::driver("no-such-if0").is_err());
        assert!(super::driver(&"x".repeat(40)).is_err());
    }
}
