//! What a person reads from a running agent says what happened, in the words the command line
//! uses: the start line spells settings as flags, `status` carries the same reason label and
//! detail as `events`, link changes add no crate-internal warnings, and `events` says when the
//! agent goes away (and with `--follow`, picks it up again when it returns).
use std::{
    process::Command,
    thread,
    time::{Duration, Instant},
};

use ha_lab::{AgentSet, AgentSettings, Child};

use crate::support::{AGENT, WAIT, bounded, lab, shared_cpu, status_json};

fn wait_for_output(child: &Child, what: &str, done: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let out = child.output_so_far();
        if done(&out) {
            return out;
        }
        assert!(start.elapsed() < WAIT, "{what}: not within {WAIT:?}; so far:\n{out}");
        thread::sleep(Duration::from_millis(10));
    }
}

fn events_of(out: &str) -> Vec<serde_json::Value> {
    out.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).expect("a JSON event")).collect()
}

#[test]
fn status_carries_the_label_and_detail_of_the_last_event_and_settings_read_as_flags() {
    let _cpu = shared_cpu();
    bounded(|| {
        let lab = lab(2);
        let mut settings = AgentSettings::new(&[200, 100]);
        settings.preempt = "delay=50ms".into();
        settings.extra_args = vec!["--hold-down".into(), "0s".into()];
        let agents = AgentSet::start(&lab, AGENT, settings).expect("agents");
        agents.wait_sole_holder(1, WAIT).expect("most worthy holds");

        let mut follow = lab.node(2).command(AGENT);
        follow.args(["events", "--pin-dir"]).arg(lab.pin_dir(2));
        let follower = lab.node(2).spawn(follow).expect("events follower");
        thread::sleep(Duration::from_millis(100));
        // A link change: the kernel's netlink messages carry attributes newer than the netlink
        // crate knows, which it would warn about on every change.
        lab.cut_link(1).expect("cut node 1");
        agents.wait_sole_holder(2, WAIT).expect("node 2 takes over");
        let out = wait_for_output(&follower, "node 2's takeover event", |o| o.contains("\"to\":\"ACTIVE\""));
        let event = events_of(&out).pop().expect("an event");
        assert_eq!(event["reason"], "holder_silent", "{event}");
        let status = status_json(&lab, 2);
        assert_eq!((&status["reason"], &status["detail"]), (&event["reason"], &event["detail"]), "{status}");
        assert!(status["detail"].as_str().is_some_and(|d| d.contains("silent for")), "{status}");
        assert_eq!(status["preempt"], "delay=50ms");

        let text = Command::new(AGENT).args(["status", "--pin-dir"]).arg(lab.pin_dir(2)).output().expect("status");
        let text = String::from_utf8_lossy(&text.stdout);
        let detail = event["detail"].as_str().expect("detail");
        assert!(text.contains(&format!("{detail} [holder_silent]")), "{text}");
        assert!(text.contains("interval 20ms, tolerance 100ms, preempt delay=50ms, wake event;"), "{text}");

        lab.restore_link(1).expect("restore node 1");
        agents.wait_sole_holder(1, WAIT).expect("node 1 takes the address back");
        for i in 1..=2 {
            let out = agents.output(i);
            assert!(
                out.contains("interval 20ms, tolerance 100ms, max-tolerance 200ms, preempt delay=50ms, hold-down off, garp-refresh off"),
                "node {i}'s start line spells settings as flags:\n{out}"
            );
            for internal in ["netlink-packet-route", "IFLA_", "Some(", "None", "Delay("] {
                assert!(!out.contains(internal), "node {i} logged {internal:?}:\n{out}");
            }
        }
    });
}

#[test]
fn events_says_when_the_agent_goes_away_and_follow_picks_it_up_again() {
    let _cpu = shared_cpu();
    bounded(|| {
        let lab = lab(2);
        let mut agents = AgentSet::start(&lab, AGENT, AgentSettings::new(&[200, 100])).expect("agents");
        agents.wait_sole_holder(1, WAIT).expect("most worthy holds");
        // Both follow node 2, the standby.
        let spawn = |extra: &[&str]| {
            let mut cmd = lab.node(2).command(AGENT);
            cmd.args(["events", "--pin-dir"]).arg(lab.pin_dir(2)).args(extra);
            lab.node(2).spawn(cmd).expect("events")
        };
        let mut plain = spawn(&[]);
        let following = spawn(&["--follow"]);
        thread::sleep(Duration::from_millis(200));

        agents.stop(2, WAIT).expect("stop node 2's agent");
        let status = plain.wait_timeout(WAIT).expect("events ends when the agent goes away");
        assert!(!status.success(), "and says so in its exit status: {status:?}");
        let out = plain.output_so_far();
        assert!(out.contains("went away"), "{out}");
        wait_for_output(&following, "--follow notices", |o| o.contains("went away; waiting for it to come back"));

        agents.start_node(2).expect("restart node 2's agent");
        wait_for_output(&following, "--follow reconnects", |o| o.contains("is back after"));
        // Only now a transition of the new run: the holder leaves and node 2 takes over, once
        // node 2 runs (its control socket answers before its XDP program is verified and
        // attached) and has heard the holder for a tolerance.
        let started = Instant::now();
        while !agents.output(2).contains("priority 100 on eth0") {
            assert!(started.elapsed() < WAIT, "node 2 did not start again:\n{}", agents.output(2));
            thread::sleep(Duration::from_millis(10));
        }
        thread::sleep(Duration::from_millis(200));
        agents.stop(1, WAIT).expect("clean stop of the holder");
        agents.wait_sole_holder(2, WAIT).expect("node 2 takes over");
        let out = wait_for_output(&following, "the new run's transition", |o| o.contains("\"to\":\"ACTIVE\""));
        let event = events_of(&out).pop().expect("an event");
        assert_eq!(event["reason"], "holder_leaving", "{out}\n{}", agents.diagnostics());
    });
}
