//! What operators see and steer: the control socket, status, events, metrics, hooks, health
//! checks, maintenance mode and logs.
pub mod checks;
pub mod control;
pub mod events;
pub mod hooks;
pub mod lateness;
pub mod logging;
pub mod maintenance;
pub mod metrics;
pub mod metrics_http;
pub mod shell;
pub mod status;
