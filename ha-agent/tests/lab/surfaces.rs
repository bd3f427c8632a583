//! The agent's surfaces stay bounded under abuse, with a real agent: scrapes are answered while
//! clients sit silent or trickle bytes at the metrics port; the control socket neither grows
//! the agent on an endless line nor starts a thread per connection; what is exported passes
//! `promtool check metrics`.
use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    os::unix::net::UnixStream,
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use ha_lab::{AgentSet, AgentSettings, Lab};

use crate::support::{AGENT, WAIT, bounded, lab, shared_cpu, status_json};

const METRICS_PORT: u16 = 9466;

pub(crate) fn metrics_addr() -> SocketAddr {
    (Ipv4Addr::LOCALHOST, METRICS_PORT).into()
}

/// Connects from inside node i's namespace; the stream can be used from any thread.
fn connect(lab: &Lab, i: usize) -> std::io::Result<TcpStream> {
    lab.node(i).run_in(|| TcpStream::connect_timeout(&metrics_addr(), Duration::from_secs(2))).expect("namespace")
}

/// One scrape: its body, or why it failed.
pub(crate) fn scrape(lab: &Lab, i: usize) -> Result<String, String> {
    let mut conn = connect(lab, i).map_err(|e| format!("connect: {e}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(3))).map_err(|e| e.to_string())?;
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: ha\r\n\r\n").map_err(|e| format!("send: {e}"))?;
    let mut reply = String::new();
    conn.read_to_string(&mut reply).map_err(|e| format!("read: {e}"))?;
    match reply.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200 OK") => Ok(body.to_string()),
        _ => Err(format!("reply: {reply:?}")),
    }
}

/// Agents with `--metrics` (and `extra` args for node i), node 1 the holder.
fn start_with_metrics<'l>(lab: &'l Lab, extra: &[&[&str]]) -> AgentSet<'l> {
    let n = lab.nodes().len();
    let priorities: Vec<u32> = (0..n as u32).map(|i| 200 - i).collect();
    let mut settings = AgentSettings::new(&priorities);
    settings.extra_args = vec!["--metrics".into(), metrics_addr().to_string()];
    for (i, args) in extra.iter().enumerate() {
        settings.node(i + 1).args = args.iter().map(|a| a.to_string()).collect();
    }
    let agents = AgentSet::start(lab, AGENT, settings).expect("agent");
    agents.wait_sole_holder(1, WAIT).expect("the most worthy node holds");
    for i in 1..=n {
        let start = Instant::now();
        while scrape(lab, i).is_err() {
            assert!(start.elapsed() < WAIT, "metrics never answered:\n{}", agents.diagnostics());
            thread::sleep(Duration::from_millis(20));
        }
    }
    agents
}

#[test]
fn scrapes_are_answered_while_clients_sit_silent_or_trickle() {
    let _cpu = shared_cpu();
    bounded(|| {
        let lab = lab(1);
        let agents = start_with_metrics(&lab, &[]);
        let lab = &lab;
        let idle: Vec<TcpStream> = (0..20).filter_map(|_| connect(lab, 1).ok()).collect();
        assert_eq!(idle.len(), 20);
        let stop = AtomicBool::new(false);
        let (ok, total, worst) = thread::scope(|s| {
            // A byte at a time, as fast as a patient attacker, reconnecting when dropped.
            s.spawn(|| {
                let mut conn = connect(lab, 1).ok();
                while !stop.load(Ordering::Relaxed) {
                    if !conn.as_mut().is_some_and(|c| c.write_all(b"G").is_ok()) {
                        conn = connect(lab, 1).ok();
                    }
                    thread::sleep(Duration::from_millis(500));
                }
            });
            let mut results = Vec::new();
            for _ in 0..8 {
                let start = Instant::now();
                results.push((scrape(lab, 1), start.elapsed()));
                thread::sleep(Duration::from_millis(400));
            }
            stop.store(true, Ordering::Relaxed);
            let ok = results.iter().filter(|(r, _)| r.is_ok()).count();
            let worst = results.iter().map(|(_, took)| *took).max().unwrap_or_default();
            for (r, _) in &results {
                if let Err(e) = r {
                    eprintln!("failed scrape: {e}");
                }
            }
            (ok, results.len(), worst)
        });
        eprintln!("scrapes under 20 idle connections and a trickling client: {ok}/{total} answered, slowest {worst:?}");
        assert_eq!(ok, total, "{}", agents.diagnostics());
        assert!(worst < Duration::from_millis(500), "slowest scrape {worst:?}");
        drop(idle);
    });
}

/// Resident memory (kB) and threads of a process.
fn rss_kb_and_threads(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{status}"))
    };
    (field("VmRSS:"), field("Threads:"))
}

