//! The shared (virtual) address on an interface: add, remove, query, watch.
//!
//! Changes go through rtnetlink on a private current-thread tokio runtime, so
//! the caller (a plain std thread) gets a blocking API with a bounded wait.
//! Read-only dumps and the change watcher use a plain synchronous netlink
//! socket: rtnetlink returns dumps as a `futures::Stream`, which this crate
//! could only consume with an extra `futures-util` dependency.
//!
//! Every socket is opened when the manager/watcher is created, so all calls
//! act on the network namespace the creating thread was in.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rtnetlink::packet_core::{NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage};
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::sys::protocols::NETLINK_ROUTE;
use rtnetlink::sys::{Socket, SocketAddr};
use rtnetlink::{AddressMessageBuilder, Handle};
use thiserror::Error;

use super::SharedAddr;

/// Longest wait for the kernel to answer one request. It always answers
/// quickly; the bound only keeps a wedged netlink socket from hanging the
/// caller's thread forever.
const NL_TIMEOUT: Duration = Duration::from_secs(2);
/// Suffix of the IPv4 label, so `ip addr` shows which address is ours.
const LABEL_SUFFIX: &str = ":ha";
/// IFNAMSIZ - 1: the kernel rejects longer labels.
const MAX_LABEL_LEN: usize = 15;
/// A dump with NLM_F_DUMP_INTR raced a change; retry this many times.
const DUMP_ATTEMPTS: usize = 3;
/// Address notification multicast groups (linux/rtnetlink.h).
const RTNLGRP_IPV4_IFADDR: u32 = 5;
const RTNLGRP_IPV6_IFADDR: u32 = 9;
/// Receive buffer for one netlink datagram; the kernel caps dump datagrams
/// at 32 KiB.
const RECV_BUF_LEN: usize = 64 * 1024;

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// What went wrong while managing the shared address.
#[derive(Debug, Error)]
pub enum AddressError {
    #[error("no interface named {0}")]
    NoSuchInterface(String),
    #[error("cannot set up netlink: {0}")]
    Setup(io::Error),
    /// A request the kernel refused or did not answer; `action` says which.
    #[error("{action}: {cause}{}", hint(cause))]
    Netlink { action: String, cause: io::Error },
    #[error("{action}: unreadable netlink reply: {detail}")]
    Decode { action: String, detail: String },
    #[error("interface {0} has no 6-byte Ethernet hardware address")]
    NoMac(String),
    #[error(
        "address change notifications were lost (netlink receive buffer overrun); \
         re-read the interface addresses"
    )]
    WatchOverrun,
}

/// A hint for the operator on the errors that have an obvious cause.
fn hint(cause: &io::Error) -> &'static str {
    match cause.raw_os_error() {
        Some(libc::EPERM) => " (the agent needs root or CAP_NET_ADMIN)",
        Some(libc::EACCES) => " (no permission, or IPv6 is disabled on the interface)",
        Some(libc::ENODEV) => " (the interface has disappeared)",
        _ if cause.kind() == io::ErrorKind::TimedOut => " (the kernel did not answer in time)",
        _ => "",
    }
}

fn netlink_err(action: impl Into<String>, cause: io::Error) -> AddressError {
    AddressError::Netlink { action: action.into(), cause }
}

/// rtnetlink errors are mostly kernel errnos; keep those as io::Error so the
/// callers can match on EEXIST / EADDRNOTAVAIL.
fn rtnl_to_io(e: rtnetlink::Error) -> io::Error {
    match e {
        rtnetlink::Error::NetlinkError(msg) => msg.to_io(),
        other => io::Error::other(other.to_string()),
    }
}

// ---------------------------------------------------------------------------
// AddressManager
// ---------------------------------------------------------------------------

/// Adds/removes the shared address on one interface (blocking facade).
///
/// Call it from plain threads only: each call `block_on`s a private runtime, which panics
/// inside another tokio runtime.
pub struct AddressManager {
    iface: String,
    ifindex: u32,
    handle: Handle,
    /// Drives the rtnetlink connection, only while a call is in `block_on`.
    runtime: tokio::runtime::Runtime,
    query: Mutex<QuerySocket>,
}

