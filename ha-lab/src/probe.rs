//! Client-side reachability probing with ICMP echo ("ping") sockets: measures how long a
//! failover leaves the shared address unreachable.

use std::{
    io::Read,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::host::Host;

/// A reply later than this counts as lost: a client would have retried by then.
pub const LATE_AFTER: Duration = Duration::from_millis(100);
/// Default bound on a prober's run, so a forgotten `stop` cannot probe forever.
pub const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(120);

const MAGIC: [u8; 4] = *b"HALB";
const PACKET_LEN: usize = 24;
static TOKENS: AtomicU32 = AtomicU32::new(1);

/// Opens an ICMP echo socket (SOCK_DGRAM "ping socket": the kernel fills id and checksum and
/// hands us only our replies) in the calling thread's namespace. Allows ping sockets via
/// `net.ipv4.ping_group_range` in that namespace if they are refused.
pub(crate) fn open_ping_socket(target: IpAddr) -> Result<Socket> {
    let (domain, proto) = match target {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
    };
    match Socket::new(domain, Type::DGRAM, Some(proto)) {
        Ok(s) => Ok(s),
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
            // /proc/sys/net resolves against the calling thread's namespace.
            std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647")
                .context("allowing ping sockets (net.ipv4.ping_group_range)")?;
            Socket::new(domain, Type::DGRAM, Some(proto)).context("opening ICMP ping socket")
        }
        Err(e) => Err(e).context("opening ICMP ping socket"),
    }
}

fn echo_packet(target: IpAddr, token: u32, index: u64) -> [u8; PACKET_LEN] {
    let mut p = [0u8; PACKET_LEN];
    p[0] = if target.is_ipv4() { 8 } else { 128 };
    p[6..8].copy_from_slice(&(index as u16).to_be_bytes());
    p[8..12].copy_from_slice(&MAGIC);
    p[12..16].copy_from_slice(&token.to_be_bytes());
    p[16..24].copy_from_slice(&index.to_be_bytes());
    p
}

/// The probe index of an echo reply carrying our token.
fn parse_reply(buf: &[u8], v4: bool, token: u32) -> Option<u64> {
    if buf.len() < PACKET_LEN || buf[0] != if v4 { 0 } else { 129 } || buf[8..12] != MAGIC {
        return None;
    }
    if u32::from_be_bytes(buf[12..16].try_into().ok()?) != token {
        return None;
    }
    Some(u64::from_be_bytes(buf[16..24].try_into().ok()?))
}

fn target_addr(target: IpAddr) -> SockAddr {
    SockAddr::from(SocketAddr::new(target, 0))
}

/// One echo request and its reply, within `timeout`.
pub(crate) fn ping_once(sock: &Socket, target: IpAddr, timeout: Duration) -> Result<Duration> {
    let token = TOKENS.fetch_add(1, Ordering::Relaxed);
    let start = Instant::now();
    sock.send_to(&echo_packet(target, token, 0), &target_addr(target)).context("sending echo request")?;
    let mut buf = [0u8; 256];
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        ensure!(!left.is_zero(), "no echo reply within {timeout:?}");
        sock.set_read_timeout(Some(left)).context("setting socket timeout")?;
        match (&*sock).read(&mut buf) {
            Ok(n) if parse_reply(&buf[..n], target.is_ipv4(), token) == Some(0) => {
                return Ok(start.elapsed());
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("receiving echo reply"),
        }
    }
}

#[derive(Default)]
struct Log {
    sent: Vec<Instant>,
    rtt: Vec<Option<Duration>>,
    send_errors: u64,
}

fn lock(log: &Mutex<Log>) -> MutexGuard<'_, Log> {
    log.lock().unwrap_or_else(|p| p.into_inner())
}

/// Pings `target` every `period` from a host's namespace until stopped (or a maximum
/// duration), then reports losses and outages.
pub struct Prober {
    start: Instant,
    log: Arc<Mutex<Log>>,
    stop_send: Arc<AtomicBool>,
    stop_recv: Arc<AtomicBool>,
    sender: Option<JoinHandle<Instant>>,
    receiver: Option<JoinHandle<()>>,
}

impl Prober {
    /// Starts probing with the default bound of [`DEFAULT_MAX_DURATION`].
    pub fn start(host: &Host, target: IpAddr, period: Duration) -> Result<Prober> {
        Self::start_bounded(host, target, period, DEFAULT_MAX_DURATION)
    }

