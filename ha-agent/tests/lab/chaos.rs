//! One round of chaos (every fault kind once, seeded) against three real agents, judged from
//! the client's side: exactly one node answers ARP once each fault settles, every outage within
//! its allowance, nothing left behind. `cargo xtask chaos --minutes N` is the long version.
use std::time::Duration;

use ha_lab::chaos::{self, FaultKind};

use crate::support::{AGENT, all_cpus};

/// Its first round hits the holder with every kind (the link flap and the pause long enough
/// for a takeover); a failure here replays with `cargo xtask chaos --minutes 1 --seed 1308 --faults 8`.
const SEED: u64 = 1308;

#[test]
fn one_round_of_chaos_breaks_nothing() {
    ha_lab::install_signal_cleanup().expect("signal cleanup");
    // Outages are judged to the millisecond: nothing else runs meanwhile.
    let _cpu = all_cpus();
    let mut cfg = chaos::Config::new(AGENT, SEED);
    cfg.max_faults = Some(FaultKind::ALL.len());
    cfg.duration = Duration::from_secs(60);
    ha_lab::within(cfg.time_limit(), move || {
        let outcome = chaos::run(&cfg)?;
        println!("{}", outcome.summary_text());
        assert_eq!(outcome.faults.len(), FaultKind::ALL.len(), "{}", outcome.summary_text());
        assert!(outcome.violations.is_empty() && outcome.aborted.is_none(), "{}", outcome.summary_text());
        Ok(())
    });
}
