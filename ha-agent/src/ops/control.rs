//! The control socket of a running agent, one line in and lines out:
//! `status` (JSON), `maintenance on|off`, `events` (a JSON line per transition, until closed).
//! Mode 0600: whoever can write to it can move the shared address.
use std::{
    io::{self, BufRead, BufReader, Write},
    os::unix::{
        fs::PermissionsExt,
        net::{UnixListener, UnixStream},
    },
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc::{self, Receiver, Sender, SyncSender, TrySendError},
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use super::status::Status;

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
    Maintenance(bool),
}

/// Shared between the run loop (publishes) and the control server (reads, subscribes, commands).
pub struct Hub {
    status: Mutex<Status>,
    subscribers: Mutex<Vec<SyncSender<String>>>,
    commands: Mutex<Sender<Command>>,
}

impl Hub {
    pub fn new() -> (Arc<Hub>, Receiver<Command>) {
        let (tx, rx) = mpsc::channel();
        let hub = Hub {
            status: Mutex::new(Status::default()),
            subscribers: Mutex::new(Vec::new()),
            commands: Mutex::new(tx),
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

    /// Sends a line to every `events` follower; a slow or gone follower is dropped, never waited for.
    pub fn publish_event(&self, line: &str) {
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.retain(|s| {
                !matches!(s.try_send(line.to_string()), Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)))
            });
        }
    }

    fn subscribe(&self) -> Receiver<String> {
        let (tx, rx) = mpsc::sync_channel(1024);
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.push(tx);
        }
        rx
    }

    fn command(&self, cmd: Command) -> bool {
        self.commands.lock().map(|tx| tx.send(cmd).is_ok()).unwrap_or(false)
    }
}

pub struct ControlServer {
    path: PathBuf,
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
        let thread = thread::Builder::new().name("control".into()).spawn(move || {
            for conn in listener.incoming() {
                if stop_flag.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(conn) = conn {
                    let hub = Arc::clone(&hub);
                    let _ = thread::Builder::new().name("control-conn".into()).spawn(move || serve(conn, &hub));
                }
            }
        })?;
        Ok(Self { path, stop, thread: Some(thread) })
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = UnixStream::connect(&self.path); // wakes the accept loop
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve(conn: UnixStream, hub: &Hub) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut line = String::new();
    let Ok(reader) = conn.try_clone() else { return };
    if BufReader::new(reader).read_line(&mut line).is_err() {
        return;
    }
    let mut out = conn;
    let reply = match line.trim() {
        "status" => serde_json::to_string(&hub.status()).unwrap_or_else(|e| format!("error: {e}")),
        "maintenance on" | "maintenance off" => {
            let on = line.trim().ends_with("on");
            if hub.command(Command::Maintenance(on)) {
                "ok".to_string()
            } else {
                "error: the agent is stopping".to_string()
            }
        }
        "events" => {
            let events = hub.subscribe();
            for event in events {
                if writeln!(out, "{event}").is_err() {
                    break;
                }
            }
            return;
        }
        other => format!("error: unknown command {other:?}: use status, maintenance on|off, or events"),
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
    writeln!(conn, "{command}")?;
    let mut reply = String::new();
    BufReader::new(conn).read_line(&mut reply)?;
    Ok(reply.trim_end().to_string())
}

/// Follows the event stream, calling `on_line` for each line until it returns false or the agent stops.
pub fn follow(path: &Path, mut on_line: impl FnMut(&str) -> bool) -> io::Result<()> {
    let mut conn = connect(path)?;
    writeln!(conn, "events")?;
    for line in BufReader::new(conn).lines() {
        if !on_line(&line?) {
            break;
        }
    }
    Ok(())
}
