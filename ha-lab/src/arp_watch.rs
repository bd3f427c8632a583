//! Who answers ARP for an address, seen from a lab host: a thread asks "who has ADDR?" every few
//! milliseconds from a packet socket and records the sender MAC of every reply, and of every
//! announcement (gratuitous ARP) of the address.
//!
//! The requests come from a MAC and an address no host has ([`WATCH_MAC`], [`WATCH_IP`]), so
//! the replies are unicast to that MAC: the host's kernel drops them as not its own, and its
//! neighbour table (what the prober's traffic follows) is never touched by the watching.

use std::{
    collections::BTreeSet,
    io,
    net::Ipv4Addr,
    os::fd::{AsRawFd, OwnedFd},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};

use crate::{Host, inject};

/// Source MAC of the watcher's requests (locally administered; no lab host has it).
pub const WATCH_MAC: [u8; 6] = [0x02, 0, 0, 0xa7, 0xa7, 0xfe];
/// Sender address of the watcher's requests: in the lab's /24, on no host.
pub const WATCH_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);

const ETH_P_ARP: u16 = 0x0806;
const FRAME_LEN: usize = 42;

/// One ARP reply for the watched address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Answer {
    at: Instant,
    mac: [u8; 6],
}

/// What the watching thread records into.
struct Seen {
    answers: Arc<Mutex<Vec<Answer>>>,
    announcements: Arc<Mutex<Vec<Answer>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Asks who has `target` every `period` until stopped (or `max` passed), remembering answers.
pub struct ArpWatcher {
    answers: Arc<Mutex<Vec<Answer>>>,
    announcements: Arc<Mutex<Vec<Answer>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl ArpWatcher {
    pub fn start(host: &Host, target: Ipv4Addr, period: Duration, max: Duration) -> Result<ArpWatcher> {
        ensure!(!period.is_zero(), "ARP watch period must be positive");
        let iface = host.iface().to_string();
        let fd = host
            .run_in(move || inject::open_packet_socket(&iface, ETH_P_ARP))?
            .with_context(|| format!("opening an ARP socket on {} in {}", host.iface(), host.name()))?;
        let answers = Arc::new(Mutex::new(Vec::new()));
        let announcements = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let seen = Seen { answers: Arc::clone(&answers), announcements: Arc::clone(&announcements) };
            let stop = Arc::clone(&stop);
            thread::Builder::new()
                .name("ha-lab-arp-watch".into())
                .spawn(move || {
                    crate::probe::measuring_thread();
                    watch(&fd, target, period, max, &seen, &stop)
                })
                .context("starting the ARP watcher")?
        };
        Ok(ArpWatcher { answers, announcements, stop, thread: Some(thread) })
    }

    /// Every answer since `from`, in order: when, and the MAC it named.
    pub fn answers_since(&self, from: Instant) -> Vec<(Instant, [u8; 6])> {
        lock(&self.answers).iter().filter(|a| a.at >= from).map(|a| (a.at, a.mac)).collect()
    }

    /// Every gratuitous ARP (request or reply) for the address since `from`: when, and by whom.
    pub fn announcements_since(&self, from: Instant) -> Vec<(Instant, [u8; 6])> {
        lock(&self.announcements).iter().filter(|a| a.at >= from).map(|a| (a.at, a.mac)).collect()
    }

    /// MACs that answered between `from` and `to`; forgets answers older than `from`.
    pub fn answered_between(&self, from: Instant, to: Instant) -> BTreeSet<[u8; 6]> {
        let mut answers = lock(&self.answers);
        answers.retain(|a| a.at >= from);
        answers.iter().filter(|a| a.at <= to).map(|a| a.mac).collect()
    }

    /// Watches for `window` from now and returns the MACs that answered meanwhile.
    pub fn answered_during(&self, window: Duration) -> BTreeSet<[u8; 6]> {
        let from = Instant::now();
        thread::sleep(window);
        self.answered_between(from, Instant::now())
    }

    /// Whether the watcher still runs (false after a socket error or after its `max`).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops the thread; the socket error that ended it early, if one did.
    pub fn stop(mut self) -> Result<()> {
        self.finish()
    }

