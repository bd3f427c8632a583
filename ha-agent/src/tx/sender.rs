//! Heartbeats out, on one UDP socket bound to the interface: multicast with TTL 1 and loopback
//! off, or unicast to listed peers. Also holds the group membership, so NICs that filter
//! multicast by address let the peers' heartbeats reach XDP.
use std::{
    io,
    net::{Ipv4Addr, SocketAddrV4},
    os::fd::AsRawFd,
};

use ha_common::{
    auth::NO_KEY,
    wire::{Echo, GroupEntry, HEARTBEAT_LEN, Heartbeat, MAX_GROUPS, NodeState, Sequence, TAG_LEN, TAG_OFFSET},
};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::auth::keys::SigningKey;

/// Where heartbeats go.
#[derive(Clone, Debug)]
pub struct SenderConfig {
    pub iface: String,
    pub iface_addr: Ipv4Addr,
    pub group: Ipv4Addr,
    pub port: u16,
    /// Unicast peers; when empty, heartbeats are multicast to `group`.
    pub unicast_peers: Vec<Ipv4Addr>,
    /// Hold the group membership here (XDP receive); the socket receive path holds its own.
    pub join_group: bool,
    pub cluster_id: u32,
    pub node_id: u32,
    pub interval_us: u32,
    /// This run (`clock::new_epoch`): grows across restarts so peers accept our new counter,
    /// and peers echo it to show that they are live.
    pub epoch: u64,
}

pub struct Sender {
    socket: Socket,
    _membership: Option<Socket>,
    targets: Vec<SockAddr>,
    cfg: SenderConfig,
    /// The counter of the last heartbeat: one more than the one before.
    counter: u64,
    /// Where the next counter comes from when the kernel may answer for this node
    /// (`tx::answer`): the counter its answers take theirs from too.
    shared: Option<crate::tx::counter::SharedCounter>,
    /// None: unauthenticated heartbeats (`--insecure-no-auth`).
    signing: Option<SigningKey>,
    pub sent: u64,
    /// Failed sends, one per target.
    pub errors: u64,
    /// `errors` when the current burst of failures began; None while sends succeed.
    failing_since: Option<u64>,
    /// The group entries every heartbeat carries from now on (none: group 0 in the header).
    groups: (u8, [GroupEntry; MAX_GROUPS]),
}

impl Sender {
    pub fn new(cfg: SenderConfig) -> io::Result<Self> {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        socket.bind_device(Some(cfg.iface.as_bytes()))?;
        socket.set_multicast_if_v4(&cfg.iface_addr)?;
        socket.set_multicast_ttl_v4(1)?;
        socket.set_multicast_loop_v4(false)?;
        socket.set_nonblocking(true)?;
        // Heartbeats are the most urgent traffic the node sends.
        socket.set_tos_v4(0xc0)?; // CS6, network control
        socket.bind(&SockAddr::from(SocketAddrV4::new(cfg.iface_addr, 0)))?;
        let (targets, membership) = if cfg.unicast_peers.is_empty() {
            let membership = if cfg.join_group { Some(join_group(&cfg)?) } else { None };
            (vec![SockAddr::from(SocketAddrV4::new(cfg.group, cfg.port))], membership)
        } else {
            (cfg.unicast_peers.iter().map(|p| SockAddr::from(SocketAddrV4::new(*p, cfg.port))).collect(), None)
        };
        Ok(Self {
            socket,
            _membership: membership,
            targets,
            cfg,
            counter: 0,
            shared: None,
            signing: None,
            sent: 0,
            errors: 0,
            failing_since: None,
            groups: (0, GroupEntry::NONE),
        })
    }

    /// Signs every heartbeat from now on with `key` (None: unauthenticated).
    pub fn set_signing_key(&mut self, key: Option<SigningKey>) {
        self.signing = key;
    }

