//! A service that serves only while its node holds the shared address, with the agent inside
//! it: the way the tool this project grew from was embedded in its services.
//!
//!     serve_while_active run --serve-port 8080 --iface eth0 --vip 192.0.2.200/24 --key-file KEY
//!
//! Every option but `--serve-port` is `ha-agent run`'s. While this node holds the address, a
//! TCP listener on ADDR:PORT answers each connection with `served by NODE`; the moment it does
//! not, the listener closes. SIGTERM stops it cleanly: the address is handed over
//! make-before-break, and the service serves until the hand-over is done.
use std::{
    io::Write as _,
    net::{IpAddr, TcpListener},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use anyhow::Context as _;
use ha_agent::{
    embed::Builder,
    ops::logging::{self, LogFormat},
};

fn main() -> anyhow::Result<()> {
    logging::init(log::LevelFilter::Info, LogFormat::Human);
    let (port, run_args) = split_args(std::env::args().skip(1).collect())?;
    let agent = Builder::from_args(run_args).start()?;
    let status = agent.client().status()?;
    let vip: IpAddr = status
        .vips
        .first()
        .and_then(|v| v.split('/').next())
        .context("no shared address")?
        .parse()
        .context("shared address")?;

    let holding = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (holding, watch) = (Arc::clone(&holding), agent.client().watch()?);
        thread::spawn(move || {
            for state in watch {
                match state {
                    Ok(state) => {
                        log::info!("service: {} ({})", state.role.name(), state.detail);
                        holding.store(state.holds(), Ordering::Release);
                    }
                    Err(e) => {
                        log::info!("service: {e}; not serving");
                        holding.store(false, Ordering::Release);
                    }
                }
            }
        })
    };
    let done = Arc::new(AtomicBool::new(false));
    let server = {
        let (holding, done, name) = (Arc::clone(&holding), Arc::clone(&done), status.node_id);
        thread::spawn(move || serve(vip, port, &name, &holding, &done))
    };

    let term = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&term))?;
    }
    while !term.load(Ordering::Relaxed) && agent.is_running() {
        thread::sleep(Duration::from_millis(20));
    }
    // The clean stop returns once a successor holds the address; until then this node serves.
    let stopped = agent.stop();
    done.store(true, Ordering::Relaxed);
    let _ = server.join();
    let _ = watcher.join();
    stopped
}

/// `run --serve-port N <ha-agent run options>`: the port, and the options for the agent.
fn split_args(mut args: Vec<String>) -> anyhow::Result<(u16, Vec<String>)> {
    anyhow::ensure!(
        args.first().is_some_and(|a| a == "run"),
        "usage: serve_while_active run --serve-port PORT <ha-agent run options>"
    );
    args.remove(0);
    let at = args.iter().position(|a| a == "--serve-port").context("give --serve-port PORT")?;
    let port = args.get(at + 1).context("--serve-port needs a port")?.parse().context("--serve-port")?;
    args.drain(at..at + 2);
    Ok((port, args))
}

/// Listens on the shared address while `holding`; closes the listener as soon as it is not.
fn serve(vip: IpAddr, port: u16, name: &str, holding: &AtomicBool, done: &AtomicBool) {
    let mut listener: Option<TcpListener> = None;
    while !done.load(Ordering::Relaxed) {
        if !holding.load(Ordering::Acquire) {
            if listener.take().is_some() {
                log::info!("service: not holding {vip}: stopped serving");
            }
        } else if listener.is_none() {
            // The address may reach the interface a moment after the agent says ACTIVE.
            if let Ok(l) = TcpListener::bind((vip, port)).and_then(|l| l.set_nonblocking(true).map(|()| l)) {
                log::info!("service: holding {vip}: serving on port {port}");
                listener = Some(l);
            }
        }
        if let Some(l) = &listener {
            while let Ok((mut conn, _)) = l.accept() {
                let _ = writeln!(conn, "served by {name}");
            }
        }
        thread::sleep(Duration::from_millis(2));
    }
}
