//! `--track-iface IFACE[:WEIGHT]` as the operator writes it (keepalived's `track_interface`).
use std::{fmt, str::FromStr};

/// A tracked interface: while its link is down, worthiness drops by `weight`, or to 0 (FAULT:
/// the address is handed over) without one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TrackArg {
    pub iface: String,
    pub weight: Option<u32>,
}

impl FromStr for TrackArg {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let (iface, weight) = match input.split_once(':') {
            Some((iface, w)) => {
                let w: u32 = w
                    .parse()
                    .ok()
                    .filter(|w| *w > 0)
                    .ok_or_else(|| format!("{input:?}: the weight after : is a whole number from 1"))?;
                (iface, Some(w))
            }
            None => (input, None),
        };
        if iface.is_empty() || iface.len() > 15 || iface.contains(['/', '@', ' ']) {
            return Err(format!("{input:?}: {iface:?} is not an interface name"));
        }
        Ok(Self { iface: iface.to_string(), weight })
    }
}

impl fmt::Display for TrackArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.weight {
            Some(w) => write!(f, "{}:{w}", self.iface),
            None => write!(f, "{}", self.iface),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interface_with_or_without_a_weight() {
        assert_eq!("eth1".parse(), Ok(TrackArg { iface: "eth1".into(), weight: None }));
        assert_eq!("eth1:30".parse(), Ok(TrackArg { iface: "eth1".into(), weight: Some(30) }));
        assert_eq!("bond0:30".parse::<TrackArg>().map(|t| t.to_string()), Ok("bond0:30".into()));
        for bad in ["eth1:", "eth1:0", "eth1:x", ":5", "", "a/b"] {
            assert!(bad.parse::<TrackArg>().is_err(), "{bad}");
        }
    }
}
