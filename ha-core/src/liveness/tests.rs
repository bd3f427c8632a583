use ha_common::wire::NodeState;
use proptest::prelude::*;

use super::*;

use crate::time::Instant;

/// Times in these tests are whole nanoseconds, to count heartbeats with integers.
const MS: u64 = 1_000_000;
const INTERVAL: u64 = 10 * MS;
const CFG: LivenessConfig = LivenessConfig { tolerance: ms(40), max_tolerance: ms(80) };

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn peer(sent: u64, received: u64, last_seen: u64) -> Peer {
    Peer {
        node_id: 7,
        priority: 100,
        state: NodeState::Active,
        flags: 0,
        last_seen: Instant::from_nanos(last_seen),
        beats: Beats { interval: Duration::from_nanos(INTERVAL), epoch: 1, sent, received },
        claimed_at: None,
        confirmed: true,
    }
}

/// A deterministic coin: true with probability `p` (xorshift64).
pub(crate) struct Coin(pub u64);

impl Coin {
    pub fn flip(&mut self, p: f64) -> bool {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

/// Sends `beats` heartbeats at `INTERVAL`, each lost with probability `loss`, stepping once per
/// interval as the agent does. Returns the limit at the end and the times a live peer's silence
/// went past its limit (false alarms).
fn simulate(live: &mut Liveness, beats: u64, loss: f64, seed: u64) -> (Duration, u64) {
    let mut coin = Coin(seed);
    let (mut received, mut last_seen, mut false_alarms, mut counted) = (0, 0, 0, false);
    for sent in 1..=beats {
        let now = sent * INTERVAL;
        if !coin.flip(loss) {
            received += 1;
            last_seen = now;
        }
        let p = peer(sent, received, last_seen);
        live.observe(&[p]);
        // Just before the next heartbeat, up to half an interval late: still live?
        let silent = Duration::from_nanos(now + INTERVAL + INTERVAL / 2 - last_seen) > live.limit(7);
        if silent && !counted {
            false_alarms += 1;
        }
        counted = silent;
    }
    (live.limit(7), false_alarms)
}

#[test]
fn a_clean_link_keeps_the_tolerance() {
    let mut live = Liveness::new(CFG);
    assert_eq!(simulate(&mut live, 1_000, 0.0, 1), (CFG.tolerance, 0));
    assert_eq!(live.loss(7), 0.0);
}

#[test]
fn ten_percent_loss_raises_the_limit_to_six_or_seven_lost_heartbeats_in_a_row() {
    let mut live = Liveness::new(CFG);
    let (limit, _) = simulate(&mut live, 3_000, 0.1, 42);
    assert!((0.07..0.13).contains(&live.loss(7)), "loss {}", live.loss(7));
    // 0.1^6 = 1e-6: six lost and the next half an interval late; seven when the estimate is
    // just above 10%.
    assert!(limit == ms(65) || limit == ms(75), "limit {limit:?}");
}

#[test]
fn ten_percent_loss_for_fifteen_minutes_at_10ms_gives_no_false_alarm() {
    // 90 000 heartbeats. With the tolerance alone (4 intervals), about 50 false alarms.
    for seed in [3, 5, 7] {
        let mut live = Liveness::new(CFG);
        assert_eq!(simulate(&mut live, 90_000, 0.1, seed).1, 0, "seed {seed}");
    }
    let mut fixed = Liveness::new(LivenessConfig { max_tolerance: CFG.tolerance, ..CFG });
    assert!(simulate(&mut fixed, 90_000, 0.1, 3).1 > 10);
}

#[test]
fn the_limit_never_passes_the_maximum() {
    let mut live = Liveness::new(CFG);
    assert_eq!(simulate(&mut live, 3_000, 0.4, 9).0, CFG.max_tolerance);
}

#[test]
fn an_outage_is_not_loss() {
    let mut live = Liveness::new(CFG);
    live.observe(&[peer(10, 10, 100 * MS)]);
    // Cut off for a second: 100 heartbeats never arrived, then it is back.
    live.observe(&[peer(111, 11, 1_110 * MS)]);
    live.observe(&[peer(112, 12, 1_120 * MS)]);
    assert_eq!((live.limit(7), live.loss(7)), (CFG.tolerance, 0.0));
}

#[test]
fn a_restarted_peer_starts_with_a_clean_record() {
    let mut live = Liveness::new(CFG);
    simulate(&mut live, 1_000, 0.2, 11);
    assert!(live.limit(7) > CFG.tolerance);
    let mut restarted = peer(1, 1, 20_000 * MS);
    restarted.beats.epoch = 2;
    live.observe(&[restarted]);
    assert_eq!((live.limit(7), live.loss(7)), (CFG.tolerance, 0.0));
}

#[test]
fn unknown_peers_and_intervals_get_the_tolerance() {
    let live = Liveness::new(CFG);
    assert_eq!(live.limit(9), CFG.tolerance);
    assert_eq!(silence_limit(0.1, Duration::ZERO, &CFG), CFG.tolerance);
}

#[test]
fn a_maximum_below_the_tolerance_means_the_tolerance() {
    let live = Liveness::new(LivenessConfig { tolerance: ms(40), max_tolerance: Duration::ZERO });
    assert_eq!(live.limit(1), ms(40));
}

proptest! {
    #[test]
    fn the_limit_grows_with_loss_within_its_bounds(a in 0.0f64..1.0, b in 0.0f64..1.0, interval in 1u64..50_000_000) {
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        let interval = Duration::from_nanos(interval);
        let (l, h) = (silence_limit(low, interval, &CFG), silence_limit(high, interval, &CFG));
        prop_assert!(l <= h);
        prop_assert!((CFG.tolerance..=CFG.max_tolerance).contains(&l));
        prop_assert!((CFG.tolerance..=CFG.max_tolerance).contains(&h));
    }

    #[test]
    fn any_counts_keep_the_limit_within_its_bounds(steps in prop::collection::vec((0u64..5, 0u64..5, any::<bool>()), 1..200)) {
        let mut live = Liveness::new(CFG);
        let (mut sent, mut received, mut epoch) = (0u64, 0u64, 1u64);
        for (more_sent, more_received, restart) in steps {
            if restart {
                epoch += 1;
                sent = 0;
                received = 0;
            }
            sent += more_sent;
            received += more_received.min(more_sent);
            let mut p = peer(sent, received, 0);
            p.beats.epoch = epoch;
            live.observe(&[p]);
            prop_assert!((CFG.tolerance..=CFG.max_tolerance).contains(&live.limit(7)));
        }
    }
}
