//! When a peer's silence means it is gone, on a link that loses heartbeats.
//!
//! With the tolerance alone, a run of lost heartbeats looks like death: at 10% loss and a
//! tolerance of 4 intervals, a live holder went unheard for a whole tolerance 3 times in 90 s
//! at 10 ms heartbeats (a bench run before this module). So each peer's loss rate is estimated
//! from its sequence counter (heartbeats it sent) against the heartbeats recorded from it, and
//! its silence limit grows to cover as many lost heartbeats in a row as that rate makes likelier
//! than [`FALSE_ALARM`], up to `max_tolerance`. On a clean link the limit is the tolerance
//! exactly: a dead node is noticed just as fast.
//!
//! A silence the limit did not cover (the peer was down, cut off, or partitioned away) is an
//! outage, not loss: it is not counted, so a peer that comes back is judged as before.
//! Pure: no clock, no I/O; fed the peers of each step.
use crate::{
    mutation::{self, Mutation},
    node::Peer,
    time::Duration,
};

/// Accepted chance, per heartbeat, that a live peer's heartbeats are all lost for a whole
/// silence limit: at 100 heartbeats/s, one false alarm in about three hours of steady loss.
pub const FALSE_ALARM: f64 = 1e-6;
/// Half-lives of the two loss estimates, in heartbeats: the fast one reacts when loss begins,
/// the slow one keeps the rate when the fast one dips by chance. The higher of the two counts.
const FAST_HALF_LIFE: f64 = 32.0;
const SLOW_HALF_LIFE: f64 = 256.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LivenessConfig {
    /// A peer's silence limit on a clean link.
    pub tolerance: Duration,
    /// The most the limit may grow to under loss (equal to `tolerance`: never grows).
    pub max_tolerance: Duration,
}

/// A peer's heartbeat counts, as recorded with its last heartbeat.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Beats {
    /// The peer's heartbeat interval (0: unknown, the limit stays the tolerance).
    pub interval: Duration,
    /// The peer's run (a new epoch starts the counter again).
    pub epoch: u64,
    /// The peer's heartbeat counter: heartbeats it has sent in this epoch.
    pub sent: u64,
    /// Heartbeats recorded from it.
    pub received: u64,
}

/// An exponentially decaying share of lost heartbeats.
#[derive(Clone, Copy, Debug)]
struct LossRate {
    keep_per_beat: f64,
    sent: f64,
    lost: f64,
}

impl LossRate {
    fn new(half_life: f64) -> Self {
        Self { keep_per_beat: 0.5f64.powf(1.0 / half_life), sent: 0.0, lost: 0.0 }
    }

    fn add(&mut self, sent: u64, lost: u64) {
        let keep = self.keep_per_beat.powf(sent as f64);
        self.sent = self.sent * keep + sent as f64;
        self.lost = self.lost * keep + lost as f64;
    }

    fn rate(&self) -> f64 {
        if self.sent > 0.0 { self.lost / self.sent } else { 0.0 }
    }
}

/// What is known of one peer's losses.
#[derive(Clone, Copy, Debug)]
struct Track {
    node_id: u32,
    /// The counts at the previous step.
    last: Beats,
    fast: LossRate,
    slow: LossRate,
    limit: Duration,
}

impl Track {
    fn new(node_id: u32, beats: Beats, tolerance: Duration) -> Self {
        Self {
            node_id,
            last: beats,
            fast: LossRate::new(FAST_HALF_LIFE),
            slow: LossRate::new(SLOW_HALF_LIFE),
            limit: tolerance,
        }
    }

    fn loss(&self) -> f64 {
        self.fast.rate().max(self.slow.rate())
    }
}

pub struct Liveness {
    cfg: LivenessConfig,
    /// One per peer ever heard (a few; a linear scan beats a map at this size).
    tracks: Vec<Track>,
}

impl Liveness {
    pub fn new(cfg: LivenessConfig) -> Self {
        Self { cfg: LivenessConfig { max_tolerance: cfg.max_tolerance.max(cfg.tolerance), ..cfg }, tracks: Vec::new() }
    }

    /// Counts what each peer's heartbeats since the previous step say about its link.
    pub fn observe(&mut self, peers: &[Peer]) {
        for peer in peers {
            let beats = peer.beats;
            let Some(track) = self.tracks.iter_mut().find(|t| t.node_id == peer.node_id) else {
                self.tracks.push(Track::new(peer.node_id, beats, self.cfg.tolerance));
                continue;
            };
            if beats.epoch != track.last.epoch || beats.sent < track.last.sent {
                // The peer restarted: its counter starts again, and so does what we know.
                *track = Track::new(peer.node_id, beats, self.cfg.tolerance);
                continue;
            }
            let sent = beats.sent - track.last.sent;
            let received = beats.received.saturating_sub(track.last.received);
            track.last = beats;
            if sent == 0 {
                continue;
            }
            let lost = sent.saturating_sub(received);
            // As many lost in a row as the limit did not cover: an outage (it was counted dead),
            // not loss. Counting it would slow the detection of its next real failure.
            let outage = u128::from(lost) * beats.interval.as_nanos() >= track.limit.as_nanos();
            if outage {
                continue;
            }
            track.fast.add(sent, lost);
            track.slow.add(sent, lost);
            track.limit = silence_limit(track.loss(), beats.interval, &self.cfg);
            if mutation::active(Mutation::ForgetLossAdaptive) {
                track.limit = self.cfg.tolerance;
            }
        }
    }

    /// How long this peer may be silent and still count as live.
    pub fn limit(&self, node_id: u32) -> Duration {
        self.track(node_id).map_or(self.cfg.tolerance, |t| t.limit)
    }

    /// The estimated share of this peer's heartbeats that are lost (0 when unknown).
    pub fn loss(&self, node_id: u32) -> f64 {
        self.track(node_id).map_or(0.0, Track::loss)
    }

    fn track(&self, node_id: u32) -> Option<&Track> {
        self.tracks.iter().find(|t| t.node_id == node_id)
    }
}

/// The silence that `loss` explains with at most [`FALSE_ALARM`] chance: `n` heartbeats lost in
/// a row, with `loss^n <= FALSE_ALARM`, and the next one up to half an interval late. Never
/// below the tolerance, never above the maximum.
pub fn silence_limit(loss: f64, interval: Duration, cfg: &LivenessConfig) -> Duration {
    if loss <= 0.0 || interval.is_zero() {
        return cfg.tolerance;
    }
    if loss >= 1.0 {
        return cfg.max_tolerance;
    }
    let in_a_row = (FALSE_ALARM.ln() / loss.ln()).ceil();
    let needed = (in_a_row + 0.5) * interval.as_nanos() as f64;
    if needed >= cfg.max_tolerance.as_nanos() as f64 {
        return cfg.max_tolerance;
    }
    Duration::from_nanos(needed as u64).max(cfg.tolerance)
}

#[cfg(test)]
pub(crate) mod tests;
