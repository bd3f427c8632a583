//! Heartbeats received without eBPF: a UDP socket on the interface (joined to the group when
//! heartbeats are multicast) with kernel receive timestamps, feeding a user-space [`PeerTable`].
use std::{
    collections::BTreeSet,
    io,
    mem::{MaybeUninit, size_of},
    net::{Ipv4Addr, SocketAddrV4},
    os::fd::AsRawFd,
};

use ha_common::{
    maps::{PeerRecord, Stats},
    wire::Heartbeat,
};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::table::PeerTable;
use crate::{
    auth::keys::{AuthMode, KeySet},
    clock::{monotonic_ns, realtime_ns},
};

/// Datagrams read per call at most, so a flood cannot starve the run loop.
const MAX_PER_DRAIN: usize = 1024;
/// Longer datagrams are cut here; the wire format ignores trailing bytes anyway.
const BUF_LEN: usize = 256;
const _: () = assert!(BUF_LEN >= ha_common::wire::HEARTBEAT_LEN);
/// Room for a few heartbeats per peer between two ticks, for a large cluster.
const RECV_BUFFER: usize = 256 * 1024;

/// Where and what to listen for.
#[derive(Clone, Debug)]
pub struct SocketRxConfig {
    pub iface: String,
    pub iface_addr: Ipv4Addr,
    /// Joined on the interface when heartbeats are multicast; `None` with unicast peers.
    pub group: Option<Ipv4Addr>,
    pub port: u16,
    pub cluster_id: u32,
    pub node_id: u32,
    /// This node's run, which peers echo to be confirmed.
    pub epoch: u64,
    pub auth: AuthMode,
}

pub struct SocketRx {
    socket: Socket,
    table: PeerTable,
    /// Monotonic time at which the queue was last seen empty: nothing read later is older.
    drained_at: u64,
    /// Read errors other than "nothing to read", counted as the XDP path has no such thing.
    pub errors: u64,
    /// Key ids of heartbeats refused as `unknown_key`, for the key alarm to name.
    unknown_keys: BTreeSet<u8>,
    /// Datagrams the kernel dropped on this socket, its buffer full (`SO_RXQ_OVFL`, as of the
    /// last datagram read).
    pub buffer_drops: u64,
}

impl SocketRx {
    pub fn open(cfg: &SocketRxConfig) -> io::Result<Self> {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        socket.bind_device(Some(cfg.iface.as_bytes()))?;
        socket.set_nonblocking(true)?;
        socket.set_recv_buffer_size(RECV_BUFFER)?;
        // Only the groups this socket joined, not every group some other socket joined.
        socket.set_multicast_all_v4(false)?;
        set_timestamps(&socket)?;
        set_option(&socket, libc::SO_RXQ_OVFL)?;
        socket
            .bind(&SockAddr::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, cfg.port)))
            .map_err(|e| io::Error::new(e.kind(), format!("binding UDP port {} on {}: {e}", cfg.port, cfg.iface)))?;
        if let Some(group) = cfg.group {
            socket.join_multicast_v4(&group, &cfg.iface_addr)?;
        }
        let table = PeerTable::new(cfg.cluster_id, cfg.node_id, cfg.epoch, cfg.auth);
        Ok(Self {
            socket,
            table,
            drained_at: monotonic_ns(),
            errors: 0,
            unknown_keys: BTreeSet::new(),
            buffer_drops: 0,
        })
    }

    /// Accepts `keys` from now on (a SIGHUP reload).
    pub fn install_keys(&mut self, keys: &KeySet) {
        self.table.install_keys(keys);
    }

    /// Reads what arrived since the last call, then fills `out` with every recorded peer.
    pub fn read_peers(&mut self, out: &mut Vec<(u32, PeerRecord)>) -> io::Result<()> {
        let result = self.drain();
        self.table.snapshot(out);
        result
    }

    pub fn stats(&self) -> Stats {
        self.table.stats()
    }

    pub fn unknown_key_ids(&self) -> Vec<u8> {
        self.unknown_keys.iter().copied().collect()
    }

    fn drain(&mut self) -> io::Result<()> {
        let mut buf = [0u8; BUF_LEN];
        for _ in 0..MAX_PER_DRAIN {
            let (len, src, stamp) = match recv_stamped(&self.socket, &mut buf) {
                Ok((len, src, Received { stamp, dropped })) => {
                    self.buffer_drops = dropped.map_or(self.buffer_drops, u64::from);
                    (len, src, stamp)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.drained_at = monotonic_ns();
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.errors += 1;
                    return Err(e);
                }
            };
            let now_mono = monotonic_ns();
            let at = match stamp {
                Some(stamp) => stamp_to_monotonic(stamp, realtime_ns(), now_mono, self.drained_at),
                None => now_mono,
            };
            // Rejections are counted in the table's stats, as XDP counts them.
            let unknown_before = self.table.stats().unknown_key;
            let payload = &buf[..len.min(BUF_LEN)];
            if self.table.receive(payload, src, at).is_err()
                && self.table.stats().unknown_key != unknown_before
                && let Ok(hb) = Heartbeat::decode(payload)
            {
                self.unknown_keys.insert(hb.key_id);
            }
        }
        Ok(())
    }
}

/// A `CLOCK_REALTIME` receive stamp on `CLOCK_MONOTONIC`: its age, measured on the realtime clock
/// now, taken off monotonic now. Clamped between the last time the queue was empty (it cannot
/// have arrived earlier) and now, so a step of the wall clock cannot age or date a heartbeat
/// beyond what is possible, and so cannot fake a silence.
fn stamp_to_monotonic(stamp_rt: u64, now_rt: u64, now_mono: u64, floor_mono: u64) -> u64 {
    now_mono.saturating_sub(now_rt.saturating_sub(stamp_rt)).max(floor_mono).min(now_mono)
}