impl AddressManager {
    /// Opens netlink for `iface` in the calling thread's network namespace.
    pub fn new(iface: &str) -> Result<Self, AddressError> {
        let ifindex = if_index(iface)?;
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(AddressError::Setup)?;
        let handle = {
            // The connection registers its socket with this runtime's reactor.
            let _ctx = runtime.enter();
            let (connection, handle, _unsolicited) = rtnetlink::new_connection().map_err(AddressError::Setup)?;
            runtime.spawn(connection);
            handle
        };
        let query = QuerySocket::open().map_err(AddressError::Setup)?;
        Ok(AddressManager { iface: iface.to_owned(), ifindex, handle, runtime, query: Mutex::new(query) })
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// Adds the address; already present is success.
    pub fn add(&self, a: &SharedAddr) -> Result<(), AddressError> {
        let mut req = self.handle.address().add(self.ifindex, a.addr, a.prefix);
        self.decorate(req.message_mut(), a.addr);
        match self.block_on(req.execute()) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            other => other.map_err(|e| netlink_err(format!("cannot add {a} to {}", self.iface), e)),
        }
    }

    /// Removes the address; already absent is success.
    pub fn remove(&self, a: &SharedAddr) -> Result<(), AddressError> {
        let msg = address_message(self.ifindex, a);
        match self.block_on(self.handle.address().del(msg).execute()) {
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Ok(()),
            other => other.map_err(|e| netlink_err(format!("cannot remove {a} from {}", self.iface), e)),
        }
    }

    /// Whether the address with this exact prefix is on the interface (in any
    /// state, including IPv6 tentative).
    pub fn is_present(&self, a: &SharedAddr) -> Result<bool, AddressError> {
        let found = self.addresses()?.iter().any(|x| x.addr == a.addr && x.prefix == a.prefix);
        Ok(found)
    }

    /// Every copy of this address on the interface, whatever its prefix: left by a crashed run
    /// of ours (`ours`: carrying our label) or by something else (keepalived, a person).
    pub fn copies(&self, addr: IpAddr) -> Result<Vec<AddressCopy>, AddressError> {
        let ours = self.label();
        let copies = self
            .addresses()?
            .into_iter()
            .filter(|x| x.addr == addr)
            .map(|x| AddressCopy {
                addr: SharedAddr { addr, prefix: x.prefix },
                ours: addr.is_ipv6() || (ours.is_some() && x.label == ours),
            })
            .collect();
        Ok(copies)
    }

    /// The interface's own IPv4 address: the first one that is neither a
    /// secondary address nor labelled as ours. Used for the default node id.
    pub fn primary_ipv4(&self) -> Result<Option<Ipv4Addr>, AddressError> {
        let ours = self.label();
        let primary = self.addresses()?.into_iter().find_map(|x| match x.addr {
            IpAddr::V4(v4) if !x.flags.contains(AddressFlags::Secondary) && (ours.is_none() || x.label != ours) => {
                Some(v4)
            }
            _ => None,
        });
        Ok(primary)
    }

    /// The interface's current hardware address.
    pub fn mac(&self) -> Result<[u8; 6], AddressError> {
        let action = format!("cannot read the hardware address of {}", self.iface);
        let mut msg = LinkMessage::default();
        msg.header.index = self.ifindex;
        let replies = self.query(&action, RouteNetlinkMessage::GetLink(msg), NLM_F_REQUEST | NLM_F_ACK)?;
        replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(link.attributes),
                _ => None,
            })
            .flatten()
            .find_map(|attr| match attr {
                LinkAttribute::Address(bytes) => <[u8; 6]>::try_from(bytes.as_slice()).ok(),
                _ => None,
            })
            .ok_or_else(|| AddressError::NoMac(self.iface.clone()))
    }

    /// Subscribes to address changes on this interface. Like [`watch`], the socket is
    /// opened in the *calling* thread's network namespace.
    pub fn watch(&self) -> Result<AddressWatcher, AddressError> {
        watch(self.ifindex)
    }

    /// `<iface>:ha`, when it fits the kernel's label length.
    fn label(&self) -> Option<String> {
        let label = format!("{}{LABEL_SUFFIX}", self.iface);
        (label.len() <= MAX_LABEL_LEN).then_some(label)
    }

    /// IPv4: our label. IPv6: no duplicate address detection, so the address
    /// is usable (not tentative) at once; after a failover the old owner is
    /// presumed gone, and DAD would delay the takeover by a second or more.
    fn decorate(&self, msg: &mut AddressMessage, addr: IpAddr) {
        match addr {
            IpAddr::V4(_) => {
                if let Some(label) = self.label() {
                    msg.attributes.push(AddressAttribute::Label(label));
                }
            }
            IpAddr::V6(_) => {
                msg.header.flags |= AddressHeaderFlags::Nodad;
                msg.attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
            }
        }
    }

    /// Runs one rtnetlink request to completion, bounded by NL_TIMEOUT.
    fn block_on<F>(&self, request: F) -> io::Result<()>
    where
        F: Future<Output = Result<(), rtnetlink::Error>>,
    {
        self.runtime.block_on(async {
            match tokio::time::timeout(NL_TIMEOUT, request).await {
                Ok(result) => result.map_err(rtnl_to_io),
                Err(_) => Err(io::Error::from(io::ErrorKind::TimedOut)),
            }
        })
    }

    fn query(
        &self,
        action: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, AddressError> {
        // A poisoned lock only means another caller panicked mid-request; the
        // socket itself is still usable because replies are matched by seq.
        let mut sock = self.query.lock().unwrap_or_else(|p| p.into_inner());
        sock.request(action, msg, flags)
    }

    /// All addresses of this interface, in kernel order.
    fn addresses(&self) -> Result<Vec<IfAddr>, AddressError> {
        let action = format!("cannot list the addresses of {}", self.iface);
        let replies = self.query(
            &action,
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            NLM_F_REQUEST | NLM_F_DUMP,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == self.ifindex => IfAddr::from_message(&a),
                _ => None,
            })
            .collect())
    }
}

