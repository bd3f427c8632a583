//! Helpers shared by the topology, receive-path and privilege lab tests.
#![allow(dead_code)] // each test binary uses its own subset

use std::{
    net::IpAddr,
    thread,
    time::{Duration, Instant},
};

use ha_lab::{Host, Lab};

pub const AGENT: &str = env!("CARGO_BIN_EXE_ha-agent");
/// Generous for a loaded 2-core CI machine; a takeover needs about 100 ms.
pub const WAIT: Duration = Duration::from_secs(5);

pub fn lab(nodes: usize) -> Lab {
    ha_lab::install_signal_cleanup().expect("signal cleanup");
    Lab::new(nodes).expect("lab")
}

/// Polls `host`'s neighbour entry for `addr` until it names `mac`.
pub fn wait_neighbour(host: &Host, addr: IpAddr, mac: [u8; 6], context: &dyn Fn() -> String) {
    let start = Instant::now();
    loop {
        let entry = host.neigh_mac(addr).expect("neighbour table");
        if entry == Some(mac) {
            return;
        }
        assert!(
            start.elapsed() < WAIT,
            "{}'s neighbour entry for {addr} is {entry:?}, want {mac:?}\n{}",
            host.name(),
            context()
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// `WARN` lines of an agent's output.
pub fn warnings(output: &str) -> Vec<&str> {
    output.lines().filter(|l| l.contains(" WARN ")).collect()
}

/// `setpriv` arguments that leave exactly `caps` (e.g. `["net_admin", "net_raw"]`) in the
/// bounding set: a root process keeps only those, its children too.
pub fn only_caps(caps: &[&str]) -> Vec<String> {
    let set: String = caps.iter().map(|c| format!(",+{c}")).collect();
    vec!["setpriv".into(), format!("--bounding-set=-all{set}"), "--inh-caps=-all".into(), "--".into()]
}
