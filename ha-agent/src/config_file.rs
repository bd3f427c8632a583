//! The TOML config file (`--config FILE`): every `run` flag is a key named as the flag without
//! its dashes (`leave-timeout = "1s"`; repeatable flags take a list or one value). Values go
//! through the flags' own parsers, so a bad value is reported at its line with what is expected.
//! The file fills in what the command line did not give: a flag always wins over the file.
use std::{
    fmt,
    marker::PhantomData,
    net::{Ipv4Addr, SocketAddr},
    num::NonZeroU32,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{
    Deserialize, Deserializer,
    de::{self, DeserializeSeed, SeqAccess, Visitor},
};

use crate::{
    cli::{RunArgs, parse_duration, parse_node_id, parse_preempt},
    netlink::SharedAddr,
    node::Preempt,
    ops::logging::LogFormat,
    rx::settings::{AttachMode, RxMode},
};

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("reading config file {path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    /// `path:line:column: message`, the way compilers point at a mistake.
    #[error("{path}:{line}:{column}: {message}")]
    Invalid { path: PathBuf, line: usize, column: usize, message: String },
}

/// The keys of the file. Field names match `RunArgs` so `apply` can merge them by name.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub iface: Option<String>,
    #[serde(rename = "vip", default, deserialize_with = "many")]
    pub vips: Option<Vec<SharedAddr>>,
    pub priority: Option<u32>,
    #[serde(default, deserialize_with = "one")]
    pub interval: Option<Duration>,
    #[serde(default, deserialize_with = "one")]
    pub tolerance: Option<Duration>,
    #[serde(default, deserialize_with = "one")]
    pub tick: Option<Duration>,
    pub cluster: Option<u32>,
    #[serde(default, deserialize_with = "one")]
    pub node_id: Option<NodeId>,
    #[serde(default, deserialize_with = "one")]
    pub group: Option<Ipv4Addr>,
    pub port: Option<u16>,
    #[serde(rename = "peer", default, deserialize_with = "many")]
    pub peers: Option<Vec<Ipv4Addr>>,
    #[serde(default, deserialize_with = "one")]
    pub rx: Option<RxMode>,
    #[serde(default, deserialize_with = "one")]
    pub preempt: Option<Preempt>,
    #[serde(default, deserialize_with = "one")]
    pub leave_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "one")]
    pub hold_down: Option<Duration>,
    #[serde(default, deserialize_with = "one")]
    pub max_tolerance: Option<Duration>,
    #[serde(default, deserialize_with = "one")]
    pub garp_refresh: Option<Duration>,
    pub pin_dir: Option<PathBuf>,
    #[serde(default, deserialize_with = "one")]
    pub xdp_mode: Option<AttachMode>,
    pub pass_heartbeats: Option<bool>,
    pub realtime: Option<bool>,
    #[serde(default, deserialize_with = "one")]
    pub metrics: Option<SocketAddr>,
    pub on_active: Option<String>,
    pub on_standby: Option<String>,
    pub notify: Option<String>,
    #[serde(default, deserialize_with = "one")]
    pub hook_timeout: Option<Duration>,
    #[serde(rename = "check", default, deserialize_with = "many")]
    pub checks: Option<Vec<String>>,
    #[serde(default, deserialize_with = "one")]
    pub check_interval: Option<Duration>,
    #[serde(default, deserialize_with = "one")]
    pub check_timeout: Option<Duration>,
    pub check_fall: Option<NonZeroU32>,
    pub check_rise: Option<NonZeroU32>,
    pub check_weight: Option<u32>,
    pub key_file: Option<PathBuf>,
    pub insecure_no_auth: Option<bool>,
    /// Global flags, read by `main` before the logger starts.
    #[serde(default, deserialize_with = "one")]
    pub log_level: Option<log::LevelFilter>,
    pub log_format: Option<LogFormat>,
}

/// A node id as the flag takes it: a number or an IPv4 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeId(pub u32);

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, FileError> {
        let text = std::fs::read_to_string(path).map_err(|error| FileError::Read { path: path.to_owned(), error })?;
        Self::parse(&text, path)
    }

    /// `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, FileError> {
        toml::from_str(text).map_err(|e| {
            let start = e.span().map_or(0, |s| s.start).min(text.len());
            let before = &text[..start];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            FileError::Invalid { path: path.to_owned(), line, column, message: explain(e.message()) }
        })
    }

    /// Every key the file accepts, as written in it.
    pub fn keys() -> &'static [&'static str] {
        let mut names = FieldNames(&[]);
        // Always fails: the names are caught on the way.
        let _ = FileConfig::deserialize(&mut names);
        names.0
    }

    /// Takes the file's value for each option the command line did not give.
    /// `given(id)`: whether the flag with that clap id (the field name) was on the command line.
    pub fn apply(self, args: &mut RunArgs, given: impl Fn(&str) -> bool) {
        // `.into()` also wraps values for the `Option` fields of `RunArgs`.
        macro_rules! take {
            ($($field:ident $(($via:expr))?),* $(,)?) => {$(
                if let Some(value) = self.$field
                    && !given(stringify!($field))
                {
                    $(let value = $via(value);)?
                    args.$field = value.into();
                }
            )*};
        }
        take!(
            iface,
            vips,
            priority,
            interval,
            tolerance,
            max_tolerance,
            tick,
            cluster,
            node_id(|n: NodeId| n.0),
            group,
            port,
            peers,
            rx,
            preempt,
            leave_timeout,
            hold_down,
            garp_refresh,
            pin_dir,
            xdp_mode,
            pass_heartbeats,
            realtime,
            metrics,
            on_active,
            on_standby,
            notify,
            hook_timeout,
            checks,
            check_interval,
            check_timeout,
            check_fall(NonZeroU32::get),
            check_rise(NonZeroU32::get),
            check_weight,
            key_file,
            insecure_no_auth,
        );
    }
}

