//! Log output: env_logger's human lines by default, or one JSON object per line for log
//! shippers. Under systemd (stderr is the journal), human lines drop their timestamp and carry
//! a syslog priority prefix instead. Key-values given to `log` macros (e.g. a transition's from, to, reason and timings)
//! become fields of the JSON object; human lines already say them in words.
use std::io::Write;

use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// Where lines go: a terminal or file (with our own timestamp), or journald, which stamps each
/// line itself and takes its priority from a prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    Plain,
    Journal,
}

/// Modules whose warnings are about themselves, not about anything an operator can act on:
/// netlink-packet-route warns on every link change of a kernel newer than it ("IFLA_INET6_CONF
/// NLA attribute holds more ... data"); aya warns of each kernel feature probe that fails, which
/// repeats the one line the agent logs when XDP is refused. Their errors still show, and
/// everything from --log-level debug.
const SELF_CONCERNED: [&str; 2] = ["netlink_packet_route", "aya::kernel_features"];

pub fn init(level: log::LevelFilter, format: LogFormat) {
    let sink = if super::systemd::stderr_is_journal() { Sink::Journal } else { Sink::Plain };
    builder(level, format, sink).init();
}

fn builder(level: log::LevelFilter, format: LogFormat, sink: Sink) -> env_logger::Builder {
    let quieted = if level >= log::LevelFilter::Debug { level } else { log::LevelFilter::Error };
    let mut builder = env_logger::Builder::new();
    builder.filter_level(level).format_timestamp_millis().format_target(false);
    for module in SELF_CONCERNED {
        builder.filter_module(module, quieted);
    }
    match (format, sink) {
        (LogFormat::Json, _) => {
            builder.format(|buf, record| writeln!(buf, "{}", json_line(record, std::time::SystemTime::now())));
        }
        (LogFormat::Human, Sink::Journal) => {
            builder.format(|buf, record| writeln!(buf, "{}", journal_line(record)));
        }
        (LogFormat::Human, Sink::Plain) => {}
    }
    builder
}

/// sd-daemon's priority prefix (syslog levels): journald strips it and files the line at that
/// priority, so `journalctl -p warning` finds warnings.
fn priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// `<N>message`: journald adds the time, the unit and the priority's name.
pub fn journal_line(record: &log::Record<'_>) -> String {
    format!("<{}>{}", priority(record.level()), record.args())
}

/// `{"ts":..,"level":..,"msg":..,<key-values>}` on one line.
pub fn json_line(record: &log::Record<'_>, now: std::time::SystemTime) -> String {
    let mut object = Map::new();
    object.insert("ts".into(), humantime::format_rfc3339_millis(now).to_string().into());
    object.insert("level".into(), record.level().as_str().into());
    object.insert("msg".into(), record.args().to_string().into());
    let mut fields = Fields(&mut object);
    // A failing visitor only loses fields; the message is already in.
    let _ = record.key_values().visit(&mut fields);
    Value::Object(object).to_string()
}

struct Fields<'a>(&'a mut Map<String, Value>);

impl<'kvs> log::kv::VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(&mut self, key: log::kv::Key<'kvs>, value: log::kv::Value<'kvs>) -> Result<(), log::kv::Error> {
        let value = if let Some(n) = value.to_u64() {
            Value::from(n)
        } else if let Some(n) = value.to_i64() {
            Value::from(n)
        } else if let Some(x) = value.to_f64() {
            Value::from(x)
        } else if let Some(b) = value.to_bool() {
            Value::from(b)
        } else {
            Value::from(value.to_string())
        };
        self.0.insert(key.as_str().to_string(), value);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shows(logger: &env_logger::Logger, target: &str, level: log::Level) -> bool {
        log::Log::enabled(logger, &log::Metadata::builder().target(target).level(level).build())
    }

    #[test]
    fn crates_warning_about_themselves_are_quiet_unless_debugging() {
        let route = "netlink_packet_route::link::af_spec::inet6";
        let info = builder(log::LevelFilter::Info, LogFormat::Human, Sink::Plain).build();
        assert!(!shows(&info, route, log::Level::Warn), "its IFLA_INET6_CONF warning");
        assert!(shows(&info, route, log::Level::Error));
        assert!(!shows(&info, "aya::kernel_features", log::Level::Warn));
        assert!(shows(&info, "ha_agent::agent", log::Level::Warn));
        assert!(shows(&info, "ha_agent::agent", log::Level::Info));
        let debug = builder(log::LevelFilter::Debug, LogFormat::Json, Sink::Journal).build();
        assert!(shows(&debug, route, log::Level::Warn));
    }

    /// What a logger built for `sink` writes for one record.
    fn written(sink: Sink, level: log::Level, msg: &str) -> String {
        #[derive(Clone, Default)]
        struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Shared {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("buffer").extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = Shared::default();
        let logger = builder(log::LevelFilter::Info, LogFormat::Human, sink)
            .target(env_logger::Target::Pipe(Box::new(out.clone())))
            .build();
        log::Log::log(
            &logger,
            &log::Record::builder().level(level).target("ha_agent").args(format_args!("{msg}")).build(),
        );
        String::from_utf8(out.0.lock().expect("buffer").clone()).expect("utf-8")
    }

    #[test]
    fn under_the_journal_a_line_is_its_priority_and_message_only() {
        assert_eq!(written(Sink::Journal, log::Level::Warn, "link eth0 is down"), "<4>link eth0 is down\n");
        let plain = written(Sink::Plain, log::Level::Warn, "link eth0 is down");
        assert!(plain.starts_with('[') && plain.contains("WARN") && plain.contains("Z "), "a timestamp: {plain}");
    }

    #[test]
    fn journal_lines_carry_a_syslog_priority_and_no_timestamp() {
        let line =
            |level| journal_line(&log::Record::builder().level(level).args(format_args!("link eth0 is down")).build());
        assert_eq!(line(log::Level::Error), "<3>link eth0 is down");
        assert_eq!(line(log::Level::Warn), "<4>link eth0 is down");
        assert_eq!(line(log::Level::Info), "<6>link eth0 is down");
        assert_eq!(line(log::Level::Debug), "<7>link eth0 is down");
        assert_eq!(line(log::Level::Trace), "<7>link eth0 is down");
    }

    #[test]
    fn json_lines_carry_level_message_and_fields() {
        let kvs: [(&str, log::kv::Value<'_>); 3] =
            [("to", "ACTIVE".into()), ("took_us", 42u64.into()), ("maintenance", false.into())];
        let line = json_line(
            &log::Record::builder()
                .level(log::Level::Info)
                .args(format_args!("STANDBY -> ACTIVE: \"quoted\""))
                .key_values(&kvs)
                .build(),
            std::time::UNIX_EPOCH,
        );
        let v: Value = serde_json::from_str(&line).expect("one JSON object");
        assert_eq!(v["ts"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["msg"], "STANDBY -> ACTIVE: \"quoted\"");
        assert_eq!(
            (v["to"].as_str(), v["took_us"].as_u64(), v["maintenance"].as_bool()),
            (Some("ACTIVE"), Some(42), Some(false))
        );
        assert!(!line.contains('\n'));
    }
}
