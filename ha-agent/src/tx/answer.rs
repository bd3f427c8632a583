//! Heartbeats the kernel sends for this node (`ha_common::answer`): the agent writes what the
//! XDP program answers peers' heartbeats with and until when (`ANSWER`), and where answers may
//! leave from (`ANSWER_IFACES`, one entry per heartbeat link). While an answer is in force, the
//! node is heard without waking: each peer's heartbeat brings back one of the node's own, to
//! that peer, or to the group (every peer) at most once per half interval
//! ([`Answerer::set_group_gap`]).
//!
//! A value is copied into the map by one syscall, which is not atomic for the program reading
//! it: a changed template goes into the slot not in force first, and a second update puts it
//! in force. Answers stop at once with [`Answerer::stop`], and when this is dropped (before the
//! XDP program is detached); a crashed agent's answers stop at their `until`, and its fence
//! rises only then.
use std::net::Ipv4Addr;

use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData, MapError},
};
use ha_common::{
    maps::{ANSWER_IFACES_MAP, ANSWER_MAP, Answer, AnswerIface, COUNTERS_MAP},
    wire::TAG_OFFSET,
};

#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("map {0} is missing from the XDP object")]
    Missing(&'static str),
    #[error("map {name}: {source}")]
    Map { name: &'static str, source: MapError },
    #[error(transparent)]
    Counter(#[from] crate::tx::counter::CounterError),
}

fn map_err(name: &'static str) -> impl Fn(MapError) -> AnswerError {
    move |source| AnswerError::Map { name, source }
}

pub struct Answerer {
    answer: Array<MapData, Answer>,
    ifaces: HashMap<MapData, u32, AnswerIface>,
    /// What the map holds (only this writes it).
    value: Answer,
    /// The counter answers and this node's own heartbeats share.
    counter: crate::tx::counter::SharedCounter,
}

impl Answerer {
    /// Takes the maps out of a loaded object; no answer is in force.
    pub fn take_from(ebpf: &mut Ebpf) -> Result<Self, AnswerError> {
        let answer = ebpf.take_map(ANSWER_MAP).ok_or(AnswerError::Missing(ANSWER_MAP))?;
        let ifaces = ebpf.take_map(ANSWER_IFACES_MAP).ok_or(AnswerError::Missing(ANSWER_IFACES_MAP))?;
        let counters = match ebpf.take_map(COUNTERS_MAP).ok_or(AnswerError::Missing(COUNTERS_MAP))? {
            aya::maps::Map::Array(data) => data,
            _ => return Err(AnswerError::Missing(COUNTERS_MAP)),
        };
        let mut this = Self {
            answer: Array::try_from(answer).map_err(map_err(ANSWER_MAP))?,
            ifaces: HashMap::try_from(ifaces).map_err(map_err(ANSWER_IFACES_MAP))?,
            value: Answer::default(),
            counter: crate::tx::counter::SharedCounter::map(counters)?,
        };
        this.write()?;
        Ok(this)
    }

    /// Answers may leave from the interface `ifindex`, from `mac` and `ipv4` (the address this
    /// node's heartbeats leave from there).
    pub fn add_iface(&mut self, ifindex: u32, mac: [u8; 6], ipv4: Ipv4Addr) -> Result<(), AnswerError> {
        let iface = AnswerIface { mac, _pad: [0; 2], ipv4: ipv4.octets(), _pad2: 0 };
        self.ifaces.insert(&ifindex, &iface, 0).map_err(map_err(ANSWER_IFACES_MAP))
    }

    /// The kernel answers with `template` until `until_ns` (CLOCK_MONOTONIC) from now on. The
    /// caller reads its clock for its own heartbeats only after this: an answer whose counter
    /// is later than theirs carries this template.
    pub fn answer(&mut self, template: &[u8; TAG_OFFSET], until_ns: u64) -> Result<(), AnswerError> {
        if self.value.template() != template {
            let spare = usize::from(self.value.current == 0);
            self.value.templates[spare] = *template;
            // The slot in force stays what it was while the other is written.
            self.write()?;
            self.value.current = spare as u32;
        }
        self.value.until_ns = until_ns;
        self.write()
    }

    /// Answers go to the group a request was sent to, a new counter at most once per `gap`
    /// (clamped to 4.2 s), so every peer hears them (`Answer::group_gap_ns`).
    pub fn set_group_gap(&mut self, gap: std::time::Duration) -> Result<(), AnswerError> {
        self.value.group_gap_ns = u32::try_from(gap.as_nanos()).unwrap_or(u32::MAX).max(1);
        self.write()
    }

    /// No more answers, at once.
    pub fn stop(&mut self) -> Result<(), AnswerError> {
        if self.value.until_ns == 0 {
            return Ok(());
        }
        self.value.until_ns = 0;
        self.write()
    }

    /// The counter the kernel's answers take theirs from: this node's own heartbeats must take
    /// theirs from it too.
    pub fn counter(&self) -> crate::tx::counter::SharedCounter {
        self.counter.clone()
    }

    /// Up to when answers are in force (0: none).
    pub fn until_ns(&self) -> u64 {
        self.value.until_ns
    }

    fn write(&mut self) -> Result<(), AnswerError> {
        self.answer.set(0, &self.value, 0).map_err(map_err(ANSWER_MAP))
    }
}

impl Drop for Answerer {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            log::warn!("stopping the kernel's answers: {e}; they end by themselves within the schedule's horizon");
        }
    }
}
