//! Every lab test in one binary (built and linked once): a module per topic, the helpers in
//! `support`. Most need root and the XDP object (`cargo xtask build-ebpf`); each lab makes
//! network namespaces with unique names and removes them, on failure too.
//!
//! Run one topic with its module path, e.g. `cargo test -p ha-agent --test lab failover::`.
mod support;

mod active_active;
mod chaos;
mod cli_errors;
mod config_file;
mod event_stream;
mod event_wake;
mod failover;
mod fence;
mod field_lessons;
mod foreign_claims;
mod groups;
mod hostile;
mod key_rotation;
mod lab_maps;
mod least_privilege;
mod multi_homed;
mod net_io;
mod operations;
mod operator;
mod ownership;
mod redundant_links;
mod reload;
mod resilience;
mod routed;
mod rx_socket;
mod steering;
pub(crate) mod surfaces;
mod systemd;
mod topologies;
mod tracking;
mod xdp_answer;
mod xdp_auth;
mod xdp_hostile;
mod xdp_neighbour;
mod xdp_test_run;