    /// Starts probing; sending stops by itself after `max` even if `stop` is never called.
    pub fn start_bounded(host: &Host, target: IpAddr, period: Duration, max: Duration) -> Result<Prober> {
        ensure!(!period.is_zero(), "probe period must be positive");
        let sock = host.run_in(|| open_ping_socket(target))??;
        sock.set_read_timeout(Some(Duration::from_millis(20))).context("setting socket timeout")?;
        let rsock = sock.try_clone().context("cloning ping socket")?;
        let token = TOKENS.fetch_add(1, Ordering::Relaxed);
        let log = Arc::new(Mutex::new(Log::default()));
        let stop_send = Arc::new(AtomicBool::new(false));
        let stop_recv = Arc::new(AtomicBool::new(false));
        let start = Instant::now();

        let receiver = {
            let (log, stop) = (Arc::clone(&log), Arc::clone(&stop_recv));
            thread::Builder::new()
                .name("ha-lab-probe-rx".into())
                .spawn(move || {
                    measuring_thread();
                    receive(rsock, target.is_ipv4(), token, &log, &stop)
                })
                .context("starting probe receiver")?
        };
        let sender = {
            let (log, stop) = (Arc::clone(&log), Arc::clone(&stop_send));
            thread::Builder::new().name("ha-lab-probe-tx".into()).spawn(move || {
                measuring_thread();
                send(sock, target, token, period, start, max, &log, &stop)
            })
        };
        let sender = match sender {
            Ok(h) => h,
            Err(e) => {
                stop_recv.store(true, Ordering::Relaxed);
                let _ = receiver.join();
                return Err(e).context("starting probe sender");
            }
        };
        Ok(Prober { start, log, stop_send, stop_recv, sender: Some(sender), receiver: Some(receiver) })
    }

    /// Stops sending, waits out replies to the last probes (up to [`LATE_AFTER`]), and reports.
    pub fn stop(self) -> ProbeReport {
        self.stop_thinned(1).0
    }

    /// As [`Prober::stop`], and also what a client probing `every` times less often would have
    /// seen: the report on every `every`-th probe alone (the first, the `every+1`-th, ...). So
    /// one run gives a fine outage and the figure of a coarser prober, comparable with runs
    /// that only had that one.
    pub fn stop_thinned(mut self, every: usize) -> (ProbeReport, ProbeReport) {
        let end = self.finish();
        let log = lock(&self.log);
        let end = end.duration_since(self.start);
        let sent: Vec<Duration> = log.sent.iter().map(|t| t.duration_since(self.start)).collect();
        let (mut report, thinned) = reports(&sent, &log.rtt, end, every);
        report.send_errors = log.send_errors;
        (report, thinned)
    }

