//! Key rotation on running agents: rewrite the key file, SIGHUP, no restart. Through the whole
//! rotation every heartbeat verifies (no bad_auth, no unknown_key), the address stays put, and a
//! broken key file on SIGHUP changes nothing.
use std::{
    os::unix::fs::PermissionsExt,
    thread,
    time::{Duration, Instant},
};

use ha_agent::rx::peers::PeerMaps;
use ha_lab::{AgentSet, AgentSettings, LAB_KEY, LAB_KEY_ID, Lab};

use crate::support::{AGENT, WAIT, lab, shared_cpu};

const NEW_ID: u8 = 2;
const NEW_KEY: [u8; 16] = *b"the next lab key";

/// Waits until node `at` has a heartbeat from node `from` signed with key `key_id`.
fn wait_peer_key(lab: &Lab, at: usize, from: usize, key_id: u8) {
    let maps = PeerMaps::open_pinned(&lab.pin_dir(at)).expect("pinned maps");
    let start = Instant::now();
    loop {
        let mut peers = Vec::new();
        maps.read_peers(&mut peers).expect("peers");
        let seen = peers.iter().find(|(id, _)| *id == u32::from(lab.node(from).addr())).map(|(_, r)| r.key_id);
        if seen == Some(key_id) {
            return;
        }
        assert!(start.elapsed() < WAIT, "node {at} sees node {from} signing with key {seen:?}, not {key_id}");
        thread::sleep(Duration::from_millis(10));
    }
}

fn wait_log(agents: &AgentSet, i: usize, needle: &str, after: usize) {
    let start = Instant::now();
    while agents.output(i).matches(needle).count() <= after {
        assert!(start.elapsed() < WAIT, "node {i} never logged {needle:?}:\n{}", agents.output(i));
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn keys_rotate_on_sighup_without_a_restart_or_a_lost_heartbeat() {
    let _cpu = shared_cpu();
    ha_lab::within(Duration::from_secs(120), || {
        rotate();
        Ok(())
    });
}

fn rotate() {
    let lab = lab(2);
    let mut agents = AgentSet::start(&lab, AGENT, AgentSettings::new(&[200, 100])).expect("agents");
    agents.wait_sole_holder(1, WAIT).expect("node 1 holds");
    let file = agents.key_file();
    let reloaded = "key file reloaded";
    let hup = |nodes: &[usize], text: &[(u8, [u8; 16])]| {
        ha_lab::write_key_file(&file, text).expect("key file");
        for &i in nodes {
            let n = agents.output(i).matches(reloaded).count();
            agents.signal(i, libc::SIGHUP).expect("SIGHUP");
            wait_log(&agents, i, reloaded, n);
        }
    };

    // 1. Everyone accepts the new key; 2. node 1 signs with it (node 2 still accepts the old);
    // 3. the old key is retired everywhere.
    hup(&[1, 2], &[(LAB_KEY_ID, LAB_KEY), (NEW_ID, NEW_KEY)]);
    hup(&[1], &[(NEW_ID, NEW_KEY), (LAB_KEY_ID, LAB_KEY)]);
    wait_peer_key(&lab, 2, 1, NEW_ID);
    hup(&[2], &[(NEW_ID, NEW_KEY), (LAB_KEY_ID, LAB_KEY)]);
    wait_peer_key(&lab, 1, 2, NEW_ID);
    hup(&[1, 2], &[(NEW_ID, NEW_KEY)]);

    // A key file that is now world-readable: refused on SIGHUP, the running keys stay.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let errors = agents.output(1).matches("chmod 600").count();
    agents.signal(1, libc::SIGHUP).expect("SIGHUP");
    wait_log(&agents, 1, "chmod 600", errors);
    thread::sleep(Duration::from_millis(200));
    wait_peer_key(&lab, 2, 1, NEW_ID);

    for i in 1..=2 {
        let s = PeerMaps::open_pinned(&lab.pin_dir(i)).and_then(|m| m.stats()).expect("stats");
        assert_eq!((s.bad_auth, s.unknown_key, s.unauthenticated), (0, 0, 0), "node {i}: {s:?}");
        assert!(agents.is_running(i), "node {i} is still running");
    }
    assert_eq!(agents.holders().expect("holders"), [1], "{}", agents.diagnostics());
}

/// A rotation done out of order: node 2 signs with a key node 1 does not have yet. Node 1's
/// warning names both key ids instead of blaming another cluster or a forger.
#[test]
fn a_key_id_missing_from_one_node_is_named_in_its_warning() {
    let _cpu = shared_cpu();
    let lab = lab(2);
    let keys = tempfile::tempdir().expect("tempdir");
    let (old, new) = (keys.path().join("old"), keys.path().join("new"));
    ha_lab::write_key_file(&old, &[(LAB_KEY_ID, LAB_KEY)]).expect("key");
    ha_lab::write_key_file(&new, &[(NEW_ID, NEW_KEY), (LAB_KEY_ID, LAB_KEY)]).expect("key");
    let mut settings = AgentSettings::new(&[200, 100]);
    settings.auth = ha_lab::LabAuth::Manual;
    settings.extra_args = vec!["--rx".into(), "socket".into()];
    settings.node(1).args = vec!["--key-file".into(), old.display().to_string()];
    settings.node(2).args = vec!["--key-file".into(), new.display().to_string()];
    let agents = AgentSet::start(&lab, AGENT, settings).expect("agents");
    let start = Instant::now();
    let warning = loop {
        if let Some(line) = agents.output(1).lines().find(|l| l.contains("failed authentication")) {
            break line.to_string();
        }
        assert!(start.elapsed() < WAIT, "no warning on node 1:\n{}", agents.diagnostics());
        thread::sleep(Duration::from_millis(20));
    };
    assert!(
        warning.contains(&format!("key id {NEW_ID} that this node does not have (this node has key id {LAB_KEY_ID})")),
        "{warning}"
    );
    assert!(warning.contains("key files differ"), "{warning}");
}
