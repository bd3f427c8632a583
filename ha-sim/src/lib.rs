//! `ha-sim`: a deterministic cluster simulator for `ha`. It drives N real
//! [`ha_core::Failover`] instances (2 to 16) over a simulated LAN in virtual time, injects
//! faults drawn from a seed, and checks the invariants of [`invariants`] on every step. A seed
//! replays exactly: `cargo xtask simulate --seed N --trace`.
//!
//! - [`scenario`]: the cluster and fault schedule a seed stands for;
//! - [`sim`]: the event loop, the nodes (core + clock + kernel table + driver), clients and
//!   attacker;
//! - [`net`]: what faults do to a packet; [`table`]: the receive path's acceptance;
//! - [`invariants`]: what must hold; [`shrink`]: a smaller failing schedule;
//! - [`groups`]: nodes running several groups each (active/active), checked per group;
//! - [`clock`], [`rng`]: each node's clock, the one source of randomness.
pub mod clock;
pub mod groups;
pub mod invariants;
pub mod net;
pub mod queue;
pub mod rng;
pub mod scenario;
pub mod shrink;
pub mod sim;
pub mod table;

pub use invariants::{Invariant, Violation};
pub use sim::{Options, Report, run, run_scenario};
