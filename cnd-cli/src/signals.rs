//! The stop signals for the long-running subcommands (`run`, `submit`, `sweep`):
//! SIGINT, SIGTERM, SIGHUP and SIGQUIT. The first one asks the work to stop,
//! which then cleans up; the exit code says which signal it was (SPEC §6:
//! 128 + the signal, so 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP, 131
//! for SIGQUIT).

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use anyhow::Context;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::exit::Exit;

/// The signals that stop a run (each cleans up; each has its own exit code).
pub const STOP_SIGNALS: [i32; 4] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT];

/// Which stop signal arrived first, if any.
#[derive(Debug, Clone, Default)]
pub struct StopSignal(Arc<AtomicI32>);

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
        let first = Arc::clone(&stop.0);
        std::thread::Builder::new()
            .name("cnd-signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    let _ = first.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
                    on_signal(signal);
                }
            })
            .context("starting the signal thread")?;
        Ok(stop)
    }

    /// The exit code of work that ended because of a signal (SIGINT's when
    /// none was recorded: work cancelled another way).
    pub fn exit(&self) -> Exit {
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
            assert_eq!(stop.exit(), exit);
            assert_eq!(exit as u8, code);
        }
    }
}
