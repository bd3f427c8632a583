//! A transition as the outside world sees it: one JSON line on `ha-agent events`, and the
//! arguments of hooks.
use serde::{Deserialize, Serialize};

use ha_core::node::{Transition, id};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Wall-clock milliseconds since the epoch.
    pub unix_ms: u64,
    pub node: String,
    pub from: String,
    pub to: String,
    /// Stable label (see `Reason::label`).
    pub reason: String,
    /// The same reason in words, with its measured timings.
    pub detail: String,
    /// The group that changed (`--vip-group`, `[[group]]`); absent for the flat options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<u8>,
}

impl Event {
    pub fn new(node_id: u32, t: &Transition) -> Self {
        Self::of_group(node_id, None, t)
    }

    /// A transition of `group` (`None`: the flat options' group 0).
    pub fn of_group(node_id: u32, group: Option<u8>, t: &Transition) -> Self {
        Self {
            group,
            unix_ms: crate::clock::realtime_us() / 1_000,
            node: id(node_id).to_string(),
            from: t.from.name().to_string(),
            to: t.to.name().to_string(),
            reason: t.reason.label().to_string(),
            detail: t.reason.to_string(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}
