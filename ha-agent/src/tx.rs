//! What this node sends: heartbeats, and announcements that point the LAN at the shared address.
pub mod announce;
pub mod queued;
pub mod schedule;
pub(crate) mod sender;
