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
    /// Stopped by SIGHUP (the terminal went away); everything created was removed.
    Hangup = 129,
    /// Interrupted by SIGINT (Ctrl-C); everything created was removed.
    Interrupted = 130,
    /// Stopped by SIGQUIT (Ctrl-\\); everything created was removed.
    Quit = 131,
    /// Stopped by SIGTERM; everything created was removed.
    Terminated = 143,
}

impl Exit {
    /// The exit code of work stopped by `signal` (128 + its number), for the
    /// signals `cnd-cli` stops on; `None` for any other.
    pub fn for_signal(signal: i32) -> Option<Exit> {
        match signal {
            libc::SIGHUP => Some(Exit::Hangup),
            libc::SIGINT => Some(Exit::Interrupted),
            libc::SIGQUIT => Some(Exit::Quit),
            libc::SIGTERM => Some(Exit::Terminated),
            _ => None,
        }
    }

    /// Whether this is the code of a run stopped by a signal.
    pub fn is_signal(code: i32) -> bool {
        [
            Exit::Hangup,
            Exit::Interrupted,
            Exit::Quit,
            Exit::Terminated,
        ]
        .iter()
        .any(|e| *e as i32 == code)
    }
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

/// `err` and its causes, outermost first, joined by `": "` as anyhow's `{:#}`
/// prints them, but each cause said once: an error whose own text already
/// holds its source's (`{path}: {source}` with `#[source]`, the AWS SDK's,
/// kube's config errors) would otherwise print that cause twice or more.
pub fn sentence(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for part in err.chain().map(ToString::to_string) {
        if part.is_empty() || text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// Prints `err` as one sentence on stderr and returns its exit code.
pub fn report(err: &anyhow::Error) -> Exit {
    eprintln!("cnd-cli: error: {}", sentence(err));
    code_for(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_is_said_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("results.jsonl: {source}")]
        struct Repeats {
            source: std::io::Error,
        }
        let io = || std::io::Error::from(std::io::ErrorKind::NotFound);
        let err = anyhow::Error::new(Repeats { source: io() }).context("reading the results");
        assert_eq!(
            sentence(&err),
            format!("reading the results: results.jsonl: {}", io())
        );
        let plain = anyhow::Error::new(io()).context("opening x");
        assert_eq!(sentence(&plain), format!("opening x: {}", io()));
        // A cause quoted inside its parent's text, as kube's config errors do.
        #[derive(Debug, thiserror::Error)]
        #[error("kubeconfig: ({source})")]
        struct Quotes {
            source: std::io::Error,
        }
        let err = anyhow::Error::new(Quotes { source: io() });
        assert_eq!(sentence(&err), format!("kubeconfig: ({})", io()));
    }

    #[test]
    fn each_stop_signal_has_its_own_code() {
        assert_eq!(Exit::for_signal(libc::SIGHUP), Some(Exit::Hangup));
        assert_eq!(Exit::Hangup as i32, 128 + libc::SIGHUP);
        assert_eq!(Exit::Interrupted as i32, 128 + libc::SIGINT);
        assert_eq!(Exit::Quit as i32, 128 + libc::SIGQUIT);
        assert_eq!(Exit::Terminated as i32, 128 + libc::SIGTERM);
        assert_eq!(Exit::for_signal(libc::SIGUSR1), None);
        assert!(Exit::is_signal(131) && !Exit::is_signal(4));
    }
}
