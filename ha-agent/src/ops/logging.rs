//! Log output: env_logger's human lines by default, or one JSON object per line for log
//! shippers. Key-values given to `log` macros (e.g. a transition's from, to, reason and timings)
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

pub fn init(level: log::LevelFilter, format: LogFormat) {
    // aya warns of each kernel feature probe that fails; when XDP is refused (e.g. no CAP_BPF)
    // that repeats the one line the agent logs about it. Shown from --log-level debug.
    let probes = if level >= log::LevelFilter::Debug { level } else { log::LevelFilter::Error };
    let mut builder = env_logger::Builder::new();
    builder
        .filter_level(level)
        .filter_module("aya::kernel_features", probes)
        .format_timestamp_millis()
        .format_target(false);
    if format == LogFormat::Json {
        builder.format(|buf, record| writeln!(buf, "{}", json_line(record, std::time::SystemTime::now())));
    }
    builder.init();
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
