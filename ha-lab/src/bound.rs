//! Time bounds for tests: a hung body fails the test instead of hanging CI.
use std::{sync::mpsc, thread, time::Duration};

use anyhow::Result;

/// Runs a test body on its own thread and fails the test if it takes longer than `limit`
/// (a hung body's lab is then left for the next run's sweep). Errors fail the test with their
/// whole chain.
pub fn within(limit: Duration, body: impl FnOnce() -> Result<()> + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    let h = thread::spawn(move || {
        let r = body();
        let _ = tx.send(());
        r
    });
    match rx.recv_timeout(limit) {
        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => match h.join() {
            Ok(r) => r.unwrap_or_else(|e| panic!("{e:#}")),
            Err(p) => std::panic::resume_unwind(p),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("test did not finish within {limit:?}"),
    }
}
