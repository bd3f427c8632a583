//! Heartbeats between real agents in the namespace lab land in the peer's pinned PEERS map,
//! stop when the sender's link goes down, and read with field names in bpftool.
use std::{net::Ipv4Addr, process::Command, thread, time::Duration};

use ha_agent::rx::peers::PeerMaps;
use ha_common::maps::PeerRecord;
use ha_lab::{AgentSet, AgentSettings, Lab};

use crate::support::{AGENT, shared_cpu};

fn record_of(maps: &PeerMaps, node: Ipv4Addr) -> Option<PeerRecord> {
    let mut all = Vec::new();
    maps.read_peers(&mut all).ok()?;
    all.into_iter().find(|(id, _)| *id == u32::from(node)).map(|(_, rec)| rec)
}

#[test]
fn heartbeats_reach_the_peer_map_and_stop_with_the_link() {
    let _cpu = shared_cpu();
    ha_lab::install_signal_cleanup().expect("signal cleanup");
    let lab = Lab::new(2).expect("lab");
    let agents = AgentSet::start(&lab, AGENT, AgentSettings::new(&[200, 100])).expect("agents");
    let interval = agents.settings.interval;
    agents.wait_sole_holder(1, Duration::from_secs(5)).expect("node 1 holds");
    let maps = PeerMaps::open_pinned(&lab.pin_dir(2)).expect("node 2's pinned maps");
    let node1 = lab.node(1).addr();
    let first = record_of(&maps, node1).expect("node 1 is in node 2's PEERS");
    assert_eq!((first.priority, first.state, first.addr), (200, 2, node1.octets()));
    // Within about one interval there is a newer heartbeat, seen moments ago.
    thread::sleep(interval + interval / 2);
    let next = record_of(&maps, node1).expect("record");
    assert!(next.counter > first.counter, "{next:?} after {first:?}");
    let age = ha_agent::clock::monotonic_ns().saturating_sub(next.last_seen_ns);
    assert!(age < 2 * interval.as_nanos() as u64, "last heartbeat {age} ns old");

    // bpftool reads the pinned map with field names (BTF), and `ha-agent peers` shows the same.
    let dump = Command::new("bpftool")
        .args(["map", "dump", "pinned"])
        .arg(lab.pin_dir(2).join("PEERS"))
        .output()
        .expect("bpftool");
    let dump = String::from_utf8_lossy(&dump.stdout);
    for field in ["last_seen_ns", "counter", "priority", "state", "addr"] {
        assert!(dump.contains(&format!("\"{field}\"")), "bpftool output lacks {field}: {dump}");
    }
    // And what the kernel answers for the node (`ha_agent::tx::answer`), likewise.
    for (map, fields) in [("ANSWER", &["until_ns", "current", "templates"][..]), ("ANSWER_IFACES", &["mac", "ipv4"])] {
        let dump = Command::new("bpftool").args(["map", "dump", "pinned"]).arg(lab.pin_dir(1).join(map)).output();
        let dump = String::from_utf8_lossy(&dump.expect("bpftool").stdout).into_owned();
        for field in fields {
            assert!(dump.contains(&format!("\"{field}\"")), "bpftool output of {map} lacks {field}: {dump}");
        }
    }
    let table = Command::new(AGENT).args(["peers", "--pin-dir"]).arg(lab.pin_dir(2)).output().expect("ha-agent peers");
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("192.0.2.1") && table.contains("ACTIVE"), "{table}");

    // The cable is pulled: no more heartbeats are recorded.
    lab.cut_link(1).expect("cut");
    thread::sleep(interval * 2);
    let frozen = record_of(&maps, node1).expect("record");
    thread::sleep(interval * 4);
    assert_eq!(record_of(&maps, node1).expect("record").counter, frozen.counter);
}
