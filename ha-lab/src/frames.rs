//! Crafted Ethernet frames for running the real XDP program through `BPF_PROG_TEST_RUN`.
use std::net::Ipv4Addr;

use ha_common::wire::Heartbeat;

/// An Ethernet + IPv4 + (UDP or other) frame, with knobs for every malformed class.
#[derive(Clone, Debug)]
pub struct FrameSpec {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub vlan: Option<u16>,
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    /// IPv4 header length in 32-bit words (5 = no options, up to 15).
    pub ihl_words: u8,
    pub protocol: u8,
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: Vec<u8>,
    /// Writes this into the UDP length field instead of the true length.
    pub udp_len_override: Option<u16>,
}

impl FrameSpec {
    pub fn udp(dst_port: u16, payload: &[u8]) -> Self {
        Self {
            src_mac: [0x02, 0, 0, 0, 0, 0x01],
            dst_mac: [0x01, 0x00, 0x5e, 0x7f, 0x48, 0x41],
            vlan: None,
            src_ip: Ipv4Addr::new(192, 0, 2, 1),
            dst_ip: Ipv4Addr::new(239, 255, 72, 65),
            ihl_words: 5,
            protocol: 17,
            src_port: 40000,
            dst_port,
            payload: payload.to_vec(),
            udp_len_override: None,
        }
    }

    pub fn heartbeat(hb: &Heartbeat, port: u16) -> Self {
        Self::udp(port, &hb.encode())
    }

    pub fn build(&self) -> Vec<u8> {
        let mut f = Vec::with_capacity(128);
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        if let Some(vid) = self.vlan {
            f.extend_from_slice(&0x8100u16.to_be_bytes());
            f.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
        }
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        let ihl = usize::from(self.ihl_words.clamp(5, 15)) * 4;
        let l4_len = if self.protocol == 17 { 8 + self.payload.len() } else { 20 + self.payload.len() };
        let total = (ihl + l4_len) as u16;
        let ip_start = f.len();
        f.push(0x40 | (ihl / 4) as u8);
        f.push(0);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0x40, 0]); // id, don't fragment
        f.push(1); // ttl
        f.push(self.protocol);
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&self.src_ip.octets());
        f.extend_from_slice(&self.dst_ip.octets());
        f.resize(ip_start + ihl, 1); // options: NOPs
        let csum = checksum(&f[ip_start..ip_start + ihl]);
        f[ip_start + 10..ip_start + 12].copy_from_slice(&csum.to_be_bytes());
        f.extend_from_slice(&self.src_port.to_be_bytes());
        f.extend_from_slice(&self.dst_port.to_be_bytes());
        if self.protocol == 17 {
            let len = self.udp_len_override.unwrap_or((8 + self.payload.len()) as u16);
            f.extend_from_slice(&len.to_be_bytes());
            f.extend_from_slice(&[0, 0]); // no UDP checksum (allowed for IPv4)
        } else {
            // TCP: seq, ack, offset 5, ACK flag, window, checksum, urgent.
            f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0]);
        }
        f.extend_from_slice(&self.payload);
        f
    }
}

/// The Internet checksum (RFC 1071).
pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An ARP request: neither IPv4 nor a heartbeat, must pass untouched.
pub fn arp_request() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02, 0x08, 0x06]);
    f.extend_from_slice(&[
        0, 1, 8, 0, 6, 4, 0, 1, 0x02, 0, 0, 0, 0, 0x02, 192, 0, 2, 2, 0, 0, 0, 0, 0, 0, 192, 0, 2, 1,
    ]);
    f
}

/// An Ethernet/IPv4 ARP packet: `op` 1 (request) or 2 (reply), `sha`/`spa` the sender, `tpa`
/// the target (the target MAC is left zero). `vlan`: one 802.1Q tag.
pub fn arp(op: u16, sha: [u8; 6], spa: Ipv4Addr, tpa: Ipv4Addr, vlan: Option<u16>) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&sha);
    if let Some(vid) = vlan {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    }
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa.octets());
    f
}

/// An IPv6 neighbour solicitation (`icmp_type` 135) or advertisement (136) for `target`, from
/// `src_mac` (no options, checksum not computed: XDP does not verify it).
pub fn neighbour_discovery(icmp_type: u8, src_mac: [u8; 6], target: std::net::Ipv6Addr) -> Vec<u8> {
    let mut f = vec![0x33, 0x33, 0xff, 0, 0, 1];
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&0x86ddu16.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&24u16.to_be_bytes());
    f.extend_from_slice(&[58, 255]);
    f.extend_from_slice(&std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1).octets());
    f.extend_from_slice(&std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 0x0200).octets());
    f.extend_from_slice(&[icmp_type, 0, 0, 0, 0, 0, 0, 0]);
    f.extend_from_slice(&target.octets());
    f
}
