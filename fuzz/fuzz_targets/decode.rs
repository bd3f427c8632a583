//! Any bytes: the decoder never panics, and whatever it accepts re-encodes to the same bytes.
#![no_main]

use ha_common::wire::{HEARTBEAT_LEN, Heartbeat};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(hb) = Heartbeat::decode(data) {
        assert_eq!(&hb.encode()[..], &data[..HEARTBEAT_LEN]);
    }
});
