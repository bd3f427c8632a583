//! The agent's side of heartbeat authentication: which keys the receive path is opened with,
//! which one the sender signs with, and the reload of the key file (SIGHUP: rotation without
//! a restart).
use std::path::PathBuf;

use ha_common::maps::{AuthKey, KEY_SLOTS};

pub(crate) mod key_alarm;
pub mod keygen;
pub mod keys;

use crate::{config::AuthConfig, rx::Receiver, tx::sender::Sender};
use keys::{AuthMode, KeyFileError, KeySet, SigningKey};

pub struct Auth {
    /// None with `--insecure-no-auth`.
    file: Option<(PathBuf, KeySet)>,
}

impl Auth {
    /// Reads the key file, or warns that heartbeats are unauthenticated.
    pub fn start(cfg: &AuthConfig) -> Result<Self, KeyFileError> {
        let file = match cfg {
            AuthConfig::KeyFile(path) => {
                let keys = KeySet::load(path)?;
                log::info!("heartbeats signed with key {}, accepted with keys {:?}", keys.signing().key_id, keys.ids());
                Some((path.clone(), keys))
            }
            AuthConfig::InsecureNoAuth => {
                log::warn!(
                    "--insecure-no-auth: heartbeats are not authenticated; anyone on this LAN can take the shared address"
                );
                None
            }
        };
        Ok(Self { file })
    }

    /// What the receive path is opened with.
    pub fn mode(&self) -> AuthMode {
        match &self.file {
            Some((_, keys)) => AuthMode::Keys(keys.slots(&[AuthKey::default(); KEY_SLOTS as usize])),
            None => AuthMode::InsecureNoAuth,
        }
    }

    /// This node's key ids, the signing key's first (none with `--insecure-no-auth`).
    pub fn key_ids(&self) -> Vec<u8> {
        self.file.as_ref().map(|(_, keys)| keys.ids()).unwrap_or_default()
    }

    pub fn signing(&self) -> Option<SigningKey> {
        self.file.as_ref().map(|(_, keys)| keys.signing())
    }

    /// On a reload: re-reads the key file, installs its keys in the receive path, then signs
    /// with its first. A bad file changes nothing (one error line says why).
    pub fn reload(&mut self, rx: &mut Receiver, sender: &mut Sender) {
        let Some((path, current)) = &mut self.file else {
            log::warn!("SIGHUP: no key file to reload (--insecure-no-auth)");
            return;
        };
        let keys = match KeySet::load(path) {
            Ok(keys) => keys,
            Err(e) => {
                log::error!("SIGHUP: {e}; keeping the keys in use");
                return;
            }
        };
        // Accept the new keys before signing with one of them.
        if let Err(e) = rx.install_keys(&keys) {
            log::error!("SIGHUP: installing the new keys: {e}; keeping the keys in use");
            return;
        }
        sender.set_signing_key(Some(keys.signing()));
        log::info!(
            "key file reloaded: heartbeats signed with key {}, accepted with keys {:?}",
            keys.signing().key_id,
            keys.ids()
        );
        *current = keys;
    }
}
