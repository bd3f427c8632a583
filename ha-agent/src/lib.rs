//! `ha-agent`: heartbeats out, peers from the XDP program's maps in, a pure state machine in
//! between, and the shared address moved make-before-break.
pub mod address;
pub mod agent;
pub mod announce;
pub mod bpffs;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod ebpf;
pub mod events;
pub mod guard;
pub mod iface;
pub mod lateness;
pub mod link;
pub mod maintenance;
pub mod node;
pub mod observe;
pub mod peers;
pub mod privilege;
pub mod rx;
pub mod sender;
pub mod status;