    fn finish(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r.context("ARP watcher"),
            Some(Err(_)) => anyhow::bail!("the ARP watcher panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for ArpWatcher {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            eprintln!("ha-lab: {e:#}");
        }
    }
}

fn watch(
    fd: &OwnedFd,
    target: Ipv4Addr,
    period: Duration,
    max: Duration,
    seen: &Seen,
    stop: &AtomicBool,
) -> io::Result<()> {
    let request = request_frame(target);
    let start = Instant::now();
    let mut next = start;
    let mut buf = [0u8; 256];
    while !stop.load(Ordering::Relaxed) && start.elapsed() < max {
        let now = Instant::now();
        if now >= next {
            inject::send_frame(fd, &request)?;
            next += period;
            if next < now {
                next = now + period;
            }
        }
        let wait_ms = next.saturating_duration_since(Instant::now()).as_millis().clamp(1, 20) as i32;
        let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, wait_ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if rc == 0 {
            continue;
        }
        // Drain what is queued.
        loop {
            // SAFETY: valid fd and buffer.
            let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => break,
                    _ => return Err(e),
                }
            }
            let frame = &buf[..n as usize];
            if let Some(mac) = parse_reply(frame, target) {
                lock(&seen.answers).push(Answer { at: Instant::now(), mac });
            } else if let Some(mac) = parse_announcement(frame, target) {
                lock(&seen.announcements).push(Answer { at: Instant::now(), mac });
            }
        }
    }
    Ok(())
}

/// Broadcast "who has `target`? tell [`WATCH_IP`] at [`WATCH_MAC`]".
fn request_frame(target: Ipv4Addr) -> [u8; FRAME_LEN] {
    let mut f = [0u8; FRAME_LEN];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&WATCH_MAC);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    // Ethernet, IPv4, hardware length 6, protocol length 4, request.
    f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&WATCH_MAC);
    f[28..32].copy_from_slice(&WATCH_IP.octets());
    // Target hardware address stays zero.
    f[38..42].copy_from_slice(&target.octets());
    f
}

/// The sender MAC of an ARP reply that says `target` is at it, addressed to the watcher.
fn parse_reply(frame: &[u8], target: Ipv4Addr) -> Option<[u8; 6]> {
    if frame.len() < FRAME_LEN || frame[12..14] != ETH_P_ARP.to_be_bytes() {
        return None;
    }
    let arp = &frame[14..];
    if arp[0..8] != [0, 1, 8, 0, 6, 4, 0, 2] || arp[14..18] != target.octets() || arp[24..28] != WATCH_IP.octets() {
        return None;
    }
    arp[8..14].try_into().ok()
}

/// The sender MAC of a gratuitous ARP (request or reply) for `target`: sender and target
/// address both `target`.
fn parse_announcement(frame: &[u8], target: Ipv4Addr) -> Option<[u8; 6]> {
    if frame.len() < FRAME_LEN || frame[12..14] != ETH_P_ARP.to_be_bytes() {
        return None;
    }
    let arp = &frame[14..];
    if arp[0..6] != [0, 1, 8, 0, 6, 4] || arp[14..18] != target.octets() || arp[24..28] != target.octets() {
        return None;
    }
    arp[8..14].try_into().ok()
}

/// `aa:bb:..` for messages.
pub fn mac_text(mac: &[u8; 6]) -> String {
    crate::host::format_mac(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 200);

    fn reply_from(mac: [u8; 6], sender_ip: Ipv4Addr, to_ip: Ipv4Addr) -> Vec<u8> {
        let mut f = request_frame(VIP).to_vec();
        f[0..6].copy_from_slice(&WATCH_MAC);
        f[6..12].copy_from_slice(&mac);
        f[21] = 2;
        f[22..28].copy_from_slice(&mac);
        f[28..32].copy_from_slice(&sender_ip.octets());
        f[32..38].copy_from_slice(&WATCH_MAC);
        f[38..42].copy_from_slice(&to_ip.octets());
        f
    }

    #[test]
    fn reads_replies_for_the_target_only() {
        let mac = [2, 0, 0, 0, 9, 1];
        assert_eq!(parse_reply(&reply_from(mac, VIP, WATCH_IP), VIP), Some(mac));
        // A gratuitous reply (to the address itself) is an announcement, not an answer.
        assert_eq!(parse_reply(&reply_from(mac, VIP, VIP), VIP), None);
        assert_eq!(parse_reply(&reply_from(mac, Ipv4Addr::new(192, 0, 2, 1), WATCH_IP), VIP), None);
        assert_eq!(parse_reply(&request_frame(VIP), VIP), None, "our own request");
        assert_eq!(parse_reply(&reply_from(mac, VIP, WATCH_IP)[..30], VIP), None);
    }

    #[test]
    fn reads_announcements_of_the_target_only() {
        let mac = [2, 0, 0, 0, 9, 1];
        assert_eq!(parse_announcement(&reply_from(mac, VIP, VIP), VIP), Some(mac), "gratuitous reply");
        let mut request = reply_from(mac, VIP, VIP);
        request[21] = 1;
        assert_eq!(parse_announcement(&request, VIP), Some(mac), "gratuitous request");
        assert_eq!(parse_announcement(&reply_from(mac, VIP, WATCH_IP), VIP), None, "an answer");
        assert_eq!(parse_announcement(&request_frame(VIP), VIP), None, "our own request");
    }
}
