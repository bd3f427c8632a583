//! The interface's own IPv4 addresses, from getifaddrs. Shared addresses we added carry the
//! label `<iface>:ha`, so they are told apart from the node's own.
use std::{ffi::CStr, io, net::Ipv4Addr};

/// The label of shared addresses on `iface`, when it fits IFNAMSIZ.
pub fn shared_label(iface: &str) -> Option<String> {
    let label = format!("{iface}:ha");
    (label.len() < libc::IFNAMSIZ).then_some(label)
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