#[test]
fn the_control_socket_bounds_line_length_and_connections() {
    let _cpu = shared_cpu();
    bounded(|| {
        let lab = lab(1);
        let agents = AgentSet::start(&lab, AGENT, AgentSettings::new(&[100])).expect("agent");
        agents.wait_sole_holder(1, WAIT).expect("the only node holds");
        let pid = agents.pid(1).expect("pid");
        let path = ha_agent::ops::control::socket_path(&lab.pin_dir(1));
        let (rss_before, threads_before) = rss_kb_and_threads(pid);

        // 256 MiB without a newline, as fast as the agent reads: it stops reading at the limit.
        let mut long = UnixStream::connect(&path).expect("connect");
        long.set_write_timeout(Some(Duration::from_secs(3))).expect("timeout");
        let chunk = vec![b'x'; 1 << 20];
        let mut sent = 0usize;
        while sent < 256 << 20 && long.write_all(&chunk).is_ok() {
            sent += chunk.len();
        }
        let (rss_line, _) = rss_kb_and_threads(pid);
        eprintln!(
            "control socket: {} MiB of one line taken before the agent closed it; RSS {rss_before} kB -> {rss_line} kB",
            sent >> 20
        );
        assert!(rss_line < rss_before + 16 * 1024, "RSS grew from {rss_before} kB to {rss_line} kB");

        // 500 clients that say nothing.
        let conns: Vec<UnixStream> = (0..500).filter_map(|_| UnixStream::connect(&path).ok()).collect();
        thread::sleep(Duration::from_millis(300));
        let (rss_conns, threads_conns) = rss_kb_and_threads(pid);
        eprintln!(
            "control socket: {} silent clients: threads {threads_before} -> {threads_conns}, RSS {rss_conns} kB",
            conns.len()
        );
        assert!(threads_conns <= threads_before + 16 + 1, "{threads_before} -> {threads_conns} threads");
        drop(conns);
        // It answers again once the silent clients are gone.
        let start = Instant::now();
        while !ha_agent::ops::control::request(&path, "status").is_ok_and(|r| r.starts_with('{')) {
            assert!(start.elapsed() < WAIT, "no status after the clients left:\n{}", agents.diagnostics());
            thread::sleep(Duration::from_millis(50));
        }
    });
}

#[test]
fn failing_heartbeat_sends_are_one_error_line_and_counted() {
    let _cpu = shared_cpu();
    bounded(|| {
        let lab = lab(1);
        let agents = AgentSet::start(&lab, AGENT, AgentSettings::new(&[100])).expect("agent");
        agents.wait_sole_holder(1, WAIT).expect("the only node holds");
        let errors = || status_json(&lab, 1)["heartbeat_send_errors"].as_u64().unwrap_or(0);
        assert_eq!(errors(), 0);
        // The interface taken down on the node: every send fails ("network unreachable").
        lab.node(1).ip(&["link", "set", "eth0", "down"]).expect("link down");
        let start = Instant::now();
        while errors() < 20 {
            assert!(start.elapsed() < WAIT, "sends not counted as failing:\n{}", agents.output(1));
            thread::sleep(Duration::from_millis(50));
        }
        let about_sends = |out: &str| {
            out.lines()
                .filter(|l| l.contains("heartbeats ") && l.contains(" sent on eth0"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        let out = agents.output(1);
        let lines = about_sends(&out);
        assert_eq!(lines.len(), 1, "one line for the burst:\n{out}");
        assert!(lines[0].contains(" ERROR]") && lines[0].contains("heartbeats cannot be sent on eth0"), "{out}");

        // Back up: sends work again, said once.
        lab.node(1).ip(&["link", "set", "eth0", "up"]).expect("link up");
        let start = Instant::now();
        while about_sends(&agents.output(1)).len() < 2 {
            assert!(start.elapsed() < WAIT, "recovery not logged:\n{}", agents.output(1));
            thread::sleep(Duration::from_millis(20));
        }
        // Status is published every few ticks: let the last failures reach it first.
        thread::sleep(Duration::from_millis(300));
        let settled = errors();
        thread::sleep(Duration::from_millis(300));
        assert_eq!(errors(), settled, "no more failures once up");
        let lines = about_sends(&agents.output(1));
        assert_eq!(lines.len(), 2, "{}", agents.output(1));
        assert!(lines[1].contains("heartbeats are sent on eth0 again after"), "{}", agents.output(1));
    });
}

/// What the agent exports passes Prometheus's own linter, on either receive path.
#[test]
fn exported_metrics_pass_promtool_check_metrics() {
    let _cpu = shared_cpu();
    bounded(|| {
        let Some(promtool) =
            ["/usr/bin/promtool", "/usr/local/bin/promtool"].into_iter().find(|p| std::path::Path::new(p).exists())
        else {
            panic!("promtool not found: `cargo xtask setup` installs it (Debian package prometheus)");
        };
        let lab = lab(2);
        let _agents = start_with_metrics(&lab, &[&["--rx", "xdp"], &["--rx", "socket"]]);
        thread::sleep(Duration::from_millis(300)); // peers heard, heartbeats late by something
        for i in 1..=2 {
            let text = scrape(&lab, i).expect("scrape");
            assert!(text.contains("ha_heartbeat_drops_total{path="), "{text}");
            if let Err(said) = promtool_check(promtool, &text) {
                panic!("node {i}: promtool says:\n{said}\n{text}");
            }
        }
    });
}

/// `promtool check metrics` on `text`: Err with what it said.
pub(crate) fn promtool_check(promtool: &str, text: &str) -> Result<(), String> {
    let mut check = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool");
    check.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("feed promtool");
    let out = check.wait_with_output().expect("promtool");
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() && said.trim().is_empty() { Ok(()) } else { Err(said) }
}