    fn finish(&mut self) -> Instant {
        self.stop_send.store(true, Ordering::Relaxed);
        let end = match self.sender.take().map(JoinHandle::join) {
            Some(Ok(end)) => end,
            _ => Instant::now(),
        };
        let last = lock(&self.log).sent.last().copied();
        if let Some(last) = last {
            let until = last + LATE_AFTER + Duration::from_millis(5);
            let now = Instant::now();
            if until > now {
                thread::sleep(until - now);
            }
        }
        self.stop_recv.store(true, Ordering::Relaxed);
        if let Some(h) = self.receiver.take() {
            let _ = h.join();
        }
        end
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        if self.sender.is_some() || self.receiver.is_some() {
            self.finish();
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn send(
    sock: Socket,
    target: IpAddr,
    token: u32,
    period: Duration,
    start: Instant,
    max: Duration,
    log: &Mutex<Log>,
    stop: &AtomicBool,
) -> Instant {
    let addr = target_addr(target);
    let period_ns = period.as_nanos().max(1);
    let slot_time = |k: u64| start + Duration::from_nanos((period_ns * k as u128).min(u64::MAX as u128) as u64);
    let mut k: u64 = 0;
    loop {
        let deadline = slot_time(k);
        if deadline.duration_since(start) > max {
            break;
        }
        // Sleep to the absolute deadline in short steps so stop() is honoured quickly.
        loop {
            if stop.load(Ordering::Relaxed) {
                return Instant::now();
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            thread::sleep((deadline - now).min(Duration::from_millis(20)));
        }
        let index = {
            let mut l = lock(log);
            l.sent.push(Instant::now());
            l.rtt.push(None);
            (l.sent.len() - 1) as u64
        };
        // A send error (e.g. EHOSTUNREACH after ARP failed) is a lost probe, not a stop.
        if sock.send_to(&echo_packet(target, token, index), &addr).is_err() {
            lock(log).send_errors += 1;
        }
        // Stay on the absolute schedule; if starved past whole slots, skip them, not burst.
        k += 1;
        let behind = (Instant::now().duration_since(start).as_nanos() / period_ns) as u64;
        if behind > k {
            k = behind;
        }
    }
    Instant::now()
}

/// The client is the instrument, not what is measured: a probe not sent (or an ARP answer not
/// read) while builds share the machine would show as a fault of the address. So the client's
/// threads ask for SCHED_FIFO (as root they get it; otherwise they run as before). The agents
/// keep their own scheduling.
pub(crate) fn measuring_thread() {
    let param = libc::sched_param { sched_priority: 20 };
    // SAFETY: a valid parameter struct; 0 means the calling thread.
    let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
}

fn receive(sock: Socket, v4: bool, token: u32, log: &Mutex<Log>, stop: &AtomicBool) {
    let mut buf = [0u8; 512];
    while !stop.load(Ordering::Relaxed) {
        let n = match (&sock).read(&mut buf) {
            Ok(n) => n,
            Err(_) => continue, // timeout (to re-check stop) or a transient ICMP error
        };
        let now = Instant::now();
        let Some(index) = parse_reply(&buf[..n], v4, token) else {
            continue;
        };
        let mut l = lock(log);
        let i = index as usize;
        if i < l.sent.len() && l.rtt[i].is_none() {
            l.rtt[i] = Some(now.duration_since(l.sent[i]));
        }
    }
}

/// A run of consecutive unanswered probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    /// When the last answered probe before the run was sent (the first lost one's send time
    /// if the run opens the measurement), from the prober's start.
    pub start_offset: Duration,
    /// From `start_offset` to the send time of the first answered probe after the run (or the
    /// end of probing if none came).
    pub duration: Duration,
    pub lost: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeReport {
    pub sent: u64,
    /// Replies within [`LATE_AFTER`].
    pub answered: u64,
    /// `sent - answered`: includes late replies and failed sends.
    pub lost: u64,
    /// Replies that did come, but after [`LATE_AFTER`] (counted in `lost`).
    pub late: u64,
    /// Sends the kernel refused (counted in `lost`).
    pub send_errors: u64,
    /// The longest outage's duration, zero if nothing was lost.
    pub longest_outage: Duration,
    pub max_rtt: Duration,
    pub outages: Vec<Outage>,
}

impl std::fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} sent, {} answered, {} lost ({} late, {} send errors), {} outages, longest {:?}, max rtt {:?}",
            self.sent,
            self.answered,
            self.lost,
            self.late,
            self.send_errors,
            self.outages.len(),
            self.longest_outage,
            self.max_rtt
        )
    }
}

/// The report on every probe, and the one on every `every`-th probe alone.
fn reports(sent: &[Duration], rtt: &[Option<Duration>], end: Duration, every: usize) -> (ProbeReport, ProbeReport) {
    let every = every.max(1);
    let thin_sent: Vec<Duration> = sent.iter().step_by(every).copied().collect();
    let thin_rtt: Vec<Option<Duration>> = rtt.iter().step_by(every).copied().collect();
    (compute_report(sent, rtt, end), compute_report(&thin_sent, &thin_rtt, end))
}

