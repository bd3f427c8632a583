//! What the report says about the machine and the code: CPU, kernel, load, date, commit.
use std::time::{SystemTime, UNIX_EPOCH};

use super::results::Machine;
use crate::cmd::{self, Cmd};

pub fn describe() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    Machine {
        nproc: std::thread::available_parallelism().map_or(1, usize::from),
        cpu_model: field(&cpuinfo, "model name").unwrap_or_else(|| "unknown".into()),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".into(), |s| s.trim().into()),
        memory_mib: field(&meminfo, "MemTotal")
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kib| kib / 1024),
        load_start: loadavg(),
        load_end: [0.0; 3],
    }
}

/// `key : value` (cpuinfo) or `key: value` (meminfo), first occurrence.
fn field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

pub fn loadavg() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = text.split_whitespace().map(|v| v.parse().unwrap_or(f64::NAN));
    [it.next().unwrap_or(f64::NAN), it.next().unwrap_or(f64::NAN), it.next().unwrap_or(f64::NAN)]
}

/// Short commit id, with `+dirty` when the work tree has uncommitted changes.
pub fn commit() -> String {
    let Ok(root) = cmd::workspace_root() else { return "unknown".into() };
    let git = |args: &[&str]| Cmd::new("git").current_dir(&root).args(args).quiet().read().ok();
    let Some(id) = git(&["rev-parse", "--short", "HEAD"]) else { return "unknown".into() };
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.trim().is_empty());
    format!("{}{}", id.trim(), if dirty { "+dirty" } else { "" })
}

/// `YYYY-MM-DD` in UTC (days-to-civil, proleptic Gregorian).
pub fn utc_date(t: SystemTime) -> String {
    let days = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() / 86_400) as i64;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc_date(UNIX_EPOCH), "1970-01-01");
        assert_eq!(utc_date(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29");
        assert_eq!(utc_date(UNIX_EPOCH + Duration::from_secs(1_795_635_920)), "2026-11-25");
    }

    #[test]
    fn fields() {
        assert_eq!(field("model name\t: AMD EPYC\n", "model name").as_deref(), Some("AMD EPYC"));
        assert_eq!(field("MemTotal:       24684000 kB\n", "MemTotal").as_deref(), Some("24684000 kB"));
    }
}
