//! `ha-agent`: heartbeats out, peers from the XDP program's maps in, a pure state machine in
//! between, and the shared address moved make-before-break.
pub mod agent;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod config_file;
pub mod linger;
pub mod liveness;
pub mod netlink;
pub mod node;
pub mod observe;
pub mod ops;
pub mod privilege;
pub mod rx;
pub mod tx;
