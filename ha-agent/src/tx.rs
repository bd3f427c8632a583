//! What this node sends: heartbeats, and announcements that point the LAN at the shared address.
pub mod announce;
pub mod answer;
pub mod counter;
pub mod queued;
pub mod schedule;
pub mod sender;
