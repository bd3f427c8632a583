//! The shared key file, rotated one step per key reload in the order that never leaves a node
//! unable to verify another: add the next key (accepted, not signing), sign with it, retire the
//! old one.
use std::path::PathBuf;

use anyhow::Result;

use crate::{LAB_KEY, LAB_KEY_ID, write_key_file};

pub struct KeyRing {
    file: PathBuf,
    state: Ring,
}

/// Where a rotation stands; the signing key is the file's first.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ring {
    One(u8),
    /// `old` signs, `new` is accepted too.
    Added {
        old: u8,
        new: u8,
    },
    /// `new` signs, `old` is accepted still.
    Switched {
        old: u8,
        new: u8,
    },
}

impl Ring {
    fn next(&self) -> (Ring, String) {
        match *self {
            Ring::One(id) => {
                let new = if id == u8::MAX { 1 } else { id + 1 };
                (Ring::Added { old: id, new }, format!("key {new} added, key {id} signs"))
            }
            Ring::Added { old, new } => {
                (Ring::Switched { old, new }, format!("key {new} signs, key {old} still accepted"))
            }
            Ring::Switched { old, new } => (Ring::One(new), format!("key {old} retired")),
        }
    }

    /// The file's keys, the signing one first.
    fn keys(&self) -> Vec<(u8, [u8; 16])> {
        match *self {
            Ring::One(id) => vec![(id, key_for(id))],
            Ring::Added { old, new } => vec![(old, key_for(old)), (new, key_for(new))],
            Ring::Switched { old, new } => vec![(new, key_for(new)), (old, key_for(old))],
        }
    }
}

impl KeyRing {
    /// Starts from what [`crate::AgentSet`] wrote: the lab key alone.
    pub fn new(file: PathBuf) -> Self {
        KeyRing { file, state: Ring::One(LAB_KEY_ID) }
    }

    /// Rewrites the file one step further; what the step did.
    pub fn advance(&mut self) -> Result<String> {
        let (next, step) = self.state.next();
        write_key_file(&self.file, &next.keys())?;
        self.state = next;
        Ok(step)
    }
}

/// A distinct key per id (a test key: never use it on a real network).
fn key_for(id: u8) -> [u8; 16] {
    if id == LAB_KEY_ID {
        return LAB_KEY;
    }
    let mut key = *b"chaos lab key   ";
    key[13..16].copy_from_slice(format!("{id:03}").as_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(r: &Ring) -> Vec<u8> {
        r.keys().iter().map(|k| k.0).collect()
    }

    #[test]
    fn rotation_adds_then_signs_then_retires() {
        let r = Ring::One(LAB_KEY_ID);
        assert_eq!(r.keys(), vec![(LAB_KEY_ID, LAB_KEY)], "starts where the lab starts");
        let (r, step) = r.next();
        assert_eq!((ids(&r), step.as_str()), (vec![1, 2], "key 2 added, key 1 signs"));
        let (r, step) = r.next();
        assert_eq!((ids(&r), step.as_str()), (vec![2, 1], "key 2 signs, key 1 still accepted"));
        let (r, step) = r.next();
        assert_eq!((ids(&r), step.as_str()), (vec![2], "key 1 retired"));
        assert_ne!(key_for(2), key_for(3));
        let (r, _) = Ring::One(u8::MAX).next();
        let (r, _) = r.next();
        assert_eq!(ids(&r), [1, 255]);
        assert_eq!(r.next().0, Ring::One(1));
    }
}
