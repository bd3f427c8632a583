//! The lab's floor: what the barest heartbeat exchanges cost on this machine, counted the way
//! the daemons are, in the same run. No daemon runs: node 2 runs a sender (this program's
//! hidden `floor-sender` command) that sends an ICMP echo request to node 1 every interval, and
//! node 1's kernel answers it, as a holder's XDP program answers a standby's heartbeat. The
//! sender paces its requests either itself (a timer wake per request, as our standby does) or
//! through the kernel: it queues a hundred at once behind a token bucket (TBF) on its
//! interface that releases one per interval, so the requests leave on kernel timers and it
//! wakes once per hundred. A bare timer wake with nothing sent, and kernel-paced requests that
//! node 1 does not answer, split the cost into its parts. A target below a floor is out of
//! reach of any design with that shape, on this machine.
use std::{
    net::{Ipv4Addr, SocketAddrV4},
    thread,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use ha_lab::{Host, Lab};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::{
    accounting, procfs,
    rest::{IdleSeries, WARMUP, window_run},
    results::{Implementation, RestRun, Results},
};
use crate::scenario::ms;

/// Intervals the floor is measured at: the two the cost targets name.
const INTERVALS: [Duration; 2] = [Duration::from_millis(1), Duration::from_millis(10)];
/// Requests a kernel-paced sender queues per wake.
const BATCH: u32 = 100;
/// ICMP echo: 8 bytes of header and 56 of data, as ping sends; with IPv4 and Ethernet headers
/// a frame of 98 bytes (an authenticated heartbeat of ours is 242).
const ECHO_LEN: usize = 64;
const FRAME_LEN: u64 = ECHO_LEN as u64 + 20 + 14;

/// How a floor run's sender behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Wakes on a timer every interval and sends nothing.
    Wake,
    /// Wakes every interval and sends a request; node 1's kernel answers.
    Echo,
    /// Queues a batch of requests behind the TBF once per batch; node 1's kernel answers.
    PacedEcho,
    /// As `PacedEcho`, and node 1 ignores the requests.
    PacedOneWay,
}

impl Shape {
    const ALL: [Shape; 4] = [Shape::Wake, Shape::Echo, Shape::PacedEcho, Shape::PacedOneWay];

    fn label(self) -> &'static str {
        match self {
            Shape::Wake => "a timer wake per interval, nothing sent",
            Shape::Echo => "a request per interval from a timer wake, node 1's kernel answers",
            Shape::PacedEcho => "requests paced by the kernel (TBF), node 1's kernel answers",
            Shape::PacedOneWay => "requests paced by the kernel (TBF), not answered",
        }
    }

    fn paced(self) -> bool {
        matches!(self, Shape::PacedEcho | Shape::PacedOneWay)
    }

    /// The sender's wake period: every interval, or once per batch when the kernel paces.
    fn period(self, interval: Duration) -> Duration {
        if self.paced() { interval * BATCH } else { interval }
    }

    fn burst(self) -> u32 {
        match self {
            Shape::Wake => 0,
            Shape::Echo => 1,
            Shape::PacedEcho | Shape::PacedOneWay => BATCH,
        }
    }
}

/// Every shape at every interval, each between idle windows like the daemons' runs.
pub fn run(res: &mut Results, idle: &mut IdleSeries, window: Duration) {
    for interval in INTERVALS {
        for shape in Shape::ALL {
            let setting = format!("{} ms: {}", ms(interval), shape.label());
            println!("\n-- the lab's floor, {setting}, {} s window --", window.as_secs());
            match idle.around(|| measure(shape, interval, window)) {
                Ok(mut r) => {
                    r.setting = setting;
                    println!(
                        "sender {:.3}% own ({:.0} wakes/s); machine above idle {:.3}% per node",
                        r.cpu_pct[1],
                        r.wakes_per_s[1],
                        r.machine_pct_above_idle / 2.0
                    );
                    res.rest_runs.push(r);
                }
                Err(e) => {
                    println!("floor {setting}: {e:#}");
                    res.errors.push(format!("floor {setting}: {e:#}"));
                }
            }
        }
    }
}

fn measure(shape: Shape, interval: Duration, window: Duration) -> Result<RestRun> {
    let lab = Lab::new(2).context("making the lab")?;
    let (answerer, sender) = (lab.node(1), lab.node(2));
    if shape == Shape::PacedOneWay {
        answerer.sysctl("net.ipv4.icmp_echo_ignore_all", "1")?;
    }
    if shape.paced() {
        pace(sender, interval)?;
    }
    let exe = std::env::current_exe().context("this program's path")?;
    let mut cmd = sender.command(exe);
    cmd.arg("floor-sender")
        .arg(answerer.addr().to_string())
        .args(["--period-us", &shape.period(interval).as_micros().to_string()])
        .args(["--burst", &shape.burst().to_string()]);
    let mut child = sender.spawn(cmd)?;
    thread::sleep(WARMUP);
    let pid = child.pid();
    let echoes = || -> Result<u64> { icmp_in_echoes(answerer) };
    let (a, wakes0, echoes0) = (accounting::snapshot()?, procfs::voluntary_switches(pid), echoes()?);
    thread::sleep(window);
    let (wakes1, echoes1) = (procfs::voluntary_switches(pid), echoes()?);
    let w = accounting::window(&a, &accounting::snapshot_end()?, &[pid]);
    if let Some(status) = child.try_wait() {
        bail!("the sender exited ({status}): {}", child.output_so_far());
    }
    if shape.paced() {
        held_back(sender)?;
    }
    let sent_per_s = echoes1.saturating_sub(echoes0) as f64 / w.secs;
    let want = if shape == Shape::Wake { 0.0 } else { 1.0 / interval.as_secs_f64() };
    if (sent_per_s - want).abs() > want * 0.05 + 1.0 {
        bail!("node 1 received {sent_per_s:.0} requests a second, not {want:.0}");
    }
    let mut run = window_run(
        Implementation::Floor,
        &w,
        vec![0.0, w.trees_pct.first().copied().unwrap_or(f64::NAN)],
        vec![0.0, wakes1.saturating_sub(wakes0) as f64 / w.secs],
        vec![0.0, procfs::rss_mib(pid).unwrap_or(0.0)],
    );
    run.mode = format!("{shape:?}");
    run.interval_ms = ms(interval);
    Ok(run)
}

