//! The exit-code policy of SPEC §6, in one place.

use std::process::ExitCode;

use cnd_core::stats::StatsError;
use cnd_core::{BackendError, PuzzleError, RangeError};

/// How `cnd-cli` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// A golden nonce was found (or `verify` found the nonce golden), or the command succeeded.
    Success = 0,
    /// Something failed: the cluster, the queue, I/O.
    Error = 1,
    /// Bad usage or input.
    Usage = 2,
    /// The space (or range) holds no golden nonce; `verify`: not golden.
    Exhausted = 3,
    /// The time limit passed first.
    TimedOut = 4,
    /// Interrupted by SIGINT (Ctrl-C); everything created was removed.
    Interrupted = 130,
    /// Stopped by SIGTERM; everything created was removed.
    Terminated = 143,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

/// An error in what the user gave us (flags, variables, values): exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// A usage error with `message`.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}

/// The exit code for an error: bad input is 2, everything else 1.
pub fn code_for(err: &anyhow::Error) -> Exit {
    let is_usage = err.is::<UsageError>()
        || err.is::<PuzzleError>()
        || err.is::<RangeError>()
        || err.is::<BackendError>()
        || err.is::<StatsError>();
    if is_usage {
        Exit::Usage
    } else {
        Exit::Error
    }
}

/// Prints `err` as one sentence on stderr and returns its exit code.
pub fn report(err: &anyhow::Error) -> Exit {
    eprintln!("cnd-cli: error: {err:#}");
    code_for(err)
}
