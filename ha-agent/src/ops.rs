//! What operators see and steer: the control socket, status, events, metrics, hooks, health
//! checks, maintenance mode and logs.
pub(crate) mod checks;
pub mod control;
pub mod event_stream;
pub(crate) mod events;
pub(crate) mod foreign_claims;
pub(crate) mod hooks;
pub(crate) mod lateness;
pub mod logging;
pub(crate) mod maintenance;
pub(crate) mod metrics;
pub(crate) mod metrics_http;
mod shell;
pub mod status;
pub(crate) mod steering;
pub(crate) mod systemd;
