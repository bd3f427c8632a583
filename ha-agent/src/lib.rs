//! `ha-agent`: heartbeats out, peers from the XDP program's maps in, a pure state machine in
//! between, and the shared address moved make-before-break.
// pub mod address;
// pub mod announce;
pub mod bpffs;
pub mod clock;
pub mod node;
pub mod ebpf;
pub mod peers;