/// The address message rtnetlink would build for `ip addr add/del`.
fn address_message(ifindex: u32, a: &SharedAddr) -> AddressMessage {
    match a.addr {
        IpAddr::V4(v4) => AddressMessageBuilder::<Ipv4Addr>::new().index(ifindex).address(v4, a.prefix).build(),
        IpAddr::V6(v6) => AddressMessageBuilder::<Ipv6Addr>::new().index(ifindex).address(v6, a.prefix).build(),
    }
}

fn if_index(iface: &str) -> Result<u32, AddressError> {
    super::iface::index(iface).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => AddressError::NoSuchInterface(iface.to_owned()),
        _ => AddressError::Setup(e),
    })
}

/// A copy of a shared address found on the interface (see [`AddressManager::copies`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressCopy {
    pub addr: SharedAddr,
    /// Labelled as ours (IPv6 addresses carry no label: counted as ours).
    pub ours: bool,
}

/// One address as the kernel reports it.
#[derive(Debug)]
struct IfAddr {
    addr: IpAddr,
    prefix: u8,
    label: Option<String>,
    flags: AddressFlags,
}

impl IfAddr {
    fn from_message(msg: &AddressMessage) -> Option<Self> {
        let mut local = None;
        let mut address = None;
        let mut label = None;
        // IFA_FLAGS carries all 32 bits; the header only the low 8.
        let mut flags = AddressFlags::from_bits_retain(u32::from(msg.header.flags.bits()));
        for attr in &msg.attributes {
            match attr {
                AddressAttribute::Local(a) => local = Some(*a),
                AddressAttribute::Address(a) => address = Some(*a),
                AddressAttribute::Label(l) => label = Some(l.clone()),
                AddressAttribute::Flags(f) => flags = *f,
                _ => {}
            }
        }
        // IPv4: IFA_LOCAL is the interface's address (IFA_ADDRESS is the peer
        // on point-to-point links). IPv6 only sends IFA_ADDRESS.
        Some(IfAddr { addr: local.or(address)?, prefix: msg.header.prefix_len, label, flags })
    }
}

// ---------------------------------------------------------------------------
// Synchronous netlink socket for dumps and notifications
// ---------------------------------------------------------------------------

/// A blocking NETLINK_ROUTE socket for request/response exchanges.
pub(crate) struct QuerySocket {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl QuerySocket {
    pub(crate) fn open() -> io::Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        set_recv_timeout(&sock, NL_TIMEOUT)?;
        Ok(QuerySocket { sock, seq: 0, buf: vec![0; RECV_BUF_LEN] })
    }

