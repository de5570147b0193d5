//! The search of a range on every thread (SPEC §3): the smallest golden nonce, or
//! exhausted, cancelled or timed out.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
#[non_exhaustive]
pub enum SearchError {
    /// Zero threads were asked for.
    #[error("the thread count must be at least 1")]
    NoThreads,
    /// More threads were asked for than [`max_threads`](crate::worker_config::max_threads)
    /// allows: they would only wait, and a pool that large takes seconds to
    /// minutes to start and stop.
    #[error(
        "{threads} search threads is more than the {max} this process may use \
         ({per_cpu} per CPU, at least {floor})",
        per_cpu = crate::worker_config::THREADS_PER_CPU,
        floor = crate::worker_config::MIN_THREAD_CAP
    )]
    TooManyThreads {
        /// Threads asked for.
        threads: usize,
        /// The most allowed here.
        max: usize,
    },
    /// The range reaches past the puzzle's nonce space.
    #[error("range {range} lies outside the nonce space 0..{space}")]
    OutsideSpace {
        /// The range searched.
        range: NonceRange,
        /// The size of the space.
        space: u128,
    },
    /// The operating system would not start the threads.
    #[error("could not start {threads} search threads")]
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
    /// Nonces from the range's first one that are all tried (see [`SearchControl::searched`]).
    searched: AtomicU64,
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

    /// How many nonces from the first of the range searched are all tried: the
    /// prefix a later search may skip (SPEC §5 `searched`). Threads finish
    /// chunks out of order, so this trails [`hashes`](Self::hashes) by at most
    /// a chunk per thread; it grows only, and is the range's length once a
    /// search is exhausted. Of the current search, since the control was made.
    pub fn searched(&self) -> u64 {
        self.searched.load(Ordering::Acquire)
    }
}

/// The chunks done so far: the contiguous prefix and the ones finished past it
/// (at most one per thread, as chunks are claimed in order).
#[derive(Debug, Default)]
struct Prefix {
    chunks: u64,
    beyond: std::collections::BTreeSet<u64>,
}

impl Prefix {
    /// Marks `chunk` done; returns the new prefix in chunks.
    fn done(&mut self, chunk: u64) -> u64 {
        self.beyond.insert(chunk);
        while self.beyond.remove(&self.chunks) {
            self.chunks += 1;
        }
        self.chunks
    }
}

/// Called with the hashes done so far; see [`SearchOptions::on_progress`].
type ProgressFn = Arc<dyn Fn(u64) + Send + Sync>;

/// How to search: threads, hash backend, deadline and progress callback.
///
/// Made by [`SearchOptions::all_cores`] (or `default()`) and adjusted with the
/// `with_` methods; the fields may be read and set, and more may come.
///
/// ```
/// use std::time::{Duration, Instant};
/// use cnd_core::{Backend, SearchOptions};
///
/// let options = SearchOptions::all_cores()
///     .with_threads(2)
///     .with_backend(Backend::Scalar)
///     .with_deadline(Some(Instant::now() + Duration::from_secs(10)))
///     .on_progress(|hashes| eprintln!("{hashes} hashes so far"));
/// assert_eq!(options.threads, 2);
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct SearchOptions {
    /// Threads to search with, at least 1.
    pub threads: usize,
    /// The hash backend.
    pub backend: Backend,
    /// When to give up, if ever.
    pub deadline: Option<Instant>,
    progress: Option<ProgressFn>,
}

impl SearchOptions {
    /// All available CPUs ([`available_threads`]), no deadline, and the `auto`
    /// backend (the fastest for the puzzle's shape). The library never reads the
    /// environment: a program that lets `CND_BACKEND` choose calls
    /// [`Backend::from_env`] itself and passes the result to [`with_backend`](Self::with_backend).
    pub fn all_cores() -> Self {
        SearchOptions {
            threads: available_threads(),
            backend: Backend::Auto,
            deadline: None,
            progress: None,
        }
    }

