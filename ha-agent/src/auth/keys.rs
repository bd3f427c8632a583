//! Heartbeat keys: the key file, and the `KEYS` map the XDP program verifies tags with.
//!
//! The key file holds one key per line; blank lines and lines starting with `#` are ignored:
//!
//! ```text
//! # <key-id 1-255> <32 hex digits = the 16 key bytes>
//! 2 8f1c0e5b7a3d49e6b2c4d0f1a9e87b36
//! 1 03e4a2b9c8d7f6e5a4b3c2d1e0f9a8b7
//! ```
//!
//! The first key signs this node's heartbeats; a second one is accepted too, which is the
//! rotation window. The file must belong to the agent's user and be readable by its owner only
//! (mode 0600 or 0400): whoever else could write it could choose the keys. SIGHUP reloads it:
//! new keys apply without reloading the XDP program.
use std::{
    fs, io,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::Path,
};

use aya::{
    Ebpf,
    maps::{Array, MapData, MapError},
};
use ha_common::{
    auth::NO_KEY,
    maps::{AuthKey, KEY_SLOTS, KEYS_MAP},
    siphash::SipKey,
};

/// What `KEYS` holds, slot by slot.
pub type KeySlots = [AuthKey; KEY_SLOTS as usize];

/// Which heartbeats a receive path (XDP or the socket) accepts.
#[derive(Clone, Copy, Debug)]
pub enum AuthMode {
    /// Those tagged with one of these keys.
    Keys(KeySlots),
    /// `--insecure-no-auth`: unauthenticated ones (key id 0), and only those.
    InsecureNoAuth,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read key file {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("key file {path} is accessible to group or others (mode {mode:03o}): run `chmod 600 {path}`")]
    Permissions { path: String, mode: u32 },
    #[error(
        "key file {path} belongs to uid {owner}, not to this agent's user (uid {user}), who could then not trust its keys: run `chown {user} {path}`"
    )]
    Owner { path: String, owner: u32, user: u32 },
    #[error("key file {path} line {line}: {why}; write `<key-id 1-255> <32 hex digits>`")]
    Syntax { path: String, line: usize, why: String },
    #[error("key file {path} holds no key: add a line `<key-id 1-255> <32 hex digits>`")]
    Empty { path: String },
    #[error(
        "key file {path} holds more than {KEY_SLOTS} keys: keep the signing key first and at most one more being rotated"
    )]
    TooMany { path: String },
}

/// The keys of one key file, the signing key first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySet {
    keys: Vec<AuthKey>,
}

/// The key this node signs its heartbeats with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SigningKey {
    pub key_id: u8,
    pub key: SipKey,
}

impl KeySet {
    /// Reads and checks a key file; refuses one that another user owns or that group or
    /// others may access.
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let shown = path.display().to_string();
        let read_err = |source| KeyFileError::Read { path: shown.clone(), source };
        let meta = fs::metadata(path).map_err(read_err)?;
        if !meta.is_file() {
            return Err(read_err(io::Error::other("not a regular file")));
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        let user = unsafe { libc::geteuid() };
        if meta.uid() != user {
            return Err(KeyFileError::Owner { path: shown, owner: meta.uid(), user });
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::Permissions { path: shown, mode });
        }
        let text = fs::read_to_string(path).map_err(read_err)?;
        Self::parse(&shown, &text)
    }

    /// Parses key file text (`path` only names it in errors, which never quote key material).
    pub fn parse(path: &str, text: &str) -> Result<Self, KeyFileError> {
        let mut keys: Vec<AuthKey> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let syntax = |why: String| KeyFileError::Syntax { path: path.to_string(), line: i + 1, why };
            let key = parse_line(line).map_err(syntax)?;
            if keys.iter().any(|k| k.key_id == key.key_id) {
                return Err(syntax(format!("key id {} is given twice", key.key_id)));
            }
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(KeyFileError::Empty { path: path.to_string() });
        }
        if keys.len() > KEY_SLOTS as usize {
            return Err(KeyFileError::TooMany { path: path.to_string() });
        }
        Ok(Self { keys })
    }

    pub fn signing(&self) -> SigningKey {
        let first = self.keys[0];
        SigningKey { key_id: first.key_id as u8, key: first.sip_key() }
    }

    /// Key ids, the signing key's first.
    pub fn ids(&self) -> Vec<u8> {
        self.keys.iter().map(|k| k.key_id as u8).collect()
    }

    /// Slots for these keys given what `KEYS` holds now: a key already there keeps its slot, so
    /// a reload only ever rewrites slots whose key is being retired (or empty ones).
    pub fn slots(&self, current: &KeySlots) -> KeySlots {
        let mut next = [AuthKey::default(); KEY_SLOTS as usize];
        let mut placed = [false; KEY_SLOTS as usize];
        for (slot, cur) in current.iter().enumerate() {
            if let Some(i) = self.keys.iter().position(|k| cur.valid != 0 && k == cur) {
                next[slot] = *cur;
                placed[i] = true;
            }
        }
        let mut free = (0..next.len()).filter(|&s| next[s].valid == 0).collect::<Vec<_>>().into_iter();
        for (i, key) in self.keys.iter().enumerate() {
            if !placed[i]
                && let Some(slot) = free.next()
            {
                next[slot] = *key;
            }
        }
        next
    }
}

