//! Heartbeat authentication and replay protection in the real XDP program (BPF_PROG_TEST_RUN),
//! beyond the shared table of acceptance cases (in `xdp_test_run.rs`): no single-bit change of
//! a genuine heartbeat is accepted, keys rotate through `KEYS` without a reload, and recorded
//! heartbeats replayed in any order stay stale, also across a restart of their sender.
use ha_agent::auth::keys::KeySet;
use ha_common::{
    accept::cases::OTHER_KEY,
    auth::MAC_LEN,
    maps::{AuthKey, Stats},
    siphash::SipKey,
    wire::{HEARTBEAT_LEN, Heartbeat, TAG_OFFSET},
};
use ha_lab::frames::FrameSpec;

use crate::support::xdp::*;

fn signed_with(hb: &Heartbeat, key_id: u8, key: &SipKey) -> Vec<u8> {
    FrameSpec::udp(PORT, &hb.encode_signed(key_id, key)).build()
}

fn raw(bytes: &[u8; HEARTBEAT_LEN]) -> Vec<u8> {
    FrameSpec::udp(PORT, bytes).build()
}

fn hex(key: &SipKey) -> String {
    key.k0.to_le_bytes().iter().chain(&key.k1.to_le_bytes()).map(|b| format!("{b:02x}")).collect()
}

#[test]
fn forged_heartbeats_are_counted_and_change_nothing() {
    let mut h = Harness::new();
    assert_eq!(h.run(&frame(&heartbeat(7, 1))).0, XDP_DROP);
    let recorded = h.peers();

    // What an attacker without the key might try: the most worthy claim, a jump far ahead in the
    // sequence, a new epoch (a "restart"), a new node, an all-zero or truncated tag.
    let mut claim = heartbeat(7, 2);
    claim.priority = u32::MAX;
    let mut ahead = heartbeat(7, u64::MAX);
    ahead.seq.epoch = u64::MAX;
    let mut new_epoch = heartbeat(7, 0);
    new_epoch.seq.epoch = 2_000;
    let mut zero_tag = heartbeat(7, 3).encode_signed(KEY_ID, &KEY);
    zero_tag[TAG_OFFSET..].fill(0);
    let mut mac_only = heartbeat(7, 3).encode_signed(KEY_ID, &KEY);
    mac_only[TAG_OFFSET + MAC_LEN] = 1; // the right MAC, but the reserved half is not zero
    let forged = [
        signed_with(&claim, KEY_ID, &OTHER_KEY),
        signed_with(&ahead, KEY_ID, &OTHER_KEY),
        signed_with(&new_epoch, KEY_ID, &OTHER_KEY),
        signed_with(&heartbeat(9, 1), KEY_ID, &OTHER_KEY),
        raw(&zero_tag),
        raw(&mac_only),
    ];
    for f in &forged {
        assert_eq!(h.run(f).0, XDP_DROP);
    }
    // Every single-bit change of a genuine, newer heartbeat.
    let genuine = heartbeat(7, 2).encode_signed(KEY_ID, &KEY);
    let mut flips = 0;
    for byte in 0..HEARTBEAT_LEN {
        for bit in 0..8 {
            let mut b = genuine;
            b[byte] ^= 1 << bit;
            assert_eq!(h.run(&raw(&b)).0, XDP_DROP, "bit {bit} of byte {byte}");
            flips += 1;
        }
    }
    let s = h.stats();
    assert_eq!(s.valid, 1, "{s:?}");
    assert_eq!(h.peers(), recorded, "no forged heartbeat touched PEERS");
    assert!(s.bad_auth >= forged.len() as u64, "{s:?}");
    let dropped: u64 = s.drops().iter().map(|(_, n)| n).sum();
    assert_eq!(dropped, (forged.len() + flips) as u64, "each counted once: {s:?}");

    // None of it burnt the sequence: the genuine heartbeat is still accepted.
    assert_eq!(h.run(&raw(&genuine)).0, XDP_DROP);
    assert_eq!((h.stats().valid, h.peers()[0].1.counter), (2, 2));
}

