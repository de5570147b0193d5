//! Lines for a person on stderr that do not tear the progress bar being drawn.
//!
//! A long-running subcommand `attach`es its bar; `say` then prints above it
//! (from any thread, the signal thread included) instead of into it, and
//! `detach` erases it before the final result is printed.

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

/// `cnd-cli: <line>` on stderr, above the bar when one is drawn.
pub fn say(line: impl std::fmt::Display) {
    match bar().as_ref() {
        Some(progress) => progress.println(format!("cnd-cli: {line}")),
        None => eprintln!("cnd-cli: {line}"),
    }
}
