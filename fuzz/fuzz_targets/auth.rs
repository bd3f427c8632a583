//! A key (the first 16 bytes) and a message (the rest): SipHash agrees with core's SipHash-2-4,
//! verification never panics, a signed heartbeat verifies, and any one flipped bit does not.
#![no_main]

use ha_common::{
    auth,
    siphash::{SipKey, siphash24},
    wire::HEARTBEAT_LEN,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((key, msg)) = data.split_first_chunk::<16>() else { return };
    let key = SipKey::from_bytes(*key);
    #[allow(deprecated)]
    let mut reference = core::hash::SipHasher::new_with_keys(key.k0, key.k1);
    core::hash::Hasher::write(&mut reference, msg);
    assert_eq!(siphash24(&key, msg), core::hash::Hasher::finish(&reference));

    let Some(bytes) = msg.first_chunk::<HEARTBEAT_LEN>() else { return };
    let _ = auth::verify(bytes, &key);
    let mut signed = *bytes;
    auth::sign(&mut signed, &key);
    assert!(auth::verify(&signed, &key));
    let bit = msg.len() % (HEARTBEAT_LEN * 8);
    signed[bit / 8] ^= 1 << (bit % 8);
    assert!(!auth::verify(&signed, &key), "flipped bit {bit} went unnoticed");
});