    /// The groups' entries for the heartbeats from now on (`--vip-group`).
    pub fn set_groups(&mut self, count: u8, groups: [GroupEntry; MAX_GROUPS]) {
        self.groups = (count, groups);
    }

    /// Takes counters from `shared` from now on, the one the kernel's answers take theirs from
    /// (before its first answer): one sequence that counts every heartbeat of this node.
    pub fn share_counter(&mut self, shared: crate::tx::counter::SharedCounter) {
        shared.raise_to(self.counter);
        self.shared = Some(shared);
    }

    /// The last heartbeat left on every link (its copies too): the kernel may answer again
    /// (see `tx::counter`).
    pub fn left_everywhere(&self) {
        if let Some(shared) = &self.shared {
            shared.left();
        }
    }

    /// Builds the next heartbeat, with the next counter.
    pub fn next_heartbeat(&mut self, state: NodeState, flags: u8, priority: u32, echo: Echo) -> Heartbeat {
        self.counter = match &self.shared {
            Some(shared) => shared.next(),
            None => self.counter + 1,
        };
        self.heartbeat(self.counter, state, flags, priority, echo)
    }

    /// The counter of the last heartbeat built.
    pub fn counter(&self) -> u64 {
        self.counter
    }

    /// This node's heartbeat with `counter`, unsigned: the one way its heartbeats are made,
    /// those it sends and the template the kernel answers with.
    fn heartbeat(&self, counter: u64, state: NodeState, flags: u8, priority: u32, echo: Echo) -> Heartbeat {
        Heartbeat {
            cluster_id: self.cfg.cluster_id,
            node_id: self.cfg.node_id,
            priority,
            state,
            flags,
            key_id: self.signing.map_or(NO_KEY, |k| k.key_id),
            interval_us: self.cfg.interval_us,
            seq: Sequence { epoch: self.cfg.epoch, counter },
            echo,
            group_count: self.groups.0,
            groups: self.groups.1,
            tag: [0; TAG_LEN],
        }
    }

    /// The template the kernel answers peers' heartbeats with (`tx::answer`): this heartbeat's
    /// bytes before the tag, with the key id it is signed with; the kernel fills the counter,
    /// the echo and the tag of each answer.
    pub fn template(&self, state: NodeState, flags: u8, priority: u32, echo: Echo) -> [u8; TAG_OFFSET] {
        let bytes = self.heartbeat(0, state, flags, priority, echo).encode();
        let mut template = [0; TAG_OFFSET];
        template.copy_from_slice(&bytes[..TAG_OFFSET]);
        template
    }

    /// The heartbeat's bytes, signed with the signing key (unsigned without one).
    fn encode(&self, hb: &Heartbeat) -> [u8; HEARTBEAT_LEN] {
        match &self.signing {
            Some(k) => hb.encode_signed(k.key_id, &k.key),
            None => hb.encode(),
        }
    }

    /// Sends one heartbeat to every target. A full send buffer or a down link is counted, not
    /// fatal: the next interval tries again. A burst of failures is logged once as it starts
    /// (peers will soon count this node as silent) and once as it ends.
    pub fn send(&mut self, state: NodeState, flags: u8, priority: u32, echo: Echo) -> io::Result<()> {
        self.send_at(state, flags, priority, echo, None)
    }

    /// [`Sender::send`] with the counter another link's sender gave the same heartbeat: the
    /// copies on every link are one heartbeat, so a receiver credits each link with it
    /// (`PEER_LINKS`).
    pub fn send_copy(
        &mut self,
        counter: u64,
        state: NodeState,
        flags: u8,
        priority: u32,
        echo: Echo,
    ) -> io::Result<()> {
        self.counter = counter;
        let hb = self.heartbeat(counter, state, flags, priority, echo);
        self.transmit(&self.encode(&hb), None)
    }

