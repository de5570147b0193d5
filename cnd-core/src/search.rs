//! The search of a range on every thread (SPEC §3): the smallest golden nonce, or
//! exhausted, cancelled or timed out.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::backend::{Backend, Job};
use crate::puzzle::Puzzle;
use crate::shard::NonceRange;
use crate::verify::verify;

/// Nonces one thread scans between looks at the cancel flag and the deadline.
///
/// At 2^16 a chunk takes 2 ms on the fastest backend and ~30 ms on `scalar`,
/// so cancel and progress react well within 50 ms, while the bookkeeping per
/// chunk (two atomics) costs nothing measurable.
pub const CHUNK: u32 = 1 << 16;

/// Why a search could not start.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// Zero threads were asked for.
    #[error("the thread count must be at least 1")]
    NoThreads,
    /// The range reaches past the puzzle's nonce space.
    #[error("range {range} lies outside the nonce space 0..{space}")]
    OutsideSpace {
        /// The range searched.
        range: NonceRange,
        /// The size of the space.
        space: u128,
    },
    /// The operating system would not start the threads.
    #[error("could not start {threads} search threads: {source}")]
    Threads {
        /// Threads asked for.
        threads: usize,
        /// The pool's error.
        source: rayon::ThreadPoolBuildError,
    },
}

/// Shared between a running search and whoever watches it.
#[derive(Debug, Default)]
pub struct SearchControl {
    cancel: AtomicBool,
    hashes: AtomicU64,
}

impl SearchControl {
    /// A fresh control: not cancelled, no hashes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the search to stop; it ends as [`SearchOutcome::Cancelled`] within one chunk.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Hashes done so far, across all threads; may be read while the search runs.
    pub fn hashes(&self) -> u64 {
        self.hashes.load(Ordering::Relaxed)
    }
}

/// How to search.
#[derive(Debug, Clone)]
pub struct SearchOptions {
    /// Threads to search with, at least 1.
    pub threads: usize,
    /// The hash backend.
    pub backend: Backend,
    /// When to give up, if ever.
    pub deadline: Option<Instant>,
}

impl SearchOptions {
    /// `auto` (the fastest backend for the puzzle's shape) on all available CPUs, no deadline.
    pub fn all_cores() -> Self {
        SearchOptions {
            threads: available_threads(),
            backend: Backend::Auto,
            deadline: None,
        }
    }
}

/// The threads this process may use (cgroup quota and affinity aware, via std).
pub fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A golden nonce and how it was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// The golden nonce.
    pub nonce: u64,
    /// Its hash.
    pub hash: [u8; 32],
    /// Leading zero bits of `hash`.
    pub leading_zeros: u32,
    /// Hashes tried by all threads until the search ended.
    pub hashes: u64,
    /// Wall time of the search.
    pub elapsed: Duration,
}

/// How a search ended (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchOutcome {
    /// The smallest golden nonce of the range.
    Found(Found),
    /// Every nonce was tried; none is golden.
    Exhausted {
        /// Hashes tried (the range's size).
        hashes: u64,
        /// Wall time.
        elapsed: Duration,
    },
    /// [`SearchControl::cancel`] was called first.
    Cancelled {
        /// Hashes tried before stopping.
        hashes: u64,
        /// Wall time.
        elapsed: Duration,
    },
    /// The deadline passed first.
    TimedOut {
        /// Hashes tried before stopping.
        hashes: u64,
        /// Wall time.
        elapsed: Duration,
    },
}

/// Searches `range` of `puzzle` for its smallest golden nonce.
///
/// Threads claim chunks of [`CHUNK`] nonces in increasing order; once a golden
/// nonce is found in chunk `c`, no thread starts a chunk after `c`, and the chunks
/// before it are finished, so the answer is the smallest and does not depend on
/// the thread count, even when the search is cancelled or times out. Progress is added to `control` after every chunk.
pub fn search(
    puzzle: &Puzzle,
    range: NonceRange,
    options: &SearchOptions,
    control: &SearchControl,
) -> Result<SearchOutcome, SearchError> {
    if options.threads == 0 {
        return Err(SearchError::NoThreads);
    }
    if !puzzle.space().covers(&range) {
        return Err(SearchError::OutsideSpace {
            range,
            space: puzzle.space().end(),
        });
    }
    let started = Instant::now();
    let job = Job::new(puzzle);
    let scan = options.backend.scan_fn();
    let chunks = range.len().div_ceil(u128::from(CHUNK)) as u64;
    let next_chunk = AtomicU64::new(0);
    // The chunk holding the best nonce so far; u64::MAX while none is found.
    let best_chunk = AtomicU64::new(u64::MAX);
    let best = Mutex::new(None::<u64>);
    let timed_out = AtomicBool::new(false);

    let worker = || loop {
        if control.is_cancelled() {
            return;
        }
        if options.deadline.is_some_and(|d| Instant::now() >= d) {
            timed_out.store(true, Ordering::Relaxed);
            return;
        }
        let chunk = next_chunk.fetch_add(1, Ordering::Relaxed);
        if chunk >= chunks || chunk > best_chunk.load(Ordering::Acquire) {
            return;
        }
        let start = range.first() + chunk * u64::from(CHUNK);
        let count = (range.end() - u128::from(start)).min(u128::from(CHUNK)) as u32;
        let found = job.scan(scan, start, count);
        control.hashes.fetch_add(
            found.map_or(u64::from(count), |n| n - start + 1),
            Ordering::Relaxed,
        );
        if let Some(nonce) = found {
            let mut best = best.lock().unwrap_or_else(|e| e.into_inner());
            if best.is_none_or(|b| nonce < b) {
                *best = Some(nonce);
            }
            best_chunk.fetch_min(chunk, Ordering::Release);
        }
    };

    if options.threads == 1 {
        worker();
    } else {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(options.threads)
            .thread_name(|i| format!("cnd-search-{i}"))
            .build()
            .map_err(|source| SearchError::Threads {
                threads: options.threads,
                source,
            })?;
        pool.broadcast(|_| worker());
    }

    let hashes = control.hashes();
    let elapsed = started.elapsed();
    let best = best.into_inner().unwrap_or_else(|e| e.into_inner());
    Ok(match best {
        // Chunks are claimed in order and a claimed chunk is always scanned to its
        // end, so every chunk before the best one was scanned: even when cut short,
        // a found nonce is the smallest of the range.
        Some(nonce) => found(puzzle, nonce, hashes, elapsed),
        None if control.is_cancelled() => SearchOutcome::Cancelled { hashes, elapsed },
        _ if timed_out.load(Ordering::Relaxed) => SearchOutcome::TimedOut { hashes, elapsed },
        _ => SearchOutcome::Exhausted { hashes, elapsed },
    })
}

fn found(puzzle: &Puzzle, nonce: u64, hashes: u64, elapsed: Duration) -> SearchOutcome {
    let check = verify(puzzle, nonce);
    debug_assert!(check.golden, "backend returned a nonce that is not golden");
    SearchOutcome::Found(Found {
        nonce,
        hash: check.hash,
        leading_zeros: check.leading_zeros,
        hashes,
        elapsed,
    })
}