/// A token bucket on the sender's interface that lets one request through per interval, with
/// room for two at once and a queue long enough for any batch.
fn pace(sender: &Host, interval: Duration) -> Result<()> {
    let bits_per_s = FRAME_LEN * 8 * 1_000_000 / interval.as_micros().max(1) as u64;
    let (rate, burst) = (format!("{bits_per_s}bit"), (FRAME_LEN * 2).to_string());
    let args =
        ["qdisc", "replace", "dev", sender.iface(), "root", "tbf", "rate", &rate, "burst", &burst, "latency", "5s"];
    sender.exec("tc", &args).map(drop).context("adding the token bucket")
}

/// Fails unless the token bucket held most requests back (they left on its timers, not in the
/// sender's bursts) and dropped none.
fn held_back(sender: &Host) -> Result<()> {
    let stats = sender.exec("tc", &["-s", "qdisc", "show", "dev", sender.iface()])?;
    let (sent, dropped, over) =
        qdisc_counts(&stats).with_context(|| format!("no token bucket statistics in: {stats}"))?;
    if dropped > 0 || over * 2 < sent {
        bail!("the token bucket did not pace: {sent} sent, {over} held back, {dropped} dropped");
    }
    Ok(())
}

/// Packets sent, dropped and held back (overlimits) from `tc -s qdisc show`'s
/// `Sent 2058 bytes 21 pkt (dropped 0, overlimits 19 requeues 0)`.
fn qdisc_counts(stats: &str) -> Option<(u64, u64, u64)> {
    let words: Vec<&str> = stats.split(|c: char| c.is_whitespace() || c == '(' || c == ',').collect();
    let after = |name: &str| words.iter().position(|w| *w == name).and_then(|i| words.get(i + 1)?.parse().ok());
    let sent = words.iter().position(|w| *w == "pkt").and_then(|i| words.get(i.checked_sub(1)?)?.parse().ok());
    Some((sent?, after("dropped")?, after("overlimits")?))
}

/// The echo requests node 1 has received, from its SNMP counters.
fn icmp_in_echoes(host: &Host) -> Result<u64> {
    let snmp = host.exec("cat", &["/proc/net/snmp"])?;
    let mut icmp = snmp.lines().filter(|l| l.starts_with("Icmp:"));
    let (names, values) = (icmp.next().context("no Icmp line")?, icmp.next().context("no Icmp values")?);
    let at = names.split_whitespace().position(|n| n == "InEchos").context("no InEchos")?;
    values.split_whitespace().nth(at).context("short Icmp line")?.parse().context("InEchos")
}

/// The sender: every `period`, on absolute deadlines, `burst` echo requests to `to` (through
/// an ICMP datagram socket, which the lab's hosts allow to everyone); answers are read and
/// dropped. Runs until killed.
pub fn sender(to: Ipv4Addr, period: Duration, burst: u32) -> Result<()> {
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::ICMPV4)).context("ICMP socket")?;
    sock.set_nonblocking(true)?;
    let to = SockAddr::from(SocketAddrV4::new(to, 0));
    let mut request = [0u8; ECHO_LEN];
    request[0] = 8;
    let mut answer = [std::mem::MaybeUninit::<u8>::uninit(); 256];
    let mut next = now()?;
    loop {
        next = add(next, period);
        // SAFETY: a valid timespec; an interrupted sleep only means a wake before `next`.
        unsafe { libc::clock_nanosleep(libc::CLOCK_MONOTONIC, libc::TIMER_ABSTIME, &next, std::ptr::null_mut()) };
        for _ in 0..burst {
            sock.send_to(&request, &to).context("sending an echo request")?;
        }
        while sock.recv(&mut answer).is_ok() {}
    }
}

fn now() -> Result<libc::timespec> {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid out-pointer.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) } != 0 {
        bail!("clock_gettime: {}", std::io::Error::last_os_error());
    }
    Ok(t)
}

fn add(t: libc::timespec, d: Duration) -> libc::timespec {
    let ns = t.tv_nsec as u64 + u64::from(d.subsec_nanos());
    libc::timespec {
        tv_sec: t.tv_sec + d.as_secs() as i64 + (ns / 1_000_000_000) as i64,
        tv_nsec: (ns % 1_000_000_000) as i64,
    }
}

#[cfg(test)]
mod tests {
    use super::qdisc_counts;

    #[test]
    fn token_bucket_counts_are_read_from_tc() {
        let stats = "qdisc tbf 8001: root refcnt 2 rate 784Kbit burst 196b lat 5s \n Sent 2058 bytes 21 pkt \
                     (dropped 0, overlimits 19 requeues 0) \n backlog 0b 0p requeues 0\n";
        assert_eq!(qdisc_counts(stats), Some((21, 0, 19)));
        assert_eq!(qdisc_counts("qdisc noqueue 0: root refcnt 2\n"), None);
    }
}
