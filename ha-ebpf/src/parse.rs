//! Bounds-checked framing: Ethernet (one optional 802.1Q/802.1ad tag), IPv4 (any IHL), UDP.

use aya_ebpf::programs::XdpContext;
use ha_common::{
    ether::{ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IPV4, IPPROTO_UDP, UDP_HLEN, VLAN_HLEN},
    wire::HEARTBEAT_LEN,
};

/// A heartbeat's place in the packet: its source address, and where its payload starts (at
/// least [`HEARTBEAT_LEN`] bytes before the end, as [`copy_payload`] checks again).
pub struct HeartbeatFrame {
    pub src: [u8; 4],
    pub offset: usize,
}

pub enum Frame {
    /// Not UDP to the heartbeat port: leave it to the stack.
    NotOurs,
    /// Addressed to the heartbeat port but too short to hold a heartbeat.
    Truncated,
    Heartbeat(HeartbeatFrame),
}

/// Reads `N` bytes at `offset`, or `None` past the end of the packet.
#[inline(always)]
pub(crate) fn bytes_at<const N: usize>(ctx: &XdpContext, offset: usize) -> Option<[u8; N]> {
    let start = ctx.data() + offset;
    if start + N > ctx.data_end() {
        return None;
    }
    // SAFETY: the range was checked against data_end just above.
    Some(unsafe { core::ptr::read_unaligned(start as *const [u8; N]) })
}

/// Copies the heartbeat payload at `offset` into `out` (a per-CPU map value: 200 bytes are
/// too many for the stack), word by word: a plain copy may become a call to a byte-at-a-time
/// `memmove` loop (it did once the payload was also authenticated). False past the end.
#[inline(always)]
pub fn copy_payload(ctx: &XdpContext, offset: usize, out: &mut [u8; HEARTBEAT_LEN]) -> bool {
    const WORDS: usize = HEARTBEAT_LEN / 8;
    const _: () = assert!(HEARTBEAT_LEN.is_multiple_of(8));
    let start = ctx.data() + offset;
    if start + HEARTBEAT_LEN > ctx.data_end() {
        return false;
    }
    let out = out.as_mut_ptr();
    let mut i = 0;
    while i < WORDS {
        // SAFETY: within the range checked against data_end above, and within `out`.
        unsafe {
            let word = core::ptr::read_unaligned((start + 8 * i) as *const u64);
            core::ptr::write_unaligned(out.add(8 * i).cast::<u64>(), word);
        }
        i += 1;
    }
    true
}

#[inline(always)]
pub(crate) fn be16(ctx: &XdpContext, offset: usize) -> Option<u16> {
    bytes_at::<2>(ctx, offset).map(u16::from_be_bytes)
}

/// The EtherType past one optional 802.1Q/802.1ad tag, and where the layer-3 header starts.
#[inline(always)]
pub(crate) fn layer3(ctx: &XdpContext) -> Option<(u16, usize)> {
    let ethertype = be16(ctx, 12)?;
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        return Some((be16(ctx, ETH_HLEN + 2)?, ETH_HLEN + VLAN_HLEN));
    }
    Some((ethertype, ETH_HLEN))
}

#[inline(always)]
pub fn heartbeat_frame(ctx: &XdpContext, port: u16) -> Frame {
    match frame(ctx, port) {
        Some(frame) => frame,
        None => Frame::NotOurs,
    }
}

#[inline(always)]
fn frame(ctx: &XdpContext, port: u16) -> Option<Frame> {
    let (ethertype, l3) = layer3(ctx)?;
    if ethertype != ETH_P_IPV4 {
        return None;
    }
    let ip = bytes_at::<20>(ctx, l3)?;
    let ihl = ((ip[0] & 0x0f) as usize) * 4;
    let fragmented = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
    if ip[0] >> 4 != 4 || ihl < 20 || ip[9] != IPPROTO_UDP || fragmented {
        return None;
    }
    let l4 = l3 + ihl;
    let udp = bytes_at::<UDP_HLEN>(ctx, l4)?;
    if u16::from_be_bytes([udp[2], udp[3]]) != port {
        return None;
    }
    let udp_len = u16::from_be_bytes([udp[4], udp[5]]) as usize;
    if udp_len < UDP_HLEN + HEARTBEAT_LEN {
        return Some(Frame::Truncated);
    }
    let offset = l4 + UDP_HLEN;
    if ctx.data() + offset + HEARTBEAT_LEN > ctx.data_end() {
        return Some(Frame::Truncated);
    }
    Some(Frame::Heartbeat(HeartbeatFrame { src: [ip[12], ip[13], ip[14], ip[15]], offset }))
}
