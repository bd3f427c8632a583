//! `ha-agent`: heartbeats out, peers from the XDP program's maps in, a pure state machine in
//! between, and the shared address moved make-before-break.
//!
//! Folders by capability: `rx` (heartbeats in: the XDP program, its maps, or a socket), `tx`
//! (heartbeats and announcements out), `netlink` (the interface, its link and the shared
//! address on it), `auth` (keys), `ops` (control socket, status, events, metrics, hooks,
//! checks, logs). Public is only what the binary, the lab tests and the benchmark use.
pub mod agent;
pub mod auth;
pub mod cleanup;
pub mod clock;
pub mod config;
pub mod instance;
pub mod netlink;
pub mod observe;
pub mod ops;
pub mod privilege;
pub mod rx;
pub mod tx;
