//! This machine: its CPU model and host name, the CPU time this process used,
//! and its hash rate, measured (for `bench`, `plan` and `submit --within`).

use std::time::{Duration, Instant};

use cnd_core::{Backend, Puzzle, SearchControl, SearchOptions, SearchOutcome};

use crate::exit::usage;
use crate::human;

/// Hash rate of one CPU core of a pod, in MH/s, when `--rate` is not given and
/// this machine cannot be measured: a conservative figure for one modern x86 core.
pub const FALLBACK_MHS_PER_CORE: f64 = 10.0;

pub use cnd_core::cpu_model;

/// The host name, or "this machine".
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "this machine".to_string())
}

/// CPU time of this process so far, all its threads (live and ended), in seconds:
/// `utime + stime` from `/proc/self/stat`, in clock ticks of 1/100 s.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; fields after its `)` are fixed.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// Nonces per second of `backend` on `threads` threads, hashing for `seconds`.
pub fn measure(
    puzzle: &Puzzle,
    backend: Backend,
    threads: usize,
    seconds: Duration,
) -> anyhow::Result<f64> {
    Ok(measure_both(puzzle, backend, threads, seconds)?.0)
}

/// Nonces per wall-clock second and per CPU-second of `backend` on `threads`
/// threads, hashing for `seconds`.
pub fn measure_both(
    puzzle: &Puzzle,
    backend: Backend,
    threads: usize,
    seconds: Duration,
) -> anyhow::Result<(f64, Option<f64>)> {
    let options = SearchOptions::all_cores()
        .with_threads(threads)
        .with_backend(backend)
        .with_deadline(Some(Instant::now() + seconds));
    let control = SearchControl::new();
    let cpu_before = process_cpu_seconds();
    let outcome = cnd_core::search(puzzle, puzzle.space(), &options, &control)?;
    let cpu = match (cpu_before, process_cpu_seconds()) {
        (Some(a), Some(b)) if b > a => Some(b - a),
        _ => None,
    };
    let (hashes, elapsed) = match outcome {
        SearchOutcome::TimedOut { hashes, elapsed }
        | SearchOutcome::Exhausted { hashes, elapsed } => (hashes, elapsed),
        SearchOutcome::Found(f) => (f.hashes, f.elapsed),
        SearchOutcome::Cancelled { .. } => return Err(usage("the benchmark was interrupted")),
        other => anyhow::bail!("the benchmark ended unexpectedly: {other:?}"),
    };
    Ok((
        human::per_sec(hashes, elapsed),
        cpu.map(|c| hashes as f64 / c),
    ))
}

/// MH/s of one core here with the backend `CND_BACKEND` names (else the best),
/// on the default block: a quarter-second sample, or `FALLBACK_MHS_PER_CORE`.
pub fn core_mhs() -> f64 {
    let sample = || -> anyhow::Result<f64> {
        let puzzle = Puzzle::with_default_block(cnd_core::puzzle::MAX_DIFFICULTY)?;
        measure(&puzzle, Backend::from_env()?, 1, Duration::from_millis(250))
    };
    sample()
        .ok()
        .map(|rate| rate / 1e6)
        .filter(|mhs| *mhs > 0.0)
        .unwrap_or(FALLBACK_MHS_PER_CORE)
}
