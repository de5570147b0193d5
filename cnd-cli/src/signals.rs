//! SIGINT and SIGTERM for the long-running subcommands (`run`, `submit`): the
//! first signal asks the work to stop, which then cleans up; the exit code says
//! which signal it was (SPEC §6: 130 for SIGINT, 143 for SIGTERM).

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use anyhow::Context;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::exit::Exit;

/// Which stop signal arrived first, if any.
#[derive(Debug, Clone, Default)]
pub struct StopSignal(Arc<AtomicI32>);

impl StopSignal {
    /// Handles SIGINT and SIGTERM from now on: the first one is recorded and
    /// `on_stop` runs (on a helper thread, not in the signal handler).
    pub fn install(on_stop: impl Fn() + Send + 'static) -> anyhow::Result<StopSignal> {
        let mut signals =
            Signals::new([SIGINT, SIGTERM]).context("installing the SIGINT/SIGTERM handlers")?;
        let stop = StopSignal::default();
        let first = Arc::clone(&stop.0);
        std::thread::Builder::new()
            .name("cnd-signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    let _ = first.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
                    on_stop();
                }
            })
            .context("starting the signal thread")?;
        Ok(stop)
    }

    /// The exit code of work that ended because of a signal.
    pub fn exit(&self) -> Exit {
        match self.0.load(Ordering::SeqCst) {
            SIGTERM => Exit::Terminated,
            _ => Exit::Interrupted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_signal_decides_the_exit_code() {
        let stop = StopSignal::default();
        assert_eq!(stop.exit(), Exit::Interrupted);
        stop.0.store(SIGTERM, Ordering::SeqCst);
        assert_eq!(stop.exit(), Exit::Terminated);
        assert_eq!(Exit::Terminated as u8, 143);
    }
}