    /// Sends `msg` and collects the replies; retries dumps that raced a change.
    pub(crate) fn request(
        &mut self,
        action: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, AddressError> {
        let mut attempt = 1;
        loop {
            let (replies, interrupted) = self.exchange(action, msg.clone(), flags)?;
            if !interrupted || attempt >= DUMP_ATTEMPTS {
                return Ok(replies);
            }
            attempt += 1;
        }
    }

    /// One request and all its replies; also says if the dump was interrupted.
    fn exchange(
        &mut self,
        action: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<(Vec<RouteNetlinkMessage>, bool), AddressError> {
        self.seq = self.seq.wrapping_add(1);
        self.send(msg, flags).map_err(|e| netlink_err(action, e))?;
        let mut replies = Vec::new();
        let mut interrupted = false;
        loop {
            let len = recv_datagram(&self.sock, &mut self.buf).map_err(|e| netlink_err(action, e))?;
            for parsed in Messages::new(&self.buf[..len]) {
                let reply = parsed.map_err(|detail| AddressError::Decode { action: action.to_owned(), detail })?;
                // Late replies to an earlier, timed-out request.
                if reply.header.sequence_number != self.seq {
                    continue;
                }
                interrupted |= reply.header.flags & NLM_F_DUMP_INTR != 0;
                match reply.payload {
                    NetlinkPayload::InnerMessage(m) => replies.push(m),
                    NetlinkPayload::Done(_) => return Ok((replies, interrupted)),
                    NetlinkPayload::Error(e) if e.code.is_none() => {
                        return Ok((replies, interrupted));
                    }
                    NetlinkPayload::Error(e) => return Err(netlink_err(action, e.to_io())),
                    _ => {}
                }
            }
        }
    }

    fn send(&self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        let mut packet = NetlinkMessage::from(msg);
        packet.header.flags = flags;
        packet.header.sequence_number = self.seq;
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        self.sock.send(&bytes, 0)?;
        Ok(())
    }
}

/// Bounds a blocking recv; a timeout then shows up as EAGAIN.
fn set_recv_timeout(sock: &Socket, timeout: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: `tv` is a valid timeval and the length matches it.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Receives one datagram; EINTR is retried, a blocking timeout is TimedOut.
pub(crate) fn recv_datagram(sock: &Socket, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_TRUNC) };
        if n >= 0 {
            let n = n as usize;
            if n > buf.len() {
                return Err(io::Error::other(format!("netlink datagram of {n} bytes truncated")));
            }
            return Ok(n);
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Err(io::Error::from(io::ErrorKind::TimedOut)),
            _ => return Err(err),
        }
    }
}

/// Splits a datagram into netlink messages.
pub(crate) struct Messages<'a> {
    rest: &'a [u8],
}

impl<'a> Messages<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Messages { rest: buf }
    }
}

impl Iterator for Messages<'_> {
    type Item = Result<NetlinkMessage<RouteNetlinkMessage>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        const HEADER_LEN: usize = 16;
        if self.rest.len() < HEADER_LEN {
            return None;
        }
        let len = u32::from_ne_bytes([self.rest[0], self.rest[1], self.rest[2], self.rest[3]]) as usize;
        if !(HEADER_LEN..=self.rest.len()).contains(&len) {
            self.rest = &[];
            return Some(Err(format!("bad netlink message length {len}")));
        }
        let parsed = NetlinkMessage::deserialize(&self.rest[..len]).map_err(|e| e.to_string());
        // Messages are 4-byte aligned within the datagram.
        let step = (len + 3) & !3;
        self.rest = self.rest.get(step..).unwrap_or(&[]);
        Some(parsed)
    }
}

// ---------------------------------------------------------------------------
// Watching address changes
// ---------------------------------------------------------------------------

/// An address appeared on or disappeared from the watched interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddrEvent {
    pub added: bool,
    pub addr: IpAddr,
    pub prefix: u8,
}

/// Receives IPv4/IPv6 address notifications for one interface.
pub struct AddressWatcher {
    sock: Socket,
    ifindex: u32,
    pending: VecDeque<AddrEvent>,
    buf: Vec<u8>,
}

/// Subscribes to address changes of interface `ifindex` in the calling
/// thread's network namespace.
pub fn watch(ifindex: u32) -> Result<AddressWatcher, AddressError> {
    let open = || -> io::Result<Socket> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.add_membership(RTNLGRP_IPV4_IFADDR)?;
        sock.add_membership(RTNLGRP_IPV6_IFADDR)?;
        sock.set_non_blocking(true)?;
        Ok(sock)
    };
    let sock = open().map_err(AddressError::Setup)?;
    Ok(AddressWatcher { sock, ifindex, pending: VecDeque::new(), buf: vec![0; RECV_BUF_LEN] })
}