/// Builds the report from send offsets and round-trip times (None: no reply).
fn compute_report(sent: &[Duration], rtt: &[Option<Duration>], end: Duration) -> ProbeReport {
    let ok: Vec<bool> = rtt.iter().map(|r| r.is_some_and(|r| r <= LATE_AFTER)).collect();
    let mut report = ProbeReport {
        sent: sent.len() as u64,
        answered: ok.iter().filter(|&&b| b).count() as u64,
        late: rtt.iter().filter(|r| r.is_some_and(|r| r > LATE_AFTER)).count() as u64,
        max_rtt: rtt.iter().zip(&ok).filter(|(_, ok)| **ok).filter_map(|(r, _)| *r).max().unwrap_or_default(),
        ..ProbeReport::default()
    };
    report.lost = report.sent - report.answered;
    let mut i = 0;
    while i < ok.len() {
        if ok[i] {
            i += 1;
            continue;
        }
        let first = i;
        while i < ok.len() && !ok[i] {
            i += 1;
        }
        let from = if first > 0 { sent[first - 1] } else { sent[first] };
        let to = if i < ok.len() { sent[i] } else { end.max(from) };
        report.outages.push(Outage { start_offset: from, duration: to - from, lost: (i - first) as u64 });
    }
    report.longest_outage = report.outages.iter().map(|o| o.duration).max().unwrap_or_default();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn packet_roundtrip() {
        let target: IpAddr = "192.0.2.1".parse().unwrap();
        let mut p = echo_packet(target, 7, 300);
        assert_eq!(p[0], 8);
        p[0] = 0; // what the reply looks like
        assert_eq!(parse_reply(&p, true, 7), Some(300));
        assert_eq!(parse_reply(&p, true, 8), None);
        assert_eq!(parse_reply(&p, false, 7), None);
        assert_eq!(parse_reply(&p[..10], true, 7), None);
    }

    #[test]
    fn no_loss_no_outage() {
        let sent: Vec<_> = (0..5).map(|i| ms(10 * i)).collect();
        let rtt = vec![Some(ms(1)); 5];
        let r = compute_report(&sent, &rtt, ms(50));
        assert_eq!((r.sent, r.answered, r.lost), (5, 5, 0));
        assert!(r.outages.is_empty());
        assert_eq!(r.longest_outage, Duration::ZERO);
        assert_eq!(r.max_rtt, ms(1));
    }

    #[test]
    fn outages_span_answered_neighbours() {
        let sent: Vec<_> = (0..10).map(|i| ms(10 * i)).collect();
        let mut rtt = vec![Some(ms(1)); 10];
        rtt[2] = None;
        rtt[3] = Some(ms(150)); // late = lost
        rtt[4] = None;
        rtt[7] = None;
        let r = compute_report(&sent, &rtt, ms(100));
        assert_eq!((r.sent, r.answered, r.lost, r.late), (10, 6, 4, 1));
        assert_eq!(
            r.outages,
            vec![
                Outage { start_offset: ms(10), duration: ms(40), lost: 3 },
                Outage { start_offset: ms(60), duration: ms(20), lost: 1 },
            ]
        );
        assert_eq!(r.longest_outage, ms(40));
    }

    #[test]
    fn a_thinned_prober_sees_the_same_run_in_coarser_steps() {
        // Probes every 2 ms (at 0, 2, ..., 18 ms), those at 6, 8 and 10 ms lost: a gap from 4
        // to 12 ms. Every other probe alone (0, 4, 8, 12, 16 ms) loses only the one at 8 ms,
        // and reads the gap as 4 to 12 ms in its own 4 ms steps.
        let sent: Vec<_> = (0..10).map(|i| ms(2 * i)).collect();
        let mut rtt = vec![Some(ms(1)); 10];
        rtt[3..=5].fill(None);
        let (fine, coarse) = reports(&sent, &rtt, ms(20), 2);
        assert_eq!((fine.sent, fine.lost, fine.longest_outage), (10, 3, ms(8)));
        assert_eq!((coarse.sent, coarse.lost, coarse.longest_outage), (5, 1, ms(8)));
        // Losing the probe at 6 ms alone: invisible to the thinned prober.
        let mut rtt = vec![Some(ms(1)); 10];
        rtt[3] = None;
        let (fine, coarse) = reports(&sent, &rtt, ms(20), 2);
        assert_eq!((fine.lost, fine.longest_outage), (1, ms(4)));
        assert_eq!((coarse.lost, coarse.longest_outage), (0, Duration::ZERO));
        // Thinning by 1 (or 0) is the report itself.
        assert_eq!(reports(&sent, &rtt, ms(20), 0).1, fine);
    }

    #[test]
    fn outages_at_the_edges() {
        let sent: Vec<_> = (0..4).map(|i| ms(10 * i)).collect();
        let rtt = vec![None, Some(ms(1)), Some(ms(1)), None];
        let r = compute_report(&sent, &rtt, ms(45));
        assert_eq!(
            r.outages,
            vec![
                Outage { start_offset: ms(0), duration: ms(10), lost: 1 },
                Outage { start_offset: ms(20), duration: ms(25), lost: 1 },
            ]
        );
    }
}
