//! Lines for a person on stderr that do not tear the progress bar being drawn.
//!
//! A long-running subcommand `attach`es its bar; `say` then prints above it
//! (from any thread, the signal thread included) instead of into it, and
//! `detach` erases it before the final result is printed.
//!
//! Every write to stderr goes through here (`eprintln!` is this module's
//! [`stderr_line`] in the whole crate, see main.rs) and ignores write errors:
//! a stderr nobody reads must never stop a run from cleaning up.

use std::io::Write;
use std::sync::{Mutex, MutexGuard};

use indicatif::ProgressBar;

static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

fn bar() -> MutexGuard<'static, Option<ProgressBar>> {
    // A thread that panicked while printing leaves nothing half-done here.
    BAR.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Routes `say` above `progress` until `detach`.
pub fn attach(progress: &ProgressBar) {
    *bar() = Some(progress.clone());
}

/// Erases the attached bar, if any; `say` prints plain lines again.
pub fn detach() {
    if let Some(progress) = bar().take() {
        progress.finish_and_clear();
    }
}

/// One line on stderr; a failed write (a closed pipe, a hung-up terminal) is
/// ignored, as nothing better can be done with a line nobody can read.
pub fn stderr_line(line: std::fmt::Arguments<'_>) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr
        .write_fmt(line)
        .and_then(|()| stderr.write_all(b"\n"));
}

/// `cnd-cli: <line>` on stderr, above the bar when one is drawn (indicatif
/// ignores its write errors too).
pub fn say(line: impl std::fmt::Display) {
    match bar().as_ref() {
        Some(progress) => progress.println(format!("cnd-cli: {line}")),
        None => eprintln!("cnd-cli: {line}"),
    }
}