impl AddressWatcher {
    /// The next change, or `None` if nothing happened within `timeout`.
    /// `Err(WatchOverrun)` means events were lost: re-read the addresses.
    pub fn next_event(&mut self, timeout: Duration) -> Result<Option<AddrEvent>, AddressError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(Some(event));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            // Round up so a sub-millisecond remainder still waits.
            let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
            if !self.wait_readable(ms, None)? {
                return Ok(None);
            }
            self.read_events()?;
        }
    }

    /// The next change, waiting without a timer; `None` once `stop` (an eventfd) is readable.
    /// A thread that only follows changes sleeps until there is one.
    pub fn next_event_or_stop(&mut self, stop: BorrowedFd<'_>) -> Result<Option<AddrEvent>, AddressError> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(Some(event));
            }
            if !self.wait_readable(-1, Some(stop))? {
                return Ok(None);
            }
            self.read_events()?;
        }
    }

    /// poll(2) for input for up to `ms` (-1: no limit); false on timeout or when `stop` is
    /// readable.
    fn wait_readable(&self, ms: libc::c_int, stop: Option<BorrowedFd<'_>>) -> Result<bool, AddressError> {
        let mut pfds = [
            libc::pollfd { fd: self.sock.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: stop.map_or(-1, |fd| fd.as_raw_fd()), events: libc::POLLIN, revents: 0 },
        ];
        // SAFETY: two valid pollfds (a negative fd is ignored by poll).
        let rc = unsafe { libc::poll(pfds.as_mut_ptr(), 2, ms) };
        if rc >= 0 {
            return Ok(rc > 0 && pfds[1].revents == 0);
        }
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok(true); // the recv will just find nothing; loop re-polls
        }
        Err(netlink_err("cannot wait for address notifications", err))
    }

    /// Drains one datagram into `pending`.
    fn read_events(&mut self) -> Result<(), AddressError> {
        let len = match recv_datagram(&self.sock, &mut self.buf) {
            Ok(len) => len,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                return Err(AddressError::WatchOverrun);
            }
            Err(e) => return Err(netlink_err("cannot read address notifications", e)),
        };
        for parsed in Messages::new(&self.buf[..len]) {
            match parsed {
                Ok(msg) => self.pending.extend(self.event_of(msg)),
                Err(detail) => log::warn!("skipping unreadable address notification: {detail}"),
            }
        }
        Ok(())
    }

    fn event_of(&self, msg: NetlinkMessage<RouteNetlinkMessage>) -> Option<AddrEvent> {
        let (added, a) = match msg.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(a)) => (true, a),
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelAddress(a)) => (false, a),
            _ => return None,
        };
        if a.header.index != self.ifindex {
            return None;
        }
        let info = IfAddr::from_message(&a)?;
        Some(AddrEvent { added, addr: info.addr, prefix: info.prefix })
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_name_the_problem() {
        let e = AddressError::NoSuchInterface("eth9".into());
        assert_eq!(e.to_string(), "no interface named eth9");
        let e = netlink_err("cannot add 192.0.2.200/24 to eth0", io::Error::from_raw_os_error(libc::EPERM));
        let text = e.to_string();
        assert!(text.starts_with("cannot add 192.0.2.200/24 to eth0: "), "{text}");
        assert!(text.contains("CAP_NET_ADMIN"), "{text}");
        let e = netlink_err("x", io::Error::from(io::ErrorKind::TimedOut));
        assert!(e.to_string().contains("did not answer"), "{e}");
    }

    #[test]
    fn splits_datagram_into_aligned_messages() {
        // Two NLMSG_DONE messages, the first padded to a 4-byte boundary.
        let mut buf = Vec::new();
        for seq in [7u32, 8] {
            let mut msg = NetlinkMessage::<RouteNetlinkMessage>::new(
                Default::default(),
                NetlinkPayload::Done(Default::default()),
            );
            msg.header.sequence_number = seq;
            msg.finalize();
            let mut bytes = vec![0; msg.buffer_len()];
            msg.serialize(&mut bytes);
            bytes.resize((bytes.len() + 3) & !3, 0);
            buf.extend(bytes);
        }
        let seqs: Vec<u32> = Messages::new(&buf).map(|m| m.expect("parses").header.sequence_number).collect();
        assert_eq!(seqs, [7, 8]);
    }

    #[test]
    fn bad_message_length_is_an_error_not_a_loop() {
        let mut buf = vec![0u8; 20];
        buf[..4].copy_from_slice(&100u32.to_ne_bytes());
        let out: Vec<_> = Messages::new(&buf).collect();
        assert_eq!(out.len(), 1);
        assert!(out[0].is_err());
    }

    #[test]
    fn missing_interface_is_reported_by_name() {
        match AddressManager::new("no-such-if0") {
            Err(AddressError::NoSuchInterface(name)) => assert_eq!(name, "no-such-if0"),
            Err(e) => panic!("unexpected error: {e}"),
            Ok(_) => panic!("interface should not exist"),
        }
    }
}
