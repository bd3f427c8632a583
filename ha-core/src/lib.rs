//! `ha-core`: every decision of the `ha` failover agent, with no I/O and no clock of its own.
//!
//! - [`failover::Failover`] is what a driver runs: `handle_*` in, `poll_*` out,
//!   `poll_timeout()` for the next wake. The agent (`ha-agent`) and the cluster simulator
//!   (`ha-sim`) drive the same code.
//! - [`groups::Groups`] runs several groups (one `Failover` each) with one heartbeat per node.
//! - [`node::Node`] is the decision: who holds the address, given the peers as recorded.
//! - [`liveness`] says when a peer's silence means it is gone, from its measured loss.
//! - [`links`] says which of several heartbeat links carry which peer.
//! - [`linger`] is the grace an old holder keeps its address for after a hand-over.
//! - [`track`] lowers worthiness while tracked interfaces are down.
//! - [`time`] is the one unit of time: [`time::Instant`] on `CLOCK_MONOTONIC`, `Duration`.
pub mod failover;
pub mod groups;
pub mod linger;
pub mod links;
pub mod liveness;
pub mod mutation;
pub mod node;
pub mod time;
pub mod track;

pub use failover::{Action, AnnounceCause, Command, Event, Failover, FailoverConfig, HeartbeatContent, Wake};
pub use groups::{GroupConfig, Groups, GroupsAction, GroupsError, GroupsEvent};
pub use node::{Beats, NodeConfig, Peer, Preempt, Reannounce, Reason, Role, Transition};
pub use time::{Duration, Instant};
