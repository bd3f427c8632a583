//! `ha-agent`: heartbeats out, peers from the XDP program's maps in, a pure state machine in
//! between, and the shared address moved make-before-break.
//!
//! Folders by capability: `rx` (heartbeats in: the XDP program, its maps, or a socket), `tx`
//! (heartbeats and announcements out), `netlink` (the interface, its link and the shared
//! address on it), `auth` (keys), `ops` (control socket, status, events, metrics, hooks,
//! checks, logs). Public is what the binary, the lab tests and the benchmark use, and the API for
//! services: [`client`] (state, watch, steering of a running agent) and [`embed`] (the agent
//! inside the service).
pub mod agent;
pub mod auth;
pub mod cleanup;
pub mod client;
pub mod clock;
pub mod config;
pub mod embed;
pub mod instance;
pub mod launch;
pub mod links;
pub mod netlink;
pub mod nudge;
pub mod observe;
pub mod ops;
pub mod privilege;
pub mod rx;
pub mod track;
pub mod tx;
