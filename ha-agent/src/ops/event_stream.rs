//! `ha-agent events`: the agent's transitions, one JSON line each on stdout. When the agent goes
//! away the stream says so on stderr and ends with an error; with `--follow` it waits for the
//! agent to come back (retrying with backoff) and goes on. Events while no agent runs are not
//! shown: there is no agent to report them.
use std::{
    io,
    path::Path,
    time::{Duration, Instant},
};

use super::control;

/// Retries start at `FIRST_RETRY` and double up to `LAST_RETRY`: a restarted agent is found
/// within about two seconds, and an absent one costs one connect a couple of seconds.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("the agent at {0} went away (stopped or crashed); `ha-agent events --follow` waits for it to return")]
    AgentGone(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Backoff between reconnection attempts: doubling, capped.
#[derive(Debug)]
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Self(FIRST_RETRY)
    }

    fn next(&mut self) -> Duration {
        let wait = self.0;
        self.0 = (self.0 * 2).min(LAST_RETRY);
        wait
    }
}

/// Streams events to `on_line` (false: stop, e.g. stdout closed) and notes on `note` what
/// happens to the stream; returns when `on_line` stops it, or when the agent goes away unless
/// `follow`.
pub fn stream(
    path: &Path,
    follow: bool,
    mut on_line: impl FnMut(&str) -> bool,
    mut note: impl FnMut(&str),
) -> Result<(), StreamError> {
    let shown = path.display().to_string();
    let mut backoff = Backoff::new();
    let mut waiting_since: Option<Instant> = None;
    loop {
        let mut reader_stopped = false;
        let mut connected = false;
        let result = control::follow(path, |line| {
            connected = true;
            if !on_line(line) {
                reader_stopped = true;
            }
            !reader_stopped
        });
        if reader_stopped {
            return Ok(());
        }
        match result {
            // Connected and read to the end: the agent closed the stream.
            Ok(()) => {
                if !follow {
                    return Err(StreamError::AgentGone(shown));
                }
                note(&format!("the agent at {shown} went away; waiting for it to come back"));
                waiting_since = Some(Instant::now());
                backoff = Backoff::new();
            }
            Err(e) if !follow => return Err(e.into()),
            Err(_) if waiting_since.is_none() => {
                note(&format!("no agent answers at {shown}; waiting for one to start"));
                waiting_since = Some(Instant::now());
            }
            Err(_) => {}
        }
        if connected {
            // Lines came, then the stream broke: the next connection is a new one.
            backoff = Backoff::new();
        }
        std::thread::sleep(backoff.next());
        if waiting_since.is_some() && control::request(path, "status").is_ok() {
            let after = waiting_since.take().map_or(0.0, |t| t.elapsed().as_secs_f64());
            note(&format!("the agent at {shown} is back after {after:.1} s; following it again"));
            backoff = Backoff::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let mut b = Backoff::new();
        let waits: Vec<u128> = (0..7).map(|_| b.next().as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 2000, 2000]);
    }

    #[test]
    fn without_an_agent_the_stream_fails_unless_it_follows() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("none.sock");
        let err = stream(&path, false, |_| true, |_| {}).expect_err("no agent");
        assert!(matches!(err, StreamError::Io(_)), "{err}");
    }
}
