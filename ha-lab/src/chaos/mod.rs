//! Chaos from outside: a seeded random schedule of faults against a three-node lab of real
//! agents (XDP in driver mode, authenticated), one fault at a time, each left to settle. A client
//! probes the shared address every millisecond and watches who answers ARP for it. After every
//! fault exactly one node must answer, each outage must stay within what its kind allows
//! ([`FaultKind::allowance`]), and at the end nothing may be left behind.
//!
//! `cargo xtask chaos` runs it and writes the report; a short run is a lab test of ha-agent.
mod fault;
mod keys;
mod outcome;
mod rng;
mod run;

pub use fault::{Allowance, FaultKind, takeover_margin};
pub use outcome::{Check, FaultRecord, KindSummary, Outcome, Violation, ViolationCount, ms};
pub use run::{Config, PRIORITIES, run};