fn set_timestamps(socket: &Socket) -> io::Result<()> {
    set_option(socket, libc::SO_TIMESTAMPNS)
}

/// Turns a boolean `SOL_SOCKET` option on.
fn set_option(socket: &Socket, option: libc::c_int) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: valid option value of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// What the kernel says about a datagram besides its bytes.
#[derive(Debug, Default)]
struct Received {
    /// Receive time, `CLOCK_REALTIME` nanoseconds.
    stamp: Option<u64>,
    /// Datagrams dropped on this socket so far for want of buffer space (`SO_RXQ_OVFL`).
    dropped: Option<u32>,
}

/// One datagram: its length (possibly more than `buf` holds), its IPv4 source and what the
/// kernel says about it.
fn recv_stamped(socket: &Socket, buf: &mut [u8]) -> io::Result<(usize, Ipv4Addr, Received)> {
    // SAFETY: all-zero is a valid sockaddr_in and msghdr.
    let mut src: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    // u64 words keep the control buffer aligned for cmsghdr.
    let mut control = [MaybeUninit::<u64>::uninit(); 12];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut src as *mut libc::sockaddr_in).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control);
    // SAFETY: every pointer in msg is valid for the lengths given, for the whole call.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let addr = Ipv4Addr::from(u32::from_be(src.sin_addr.s_addr));
    Ok((n as usize, addr, control_of(&msg)))
}

fn control_of(msg: &libc::msghdr) -> Received {
    let mut got = Received::default();
    // SAFETY: msg was filled by recvmsg; the CMSG_* helpers stay within msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            let c = &*cmsg;
            if c.cmsg_level == libc::SOL_SOCKET && c.cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::timespec);
                got.stamp = Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            } else if c.cmsg_level == libc::SOL_SOCKET && c.cmsg_type == libc::SO_RXQ_OVFL {
                got.dropped = Some(std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const u32));
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    got
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_stamp_keeps_its_age_on_the_monotonic_clock() {
        // Arrived 3 ms ago by the wall clock: 3 ms before monotonic now.
        assert_eq!(stamp_to_monotonic(100 * S - 3_000_000, 100 * S, 50 * S, 0), 50 * S - 3_000_000);
    }

    #[test]
    fn wall_clock_steps_cannot_fake_a_silence_or_a_future() {
        let (now_mono, floor) = (50 * S, 50 * S - 10_000_000);
        // The wall clock stepped forward by an hour after reception: not older than the floor.
        assert_eq!(stamp_to_monotonic(100 * S, 100 * S + 3_600 * S, now_mono, floor), floor);
        // It stepped back: the stamp is "in the future"; it is now at the latest.
        assert_eq!(stamp_to_monotonic(100 * S, 99 * S, now_mono, floor), now_mono);
    }

    /// A receiver on loopback, any free port.
    fn loopback() -> SocketRxConfig {
        SocketRxConfig {
            iface: "lo".into(),
            iface_addr: Ipv4Addr::LOCALHOST,
            group: None,
            port: 0,
            cluster_id: 1,
            node_id: 1,
            epoch: 1,
            auth: AuthMode::InsecureNoAuth,
        }
    }

    #[test]
    fn receives_a_stamped_datagram_from_loopback() {
        let cfg = loopback();
        let Ok(rx) = SocketRx::open(&cfg) else {
            eprintln!("skipping: cannot bind to lo here");
            return;
        };
        let port = rx.socket.local_addr().ok().and_then(|a| a.as_socket()).map(|a| a.port()).expect("port");
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("sender");
        let before = realtime_ns();
        tx.send_to(b"hello", ("127.0.0.1", port)).expect("send");
        let mut buf = [0u8; 16];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let got = loop {
            match recv_stamped(&rx.socket, &mut buf) {
                Ok(got) => break got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!((got.0, got.1, &buf[..5]), (5, Ipv4Addr::LOCALHOST, &b"hello"[..]));
        assert_eq!(got.2.dropped, None, "nothing dropped yet (the kernel says so only once it has)");
        let stamp = got.2.stamp.expect("SO_TIMESTAMPNS stamp");
        assert!(stamp >= before && stamp <= realtime_ns(), "{stamp} not between send and now");
    }

    #[test]
    fn datagrams_the_kernel_drops_for_a_full_buffer_are_counted() {
        let cfg = loopback();
        let Ok(mut rx) = SocketRx::open(&cfg) else {
            eprintln!("skipping: cannot bind to lo here");
            return;
        };
        let port = rx.socket.local_addr().ok().and_then(|a| a.as_socket()).map(|a| a.port()).expect("port");
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("sender");
        // Far more than the buffer holds, none read meanwhile: loopback delivers at once.
        for _ in 0..5_000 {
            tx.send_to(&[0u8; 100], ("127.0.0.1", port)).expect("send");
        }
        let mut peers = Vec::new();
        for _ in 0..10 {
            let _ = rx.read_peers(&mut peers);
        }
        // The kernel tells the count with the next datagram queued after the drops.
        tx.send_to(&[0u8; 100], ("127.0.0.1", port)).expect("send");
        let _ = rx.read_peers(&mut peers);
        let s = rx.stats();
        let read = s.truncated + s.bad_magic + s.malformed + s.bad_version;
        assert!(rx.buffer_drops > 1_000, "{} dropped, {read} read", rx.buffer_drops);
        assert_eq!(rx.buffer_drops + read, 5_001, "every datagram read or counted as dropped: {s:?}");
    }
}