fn parse_line(line: &str) -> Result<AuthKey, String> {
    let mut fields = line.split_whitespace();
    let (Some(id), Some(hex), None) = (fields.next(), fields.next(), fields.next()) else {
        return Err("expected two fields".into());
    };
    let key_id = match id.parse::<u8>() {
        Ok(NO_KEY) | Err(_) => return Err(format!("key id {id:?} is not in 1..=255")),
        Ok(k) => k,
    };
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("the key of id {key_id} is not 32 hex digits"));
    }
    let mut bytes = [0u8; 16];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| "not hex".to_string())?;
    }
    if bytes.iter().all(|&b| b == bytes[0]) {
        return Err(format!("the key of id {key_id} repeats one byte: generate a random one"));
    }
    Ok(AuthKey::new(key_id, SipKey::from_bytes(bytes)))
}

#[derive(Debug, thiserror::Error)]
pub enum KeysMapError {
    #[error("map {KEYS_MAP} is missing from the XDP object: rebuild it with `cargo xtask build-ebpf`")]
    Missing,
    #[error("writing map {KEYS_MAP}: {0}")]
    Map(#[from] MapError),
}

/// The `KEYS` map of a loaded program: where the agent installs its keys, at start and on reload.
pub struct KeysMap {
    map: Array<MapData, AuthKey>,
    slots: KeySlots,
}

impl KeysMap {
    /// Takes the map out of a loaded object (the program keeps using it), with what it holds.
    pub fn take_from(ebpf: &mut Ebpf) -> Result<Self, KeysMapError> {
        let map: Array<MapData, AuthKey> = Array::try_from(ebpf.take_map(KEYS_MAP).ok_or(KeysMapError::Missing)?)?;
        let mut slots = [AuthKey::default(); KEY_SLOTS as usize];
        for (i, slot) in slots.iter_mut().enumerate() {
            *slot = map.get(&(i as u32), 0)?;
        }
        Ok(Self { map, slots })
    }

    /// Fills the map of a just-loaded object, before the program is attached.
    pub fn write_into(map: &mut aya::maps::Map, slots: &KeySlots) -> Result<(), KeysMapError> {
        let mut array: Array<&mut MapData, AuthKey> = Array::try_from(map)?;
        for (i, key) in slots.iter().enumerate() {
            array.set(i as u32, key, 0)?;
        }
        Ok(())
    }

    /// Installs `keys`, rewriting only the slots that change.
    pub fn install(&mut self, keys: &KeySet) -> Result<(), KeysMapError> {
        self.write(keys.slots(&self.slots))
    }

