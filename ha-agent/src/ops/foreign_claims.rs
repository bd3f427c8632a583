//! Claims for the shared addresses by other MACs, as the XDP program recorded them: noticed on
//! each wake and handed to the core (which decides whether to announce again), shown in status
//! and metrics, and warned of at most once per [`WARN_EVERY`], naming the MAC.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ha_common::neighbour::{LastClaim, v4_of_key};
use serde::{Deserialize, Serialize};

/// The shortest time between two warning lines: a flood of forged announcements must not flood
/// the log. Claims in between are counted in the next line.
pub const WARN_EVERY_NS: u64 = 10_000_000_000;

/// The last claim, as `status` shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClaimStatus {
    pub address: String,
    pub mac: String,
    pub age_ms: f64,
}

#[derive(Debug, Default)]
pub struct ForeignClaims {
    /// `at_ns` of the last claim handed to the core.
    seen_ns: u64,
    last: Option<LastClaim>,
    /// When the last warning line went out.
    warned_ns: Option<u64>,
    /// Claims the core defended since that line.
    unwarned: u64,
}

impl ForeignClaims {
    /// The time of a claim newer than the last one seen, for the core.
    pub fn observe(&mut self, last: LastClaim) -> Option<u64> {
        if last.at_ns == 0 || last.at_ns == self.seen_ns {
            return None;
        }
        self.seen_ns = last.at_ns;
        self.last = Some(last);
        Some(last.at_ns)
    }

    /// The warning for a claim the core defended, unless one went out within [`WARN_EVERY_NS`].
    pub fn warning(&mut self, now_ns: u64) -> Option<String> {
        self.unwarned += 1;
        if self.warned_ns.is_some_and(|at| now_ns.saturating_sub(at) < WARN_EVERY_NS) {
            return None;
        }
        let last = self.last?;
        let more = match self.unwarned {
            1 => String::new(),
            n => format!(" ({} more since the last warning)", n - 1),
        };
        self.warned_ns = Some(now_ns);
        self.unwarned = 0;
        Some(format!(
            "{} was claimed by {} (not this node, and no peer took it: a misconfigured host or a forgery); announcing it again{more}",
            address(&last.addr),
            mac(last.mac)
        ))
    }

    /// The last claim, for `status`.
    pub fn status(&self, now_ns: u64) -> Option<ClaimStatus> {
        self.last.map(|c| ClaimStatus {
            address: address(&c.addr).to_string(),
            mac: mac(c.mac),
            age_ms: now_ns.saturating_sub(c.at_ns) as f64 / 1e6,
        })
    }
}

fn address(key: &[u8; 16]) -> IpAddr {
    match v4_of_key(key) {
        Some(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
        None => IpAddr::V6(Ipv6Addr::from(*key)),
    }
}

pub fn mac(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use ha_common::neighbour::vip_key_v4;

    use super::*;

    fn claim(at_ns: u64) -> LastClaim {
        LastClaim { at_ns, addr: vip_key_v4([192, 0, 2, 200]), mac: [2, 0, 0, 0, 0, 0x66], _pad: [0; 2] }
    }

    #[test]
    fn each_new_claim_is_handed_over_once() {
        let mut c = ForeignClaims::default();
        assert_eq!(c.observe(LastClaim::default()), None, "none yet");
        assert_eq!(c.observe(claim(5)), Some(5));
        assert_eq!(c.observe(claim(5)), None, "the same claim, read again");
        assert_eq!(c.observe(claim(9)), Some(9));
        let status = c.status(1_000_009).expect("status");
        assert_eq!(
            (status.address.as_str(), status.mac.as_str(), status.age_ms),
            ("192.0.2.200", "02:00:00:00:00:66", 1.0)
        );
    }

    #[test]
    fn warnings_name_the_mac_and_come_at_most_once_per_period() {
        let mut c = ForeignClaims::default();
        c.observe(claim(1));
        let first = c.warning(1).expect("the first claim warns");
        assert!(first.contains("192.0.2.200") && first.contains("02:00:00:00:00:66"), "{first}");
        for n in 2..50 {
            c.observe(claim(n));
            assert_eq!(c.warning(n), None, "within the period");
        }
        let later = c.warning(1 + WARN_EVERY_NS).expect("after the period");
        assert!(later.contains("48 more"), "48 suppressed, then this one: {later}");
    }
}
