//! How each option's value is written and which values are sane. The same parsers serve the
//! command line and the config file, so both refuse a value in the same words.
use std::{
    fmt::Display,
    net::{Ipv4Addr, SocketAddr},
    ops::RangeInclusive,
    str::FromStr,
    time::Duration,
};

use ha_core::Preempt;

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
const fn mins(n: u64) -> Duration {
    Duration::from_secs(60 * n)
}

// Bounds. Lower bounds keep the agent from spinning (a 0 s check interval forks in a loop);
// upper bounds keep every duration far inside the u64 nanoseconds the core counts in (several
// tolerances are added up), and refuse what is surely a typo ("350s" for "350ms" is still let
// through: it is a slow cluster, not a broken one).
/// The wire carries the interval in µs; below 500 µs the sender cannot keep its schedule.
pub const INTERVAL: RangeInclusive<Duration> = Duration::from_micros(500)..=mins(1);
pub const TOLERANCE: RangeInclusive<Duration> = Duration::from_micros(500)..=mins(60);
pub const TICK: RangeInclusive<Duration> = Duration::from_micros(100)..=mins(1);
/// 0 turns these off.
pub const HOLD_DOWN: RangeInclusive<Duration> = Duration::ZERO..=mins(60);
pub const GARP_REFRESH: RangeInclusive<Duration> = Duration::ZERO..=mins(24 * 60);
/// A stop waits this long at most: systemd's stop timeout should exceed it.
pub const LEAVE_TIMEOUT: RangeInclusive<Duration> = Duration::ZERO..=mins(10);
pub const PREEMPT_DELAY: RangeInclusive<Duration> = Duration::ZERO..=mins(24 * 60);
/// Each run forks a shell: more than 100 a second per check is a mistake.
pub const CHECK_INTERVAL: RangeInclusive<Duration> = ms(10)..=mins(60);
/// A timeout of 0 would kill every hook and check before it starts.
pub const COMMAND_TIMEOUT: RangeInclusive<Duration> = ms(10)..=mins(60);
pub const CHECK_COUNT: RangeInclusive<u32> = 1..=100;
pub const PORT: RangeInclusive<u16> = 1..=u16::MAX;

/// A duration parser refusing values outside `range`, e.g. `duration(INTERVAL)`.
pub fn duration(
    range: RangeInclusive<Duration>,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |s| {
        let d = parse_duration(s)?;
        within(d, &range, s)
    }
}

fn within(d: Duration, range: &RangeInclusive<Duration>, s: &str) -> Result<Duration, String> {
    let show = |d: &Duration| humantime::format_duration(*d).to_string();
    if d < *range.start() {
        return Err(format!("{s} is too short: {} is the minimum", show(range.start())));
    }
    if d > *range.end() {
        return Err(format!("{s} is too long: {} is the maximum", show(range.end())));
    }
    Ok(d)
}

/// Any duration as people write it: "500us", "2ms", "1s", "1m".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|_| format!("{s:?} is not a duration: write e.g. \"500ms\" or \"2s\""))
}

/// A whole-number parser refusing values outside `range`.
pub fn number<T>(range: RangeInclusive<T>) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: FromStr + PartialOrd + Display + Copy + Send + Sync + 'static,
{
    move |s| {
        let n: T =
            s.parse().map_err(|_| format!("{s:?} is not a whole number from {} to {}", range.start(), range.end()))?;
        if !range.contains(&n) {
            return Err(format!("{n} is out of range: {} to {}", range.start(), range.end()));
        }
        Ok(n)
    }
}

pub fn parse_node_id(s: &str) -> Result<u32, String> {
    s.parse::<u32>()
        .or_else(|_| s.parse::<Ipv4Addr>().map(u32::from))
        .map_err(|_| format!("{s:?} is neither a number nor an IPv4 address"))
}

pub fn parse_preempt(s: &str) -> Result<Preempt, String> {
    match s {
        "always" => Ok(Preempt::Always),
        "never" => Ok(Preempt::Never),
        _ => match s.strip_prefix("delay=") {
            Some(d) => {
                let d = within(parse_duration(d)?, &PREEMPT_DELAY, d)?;
                Ok(Preempt::Delay(d))
            }
            None => Err(format!("{s:?}: expected always, never or delay=DUR (e.g. delay=30s)")),
        },
    }
}

/// A preempt setting as the command line spells it (the inverse of [`parse_preempt`]).
pub fn spell_preempt(p: Preempt) -> String {
    match p {
        Preempt::Always => "always".into(),
        Preempt::Never => "never".into(),
        Preempt::Delay(d) => format!("delay={}", spell_duration(d)),
    }
}

/// A duration as the command line takes it: "300ms", "1s500ms" (no spaces: one argument).
pub fn spell_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string().replace(' ', "")
}

