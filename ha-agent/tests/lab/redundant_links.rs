//! Redundant heartbeat links (`--iface` repeated): the LAN (eth0, with the shared address) and
//! a direct cable between the two nodes (hb1, heartbeats only). One link cut: no transition,
//! no lost probe, one warning per peer; both cut: failover at the usual tolerance.
use std::{thread, time::Duration};

use ha_lab::{AgentSet, AgentSettings, Prober};

use crate::{
    support::{AGENT, WAIT, bounded, lab, shared_cpu, status_json, vip, wait_client_points_at},
    surfaces::{metrics_addr, scrape},
};

const PROBE: Duration = Duration::from_millis(1);

fn silent_for_ms(log: &str) -> Option<f64> {
    let line = log.lines().find(|l| l.contains("STANDBY -> ACTIVE") && l.contains("silent for"))?;
    line.split("silent for ").nth(1)?.split(" ms").next()?.parse().ok()
}

#[test]
fn one_of_two_heartbeat_links_cut_changes_nothing_and_both_cut_fail_over_at_the_tolerance() {
    bounded(|| {
        let _cpu = shared_cpu();
        let lab = lab(2);
        let cable = lab.add_cable(1, 2, "hb1", "10.77.0").expect("a cable between the nodes");
        let mut settings = AgentSettings::new(&[200, 100]);
        settings.extra_args = vec!["--iface".into(), "hb1".into(), "--metrics".into(), metrics_addr().to_string()];
        let tolerance = settings.tolerance;
        let agents = AgentSet::start(&lab, AGENT, settings).expect("agents");
        agents.wait_sole_holder(1, WAIT).expect("most worthy holds");
        lab.client().ping(vip(), Duration::from_secs(1)).expect("VIP answers");
        wait_client_points_at(&lab, lab.node(1).mac());
        for i in 1..=2 {
            let link = lab.node(i).ip(&["link", "show", "hb1"]).expect("ip link");
            assert!(link.contains("xdp"), "node {i}: no XDP on the heartbeat cable: {link}");
        }
        // Both links carry node 1's heartbeats to node 2.
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let status = status_json(&lab, 2);
            let rows = status["peer_links"].as_array().cloned().unwrap_or_default();
            let up: Vec<&str> = rows.iter().filter(|r| r["up"] == true).filter_map(|r| r["link"].as_str()).collect();
            if up.contains(&"eth0") && up.contains(&"hb1") {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "node 2 does not see node 1 on both links: {status}");
            thread::sleep(Duration::from_millis(20));
        }

        // The cable is cut: heartbeats go on over eth0.
        let mut follow = lab.node(2).command(AGENT);
        follow.args(["events", "--pin-dir"]).arg(lab.pin_dir(2));
        let events = lab.node(2).spawn(follow).expect("ha-agent events");
        thread::sleep(Duration::from_millis(50));
        let prober = Prober::start(lab.client(), vip(), PROBE).expect("prober");
        thread::sleep(Duration::from_millis(100));
        lab.cut_lan_link(&cable, 1).expect("cut the cable");
        thread::sleep(tolerance * 5);
        assert_eq!(agents.holders().expect("holders"), vec![1], "no transition\n{}", agents.diagnostics());
        let report = prober.stop();
        assert_eq!(report.lost, 0, "no lost probe: {report:?}");
        let out = agents.output(2);
        let warned: Vec<&str> = out.lines().filter(|l| l.contains("no heartbeat from 192.0.2.1 on hb1")).collect();
        assert_eq!(warned.len(), 1, "one warning line for the cut link:\n{out}");
        assert!(!out.contains("->"), "no transition on node 2:\n{out}");
        let status = status_json(&lab, 2);
        let row = status["peer_links"].as_array().and_then(|rows| rows.iter().find(|r| r["link"] == "hb1").cloned());
        assert_eq!(
            row.as_ref().map(|r| (r["up"].clone(), r["downs"].clone())),
            Some((false.into(), 1.into())),
            "{status}"
        );
        let metrics = scrape(&lab, 2).expect("metrics");
        for line in [
            "ha_peer_link_up{peer=\"192.0.2.1\",link=\"hb1\"} 0",
            "ha_peer_link_up{peer=\"192.0.2.1\",link=\"eth0\"} 1",
            "ha_peer_link_downs_total{peer=\"192.0.2.1\",link=\"hb1\"} 1",
        ] {
            assert!(metrics.lines().any(|l| l == line), "no `{line}` in\n{metrics}");
        }
        if std::path::Path::new("/usr/bin/promtool").exists() {
            crate::surfaces::promtool_check("/usr/bin/promtool", &metrics).expect("promtool check metrics");
        }
        let said = events.output_so_far();
        let down: Vec<&str> = said.lines().filter(|l| l.contains("\"event\":\"link_down\"")).collect();
        assert!(
            down.iter().any(|l| l.contains("\"peer\":\"192.0.2.1\"") && l.contains("\"link\":\"hb1\"")),
            "ha-agent events:\n{said}"
        );
        lab.restore_lan_link(&cable, 1).expect("restore the cable");

        // Heartbeats on the LAN stop (multicast blocked; ARP and the clients' traffic pass):
        // the cable alone carries them.
        let prober = Prober::start(lab.client(), vip(), PROBE).expect("prober");
        lab.block_ipv4_multicast().expect("block multicast on eth0");
        thread::sleep(tolerance * 5);
        assert_eq!(agents.holders().expect("holders"), vec![1], "no transition\n{}", agents.diagnostics());
        let report = prober.stop();
        assert_eq!(report.lost, 0, "no lost probe: {report:?}");
        assert!(agents.output(2).contains("no heartbeat from 192.0.2.1 on eth0"), "{}", agents.output(2));

        // And now the cable too: node 2 hears node 1 on no link and takes over.
        lab.cut_lan_link(&cable, 1).expect("cut the cable");
        agents.wait_for("node 2 takes over", WAIT, |h| h.contains(&2)).expect("failover");
        let silent = silent_for_ms(&agents.output(2)).expect("node 2's takeover line");
        eprintln!("both links cut: node 2 took over after {silent:.1} ms of silence (tolerance {tolerance:?})");
        let bound = tolerance.as_secs_f64() * 1e3 + 2.0;
        assert!(silent <= bound, "took over after {silent} ms of silence, want <= {bound}\n{}", agents.diagnostics());
    });
}
