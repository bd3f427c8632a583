//! Announcing the shared address to the LAN: gratuitous ARP (IPv4) and
//! unsolicited neighbour advertisements (IPv6), sent as raw Ethernet frames
//! on an AF_PACKET socket so they go out even before the kernel would.
//!
//! Neighbours only *update* existing cache entries from these (Linux needs
//! `arp_accept` / `accept_untracked_na` to *create* one), which is exactly
//! what a takeover needs: everyone who talked to the old owner switches.

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use ha_common::ether::{ETH_HLEN, ETH_P_ARP, ETH_P_IPV6, IPPROTO_ICMPV6, IPV6_HLEN, ND_NEIGHBOR_ADVERT};

const BROADCAST_MAC: [u8; 6] = [0xff; 6];
/// 33:33 + low 32 bits of ff02::1 (RFC 2464 section 7).
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0x00, 0x00, 0x00, 0x01];
const ALL_NODES_IP: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// Override flag: replace whatever link-layer address neighbours cached.
const NA_FLAG_OVERRIDE: u8 = 0x20;
const ND_OPT_TARGET_LL_ADDR: u8 = 2;
/// NA header (type, code, checksum, flags+reserved, target) + TLLA option.
const NA_LEN: usize = 4 + 4 + 16 + 8;

/// Length of a gratuitous ARP frame (without the padding the NIC adds).
pub const GARP_FRAME_LEN: usize = 42;
/// Length of an unsolicited neighbour advertisement frame.
pub const NA_FRAME_LEN: usize = ETH_HLEN + IPV6_HLEN + NA_LEN;

/// ARP operation code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum ArpOp {
    Request = 1,
    Reply = 2,
}

// ---------------------------------------------------------------------------
// Frame builders
// ---------------------------------------------------------------------------

/// A gratuitous ARP for `ip` at `mac`, broadcast.
///
/// Sender and target protocol address are both `ip`. The target hardware
/// address is zero in a request (RFC 5227) and `mac` in a reply: Linux only
/// treats a reply as gratuitous (bypassing its 1 s locktime) when THA == SHA.
pub fn garp_frame(mac: [u8; 6], ip: Ipv4Addr, op: ArpOp) -> [u8; GARP_FRAME_LEN] {
    let tha = match op {
        ArpOp::Request => [0; 6],
        ArpOp::Reply => mac,
    };
    let mut f = [0u8; GARP_FRAME_LEN];
    f[0..6].copy_from_slice(&BROADCAST_MAC);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // htype: Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // ptype: IPv4
    f[18] = 6; // hlen
    f[19] = 4; // plen
    f[20..22].copy_from_slice(&(op as u16).to_be_bytes());
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    f[32..38].copy_from_slice(&tha);
    f[38..42].copy_from_slice(&ip.octets());
    f
}

/// An unsolicited neighbour advertisement for `ip` at `mac`, to all nodes
/// (RFC 4861 section 7.2.6): Override set, Solicited and Router clear, hop
/// limit 255, Target Link-Layer Address option. The source is `ip` itself,
/// which Linux accepts and which needs no link-local address.
pub fn unsolicited_na_frame(mac: [u8; 6], ip: Ipv6Addr) -> [u8; NA_FRAME_LEN] {
    let mut f = [0u8; NA_FRAME_LEN];
    // Ethernet
    f[0..6].copy_from_slice(&ALL_NODES_MAC);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
    // IPv6 header
    let ip6 = &mut f[ETH_HLEN..ETH_HLEN + IPV6_HLEN];
    ip6[0] = 0x60; // version 6, traffic class 0, flow label 0
    ip6[4..6].copy_from_slice(&(NA_LEN as u16).to_be_bytes());
    ip6[6] = IPPROTO_ICMPV6;
    ip6[7] = 255; // hop limit: receivers drop ND with anything else
    ip6[8..24].copy_from_slice(&ip.octets());
    ip6[24..40].copy_from_slice(&ALL_NODES_IP.octets());
    // ICMPv6 neighbour advertisement
    let na = &mut f[ETH_HLEN + IPV6_HLEN..];
    na[0] = ND_NEIGHBOR_ADVERT;
    na[4] = NA_FLAG_OVERRIDE;
    na[8..24].copy_from_slice(&ip.octets());
    na[24] = ND_OPT_TARGET_LL_ADDR;
    na[25] = 1; // option length in units of 8 bytes
    na[26..32].copy_from_slice(&mac);
    let sum = icmpv6_checksum(ip, ALL_NODES_IP, na);
    na[2..4].copy_from_slice(&sum.to_be_bytes());
    f
}

