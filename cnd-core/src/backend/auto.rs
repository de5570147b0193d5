//! The `auto` backend: the fastest backend for a puzzle's shape, by measurement.
//!
//! Which backend is fastest depends on the CPU (SHA-NI against AVX-512 differs between
//! vendors and generations) and a little on the puzzle's shape (one or two blocks to
//! hash per nonce, binary or decimal nonces). So the first time a shape is scanned,
//! every candidate hashes the same nonces of it for a few milliseconds, three times
//! over, and the one with the fewest CPU nanoseconds per nonce (the thread's own
//! CPU time, so other work on the machine does not count against a candidate) is
//! kept for the rest of the process. Calibration takes at most about 20 ms per
//! candidate; threads that need a shape being calibrated wait for it.

use std::sync::Mutex;
use std::time::Instant;

use super::{Backend, Template};
use crate::puzzle::NonceFormat;

/// Nonces hashed per timing: about 4 ms on the fastest backends.
const SAMPLE: u32 = 1 << 14;
/// Timings per candidate; the fastest counts (noise only ever slows a run down).
const ROUNDS: usize = 3;

/// What decides the relative speed of the backends: the nonce format, and which
/// of the tail's blocks the nonce touches and how many there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape {
    format: NonceFormat,
    tail_blocks: usize,
    first_block: usize,
    last_block: usize,
}

impl Shape {
    /// The shape of a template.
    pub fn of(t: &Template) -> Shape {
        Shape {
            format: t.format,
            tail_blocks: t.tail_blocks,
            first_block: t.nonce_offset / 64,
            last_block: (t.nonce_offset + t.nonce_len - 1) / 64,
        }
    }
}

/// One calibration's result.
#[derive(Debug, Clone)]
pub struct Calibration {
    /// The shape measured.
    pub shape: Shape,
    /// Each candidate and its best rate, nonces per CPU-second.
    pub rates: Vec<(Backend, f64)>,
    /// The fastest candidate.
    pub chosen: Backend,
}

/// Calibrations done so far in this process.
static CHOSEN: Mutex<Vec<Calibration>> = Mutex::new(Vec::new());

/// The backends worth measuring on this CPU: the SIMD ones, or `sha2` without any.
fn candidates() -> Vec<Backend> {
    let simd: Vec<Backend> = Backend::available()
        .into_iter()
        .filter(|b| !matches!(b, Backend::Sha2 | Backend::Scalar))
        .collect();
    if simd.is_empty() {
        vec![Backend::Sha2]
    } else {
        simd
    }
}

/// The calibration for `t`'s shape: measured now if this process has not yet.
pub fn calibration(t: &Template) -> Calibration {
    let shape = Shape::of(t);
    let mut done = CHOSEN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = done.iter().find(|c| c.shape == shape) {
        return c.clone();
    }
    let c = calibrate(t, shape);
    tracing::debug!(?shape, chosen = %c.chosen, rates = ?c.rates, "hash backend calibrated");
    done.push(c.clone());
    c
}

/// The fastest backend for `t`'s shape. Called for every chunk a search thread
/// scans, so a known shape costs one lock and a short look-up, no allocation.
pub fn choose(t: &Template) -> Backend {
    let shape = Shape::of(t);
    let known = CHOSEN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|c| c.shape == shape)
        .map(|c| c.chosen);
    known.unwrap_or_else(|| calibration(t).chosen)
}

/// [`ScanFn`](super::ScanFn) for `auto`: the chosen backend's.
pub fn scan(t: &Template, start: u64, count: u32) -> Option<u64> {
    (choose(t).scan_fn())(t, start, count)
}

fn calibrate(t: &Template, shape: Shape) -> Calibration {
    let candidates = candidates();
    if candidates.len() == 1 {
        return Calibration {
            shape,
            rates: Vec::new(),
            chosen: candidates[0],
        };
    }
    // Nothing is golden at D = 256: every candidate hashes every nonce.
    let mut probe = t.clone();
    probe.difficulty = 256;
    let span = (t.last - t.first).min(u64::from(SAMPLE - 1)) as u32 + 1;
    let mut best = vec![f64::INFINITY; candidates.len()];
    for _ in 0..ROUNDS {
        for (backend, best) in candidates.iter().zip(&mut best) {
            let scan = backend.scan_fn();
            let clock = Clock::start();
            let mut hashed = 0u32;
            while hashed < SAMPLE {
                std::hint::black_box(scan(&probe, probe.first, span));
                hashed += span;
            }
            *best = best.min(clock.seconds() / f64::from(hashed));
        }
    }
    let rates: Vec<(Backend, f64)> = candidates
        .iter()
        .zip(&best)
        .map(|(&b, &s)| (b, 1.0 / s))
        .collect();
    let chosen = rates
        .iter()
        .max_by(|x, y| x.1.total_cmp(&y.1))
        .map_or(candidates[0], |r| r.0);
    Calibration {
        shape,
        rates,
        chosen,
    }
}

/// This thread's CPU time, or wall time where the scheduler's figure is unavailable.
pub(crate) struct Clock {
    cpu: Option<u64>,
    wall: Instant,
}

impl Clock {
    pub(crate) fn start() -> Clock {
        Clock {
            cpu: thread_cpu_ns(),
            wall: Instant::now(),
        }
    }

    /// Seconds since [`start`](Self::start).
    pub(crate) fn seconds(&self) -> f64 {
        match (self.cpu, thread_cpu_ns()) {
            (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e9,
            _ => self.wall.elapsed().as_secs_f64(),
        }
    }
}

/// Nanoseconds this thread has run on a CPU (Linux: `/proc/thread-self/schedstat`,
/// the scheduler's own account, at nanosecond resolution).
pub fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}
