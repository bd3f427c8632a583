//! The control socket of a running agent, one line in and lines out:
//! `status` (JSON), `maintenance on|off`, `events` (a JSON line per transition, until closed).
//! Mode 0600: whoever can write to it can move the shared address.
//!
//! Bounded, so a stuck or hostile client cannot grow the agent: a command line is at most
//! [`MAX_LINE`] bytes and must arrive within [`LINE_DEADLINE`], and at most [`MAX_CONNECTIONS`]
//! clients (`events` followers included) are served at once; the rest get a one-line error.
use std::{
    collections::VecDeque,
    io::{self, BufRead, BufReader, Read, Write},
    os::unix::{
        fs::PermissionsExt,
        net::{UnixListener, UnixStream},
    },
    path::{Path, PathBuf},
    sync::{
        Arc, Condvar, Mutex, Weak,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        mpsc::{self, Receiver, Sender},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use super::status::Status;

/// Longest command line; the longest real one is `maintenance off`.
pub const MAX_LINE: usize = 4096;
/// A client must have sent its whole command line by then.
pub const LINE_DEADLINE: Duration = Duration::from_secs(2);
/// Clients served at once; each is a thread, and an `events` follower holds one until it leaves.
pub const MAX_CONNECTIONS: usize = 16;

/// Runtime files (lock, control socket) live here.
pub const RUN_DIR: &str = "/run/ha-agent";

/// `/run/ha-agent/<pin dir as a name><suffix>`: one name per agent instance.
pub fn run_path(pin_dir: &Path, suffix: &str) -> PathBuf {
    let name = pin_dir.to_string_lossy().trim_matches('/').replace('/', "_");
    Path::new(RUN_DIR).join(format!("{name}{suffix}"))
}

pub fn socket_path(pin_dir: &Path) -> PathBuf {
    run_path(pin_dir, ".sock")
}

/// What operators ask of the run loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Hand the address over and stay out of the election (`maintenance on`, `drain`), or rejoin.
    Maintenance(bool),
    /// A priority set at run time by an operator or a service (`priority set N`); None returns
    /// to the configured one (`priority reset`).
    Priority(Option<u32>),
}

/// What a client asked for, one line.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Status,
    Events,
    Do(Command),
}

const USAGE: &str = "use status, events, maintenance on|off, drain, undrain, priority set N, or priority reset";

/// Parses a command line; the error is the one line the client gets.
fn parse_request(line: &str) -> Result<Request, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    Ok(match words.as_slice() {
        ["status"] => Request::Status,
        ["events"] => Request::Events,
        ["maintenance", "on"] | ["drain"] => Request::Do(Command::Maintenance(true)),
        ["maintenance", "off"] | ["undrain"] => Request::Do(Command::Maintenance(false)),
        ["priority", "reset"] => Request::Do(Command::Priority(None)),
        ["priority", "set", n] => match n.parse::<u32>() {
            Ok(n) => Request::Do(Command::Priority(Some(n))),
            Err(_) => return Err(format!("priority must be a whole number from 0 to {}, not {n:?}", u32::MAX)),
        },
        _ => return Err(format!("unknown command {:?}: {USAGE}", line.trim())),
    })
}

/// Event lines kept for a follower that has not read them yet; beyond, the oldest go.
const FEED_LINES: usize = 1024;

/// Shared between the run loop (publishes) and the control server (reads, subscribes, commands).
pub struct Hub {
    status: Mutex<Status>,
    subscribers: Mutex<Vec<Weak<Feed>>>,
    commands: Mutex<Sender<Command>>,
    /// Wakes the run loop when a command is sent (it may sleep long in event mode).
    command_waker: Mutex<Option<crate::nudge::Waker>>,
    /// Event lines a slow follower lost, all followers.
    dropped_event_lines: AtomicU64,
    closed: AtomicBool,
}

/// One follower's unread event lines.
#[derive(Default)]
struct Feed {
    lines: Mutex<VecDeque<String>>,
    ready: Condvar,
    /// The agent stopped: the follower is told at once, even in a process that goes on (an
    /// embedded agent), instead of waiting for lines that will not come.
    closed: AtomicBool,
}