    /// The same options with `threads` threads (at least 1, or the search fails
    /// with [`SearchError::NoThreads`]).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// The same options hashing with `backend`.
    pub fn with_backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// The same options giving up at `deadline` ([`SearchOutcome::TimedOut`]).
    pub fn with_deadline(mut self, deadline: Option<Instant>) -> Self {
        self.deadline = deadline;
        self
    }

    /// The same options calling `progress` with the hashes done so far (all
    /// threads together) after every chunk a thread finishes: every few
    /// milliseconds per thread. It runs on the search threads, one call at a
    /// time and never with a smaller count than the call before; keep it quick,
    /// as the threads wait for it.
    pub fn on_progress(mut self, progress: impl Fn(u64) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(progress));
        self
    }
}

impl Default for SearchOptions {
    /// [`SearchOptions::all_cores`].
    fn default() -> Self {
        SearchOptions::all_cores()
    }
}

impl fmt::Debug for SearchOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SearchOptions")
            .field("threads", &self.threads)
            .field("backend", &self.backend)
            .field("deadline", &self.deadline)
            .field("on_progress", &self.progress.as_ref().map(|_| "Fn(u64)"))
            .finish()
    }
}

/// The threads this process may use (cgroup quota and affinity aware, via std).
pub fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A golden nonce and how it was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
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
#[non_exhaustive]
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

/// Searches on a thread pool made once: for many searches with the same
/// threads and backend (one per shard, per block, per benchmark round).
///
/// ```
/// use cnd_core::{Puzzle, SearchControl, SearchOptions, SearchOutcome, Searcher};
///
/// let searcher = Searcher::new(SearchOptions::all_cores().with_threads(2)).unwrap();
/// for block in ["first block", "second block"] {
///     let puzzle = Puzzle::new(block, 10, Default::default(), Default::default()).unwrap();
///     let outcome = searcher.search(&puzzle, puzzle.space(), &SearchControl::new()).unwrap();
///     let SearchOutcome::Found(found) = outcome else { panic!("2^32 nonces hold one at D = 10") };
///     assert!(found.leading_zeros >= 10);
/// }
/// ```
pub struct Searcher {
    options: SearchOptions,
    /// `None` for one thread: the search runs on the caller's.
    pool: Option<rayon::ThreadPool>,
}

