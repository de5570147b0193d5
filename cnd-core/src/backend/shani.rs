//! x86-64 SHA extensions (SHA-NI): placeholder until the interleaved loop lands.

use super::Template;

/// Whether this CPU can run the backend.
pub fn is_available() -> bool {
    false
}

/// [`ScanFn`](super::ScanFn) for the shani backend.
pub fn scan(t: &Template, start: u64, count: u32) -> Option<u64> {
    super::scalar::scan(t, start, count)
}
