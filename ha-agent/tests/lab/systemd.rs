//! Under systemd with `Type=notify`: the agent says READY=1 on `NOTIFY_SOCKET` once it has
//! listened for its first tolerance, and WATCHDOG=1 at half of `WATCHDOG_USEC`.
use std::{
    os::unix::net::UnixDatagram,
    time::{Duration, Instant},
};

use ha_lab::{AgentSet, AgentSettings};

use crate::support::{AGENT, WAIT, bounded, lab, shared_cpu};

#[test]
fn ready_after_one_tolerance_and_watchdog_at_half_its_period() {
    let _cpu = shared_cpu();
    bounded(|| {
        let lab = lab(1);
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify");
        // The manager's end: a path socket, reachable from the node's network namespace.
        let manager = UnixDatagram::bind(&path).expect("bind NOTIFY_SOCKET");
        manager.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut settings = AgentSettings::new(&[100]);
        settings.tolerance = Duration::from_millis(400);
        settings.node(1).prefix =
            vec!["env".into(), format!("NOTIFY_SOCKET={}", path.display()), "WATCHDOG_USEC=200000".into()];
        let started = Instant::now();
        let mut agents = AgentSet::start(&lab, AGENT, settings).expect("agent");
        let mut heard = Vec::new();
        let mut buf = [0u8; 256];
        while !heard.iter().any(|(m, _)| m == "READY=1") {
            let len =
                manager.recv(&mut buf).unwrap_or_else(|e| panic!("{e}: heard {heard:?}\n{}", agents.diagnostics()));
            heard.push((String::from_utf8_lossy(&buf[..len]).into_owned(), started.elapsed()));
        }
        let ready = heard.last().map(|(_, at)| *at).expect("READY=1");
        // The agent starts a little after `started`; a loaded machine adds to the upper end.
        assert!(ready >= Duration::from_millis(400), "ready after {ready:?}: before its first tolerance");
        assert!(ready < Duration::from_millis(400) + WAIT / 2, "ready after {ready:?}");

        let watch_from = Instant::now();
        let mut pings = 0;
        while watch_from.elapsed() < Duration::from_millis(1_000) {
            let len = manager.recv(&mut buf).expect("a watchdog ping");
            if &buf[..len] == b"WATCHDOG=1" {
                pings += 1;
            }
        }
        // Every 100 ms: about 10 in a second; a loaded machine may delay a few.
        assert!((7..=12).contains(&pings), "{pings} watchdog pings in 1 s");

        agents.stop(1, WAIT).expect("clean stop");
        let len = manager.recv(&mut buf).expect("a message at stop");
        let mut last = String::from_utf8_lossy(&buf[..len]).into_owned();
        while last == "WATCHDOG=1" {
            let len = manager.recv(&mut buf).expect("STOPPING=1");
            last = String::from_utf8_lossy(&buf[..len]).into_owned();
        }
        assert_eq!(last, "STOPPING=1");
    });
}

#[test]
fn with_stderr_as_the_journal_lines_carry_a_priority_and_no_timestamp() {
    let _cpu = shared_cpu();
    bounded(|| {
        let lab = lab(1);
        let mut settings = AgentSettings::new(&[100]);
        // What systemd does for a service whose stderr is the journal: JOURNAL_STREAM names the
        // stream's device and inode (here the file the lab collects output in).
        settings.node(1).prefix = vec![
            "sh".into(),
            "-c".into(),
            r#"JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) exec "$0" "$@""#.into(),
        ];
        let agents = AgentSet::start(&lab, AGENT, settings).expect("agent");
        agents.wait_sole_holder(1, WAIT).expect("a lone node holds");
        let start = Instant::now();
        while !agents.output(1).contains("-> ACTIVE") {
            assert!(start.elapsed() < WAIT, "no transition line:\n{}", agents.output(1));
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = agents.output(1);
        assert!(out.lines().any(|l| l.starts_with("<6>STANDBY -> ACTIVE: ")), "{out}");
        assert!(out.lines().any(|l| l.starts_with("<4>--insecure-no-auth") || l.starts_with("<6>node ")), "{out}");
        for line in out.lines() {
            assert!(
                line.len() > 3 && line.starts_with('<') && line.as_bytes()[2] == b'>' && !line.contains(" INFO "),
                "a line without its priority, or with a timestamp of its own: {line:?}\n{out}"
            );
        }
    });
}
