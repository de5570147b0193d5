//! The hash loop's internals, for cnd's own benchmarks, `cnd-cli bench` and
//! tests: **not part of cnd-core's API and not covered by semver**. Anything
//! here may change or vanish in any release, patch releases included.
//!
//! Embedders search with [`crate::search`] or [`crate::Searcher`] and pick a
//! hash loop with [`crate::Backend`]; nothing here is needed for that. What is
//! here is what measuring and testing the loops themselves needs: a puzzle
//! prepared per nonce length ([`Job`], [`Template`]), one backend's raw scan
//! ([`ScanFn`], [`scan_fn`]), the portable reference ([`scalar`]) and `auto`'s
//! measurements ([`auto::calibration`]).
//!
//! The scan functions trust their arguments (see [`ScanFn`]): called on a CPU
//! without the backend's instructions, they panic.

pub use crate::backend::{auto, scalar, sha2_compress};
#[cfg(target_arch = "x86_64")]
pub use crate::backend::{avx2, avx512, shani};
pub use crate::backend::{leading_zeros, Job, ScanFn, Template, BACKEND_ENV, IV};

use crate::backend::Backend;

/// `backend`'s implementation of [`ScanFn`]. Only call it for a backend that
/// [`is_available`](Backend::is_available): the SIMD ones panic on a CPU
/// without their instructions.
pub fn scan_fn(backend: Backend) -> ScanFn {
    backend.scan_fn()
}