    /// Writes exactly these slots (tests use it to put odd things in the map).
    pub fn write(&mut self, next: KeySlots) -> Result<(), KeysMapError> {
        for (slot, key) in next.iter().enumerate() {
            if *key != self.slots[slot] {
                self.map.set(slot as u32, key, 0)?;
                self.slots[slot] = *key;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const A: &str = "000102030405060708090a0b0c0d0e0f";
    const B: &str = "f0e0d0c0b0a090807060504030201000";
    const C: &str = "0123456789abcdef0123456789ABCDEF";

    fn parse(text: &str) -> Result<KeySet, KeyFileError> {
        KeySet::parse("keys", text)
    }

    #[test]
    fn parses_signing_key_first_with_comments_and_blank_lines() {
        let set = parse(&format!("# rotation in progress\n\n2 {B}\n  1 {A}  \n")).expect("valid");
        assert_eq!(set.ids(), vec![2, 1]);
        let signing = set.signing();
        assert_eq!(signing.key_id, 2);
        assert_eq!(
            signing.key,
            SipKey::from_bytes([
                0xf0, 0xe0, 0xd0, 0xc0, 0xb0, 0xa0, 0x90, 0x80, 0x70, 0x60, 0x50, 0x40, 0x30, 0x20, 0x10, 0
            ])
        );
        assert_eq!(parse(&format!("7 {C}")).expect("mixed case hex").ids(), vec![7]);
    }

    #[test]
    fn malformed_files_say_which_line_and_never_quote_the_key() {
        let cases = [
            (format!("0 {A}"), "not in 1..=255"),
            (format!("256 {A}"), "not in 1..=255"),
            (format!("x {A}"), "not in 1..=255"),
            (format!("1 {}", &A[..30]), "not 32 hex digits"),
            (format!("1 {}zz", &A[..30]), "not 32 hex digits"),
            (format!("1 {A} extra"), "two fields"),
            ("1".to_string(), "two fields"),
            (format!("1 {A}\n1 {B}"), "given twice"),
            (format!("1 {}", "00".repeat(16)), "repeats one byte"),
        ];
        for (text, needle) in &cases {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.contains(needle), "{err} for {text:?}");
            assert!(err.contains("line ") && !err.contains('\n'), "{err}");
            assert!(!err.contains(&A[..30]) && !err.contains(&B[..30]), "quotes the key: {err}");
        }
        assert!(matches!(parse("# nothing\n"), Err(KeyFileError::Empty { .. })));
        assert!(matches!(parse(&format!("1 {A}\n2 {B}\n3 {C}")), Err(KeyFileError::TooMany { .. })));
    }

    #[test]
    fn group_or_world_access_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys");
        fs::File::create(&path).and_then(|mut f| f.write_all(format!("1 {A}\n").as_bytes())).expect("write");
        for mode in [0o640, 0o604, 0o620, 0o644] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
            let err = KeySet::load(&path).expect_err("refused").to_string();
            assert!(err.contains("chmod 600"), "{err}");
        }
        for mode in [0o600, 0o400] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
            assert_eq!(KeySet::load(&path).expect("owner only").ids(), vec![1]);
        }
        let err = KeySet::load(&dir.path().join("absent")).expect_err("absent").to_string();
        assert!(err.contains("cannot read key file"), "{err}");
    }

    #[test]
    fn a_file_of_another_user_is_refused() {
        // SAFETY: no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping: giving a file to another user needs root");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys");
        fs::write(&path, format!("1 {A}\n")).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        std::os::unix::fs::chown(&path, Some(65534), None).expect("chown");
        let err = KeySet::load(&path).expect_err("refused").to_string();
        assert!(err.contains("belongs to uid 65534") && err.contains("chown 0 "), "{err}");
        std::os::unix::fs::chown(&path, Some(0), Some(65534)).expect("chown");
        assert_eq!(KeySet::load(&path).expect("ours, whatever its group").ids(), vec![1]);
    }

    #[test]
    fn kept_keys_keep_their_slot_during_rotation() {
        let empty = [AuthKey::default(); KEY_SLOTS as usize];
        let a = parse(&format!("1 {A}")).expect("valid");
        let ab = parse(&format!("1 {A}\n2 {B}")).expect("valid");
        let ba = parse(&format!("2 {B}\n1 {A}")).expect("valid");
        let b = parse(&format!("2 {B}")).expect("valid");
        let bc = parse(&format!("2 {B}\n3 {C}")).expect("valid");

        let s1 = a.slots(&empty);
        assert_eq!((s1[0].key_id, s1[1].valid), (1, 0));
        let s2 = ab.slots(&s1);
        assert_eq!((s2[0], s2[1].key_id), (s1[0], 2), "A stays in slot 0");
        assert_eq!(ba.slots(&s2), s2, "changing which key signs rewrites nothing");
        let s3 = b.slots(&s2);
        assert_eq!((s3[0].valid, s3[1]), (0, s2[1]), "A retired, B stays in slot 1");
        let s4 = bc.slots(&s3);
        assert_eq!((s4[0].key_id, s4[1]), (3, s2[1]));
    }
}
