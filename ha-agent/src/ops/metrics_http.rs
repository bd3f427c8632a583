//! A minimal HTTP/1.x server for `GET /metrics`, on one thread of its own that shares nothing
//! with the run loop but the metrics (read at scrape time).
//!
//! Bounded so that no client can keep scrapes from being answered: every connection is
//! non-blocking and served side by side by one readiness loop (mio), each must finish its
//! whole exchange within [`DEADLINE`], and at most [`MAX_CONNECTIONS`] are open at once: a new
//! one pushes out the oldest that has not sent its request yet. A scraper sends its request
//! as soon as it connects, so it is answered before silent or trickling clients can push it
//! out. Hand-written rather than an HTTP crate: one fixed reply to one small request needs no
//! parser, and the small blocking crates read a request head without a deadline.
use std::{
    collections::HashMap,
    io::{self, Read, Write},
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use mio::{
    Events, Interest, Poll, Token, Waker,
    net::{TcpListener, TcpStream},
};

use super::metrics::{CONTENT_TYPE, Metrics};

/// Time a client has from connecting to having read the whole reply.
pub const DEADLINE: Duration = Duration::from_secs(2);
/// Connections open at once; Prometheus needs one.
pub const MAX_CONNECTIONS: usize = 16;
/// Longest request head; a scrape's is a few hundred bytes.
const MAX_REQUEST: usize = 8 * 1024;
/// New connections taken per wake-up, so a burst of them cannot push out every scrape at once.
const ACCEPTS_PER_WAKE: usize = MAX_CONNECTIONS / 2;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);

pub struct MetricsServer {
    #[cfg_attr(not(test), allow(dead_code))]
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    pub fn start(addr: SocketAddr, metrics: Arc<Metrics>) -> io::Result<Self> {
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("--metrics {addr}: cannot listen: {e}")))?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        let poll = Poll::new()?;
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            thread::Builder::new().name("metrics".into()).spawn(move || {
                let mut server = Server { poll, listener, conns: HashMap::new(), next: 2, metrics };
                if let Err(e) = server.run(&stop) {
                    log::error!("the metrics server stopped: {e}");
                }
            })?
        };
        Ok(Self { addr, stop, waker, thread: Some(thread) })
    }

    /// Where it listens (the port is chosen by the system for port 0).
    #[cfg(test)]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Conn {
    stream: TcpStream,
    opened: Instant,
    head: Vec<u8>,
    /// The reply and how much of it is sent, once the request is in.
    reply: Option<(Vec<u8>, usize)>,
}

struct Server {
    poll: Poll,
    listener: TcpListener,
    conns: HashMap<Token, Conn>,
    next: usize,
    metrics: Arc<Metrics>,
}

/// What to do with a connection after serving an event.
#[derive(PartialEq, Eq)]
enum Next {
    Keep,
    Close,
}

impl Server {
    fn run(&mut self, stop: &AtomicBool) -> io::Result<()> {
        let mut events = Events::with_capacity(64);
        loop {
            let timeout =
                self.conns.values().map(|c| (c.opened + DEADLINE).saturating_duration_since(Instant::now())).min();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            // Clients already connected first: a burst of new ones cannot push them out unread.
            let mut accept = false;
            for event in &events {
                match event.token() {
                    LISTENER => accept = true,
                    WAKER => {}
                    token => {
                        if self.conns.get_mut(&token).map(|c| serve(c, &self.metrics)) == Some(Next::Close) {
                            self.close(token);
                        }
                    }
                }
            }
            if accept {
                self.accept()?;
            }
            let now = Instant::now();
            let late: Vec<Token> =
                self.conns.iter().filter(|(_, c)| now >= c.opened + DEADLINE).map(|(t, _)| *t).collect();
            for token in late {
                self.close(token);
            }
        }
    }

    fn accept(&mut self) -> io::Result<()> {
        for _ in 0..ACCEPTS_PER_WAKE {
            let (mut stream, _) = match self.listener.accept() {
                Ok(conn) => conn,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                // Out of file descriptors, a connection reset before accept: not the server's end.
                Err(e) => {
                    log::debug!("metrics: accepting a connection: {e}");
                    return Ok(());
                }
            };
            if self.conns.len() >= MAX_CONNECTIONS {
                self.push_out_oldest();
            }
            let token = Token(self.next);
            self.next = self.next.wrapping_add(1).max(2);
            self.poll.registry().register(&mut stream, token, Interest::READABLE)?;
            let conn = Conn { stream, opened: Instant::now(), head: Vec::with_capacity(512), reply: None };
            self.conns.insert(token, conn);
        }
        // More are waiting: the listener stays readable, so the next poll returns at once.
        self.poll.registry().reregister(&mut self.listener, LISTENER, Interest::READABLE)
    }

    /// Makes room: the oldest connection still waiting for its request goes, else the oldest.
    fn push_out_oldest(&mut self) {
        let oldest = self.conns.iter().min_by_key(|(_, c)| (c.reply.is_some(), c.opened)).map(|(t, _)| *t);
        if let Some(token) = oldest {
            log::debug!("metrics: {MAX_CONNECTIONS} connections open: closing the oldest");
            self.close(token);
        }
    }

    fn close(&mut self, token: Token) {
        if let Some(mut conn) = self.conns.remove(&token) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
        }
    }
}