impl Feed {
    /// Adds a line; when full, drops the oldest so the newest (the one that matters now) is kept.
    fn push(&self, line: &str) -> bool {
        let Ok(mut lines) = self.lines.lock() else { return false };
        let full = lines.len() >= FEED_LINES;
        if full {
            lines.pop_front();
        }
        lines.push_back(line.to_string());
        self.ready.notify_one();
        full
    }

    /// The next line, waiting at most `wait`.
    fn next(&self, wait: Duration) -> Option<String> {
        let lines = self.lines.lock().ok()?;
        let closed = || self.closed.load(Ordering::Acquire);
        let (mut lines, _) = self.ready.wait_timeout_while(lines, wait, |l| l.is_empty() && !closed()).ok()?;
        lines.pop_front()
    }

    fn close(&self) {
        // Under the lock, so a follower between its check and its wait cannot miss it.
        let _lines = self.lines.lock();
        self.closed.store(true, Ordering::Release);
        self.ready.notify_all();
    }
}

impl Hub {
    pub fn new() -> (Arc<Hub>, Receiver<Command>) {
        let (tx, rx) = mpsc::channel();
        let hub = Hub {
            status: Mutex::new(Status::default()),
            subscribers: Mutex::new(Vec::new()),
            commands: Mutex::new(tx),
            command_waker: Mutex::new(None),
            dropped_event_lines: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        };
        (Arc::new(hub), rx)
    }

    pub fn update_status(&self, update: impl FnOnce(&mut Status)) {
        if let Ok(mut status) = self.status.lock() {
            update(&mut status);
        }
    }

    pub fn status(&self) -> Status {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Sends a line to every `events` follower, never waiting for one: a follower that does not
    /// keep up loses its oldest unread lines, never the newest.
    pub fn publish_event(&self, line: &str) {
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.retain(|feed| {
                let Some(feed) = feed.upgrade() else { return false };
                if feed.push(line) {
                    let before = self.dropped_event_lines.fetch_add(1, Ordering::Relaxed);
                    if before.is_power_of_two() || before == 0 {
                        log::warn!(
                            "an events follower does not keep up: {} old event lines dropped so far, the newest kept",
                            before + 1
                        );
                    }
                }
                true
            });
        }
    }

    /// Ends every follower's stream (the agent stops); later subscribers get none.
    fn close(&self) {
        if let Ok(mut subs) = self.subscribers.lock() {
            self.closed.store(true, Ordering::Release);
            for feed in subs.drain(..).filter_map(|f| f.upgrade()) {
                feed.close();
            }
        }
    }

    /// Event lines lost by followers that did not keep up.
    pub fn dropped_event_lines(&self) -> u64 {
        self.dropped_event_lines.load(Ordering::Relaxed)
    }

    fn subscribe(&self) -> Arc<Feed> {
        let feed = Arc::new(Feed::default());
        if let Ok(mut subs) = self.subscribers.lock() {
            if self.closed.load(Ordering::Acquire) {
                feed.close();
            }
            subs.push(Arc::downgrade(&feed));
        }
        feed
    }

    /// The run loop is woken with each command from now on.
    pub fn wake_on_command(&self, waker: crate::nudge::Waker) {
        if let Ok(mut w) = self.command_waker.lock() {
            *w = Some(waker);
        }
    }

    fn command(&self, cmd: Command) -> bool {
        let sent = self.commands.lock().map(|tx| tx.send(cmd).is_ok()).unwrap_or(false);
        if let Ok(Some(waker)) = self.command_waker.lock().as_deref() {
            waker.wake();
        }
        sent
    }
}