impl fmt::Debug for Searcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Searcher")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Searcher {
    /// Starts `options.threads` search threads (none for one thread: the
    /// search then runs on the caller's); at most
    /// [`max_threads`](crate::worker_config::max_threads), else
    /// [`SearchError::TooManyThreads`].
    pub fn new(options: SearchOptions) -> Result<Searcher, SearchError> {
        if options.threads == 0 {
            return Err(SearchError::NoThreads);
        }
        let max = crate::worker_config::max_threads();
        if options.threads > max {
            return Err(SearchError::TooManyThreads {
                threads: options.threads,
                max,
            });
        }
        let pool = if options.threads == 1 {
            None
        } else {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(options.threads)
                .thread_name(|i| format!("cnd-search-{i}"))
                .build()
                .map_err(|source| SearchError::Threads {
                    threads: options.threads,
                    source,
                })?;
            Some(pool)
        };
        Ok(Searcher { options, pool })
    }

    /// The options it searches with.
    pub fn options(&self) -> &SearchOptions {
        &self.options
    }

    /// Sets the deadline of the next searches (the pool stays).
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.options.deadline = deadline;
    }

    /// Searches `range` of `puzzle` for its smallest golden nonce.
    ///
    /// Threads claim chunks of [`CHUNK`] nonces in increasing order; once a golden
    /// nonce is found in chunk `c`, no thread starts a chunk after `c`, and the chunks
    /// before it are finished, so the answer is the smallest and does not depend on
    /// the thread count, even when the search is cancelled or times out. Progress
    /// is added to `control` after every chunk (and passed to the options'
    /// [`on_progress`](SearchOptions::on_progress) callback).
    pub fn search(
        &self,
        puzzle: &Puzzle,
        range: NonceRange,
        control: &SearchControl,
    ) -> Result<SearchOutcome, SearchError> {
        let options = &self.options;
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
        // The count last passed to the progress callback: calls are made under this
        // lock, so they never overlap and never go backwards.
        let reported = Mutex::new(0u64);
        let prefix = Mutex::new(Prefix::default());

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
            if found.is_none() {
                // One short lock per chunk of 2^16 nonces (milliseconds of work).
                let chunks_done = prefix.lock().unwrap_or_else(|e| e.into_inner()).done(chunk);
                let searched = (u128::from(chunks_done) * u128::from(CHUNK)).min(range.len());
                control.searched.fetch_max(
                    u64::try_from(searched).unwrap_or(u64::MAX),
                    Ordering::Release,
                );
            }
            if let Some(progress) = &options.progress {
                let mut reported = reported.lock().unwrap_or_else(|e| e.into_inner());
                let hashes = control.hashes();
                if hashes > *reported {
                    *reported = hashes;
                    progress(hashes);
                }
            }
            if let Some(nonce) = found {
                let mut best = best.lock().unwrap_or_else(|e| e.into_inner());
                if best.is_none_or(|b| nonce < b) {
                    *best = Some(nonce);
                }
                best_chunk.fetch_min(chunk, Ordering::Release);
            }
        };

        match &self.pool {
            Some(pool) => drop(pool.broadcast(|_| worker())),
            None => worker(),
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
}

/// Searches `range` of `puzzle` for its smallest golden nonce: a [`Searcher`]
/// made for this one search (see [`Searcher::search`] for how).
///
/// ```
/// use cnd_core::{search, verify, NonceRange, Puzzle, SearchControl, SearchOptions, SearchOutcome};
///
/// let puzzle = Puzzle::with_default_block(16).unwrap();
/// let range = NonceRange::new(0, 999_999).unwrap();
/// let options = SearchOptions::all_cores();
/// match search(&puzzle, range, &options, &SearchControl::new()).unwrap() {
///     // The README's known answer: 133050 is the smallest golden nonce at D = 16.
///     SearchOutcome::Found(found) => {
///         assert_eq!(found.nonce, 133_050);
///         assert!(verify(&puzzle, found.nonce).golden);
///     }
///     other => panic!("{other:?}"),
/// }
/// ```
pub fn search(
    puzzle: &Puzzle,
    range: NonceRange,
    options: &SearchOptions,
    control: &SearchControl,
) -> Result<SearchOutcome, SearchError> {
    Searcher::new(options.clone())?.search(puzzle, range, control)
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

#[cfg(test)]
mod thread_cap_tests {
    use super::*;
    use crate::worker_config::max_threads;

    #[test]
    fn more_threads_than_the_cap_are_refused_before_any_start() {
        let max = max_threads();
        let options = SearchOptions::all_cores().with_threads(max + 1);
        let started = Instant::now();
        let err = Searcher::new(options).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(
            matches!(err, SearchError::TooManyThreads { threads, max: m } if threads == max + 1 && m == max),
            "{err:?}"
        );
        assert!(err.to_string().contains(&max.to_string()), "{err}");
        // The cap itself is allowed, and a search on it ends quickly.
        let puzzle = Puzzle::with_default_block(1).unwrap();
        let range = NonceRange::new(0, 999).unwrap();
        let options = SearchOptions::all_cores()
            .with_threads(max)
            .with_backend(Backend::Scalar);
        let started = Instant::now();
        let outcome = search(&puzzle, range, &options, &SearchControl::new()).unwrap();
        assert!(matches!(outcome, SearchOutcome::Found(_)), "{outcome:?}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }
}
