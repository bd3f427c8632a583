//! A service's handle on the agent that moves its address: read the state, watch it change,
//! steer the worthiness (`priority set`, `drain`). It talks to a running agent's control
//! socket, so it needs that socket's permissions, as `ha-agent status` does; the agent may run
//! as its own process (systemd) or inside the service ([`crate::embed`]).
//!
//! ```no_run
//! let agent = ha_agent::client::Client::for_cluster(1);
//! for state in agent.watch()? {
//!     let state = state?;
//!     println!("{}: {}", state.role.name(), state.detail);
//! }
//! # Ok::<(), ha_agent::client::ClientError>(())
//! ```
use std::{
    io::{self, BufRead, BufReader, Lines},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
};

pub use ha_core::node::Role;

use crate::{
    ops::{control, events::Event, status::Status},
    rx::settings::default_pin_dir,
};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("the agent refused: {0}")]
    Refused(String),
    #[error("the agent's reply is not understood ({0}): is it another version?")]
    Reply(String),
    #[error("the agent at {0} went away (stopped or crashed)")]
    AgentGone(String),
}

/// Where a node stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    pub role: Role,
    /// Stable label, as `events` and hooks carry it (e.g. `holder_silent`).
    pub reason: String,
    /// The same in words.
    pub detail: String,
}

impl State {
    /// Whether this node holds the shared address.
    pub fn holds(&self) -> bool {
        self.role == Role::Active
    }
}

fn role_named(name: &str) -> Result<Role, ClientError> {
    [Role::Active, Role::Standby, Role::Fault]
        .into_iter()
        .find(|r| r.name() == name)
        .ok_or_else(|| ClientError::Reply(format!("unknown state {name:?}")))
}

pub struct Client {
    socket: PathBuf,
}

impl Client {
    /// The agent running with this `--pin-dir`.
    pub fn for_pin_dir(pin_dir: &Path) -> Self {
        Self { socket: control::socket_path(pin_dir) }
    }

    /// The agent running for this `--cluster`, with the default pin directory.
    pub fn for_cluster(cluster: u32) -> Self {
        Self::for_pin_dir(&default_pin_dir(cluster))
    }

    pub fn status(&self) -> Result<Status, ClientError> {
        let reply = self.ask("status")?;
        serde_json::from_str(&reply).map_err(|e| ClientError::Reply(e.to_string()))
    }

    pub fn state(&self) -> Result<State, ClientError> {
        let s = self.status()?;
        Ok(State { role: role_named(&s.state)?, reason: s.reason, detail: s.detail })
    }

    /// Runs with `priority` from now on, until [`Client::reset_priority`], a restart of the
    /// agent, or a reload that changes the configured priority.
    pub fn set_priority(&self, priority: u32) -> Result<(), ClientError> {
        self.command(&format!("priority set {priority}"))
    }

    pub fn reset_priority(&self) -> Result<(), ClientError> {
        self.command("priority reset")
    }

    /// Hands the address over (make-before-break) and stays out of the election: maintenance.
    pub fn drain(&self) -> Result<(), ClientError> {
        self.command("drain")
    }

    pub fn undrain(&self) -> Result<(), ClientError> {
        self.command("undrain")
    }

    /// The state now, then each change, until the agent goes away (the last item is then
    /// [`ClientError::AgentGone`]: a service should treat that as not holding).
    pub fn watch(&self) -> Result<Watch, ClientError> {
        // Subscribed before the status is read, so no change falls between the two.
        let lines = control::subscribe(&self.socket)?.lines();
        let status = self.status()?;
        let first = State { role: role_named(&status.state)?, reason: status.reason, detail: status.detail };
        Ok(Watch {
            lines,
            since_unix_ms: status.since_unix_ms,
            role: first.role,
            first: Some(first),
            shown: self.socket.display().to_string(),
            gone: false,
        })
    }

    fn ask(&self, command: &str) -> Result<String, ClientError> {
        let reply = control::request(&self.socket, command)?;
        match reply.strip_prefix("error: ") {
            Some(why) => Err(ClientError::Refused(why.to_string())),
            None => Ok(reply),
        }
    }

    fn command(&self, command: &str) -> Result<(), ClientError> {
        match self.ask(command)?.as_str() {
            "ok" => Ok(()),
            other => Err(ClientError::Reply(other.to_string())),
        }
    }
}

/// The state, then every change of role; blocking.
pub struct Watch {
    lines: Lines<BufReader<UnixStream>>,
    /// Events older than the status read at the start are already in it.
    since_unix_ms: u64,
    role: Role,
    first: Option<State>,
    shown: String,
    gone: bool,
}

impl Iterator for Watch {
    type Item = Result<State, ClientError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(first) = self.first.take() {
            return Some(Ok(first));
        }
        if self.gone {
            return None;
        }
        loop {
            let line = match self.lines.next() {
                Some(Ok(line)) => line,
                Some(Err(e)) => {
                    self.gone = true;
                    return Some(Err(e.into()));
                }
                None => {
                    self.gone = true;
                    return Some(Err(ClientError::AgentGone(self.shown.clone())));
                }
            };
            let event: Event = match serde_json::from_str(&line) {
                Ok(event) => event,
                Err(e) => return Some(Err(ClientError::Reply(e.to_string()))),
            };
            if event.unix_ms < self.since_unix_ms {
                continue;
            }
            let role = match role_named(&event.to) {
                Ok(role) => role,
                Err(e) => return Some(Err(e)),
            };
            if role != self.role {
                self.role = role;
                return Some(Ok(State { role, reason: event.reason, detail: event.detail }));
            }
        }
    }
}
