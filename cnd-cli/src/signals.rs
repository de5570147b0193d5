//! The stop signals for the long-running subcommands (`run`, `submit`, `sweep`):
//! SIGINT, SIGTERM, SIGHUP and SIGQUIT. The first one asks the work to stop,
//! which then cleans up; the exit code says which signal it was (SPEC §6:
//! 128 + the signal, so 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP, 131
//! for SIGQUIT).

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::exit::Exit;

/// The signals that stop a run (each cleans up; each has its own exit code).
pub const STOP_SIGNALS: [i32; 4] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT];

/// Which stop signal arrived first, if any, and whether its `on_signal` ran.
#[derive(Debug, Clone, Default)]
pub struct StopSignal(Arc<AtomicI32>, Arc<AtomicBool>);

/// How long [`StopSignal::exit`] waits for the first signal's `on_signal` to
/// finish (what it says would otherwise be lost when the process exits first).
const SAID_WITHIN: Duration = Duration::from_millis(500);

impl StopSignal {
    /// Handles the [`STOP_SIGNALS`] from now on: the first one is recorded and
    /// `on_stop` runs for each (on a helper thread, not in the signal handler).
    pub fn install(on_stop: impl Fn() + Send + 'static) -> anyhow::Result<StopSignal> {
        StopSignal::install_with(move |_| on_stop())
    }

    /// Like [`StopSignal::install`], telling `on_signal` which signal came
    /// (to pass each one on, as `sweep` does to its run).
    pub fn install_with(on_signal: impl Fn(i32) + Send + 'static) -> anyhow::Result<StopSignal> {
        let mut signals = Signals::new(STOP_SIGNALS)
            .context("installing the SIGINT/SIGTERM/SIGHUP/SIGQUIT handlers")?;
        let stop = StopSignal::default();
        let (first, handled) = (Arc::clone(&stop.0), Arc::clone(&stop.1));
        std::thread::Builder::new()
            .name("cnd-signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    let _ = first.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
                    on_signal(signal);
                    handled.store(true, Ordering::SeqCst);
                }
            })
            .context("starting the signal thread")?;
        Ok(stop)
    }

    /// The exit code of work that ended because of a signal (SIGINT's when
    /// none was recorded: work cancelled another way). The work may end
    /// before the signal thread has said what it does (it cancels first), so
    /// this waits for that, at most [`SAID_WITHIN`]: a blocked stderr never
    /// holds the exit longer.
    pub fn exit(&self) -> Exit {
        let since = Instant::now();
        while self.0.load(Ordering::SeqCst) != 0
            && !self.1.load(Ordering::SeqCst)
            && since.elapsed() < SAID_WITHIN
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        Exit::for_signal(self.0.load(Ordering::SeqCst)).unwrap_or(Exit::Interrupted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_signal_decides_the_exit_code() {
        let stop = StopSignal::default();
        assert_eq!(stop.exit(), Exit::Interrupted);
        for (signal, exit, code) in [
            (SIGTERM, Exit::Terminated, 143),
            (SIGHUP, Exit::Hangup, 129),
            (SIGQUIT, Exit::Quit, 131),
            (SIGINT, Exit::Interrupted, 130),
        ] {
            stop.0.store(signal, Ordering::SeqCst);
            stop.1.store(true, Ordering::SeqCst);
            assert_eq!(stop.exit(), exit);
            assert_eq!(exit as u8, code);
        }
    }
}
