//! Several groups in one agent (active/active): `--vip-group ID:PRIORITY:VIP[,VIP...]`, with
//! an optional `:preempt=always|never|delay=DUR` at the end, or `[[group]]` tables in the
//! config file (`file` turns each table into this flag's value). A group is what one keepalived
//! `vrrp_instance` is: its id (1 to 255, the same on every node), its shared addresses, this
//! node's priority for it and its preempt policy.
use std::{fmt, str::FromStr};

use ha_core::Preempt;

use super::values::{parse_preempt, spell_preempt};
use crate::netlink::VipArg;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupArg {
    pub id: u8,
    pub priority: u32,
    pub vips: Vec<VipArg>,
    /// None: `--preempt`.
    pub preempt: Option<Preempt>,
}

impl FromStr for GroupArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let usage = "expected ID:PRIORITY:VIP[,VIP...][:preempt=P], e.g. 7:200:192.0.2.7/24";
        let (rest, preempt) = match s.rsplit_once(":preempt=") {
            Some((rest, p)) => (rest, Some(parse_preempt(p)?)),
            None => (s, None),
        };
        let mut parts = rest.splitn(3, ':');
        let (Some(id), Some(priority), Some(vips)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("{s:?}: {usage}"));
        };
        let id = match id.parse::<u8>() {
            Ok(id @ 1..=255) => id,
            _ => return Err(format!("{s:?}: group id {id:?} must be 1 to 255 (0 is the group of the flat options)")),
        };
        let priority = match priority.parse::<u32>() {
            Ok(p @ 1..) => p,
            _ => return Err(format!("{s:?}: priority {priority:?} must be 1 to 4294967295")),
        };
        let vips = vips
            .split(',')
            .map(|v| v.parse::<VipArg>().map_err(|e| format!("{s:?}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { id, priority, vips, preempt })
    }
}

impl fmt::Display for GroupArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let vips: Vec<String> = self.vips.iter().map(ToString::to_string).collect();
        write!(f, "{}:{}:{}", self.id, self.priority, vips.join(","))?;
        if let Some(p) = self.preempt {
            write!(f, ":preempt={}", spell_preempt(p))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_form_reads_id_priority_addresses_and_preempt() {
        let g: GroupArg = "7:200:192.0.2.7/24,2001:db8::7/64@eth1:preempt=delay=5s".parse().expect("valid");
        assert_eq!((g.id, g.priority, g.vips.len()), (7, 200, 2));
        assert_eq!(g.vips[1].iface.as_deref(), Some("eth1"));
        assert_eq!(g.preempt, Some(Preempt::Delay(std::time::Duration::from_secs(5))));
        assert_eq!(g.to_string().parse::<GroupArg>(), Ok(g));
        let g: GroupArg = "255:1:192.0.2.9/32".parse().expect("valid");
        assert_eq!(g.preempt, None);
    }

    #[test]
    fn bad_groups_are_refused_in_one_line() {
        for bad in ["0:100:192.0.2.7/24", "256:100:192.0.2.7/24", "7:0:192.0.2.7/24", "7:100", "7:100:nope"] {
            let e = bad.parse::<GroupArg>().expect_err(bad);
            assert!(!e.contains('\n') && e.contains(bad), "{e}");
        }
    }
}
