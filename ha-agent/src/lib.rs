//! `ha-agent`: heartbeats out, peers from the XDP program's maps in, a pure state machine in
//! between, and the shared address moved make-before-break.
pub mod address;
pub mod agent;
// The decision logic lives in ha-core; these paths keep the agent's modules short.
pub use ha_core::{linger, liveness, node};
pub mod announce;
pub mod auth;
pub mod bpffs;
pub mod checks;
pub mod clock;
pub mod config;
pub mod control;
pub mod ebpf;
pub mod events;
pub mod guard;
pub mod hooks;
pub mod iface;
pub mod key_alarm;
pub mod keys;
pub mod lateness;
pub mod link;
pub mod logging;
pub mod maintenance;
pub mod map_batch;
pub mod metrics;
pub mod metrics_http;
pub mod observe;
pub mod peers;
pub mod privilege;
pub mod rx;
pub mod sender;
pub mod shell;
pub mod status;