/// RFC 4443 checksum over the IPv6 pseudo-header and the ICMPv6 message
/// (whose checksum field must be zero, or the result verifies as 0).
fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> u16 {
    let mut sum = 0u32;
    sum += ones_sum(&src.octets());
    sum += ones_sum(&dst.octets());
    sum += ones_sum(&(msg.len() as u32).to_be_bytes());
    sum += u32::from(IPPROTO_ICMPV6);
    sum += ones_sum(msg);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Sum of big-endian 16-bit words (odd tail padded with zero), unfolded.
fn ones_sum(bytes: &[u8]) -> u32 {
    bytes.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]))).sum()
}

// ---------------------------------------------------------------------------
// Announcer
// ---------------------------------------------------------------------------

/// Sends announcements on one interface through an AF_PACKET socket.
pub struct Announcer {
    fd: OwnedFd,
    iface: String,
    ifindex: u32,
    mac: [u8; 6],
}

impl Announcer {
    /// Opens a send-only packet socket on `iface` (in the calling thread's
    /// network namespace) and reads the interface's MAC.
    pub fn new(iface: &str) -> io::Result<Self> {
        let context = |what: &str, e: io::Error| io::Error::new(e.kind(), format!("{what} on interface {iface}: {e}"));
        let ifindex = crate::netlink::iface::index(iface)?;
        let fd = packet_socket().map_err(|e| context("cannot open an AF_PACKET socket (needs CAP_NET_RAW)", e))?;
        bind_to(&fd, ifindex).map_err(|e| context("cannot bind the AF_PACKET socket", e))?;
        let mac = bound_mac(&fd).map_err(|e| context("cannot read the MAC address", e))?;
        Ok(Announcer { fd, iface: iface.to_owned(), ifindex, mac })
    }

    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// One round: for each IPv4 address a gratuitous ARP request and reply,
    /// for each IPv6 address an unsolicited NA. Sends everything it can and
    /// returns the first error.
    pub fn announce(&self, addrs: &[IpAddr]) -> io::Result<()> {
        let mut first_err = None;
        for addr in addrs {
            for result in self.announce_one(*addr) {
                if let Err(e) = result {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn announce_one(&self, addr: IpAddr) -> Vec<io::Result<()>> {
        match addr {
            IpAddr::V4(v4) => [ArpOp::Request, ArpOp::Reply]
                .into_iter()
                .map(|op| self.send(&garp_frame(self.mac, v4, op), ETH_P_ARP, addr))
                .collect(),
            IpAddr::V6(v6) => {
                vec![self.send(&unsolicited_na_frame(self.mac, v6), ETH_P_IPV6, addr)]
            }
        }
    }

    fn send(&self, frame: &[u8], ethertype: u16, addr: IpAddr) -> io::Result<()> {
        let dst = ll_addr(self.ifindex, ethertype);
        // SAFETY: `frame` and `dst` are valid for the lengths passed.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&dst as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("cannot announce {addr} on {}: {e}", self.iface)));
        }
        Ok(())
    }
}

/// Protocol 0: the socket only sends; it never queues received frames.
fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ll_addr(ifindex: u32, ethertype: u16) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as libc::c_ushort;
    sll.sll_protocol = ethertype.to_be();
    sll.sll_ifindex = ifindex as libc::c_int;
    sll
}

fn bind_to(fd: &OwnedFd, ifindex: u32) -> io::Result<()> {
    let sll = ll_addr(ifindex, 0);
    // SAFETY: `sll` is a valid sockaddr_ll of the given length.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// The kernel reports the bound device's hardware address in getsockname.
fn bound_mac(fd: &OwnedFd) -> io::Result<[u8; 6]> {
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `sll` is writable for `len` bytes.
    let rc = unsafe { libc::getsockname(fd.as_raw_fd(), (&mut sll as *mut libc::sockaddr_ll).cast(), &mut len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if sll.sll_halen != 6 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("not an Ethernet interface (hardware address of {} bytes)", sll.sll_halen),
        ));
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&sll.sll_addr[..6]);
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x20, 0x30];
    const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 200);
    const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x200);

    #[test]
    fn garp_request_bytes() {
        let f = garp_frame(MAC, VIP, ArpOp::Request);
        assert_eq!(&f[0..6], &[0xff; 6], "dst: broadcast");
        assert_eq!(&f[6..12], &MAC, "src: our MAC");
        assert_eq!(&f[12..14], &[0x08, 0x06], "ethertype ARP");
        assert_eq!(&f[14..16], &[0x00, 0x01], "htype Ethernet");
        assert_eq!(&f[16..18], &[0x08, 0x00], "ptype IPv4");
        assert_eq!(f[18], 6, "hlen");
        assert_eq!(f[19], 4, "plen");
        assert_eq!(&f[20..22], &[0x00, 0x01], "op request");
        assert_eq!(&f[22..28], &MAC, "sha");
        assert_eq!(&f[28..32], &[192, 0, 2, 200], "spa");
        assert_eq!(&f[32..38], &[0; 6], "tha: zero in a request");
        assert_eq!(&f[38..42], &[192, 0, 2, 200], "tpa == spa");
    }

    #[test]
    fn garp_reply_bytes() {
        let f = garp_frame(MAC, VIP, ArpOp::Reply);
        let req = garp_frame(MAC, VIP, ArpOp::Request);
        assert_eq!(&f[20..22], &[0x00, 0x02], "op reply");
        assert_eq!(&f[32..38], &MAC, "tha == sha, or Linux does not treat it as gratuitous");
        // Everything else is the same as the request.
        assert_eq!(&f[..20], &req[..20]);
        assert_eq!(&f[22..32], &req[22..32]);
        assert_eq!(&f[38..], &req[38..]);
    }

    #[test]
    fn na_bytes() {
        let f = unsolicited_na_frame(MAC, VIP6);
        assert_eq!(f.len(), 86);
        // Ethernet
        assert_eq!(&f[0..6], &[0x33, 0x33, 0, 0, 0, 1], "dst: all-nodes multicast MAC");
        assert_eq!(&f[6..12], &MAC);
        assert_eq!(&f[12..14], &[0x86, 0xdd], "ethertype IPv6");
        // IPv6
        let ip = &f[14..54];
        assert_eq!(&ip[0..4], &[0x60, 0, 0, 0], "version 6, tc 0, flow 0");
        assert_eq!(&ip[4..6], &[0, 32], "payload length");
        assert_eq!(ip[6], 58, "next header ICMPv6");
        assert_eq!(ip[7], 255, "hop limit");
        assert_eq!(&ip[8..24], &VIP6.octets(), "src: the address itself");
        assert_eq!(&ip[24..40], &ALL_NODES_IP.octets(), "dst ff02::1");
        // ICMPv6 NA
        let na = &f[54..];
        assert_eq!(na[0], 136, "type NA");
        assert_eq!(na[1], 0, "code");
        assert_eq!(&na[4..8], &[0x20, 0, 0, 0], "Override only: not Router, not Solicited");
        assert_eq!(&na[8..24], &VIP6.octets(), "target");
        assert_eq!(&na[24..26], &[2, 1], "option TLLA, 8 bytes");
        assert_eq!(&na[26..32], &MAC);
    }

    #[test]
    fn na_checksum_verifies() {
        let f = unsolicited_na_frame(MAC, VIP6);
        let na = &f[54..];
        // Recompute from scratch with the checksum field zeroed.
        let mut zeroed = na.to_vec();
        zeroed[2] = 0;
        zeroed[3] = 0;
        let expected = reference_checksum(&f[22..38], &f[38..54], &zeroed);
        assert_eq!(u16::from_be_bytes([na[2], na[3]]), expected);
        // And the receiver's check: summing with the checksum in gives 0.
        assert_eq!(icmpv6_checksum(VIP6, ALL_NODES_IP, na), 0);
    }

    #[test]
    fn checksum_handles_odd_lengths_and_carries() {
        // RFC 1071 example words 0001 f203 f4f5 f6f7 sum to ddf2 (folded).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        let mut s = ones_sum(&data);
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        assert_eq!(s, 0xddf2);
        assert_eq!(ones_sum(&[0xab]), 0xab00);
    }

    /// Independent byte-at-a-time implementation of RFC 4443 section 2.3.
    fn reference_checksum(src: &[u8], dst: &[u8], msg: &[u8]) -> u16 {
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(src);
        pseudo.extend_from_slice(dst);
        pseudo.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 58]);
        pseudo.extend_from_slice(msg);
        let mut sum: u64 = 0;
        for i in (0..pseudo.len()).step_by(2) {
            let hi = u64::from(pseudo[i]) << 8;
            let lo = pseudo.get(i + 1).map_or(0, |b| u64::from(*b));
            sum += hi | lo;
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }
}
