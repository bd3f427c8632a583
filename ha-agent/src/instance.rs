//! One agent per instance and per shared address, checked before anything on the system
//! changes.
//!
//! An instance is a pin directory (one per cluster by default): its maps, control socket and
//! state files. A shared address is managed by at most one agent of a network namespace (of
//! this host, outside containers), whatever its cluster or pin directory: a second agent configured with it would otherwise take a running
//! agent's address for a leftover and remove it. Both are `flock`s on files under
//! `/run/ha-agent`, held for the agent's life: the kernel drops them when the agent dies, so a
//! crashed agent never blocks the next start. A clean stop removes the files.
use std::{
    fs, io,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
};

use crate::{netlink::SharedAddr, ops::control};

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("another ha-agent already uses {0}: stop it, or give this one another --cluster or --pin-dir")]
    Busy(PathBuf),
    #[error("another ha-agent on this host already manages {0}: one shared address, one agent")]
    AddressTaken(SharedAddr),
    #[error("cannot take the lock {path}: {why}")]
    Lock { path: PathBuf, why: io::Error },
}

/// The locks of a running agent; dropping it releases them and removes their files.
#[derive(Debug)]
pub struct InstanceLock {
    held: Vec<(PathBuf, fs::File)>,
}

impl InstanceLock {
    /// Takes the instance of `pin_dir` and every shared address, or none of them.
    pub fn acquire(pin_dir: &Path, vips: &[SharedAddr]) -> Result<Self, InstanceError> {
        let run_dir = Path::new(control::RUN_DIR);
        let netns = fs::metadata("/proc/self/ns/net")
            .map_err(|why| InstanceError::Lock { path: "/proc/self/ns/net".into(), why })?
            .ino();
        Self::acquire_in(run_dir, netns, pin_dir, vips)
    }

    fn acquire_in(run_dir: &Path, netns: u64, pin_dir: &Path, vips: &[SharedAddr]) -> Result<Self, InstanceError> {
        let mut lock = Self { held: Vec::new() };
        let instance = run_dir.join(control::run_path(pin_dir, ".lock").file_name().unwrap_or_default());
        if !lock.take(instance)? {
            return Err(InstanceError::Busy(pin_dir.to_path_buf()));
        }
        for vip in vips {
            let name = vip.addr.to_string().replace(':', "_");
            if !lock.take(run_dir.join(format!("address-{netns}-{name}.lock")))? {
                return Err(InstanceError::AddressTaken(*vip));
            }
        }
        Ok(lock)
    }

    /// Takes one lock file; false when another process holds it.
    fn take(&mut self, path: PathBuf) -> Result<bool, InstanceError> {
        let lock_err = |why: io::Error| InstanceError::Lock { path: path.clone(), why };
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(lock_err)?;
        }
        // A lock file left by a crashed agent of another user may not be writable by us: flock
        // works on a file opened for reading just as well.
        let file = match fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => fs::File::open(&path).map_err(lock_err)?,
            Err(e) => return Err(lock_err(e)),
        };
        // SAFETY: a valid fd owned by `file`.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock { Ok(false) } else { Err(lock_err(e)) };
        }
        self.held.push((path, file));
        Ok(true)
    }
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        // Unlinked while still locked: a start racing this stop either sees our lock or a new file.
        for (path, _file) in &self.held {
            let _ = fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;

    fn vip(last: u8) -> SharedAddr {
        SharedAddr { addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)), prefix: 24 }
    }

    #[test]
    fn a_second_agent_is_refused_for_the_same_instance_or_address_and_nothing_is_left_after() {
        let run = tempfile::tempdir().expect("tempdir");
        let first = InstanceLock::acquire_in(run.path(), 1, Path::new("/sys/fs/bpf/ha/1"), &[vip(200)]).expect("first");
        let same_instance = InstanceLock::acquire_in(run.path(), 1, Path::new("/sys/fs/bpf/ha/1"), &[vip(201)]);
        assert!(matches!(same_instance, Err(InstanceError::Busy(_))), "{same_instance:?}");
        let same_address = InstanceLock::acquire_in(run.path(), 1, Path::new("/sys/fs/bpf/ha/2"), &[vip(200)]);
        assert!(matches!(same_address, Err(InstanceError::AddressTaken(_))), "{same_address:?}");
        let other = InstanceLock::acquire_in(run.path(), 1, Path::new("/sys/fs/bpf/ha/3"), &[vip(202)]).expect("other");
        let other_netns =
            InstanceLock::acquire_in(run.path(), 2, Path::new("/sys/fs/bpf/ha/4"), &[vip(200)]).expect("other netns");
        drop(other_netns);
        drop((first, other));
        let left: Vec<_> = fs::read_dir(run.path()).expect("read").collect();
        assert!(left.is_empty(), "lock files left after a clean stop: {left:?}");
        InstanceLock::acquire_in(run.path(), 1, Path::new("/sys/fs/bpf/ha/1"), &[vip(200)]).expect("free again");
    }

    #[test]
    fn a_stale_lock_file_never_blocks_a_start() {
        let run = tempfile::tempdir().expect("tempdir");
        let stale = run.path().join("address-1-192.0.2.200.lock");
        fs::write(&stale, b"").expect("stale file");
        // Read-only, as a root-owned file is to another user.
        fs::set_permissions(&stale, std::os::unix::fs::PermissionsExt::from_mode(0o444)).expect("chmod");
        InstanceLock::acquire_in(run.path(), 1, Path::new("/sys/fs/bpf/ha/1"), &[vip(200)])
            .expect("stale lock ignored");
    }
}
