//! `ha-agent keygen`: a new key file, `1 <32 hex digits>` from the kernel's random source, mode
//! 0600 from its creation (never readable by others, not even for a moment), never over an
//! existing file (that would cut this node off from its cluster).
use std::{
    fs::OpenOptions,
    io::{self, Write as _},
    os::unix::fs::OpenOptionsExt as _,
    path::Path,
};

/// Where the unit and the example config look for it.
pub const DEFAULT_PATH: &str = "/etc/ha-agent/heartbeat.key";

#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    #[error("{0} exists: keygen never replaces a key (every node must share it); remove it first to make a new one")]
    Exists(String),
    #[error("writing {0}: {1}")]
    Write(String, io::Error),
    #[error("reading random bytes: {0}")]
    Random(io::Error),
}

/// One key line: key id 1 and a 128-bit key.
pub fn key_line(key: [u8; 16]) -> String {
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    format!("1 {hex}\n")
}

fn random_key() -> Result<[u8; 16], KeygenError> {
    let mut key = [0u8; 16];
    let mut filled = 0;
    while filled < key.len() {
        let rest = &mut key[filled..];
        // SAFETY: the buffer is valid for `rest.len()` bytes; flags 0 blocks until the pool is
        // initialised, which is what a key needs.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(KeygenError::Random(e));
        }
        filled += n as usize;
    }
    Ok(key)
}

/// Writes a new key file at `path` (its directory must exist).
pub fn write_new(path: &Path) -> Result<(), KeygenError> {
    let shown = path.display().to_string();
    let line = key_line(random_key()?);
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            KeygenError::Exists(shown.clone())
        } else {
            KeygenError::Write(shown.clone(), e)
        }
    })?;
    file.write_all(line.as_bytes()).and_then(|()| file.sync_all()).map_err(|e| KeygenError::Write(shown, e))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::auth::keys::KeySet;

    #[test]
    fn a_new_key_file_loads_is_private_and_is_never_overwritten() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("heartbeat.key");
        write_new(&path).expect("keygen");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let keys = KeySet::load(&path).expect("the agent accepts it");
        assert_eq!(keys.ids(), [1]);
        let first = std::fs::read_to_string(&path).expect("read");
        assert!(matches!(write_new(&path), Err(KeygenError::Exists(_))));
        assert_eq!(std::fs::read_to_string(&path).expect("read"), first, "left as it was");
        let other = dir.path().join("other.key");
        write_new(&other).expect("keygen");
        assert_ne!(std::fs::read_to_string(&other).expect("read"), first, "random");
    }

    #[test]
    fn key_lines_are_id_one_and_32_hex_digits() {
        assert_eq!(key_line([0xab; 16]), format!("1 {}\n", "ab".repeat(16)));
    }
}