pub struct ControlServer {
    path: PathBuf,
    hub: Arc<Hub>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ControlServer {
    pub fn start(path: PathBuf, hub: Arc<Hub>) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // The caller holds the instance lock, so a socket file here is a crashed run's.
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = Arc::clone(&stop);
        let active = Arc::new(AtomicUsize::new(0));
        let server_hub = Arc::clone(&hub);
        let thread = thread::Builder::new().name("control".into()).spawn(move || {
            for conn in listener.incoming() {
                if stop_flag.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let Some(slot) = Slot::take(&active) else {
                    refuse(conn);
                    continue;
                };
                let hub = Arc::clone(&hub);
                let spawned = thread::Builder::new().name("control-conn".into()).spawn(move || {
                    let _slot = slot;
                    serve(conn, &hub);
                });
                if let Err(e) = spawned {
                    log::warn!("control socket: cannot start a thread for a client: {e}");
                }
            }
        })?;
        Ok(Self { path, hub: server_hub, stop, thread: Some(thread) })
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = UnixStream::connect(&self.path); // wakes the accept loop
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.hub.close();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One of the [`MAX_CONNECTIONS`] places, given back when the client's thread ends.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(active: &Arc<AtomicUsize>) -> Option<Self> {
        active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < MAX_CONNECTIONS).then_some(n + 1))
            .ok()
            .map(|_| Self(Arc::clone(active)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Tells a client beyond the cap why it is closed, without ever waiting on it.
fn refuse(mut conn: UnixStream) {
    let _ = conn.set_nonblocking(true);
    let _ = writeln!(conn, "error: {MAX_CONNECTIONS} control clients are connected already; try again later");
}

#[derive(Debug, PartialEq, Eq)]
enum LineError {
    TooLong,
    /// Timed out, closed early or failed: nothing worth answering.
    Gone,
}

/// Reads one command line of at most [`MAX_LINE`] bytes within [`LINE_DEADLINE`].
fn read_line(conn: &UnixStream) -> Result<String, LineError> {
    let deadline = Instant::now() + LINE_DEADLINE;
    let mut line = Vec::with_capacity(64);
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || conn.set_read_timeout(Some(left)).is_err() {
            return Err(LineError::Gone);
        }
        let n = match (&*conn).read(&mut buf) {
            Ok(0) => return Err(LineError::Gone),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(LineError::Gone),
        };
        if let Some(end) = buf[..n].iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&buf[..end]);
            return if line.len() > MAX_LINE {
                Err(LineError::TooLong)
            } else {
                Ok(String::from_utf8_lossy(&line).into_owned())
            };
        }
        line.extend_from_slice(&buf[..n]);
        if line.len() > MAX_LINE {
            return Err(LineError::TooLong);
        }
    }
}

/// How often an idle `events` follower is checked for having gone.
const HANGUP_CHECK: Duration = Duration::from_secs(1);

/// Whether the client closed its end (anything it sends after its command is ignored).
fn hung_up(conn: &UnixStream) -> bool {
    let mut buf = [0u8; 64];
    if conn.set_read_timeout(Some(Duration::from_millis(1))).is_err() {
        return true;
    }
    match (&*conn).read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted),
    }
}

fn serve(conn: UnixStream, hub: &Hub) {
    let _ = conn.set_write_timeout(Some(LINE_DEADLINE));
    let mut out = &conn;
    let line = match read_line(&conn) {
        Ok(line) => line,
        Err(LineError::TooLong) => {
            let _ = writeln!(out, "error: command longer than {MAX_LINE} bytes");
            return;
        }
        Err(LineError::Gone) => return,
    };
    let reply = match parse_request(&line) {
        Err(e) => format!("error: {e}"),
        Ok(Request::Status) => serde_json::to_string(&hub.status()).unwrap_or_else(|e| format!("error: {e}")),
        Ok(Request::Do(command)) => {
            if hub.command(command) {
                "ok".to_string()
            } else {
                "error: the agent is stopping".to_string()
            }
        }
        Ok(Request::Events) => {
            // A follower whose buffer stays full for the write timeout is dropped, and one that
            // hung up is noticed between events, so neither holds its place for ever.
            let feed = hub.subscribe();
            loop {
                match feed.next(HANGUP_CHECK) {
                    Some(event) => {
                        if writeln!(out, "{event}").is_err() {
                            return;
                        }
                    }
                    None if !feed.closed.load(Ordering::Acquire) && !hung_up(&conn) => {}
                    None => return,
                }
            }
        }
    };
    let _ = writeln!(out, "{reply}");
}