/// serde lists every accepted key in an unknown-key error; name the likely one instead.
fn explain(message: &str) -> String {
    let message = message.trim();
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_string();
    };
    let key = rest.split('`').next().unwrap_or_default();
    let closest = FileConfig::keys()
        .iter()
        .map(|k| (strsim::jaro_winkler(key, k), *k))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .filter(|(score, _)| *score > 0.8);
    match closest {
        Some((_, k)) => format!("unknown key `{key}`: did you mean `{k}`?"),
        None => format!("unknown key `{key}`: keys are the long names of `ha-agent run --help` flags"),
    }
}

// ---------------------------------------------------------------------------
// Values written as text, parsed by the flags' parsers
// ---------------------------------------------------------------------------

/// A value the file writes as a string, parsed as its flag is. Errors say what is expected.
trait FromText: Sized {
    const EXPECTED: &'static str;
    fn from_text(s: &str) -> Result<Self, String>;
    /// For values that may also be written as a TOML integer.
    fn from_int(_: i64) -> Option<Self> {
        None
    }
}

impl FromText for Duration {
    const EXPECTED: &'static str = "a duration such as \"500ms\" or \"2s\"";
    fn from_text(s: &str) -> Result<Self, String> {
        parse_duration(s).map_err(|_| format!("{s:?} is not a duration: write e.g. \"500ms\" or \"2s\""))
    }
}

impl FromText for SharedAddr {
    const EXPECTED: &'static str = "an address with its prefix such as \"192.0.2.200/24\"";
    fn from_text(s: &str) -> Result<Self, String> {
        s.parse().map_err(|e: crate::netlink::SharedAddrError| e.to_string())
    }
}

impl FromText for Preempt {
    const EXPECTED: &'static str = "\"always\", \"never\" or \"delay=DUR\"";
    fn from_text(s: &str) -> Result<Self, String> {
        parse_preempt(s).map_err(|e| format!("{e} (e.g. \"delay=30s\")"))
    }
}

impl FromText for NodeId {
    const EXPECTED: &'static str = "a number or an IPv4 address";
    fn from_text(s: &str) -> Result<Self, String> {
        parse_node_id(s).map(NodeId).map_err(|e| format!("node-id: {e}"))
    }
    fn from_int(n: i64) -> Option<Self> {
        u32::try_from(n).ok().map(NodeId)
    }
}

impl FromText for Ipv4Addr {
    const EXPECTED: &'static str = "an IPv4 address";
    fn from_text(s: &str) -> Result<Self, String> {
        s.parse().map_err(|_| format!("{s:?} is not an IPv4 address"))
    }
}

impl FromText for SocketAddr {
    const EXPECTED: &'static str = "an address and port such as \"127.0.0.1:9465\"";
    fn from_text(s: &str) -> Result<Self, String> {
        s.parse().map_err(|_| format!("{s:?} is not ADDR:PORT, e.g. \"127.0.0.1:9465\""))
    }
}

impl FromText for AttachMode {
    const EXPECTED: &'static str = "\"auto\", \"driver\" or \"skb\"";
    fn from_text(s: &str) -> Result<Self, String> {
        <AttachMode as clap::ValueEnum>::from_str(s, false)
            .map_err(|_| format!("{s:?} is not an XDP mode: use \"auto\", \"driver\" or \"skb\""))
    }
}

impl FromText for RxMode {
    const EXPECTED: &'static str = "\"auto\", \"xdp\" or \"socket\"";
    fn from_text(s: &str) -> Result<Self, String> {
        <RxMode as clap::ValueEnum>::from_str(s, false)
            .map_err(|_| format!("{s:?} is not a receive path: use \"auto\", \"xdp\" or \"socket\""))
    }
}

impl FromText for log::LevelFilter {
    const EXPECTED: &'static str = "a log level: off, error, warn, info, debug or trace";
    fn from_text(s: &str) -> Result<Self, String> {
        s.parse().map_err(|_| format!("{s:?} is not a log level: use off, error, warn, info, debug or trace"))
    }
}

impl FromText for String {
    const EXPECTED: &'static str = "a string";
    fn from_text(s: &str) -> Result<Self, String> {
        Ok(s.to_string())
    }
}

struct Text<T>(PhantomData<T>);

impl<'de, T: FromText> Visitor<'de> for Text<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::EXPECTED)
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
        T::from_text(s).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<T, E> {
        T::from_int(n).ok_or_else(|| E::invalid_type(de::Unexpected::Signed(n), &self))
    }
}

impl<'de, T: FromText> DeserializeSeed<'de> for Text<T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        d.deserialize_any(self)
    }
}

fn one<'de, D: Deserializer<'de>, T: FromText>(d: D) -> Result<Option<T>, D::Error> {
    d.deserialize_any(Text(PhantomData)).map(Some)
}

/// A repeatable flag: a list, or a single value.
struct Many<T>(PhantomData<T>);

impl<'de, T: FromText> Visitor<'de> for Many<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, or a list of them", T::EXPECTED)
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Vec<T>, E> {
        Text::<T>(PhantomData).visit_str(s).map(|v| vec![v])
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Text::<T>(PhantomData))? {
            out.push(v);
        }
        Ok(out)
    }
}

fn many<'de, D: Deserializer<'de>, T: FromText>(d: D) -> Result<Option<Vec<T>>, D::Error> {
    d.deserialize_any(Many(PhantomData)).map(Some)
}

/// A deserializer that only records the field names a struct asks for.
struct FieldNames(&'static [&'static str]);

impl<'de> Deserializer<'de> for &mut FieldNames {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("only field names are wanted"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0 = fields;
        self.deserialize_any(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests;