#[test]
fn a_slot_not_marked_valid_holds_no_key() {
    let mut h = Harness::new();
    h.keys.write([AuthKey { valid: 0, ..AuthKey::new(KEY_ID, KEY) }, AuthKey::default()]).expect("write KEYS");
    assert_eq!(h.run(&frame(&heartbeat(7, 1))).0, XDP_DROP);
    assert_eq!(h.stats(), Stats { unknown_key: 1, ..Stats::default() });
    assert!(h.peers().is_empty(), "fails closed");
}

#[test]
fn keys_rotate_without_reloading_the_program() {
    let mut h = Harness::new();
    let (a, b) = (format!("{KEY_ID} {}", hex(&KEY)), format!("2 {}", hex(&OTHER_KEY)));
    let keys = |text: &str| KeySet::parse("keys", text).expect("key file");
    let mut counter = 0;
    let mut send = |h: &mut Harness, key_id: u8, key: &SipKey| {
        counter += 1;
        let before = h.stats().valid;
        h.run(&signed_with(&heartbeat(7, counter), key_id, key));
        h.stats().valid > before
    };

    assert!(send(&mut h, KEY_ID, &KEY));
    assert!(!send(&mut h, 2, &OTHER_KEY), "key 2 is not installed yet");
    h.keys.install(&keys(&format!("{a}\n{b}"))).expect("install");
    assert!(send(&mut h, KEY_ID, &KEY), "rotation window: the old key");
    assert!(send(&mut h, 2, &OTHER_KEY), "rotation window: the new key");
    h.keys.install(&keys(&format!("{b}\n{a}"))).expect("install");
    assert!(send(&mut h, KEY_ID, &KEY) && send(&mut h, 2, &OTHER_KEY));
    h.keys.install(&keys(&b)).expect("install");
    assert!(send(&mut h, 2, &OTHER_KEY));
    assert!(!send(&mut h, KEY_ID, &KEY), "the retired key");
    let s = h.stats();
    assert_eq!((s.valid, s.unknown_key, s.bad_auth), (6, 2, 0), "{s:?}");
    assert_eq!(h.peers()[0].1.key_id, 2, "PEERS shows which key the peer signs with");

    // Same id, other material: the tag is checked against what the slot holds.
    h.keys.write([AuthKey::new(2, KEY), AuthKey::default()]).expect("write KEYS");
    assert!(!send(&mut h, 2, &OTHER_KEY));
    assert_eq!(h.stats().bad_auth, 1);
}

#[test]
fn replays_are_stale_with_authentication_and_a_restart_is_accepted() {
    let mut h = Harness::new();
    let captured: Vec<Vec<u8>> = (1..=10).map(|c| frame(&heartbeat(7, c))).collect();
    for f in &captured {
        h.run(f);
    }
    assert_eq!(h.stats().valid, 10);
    // Replayed in order, in reverse, the newest again: all stale, the record stays at 10.
    for f in captured.iter().chain(captured.iter().rev()) {
        assert_eq!(h.run(f).0, XDP_DROP);
    }
    assert_eq!(h.stats().stale, 20);
    let rec = h.peers()[0].1;
    assert_eq!((rec.epoch, rec.counter, rec.received), (1_000, 10, 10));

    // The peer restarts: a new epoch, its counter from 1 again, signed with the key.
    let mut restarted = heartbeat(7, 1);
    restarted.seq.epoch = 2_000;
    restarted.state = ha_common::wire::NodeState::Standby;
    assert_eq!(h.run(&frame(&restarted)).0, XDP_DROP);
    let rec = h.peers()[0].1;
    assert_eq!((rec.epoch, rec.counter, rec.state, rec.received), (2_000, 1, 1, 11));
    // Its heartbeats from before the restart are stale now, even the newest of them.
    for f in captured.iter().rev() {
        h.run(f);
    }
    assert_eq!((h.stats().stale, h.stats().valid), (30, 11));
    assert_eq!(h.peers()[0].1.epoch, 2_000);
}