fn connect(path: &Path) -> io::Result<UnixStream> {
    UnixStream::connect(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "no running agent answers at {} ({e}): is it running with this --cluster / --pin-dir?",
                path.display()
            ),
        )
    })
}

/// Sends one command and returns the reply.
pub fn request(path: &Path, command: &str) -> io::Result<String> {
    let mut conn = connect(path)?;
    // A refused client may find the socket closed before its command is written: the refusal
    // line is still there to read, and says more than the broken pipe.
    let sent = writeln!(conn, "{command}");
    let mut reply = String::new();
    match (BufReader::new(conn).read_line(&mut reply), sent) {
        (Ok(n), _) if n > 0 => Ok(reply.trim_end().to_string()),
        (_, Err(e)) | (Err(e), _) => Err(e),
        (Ok(_), Ok(())) => Ok(String::new()),
    }
}

/// The event stream: one JSON line per transition from now on, until the agent stops.
pub fn subscribe(path: &Path) -> io::Result<BufReader<UnixStream>> {
    let mut conn = connect(path)?;
    writeln!(conn, "events")?;
    Ok(BufReader::new(conn))
}

/// Follows the event stream, calling `on_line` for each line until it returns false or the agent stops.
pub fn follow(path: &Path, mut on_line: impl FnMut(&str) -> bool) -> io::Result<()> {
    for line in subscribe(path)?.lines() {
        if !on_line(&line?) {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn followers_are_told_at_once_when_the_agent_stops_in_a_process_that_goes_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ctl.sock");
        let server = ControlServer::start(path.clone(), Hub::new().0).expect("control server");
        let (tx, rx) = std::sync::mpsc::channel();
        let follower = {
            let path = path.clone();
            thread::spawn(move || {
                let lines = subscribe(&path).expect("subscribe").lines().count();
                let _ = tx.send(lines);
            })
        };
        thread::sleep(Duration::from_millis(100));
        let stopped = Instant::now();
        drop(server);
        let lines = rx.recv_timeout(Duration::from_millis(500)).expect("the stream ends with the agent");
        assert_eq!(lines, 0);
        assert!(stopped.elapsed() < HANGUP_CHECK, "at once, not at the next check: {:?}", stopped.elapsed());
        follower.join().expect("follower");
    }

    #[test]
    fn commands_are_parsed_and_bad_ones_named() {
        assert_eq!(parse_request("status\r"), Ok(Request::Status));
        assert_eq!(parse_request("drain"), Ok(Request::Do(Command::Maintenance(true))));
        assert_eq!(parse_request("maintenance off"), Ok(Request::Do(Command::Maintenance(false))));
        assert_eq!(parse_request(" priority  set 250 "), Ok(Request::Do(Command::Priority(Some(250)))));
        assert_eq!(parse_request("priority reset"), Ok(Request::Do(Command::Priority(None))));
        let bad = parse_request("priority set -5").expect_err("negative");
        assert!(bad.starts_with("priority must be a whole number from 0 to 4294967295"), "{bad}");
        assert!(parse_request("priority set 4294967296").is_err(), "beyond u32");
        let unknown = parse_request("priority up").expect_err("unknown");
        assert!(unknown.contains("priority set N") && !unknown.contains('\n'), "{unknown}");
    }

    fn server() -> (tempfile::TempDir, PathBuf, ControlServer) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ctl.sock");
        let server = ControlServer::start(path.clone(), Hub::new().0).expect("control server");
        (dir, path, server)
    }

    fn reply_line(conn: &UnixStream) -> String {
        conn.set_read_timeout(Some(LINE_DEADLINE + Duration::from_secs(1))).expect("timeout");
        let mut line = String::new();
        let _ = BufReader::new(conn).read_line(&mut line);
        line
    }

    /// Threads serving control clients in this process, by the name the server gives them.
    fn conn_threads() -> usize {
        std::fs::read_dir("/proc/self/task")
            .expect("tasks")
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.trim_end() == "control-conn")
            .count()
    }

    #[test]
    fn a_line_without_end_gets_one_error_line_and_the_connection_is_closed() {
        let (_dir, path, _server) = server();
        let conn = UnixStream::connect(&path).expect("connect");
        let writer = conn.try_clone().expect("clone");
        // Far more than the limit, never a newline; the server stops reading early.
        let feed = thread::spawn(move || {
            let chunk = [b'x'; 8192];
            for _ in 0..64 {
                if (&writer).write_all(&chunk).is_err() {
                    break;
                }
            }
        });
        let start = Instant::now();
        assert_eq!(reply_line(&conn), format!("error: command longer than {MAX_LINE} bytes\n"));
        assert!(start.elapsed() < LINE_DEADLINE, "answered at once, not at the deadline: {:?}", start.elapsed());
        let mut rest = Vec::new();
        let _ = (&conn).read_to_end(&mut rest);
        assert!(rest.is_empty(), "closed after the error");
        let _ = feed.join();
    }

    #[test]
    fn clients_beyond_the_cap_are_refused_and_silent_ones_leave_by_the_deadline() {
        let (_dir, path, _server) = server();
        let idle: Vec<UnixStream> =
            (0..3 * MAX_CONNECTIONS).map(|_| UnixStream::connect(&path).expect("connect")).collect();
        let refused = idle[MAX_CONNECTIONS + 2..]
            .iter()
            .filter(|c| reply_line(c).starts_with(&format!("error: {MAX_CONNECTIONS} control clients")))
            .count();
        assert!(refused >= MAX_CONNECTIONS, "clients beyond the cap are told so: {refused}");
        let threads = conn_threads();
        assert!(threads <= MAX_CONNECTIONS + 2, "{threads} threads for {} clients", idle.len());
        // The silent ones are closed at the deadline: the socket answers again.
        let start = Instant::now();
        let status = loop {
            match request(&path, "status") {
                Ok(reply) if reply.starts_with('{') => break reply,
                _ if start.elapsed() < LINE_DEADLINE * 2 => thread::sleep(Duration::from_millis(50)),
                other => panic!("no status after the silent clients' deadline: {other:?}"),
            }
        };
        assert!(status.contains("\"state\""), "{status}");
        drop(idle);
    }

    #[test]
    fn followers_that_hung_up_give_their_place_back() {
        let (_dir, path, _server) = server();
        let followers: Vec<UnixStream> = (0..MAX_CONNECTIONS)
            .map(|_| {
                let mut c = UnixStream::connect(&path).expect("connect");
                writeln!(c, "events").expect("follow");
                c
            })
            .collect();
        thread::sleep(Duration::from_millis(200));
        let refused = request(&path, "status");
        assert!(!refused.as_ref().is_ok_and(|r| r.starts_with('{')), "full while they follow: {refused:?}");
        drop(followers);
        let start = Instant::now();
        while !request(&path, "status").is_ok_and(|r| r.starts_with('{')) {
            assert!(start.elapsed() < HANGUP_CHECK * 3, "places not given back");
            thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn a_flood_of_events_cannot_keep_the_newest_from_a_follower() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ctl.sock");
        let hub = Hub::new().0;
        let _server = ControlServer::start(path.clone(), Arc::clone(&hub)).expect("control server");
        let mut follower = UnixStream::connect(&path).expect("connect");
        writeln!(follower, "events").expect("follow");
        let start = Instant::now();
        while hub.subscribers.lock().map(|s| s.is_empty()).unwrap_or(true) {
            assert!(start.elapsed() < Duration::from_secs(2), "never subscribed");
            thread::sleep(Duration::from_millis(5));
        }
        // Far more than the socket buffer and the follower's queue hold, while it reads nothing.
        for i in 0..20_000 {
            hub.publish_event(&format!("{{\"stale\":{i}}}"));
        }
        hub.publish_event("{\"real\":true}");
        assert!(hub.dropped_event_lines() > 0);
        follower.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
        let last = BufReader::new(follower).lines().map_while(Result::ok).find(|l| l.contains("real"));
        assert_eq!(last.as_deref(), Some("{\"real\":true}"), "the newest event reached the follower");
    }
}