/// An optional period as its flag takes it: none or zero is "off".
pub fn spell_period(d: Option<Duration>) -> String {
    d.filter(|d| !d.is_zero()).map_or_else(|| "off".into(), spell_duration)
}

/// Heartbeats go to a multicast group: any other address would send them to one host or none.
pub fn parse_group(s: &str) -> Result<Ipv4Addr, String> {
    let addr = parse_ipv4(s)?;
    if !addr.is_multicast() {
        return Err(format!("{addr} is not a multicast address (224.0.0.0/4); for unicast use --peer"));
    }
    Ok(addr)
}

/// A unicast peer: an address one host answers to.
pub fn parse_peer(s: &str) -> Result<Ipv4Addr, String> {
    let addr = parse_ipv4(s)?;
    if addr.is_unspecified() || addr.is_multicast() || addr.is_broadcast() {
        return Err(format!("{addr} is not a unicast address: give a peer's own address"));
    }
    Ok(addr)
}

fn parse_ipv4(s: &str) -> Result<Ipv4Addr, String> {
    s.parse().map_err(|_| format!("{s:?} is not an IPv4 address"))
}

pub fn parse_log_level(s: &str) -> Result<log::LevelFilter, String> {
    s.parse().map_err(|_| format!("{s:?} is not a log level: use off, error, warn, info, debug or trace"))
}

/// The metrics listener: a fixed port, so that Prometheus can find it.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = s.parse().map_err(|_| format!("{s:?} is not ADDR:PORT, e.g. \"127.0.0.1:9465\""))?;
    if addr.port() == 0 {
        return Err(format!("{s}: port 0 would pick a random port: give one, e.g. 9465"));
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_preempt_and_node_ids_parse() {
        assert_eq!(parse_duration("2ms"), Ok(ms(2)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert!(parse_duration("fast").is_err());
        assert_eq!(parse_preempt("delay=30s"), Ok(Preempt::Delay(Duration::from_secs(30))));
        assert_eq!(parse_preempt("never"), Ok(Preempt::Never));
        assert!(parse_preempt("sometimes").is_err());
        assert_eq!(parse_node_id("192.0.2.1"), Ok(0xc000_0201));
        assert_eq!(parse_node_id("7"), Ok(7));
        assert!(parse_node_id("x").is_err());
    }

    #[test]
    fn settings_are_spelt_as_the_command_line_takes_them() {
        for p in [Preempt::Always, Preempt::Never, Preempt::Delay(Duration::from_millis(5_250))] {
            assert_eq!(parse_preempt(&spell_preempt(p)), Ok(p), "{}", spell_preempt(p));
        }
        assert_eq!(spell_preempt(Preempt::Delay(Duration::from_secs(5))), "delay=5s");
        assert_eq!(spell_duration(ms(300)), "300ms");
        assert_eq!(spell_period(None), "off");
        assert_eq!(spell_period(Some(Duration::ZERO)), "off");
        assert_eq!(spell_period(Some(Duration::from_secs(30))), "30s");
        for d in [Duration::from_micros(500), Duration::from_millis(1_500), Duration::from_secs(3_661)] {
            assert_eq!(parse_duration(&spell_duration(d)), Ok(d), "{}", spell_duration(d));
        }
    }

    #[test]
    fn bounds_are_inclusive_and_say_which_side_was_crossed() {
        let interval = duration(INTERVAL);
        assert_eq!(interval("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(interval("1m"), Ok(mins(1)));
        assert_eq!(interval("499us").unwrap_err(), "499us is too short: 500us is the minimum");
        assert_eq!(interval("61s").unwrap_err(), "61s is too long: 1m is the maximum");
        // Parses to Duration::MAX-ish seconds: refused, not overflowed later.
        assert!(duration(TOLERANCE)("18446744073709551615s").unwrap_err().contains("too long"));
        assert!(parse_preempt("delay=100000h").unwrap_err().contains("too long"));
        let port = number(PORT);
        assert_eq!(port("0").unwrap_err(), "0 is out of range: 1 to 65535");
        assert!(port("65536").unwrap_err().contains("not a whole number from 1 to 65535"));
        assert_eq!(number(CHECK_COUNT)("101").unwrap_err(), "101 is out of range: 1 to 100");
    }

    #[test]
    fn addresses_are_checked_for_their_role() {
        assert!(parse_group("239.255.72.65").is_ok());
        assert!(parse_group("192.0.2.1").unwrap_err().contains("not a multicast address"));
        assert!(parse_peer("192.0.2.2").is_ok());
        for bad in ["0.0.0.0", "239.1.1.1", "255.255.255.255"] {
            assert!(parse_peer(bad).unwrap_err().contains("not a unicast"), "{bad}");
        }
        assert!(parse_listen("127.0.0.1:9465").is_ok());
        assert!(parse_listen("127.0.0.1:0").unwrap_err().contains("port 0"));
    }
}