/// Reads what arrived, replies once the head is complete, sends what the socket takes.
fn serve(conn: &mut Conn, metrics: &Metrics) -> Next {
    if conn.reply.is_none() {
        let mut buf = [0u8; 1024];
        loop {
            match conn.stream.read(&mut buf) {
                Ok(0) => return Next::Close,
                Ok(n) => conn.head.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Next::Close,
            }
            if conn.head.len() > MAX_REQUEST {
                return Next::Close;
            }
        }
        if !head_complete(&conn.head) {
            return Next::Keep;
        }
        conn.reply = Some((respond(&String::from_utf8_lossy(&conn.head), metrics).into_bytes(), 0));
    }
    let Some((reply, sent)) = &mut conn.reply else { return Next::Keep };
    while *sent < reply.len() {
        match conn.stream.write(&reply[*sent..]) {
            Ok(0) => return Next::Close,
            Ok(n) => *sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Keep,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Next::Close,
        }
    }
    let _ = conn.stream.shutdown(std::net::Shutdown::Write);
    Next::Close
}

fn head_complete(head: &[u8]) -> bool {
    head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n")
}

fn respond(head: &str, metrics: &Metrics) -> String {
    let request_line = head.lines().next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let path = target.split('?').next().unwrap_or_default();
    let (status, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => ("200 OK", CONTENT_TYPE, metrics.encode()),
        ("GET" | "HEAD", _) => ("404 Not Found", "text/plain", "metrics are at /metrics\n".to_string()),
        _ => ("405 Method Not Allowed", "text/plain", "only GET\n".to_string()),
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if method != "HEAD" {
        response.push_str(&body);
    }
    response
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};

    use super::*;

    fn get(addr: SocketAddr, request: &str) -> io::Result<String> {
        let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        conn.write_all(request.as_bytes())?;
        let mut reply = String::new();
        conn.read_to_string(&mut reply)?;
        Ok(reply)
    }

    fn server() -> MetricsServer {
        let metrics = Arc::new(Metrics::new(crate::ops::control::Hub::new().0));
        MetricsServer::start("127.0.0.1:0".parse().expect("addr"), metrics).expect("listen")
    }

    #[test]
    fn serves_metrics_and_refuses_the_rest() {
        let server = server();
        let get = |r| get(server.addr(), r).expect("reply");
        let reply = get("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        assert!(reply.contains("Content-Type: text/plain; version=0.0.4") && reply.contains("ha_state{"), "{reply}");
        assert!(get("GET / HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get("POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        assert!(!get("HEAD /metrics HTTP/1.1\r\n\r\n").contains("ha_state"));
    }

    /// Scrapes while 20 clients sit silent and one trickles a byte at a time: every scrape is
    /// answered, at once.
    #[test]
    fn silent_and_trickling_clients_do_not_hold_scrapes_up() {
        let server = server();
        let addr = server.addr();
        let idle: Vec<TcpStream> = (0..20).filter_map(|_| TcpStream::connect(addr).ok()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let trickle = {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut conn = TcpStream::connect(addr).ok();
                while !stop.load(Ordering::Relaxed) {
                    let sent = conn.as_mut().is_some_and(|c| c.write_all(b"G").is_ok());
                    if !sent {
                        conn = TcpStream::connect(addr).ok();
                    }
                    thread::sleep(Duration::from_millis(300));
                }
            })
        };
        let mut worst = Duration::ZERO;
        for _ in 0..10 {
            let start = Instant::now();
            let reply = get(addr, "GET /metrics HTTP/1.1\r\n\r\n");
            worst = worst.max(start.elapsed());
            assert!(reply.as_deref().is_ok_and(|r| r.starts_with("HTTP/1.1 200 OK")), "{reply:?}");
            thread::sleep(Duration::from_millis(100));
        }
        stop.store(true, Ordering::Relaxed);
        let _ = trickle.join();
        assert!(worst < Duration::from_millis(500), "a scrape took {worst:?}");
        drop(idle);
    }

    #[test]
    fn a_client_is_closed_at_the_deadline_and_connections_are_capped() {
        let server = server();
        let addr = server.addr();
        let mut silent = TcpStream::connect(addr).expect("connect");
        silent.set_read_timeout(Some(DEADLINE * 3)).expect("timeout");
        let start = Instant::now();
        let mut buf = [0u8; 16];
        assert!(matches!(silent.read(&mut buf), Ok(0)), "closed by the server");
        let waited = start.elapsed();
        assert!(waited >= DEADLINE - Duration::from_millis(100) && waited < DEADLINE * 2, "{waited:?}");

        // Beyond the cap, the oldest silent ones are closed to make room.
        let many: Vec<TcpStream> = (0..MAX_CONNECTIONS + 4).map(|_| TcpStream::connect(addr).expect("c")).collect();
        thread::sleep(Duration::from_millis(200));
        let closed = many
            .iter()
            .filter(|c| {
                c.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
                match (&**c).read(&mut buf) {
                    Ok(n) => n == 0,
                    Err(e) => !matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut),
                }
            })
            .count();
        assert!(closed >= 4, "{closed} closed");
    }

    #[test]
    fn a_busy_port_is_one_clear_error() {
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr");
        let err = MetricsServer::start(addr, Arc::new(Metrics::new(crate::ops::control::Hub::new().0)))
            .err()
            .expect("in use");
        assert!(err.to_string().starts_with(&format!("--metrics {addr}: cannot listen")), "{err}");
    }
}