    /// Lets heartbeats carry a departure time ([`Sender::send_at`]) on CLOCK_MONOTONIC, which
    /// an `fq` qdisc on the interface honours; heartbeats without one leave at once.
    pub fn enable_departure_times(&mut self) -> io::Result<()> {
        let txtime = libc::sock_txtime { clockid: libc::CLOCK_MONOTONIC, flags: 0 };
        // SAFETY: a valid sock_txtime and its size.
        let rc = unsafe {
            libc::setsockopt(
                self.socket.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_TXTIME,
                (&raw const txtime).cast(),
                size_of::<libc::sock_txtime>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // A whole schedule waits in the qdisc, charged to this socket's send buffer.
        let _ = self.socket.set_send_buffer_size(SCHEDULE_SNDBUF);
        Ok(())
    }

    /// [`Sender::send`], leaving the interface at `depart_ns` (CLOCK_MONOTONIC) when given:
    /// the heartbeat waits in the qdisc until then (see [`Sender::enable_departure_times`]).
    pub fn send_at(
        &mut self,
        state: NodeState,
        flags: u8,
        priority: u32,
        echo: Echo,
        depart_ns: Option<u64>,
    ) -> io::Result<()> {
        let hb = self.next_heartbeat(state, flags, priority, echo);
        self.transmit(&self.encode(&hb), depart_ns)
    }

    /// Sends `bytes` to every target, counting and logging as [`Sender::send`] says.
    fn transmit(&mut self, bytes: &[u8; HEARTBEAT_LEN], depart_ns: Option<u64>) -> io::Result<()> {
        let mut last_err = None;
        for target in &self.targets {
            let sent = match depart_ns {
                Some(at) => send_timed(&self.socket, bytes, target, at),
                None => self.socket.send_to(bytes, target),
            };
            match sent {
                Ok(_) => self.sent += 1,
                Err(e) => {
                    self.errors += 1;
                    let to = target.as_socket().map_or_else(|| "?".to_string(), |a| a.to_string());
                    last_err = Some((e, to));
                }
            }
        }
        match (last_err, self.failing_since) {
            (Some((e, to)), None) => {
                self.failing_since = Some(self.errors);
                log::error!(
                    "heartbeats cannot be sent on {} to {to}: {e}; peers will count this node as silent (counted in ha_heartbeat_send_errors_total)",
                    self.cfg.iface
                );
                Err(e)
            }
            (Some((e, _)), Some(_)) => Err(e),
            (None, Some(since)) => {
                self.failing_since = None;
                log::warn!(
                    "heartbeats are sent on {} again after {} failed sends",
                    self.cfg.iface,
                    self.errors - since + 1
                );
                Ok(())
            }
            (None, None) => Ok(()),
        }
    }
}

/// `SO_TXTIME` / `SCM_TXTIME` (asm-generic; the same on x86 and arm).
const SO_TXTIME: libc::c_int = 61;
/// Room for a whole schedule in the qdisc: at most 200 ms of heartbeats, to every target.
const SCHEDULE_SNDBUF: usize = 1 << 20;

/// One datagram to `target` that the qdisc holds until `depart_ns` (CLOCK_MONOTONIC).
fn send_timed(socket: &Socket, bytes: &[u8], target: &SockAddr, depart_ns: u64) -> io::Result<usize> {
    const SPACE: usize = 32; // >= CMSG_SPACE(8)
    let mut control = [0u64; SPACE / 8];
    let mut iov = libc::iovec { iov_base: bytes.as_ptr().cast_mut().cast(), iov_len: bytes.len() };
    // SAFETY: every pointer below points into locals that outlive the call; the control buffer
    // is 8-byte aligned and large enough for one cmsg of a u64 (checked by CMSG_SPACE).
    unsafe {
        debug_assert!(libc::CMSG_SPACE(8) as usize <= SPACE);
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = target.as_ptr().cast_mut().cast();
        msg.msg_namelen = target.len();
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(8) as _;
        let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = SO_TXTIME;
        (*cmsg).cmsg_len = libc::CMSG_LEN(8) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u64>(), depart_ns);
        let n = libc::sendmsg(socket.as_raw_fd(), &raw const msg, 0);
        if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
    }
}

/// A socket that only holds the multicast membership on the interface.
fn join_group(cfg: &SenderConfig) -> io::Result<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.bind_device(Some(cfg.iface.as_bytes()))?;
    socket.bind(&SockAddr::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, cfg.port)))?;
    socket.join_multicast_v4(&cfg.group, &cfg.iface_addr)?;
    // Nothing reads it while XDP consumes heartbeats: keep its buffer small.
    socket.set_recv_buffer_size(4096)?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender(port: u16) -> io::Result<Sender> {
        Sender::new(SenderConfig {
            iface: "lo".into(),
            iface_addr: Ipv4Addr::LOCALHOST,
            group: Ipv4Addr::new(239, 255, 0, 1),
            port,
            unicast_peers: vec![Ipv4Addr::LOCALHOST],
            join_group: false,
            cluster_id: 1,
            node_id: 1,
            interval_us: 10_000,
            epoch: 1,
        })
    }

    #[test]
    fn failing_sends_are_counted_and_a_burst_is_noticed_once() {
        // The kernel refuses datagrams to port 0: every send fails.
        let Ok(mut failing) = sender(0) else {
            eprintln!("skipping: cannot bind a socket to lo here");
            return;
        };
        for _ in 0..5 {
            assert!(failing.send(NodeState::Active, 0, 100, Echo::default()).is_err());
        }
        assert_eq!((failing.sent, failing.errors), (0, 5));
        assert_eq!(failing.failing_since, Some(1), "one burst, begun at the first failure");

        // Sends that work end the burst.
        let sink = std::net::UdpSocket::bind("127.0.0.1:0").expect("sink");
        let port = sink.local_addr().expect("addr").port();
        let mut working = sender(port).expect("sender");
        working.failing_since = Some(0);
        working.errors = 3;
        assert!(working.send(NodeState::Active, 0, 100, Echo::default()).is_ok());
        assert_eq!((working.sent, working.errors, working.failing_since), (1, 3, None));
    }

    #[test]
    fn a_heartbeat_with_a_departure_time_is_accepted_by_the_kernel() {
        let sink = std::net::UdpSocket::bind("127.0.0.1:0").expect("sink");
        sink.set_read_timeout(Some(std::time::Duration::from_secs(2))).expect("timeout");
        let port = sink.local_addr().expect("addr").port();
        let Ok(mut s) = sender(port) else {
            eprintln!("skipping: cannot bind a socket to lo here");
            return;
        };
        s.enable_departure_times().expect("SO_TXTIME");
        // lo has no fq: the time is carried (SCM_TXTIME parsed) but the datagram leaves at once.
        let at = crate::clock::monotonic_ns() + 1_000_000;
        s.send_at(NodeState::Active, 0, 100, Echo::default(), Some(at)).expect("sendmsg with SCM_TXTIME");
        let mut buf = [0u8; 1500];
        let n = sink.recv(&mut buf).expect("received");
        let hb = Heartbeat::decode(&buf[..n]).expect("a heartbeat");
        assert_eq!((hb.seq.counter, s.sent, s.errors), (s.counter(), 1, 0));
    }

    #[test]
    fn the_template_is_the_heartbeat_before_its_tag() {
        let Ok(mut s) = sender(9) else {
            eprintln!("skipping: cannot bind a socket to lo here");
            return;
        };
        let echo = Echo { node_id: 4, epoch: 5 };
        let t = s.template(NodeState::Active, 0x08, 7, echo);
        let hb = s.next_heartbeat(NodeState::Active, 0x08, 7, echo);
        let mut bytes = hb.encode();
        bytes[32..40].fill(0);
        assert_eq!(&bytes[..TAG_OFFSET], &t[..], "the same bytes but the counter");
    }
}
