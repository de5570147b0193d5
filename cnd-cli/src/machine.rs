//! This machine: its CPU model and host name, the CPU time this process used,
//! and its hash rate, measured (for `bench`, `plan` and `submit --within`).

use std::time::{Duration, Instant};

use cnd_core::{Backend, Puzzle, SearchControl, SearchOptions, SearchOutcome};

use crate::exit::usage;
use crate::human;

/// Hash rate of one CPU core of a pod, in MH/s, when `--rate` is not given and
/// this machine cannot be measured: a conservative figure for one modern x86 core.
pub const FALLBACK_MHS_PER_CORE: f64 = 10.0;

/// The CPU's model name, from `/proc/cpuinfo` (the first `model name`), with its
/// family and model numbers where given: a VM may name only the brand ("AMD EPYC"),
/// and the numbers tell the generations apart (family 25: model 1 is Zen 3, model 17
/// Zen 4), which decide which hash loop is fastest.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|text| cpu_model_in(&text))
        .unwrap_or_else(|_| "unknown CPU".to_string())
}

/// [`cpu_model`] of a `/proc/cpuinfo` text.
fn cpu_model_in(cpuinfo: &str) -> String {
    let field = |name: &str| {
        cpuinfo.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim().to_string())
        })
    };
    let name = field("model name")
        .filter(|model| !model.is_empty())
        .unwrap_or_else(|| "unknown CPU".to_string());
    match (field("cpu family"), field("model")) {
        (Some(family), Some(model)) if !family.is_empty() && !model.is_empty() => {
            format!("{name} (family {family}, model {model})")
        }
        _ => name,
    }
}

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

#[cfg(test)]
mod tests {
    use super::cpu_model_in;

    #[test]
    fn cpu_model_names_the_brand_and_the_generation() {
        let zen4 = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\nstepping\t: 1\n";
        assert_eq!(cpu_model_in(zen4), "AMD EPYC (family 25, model 17)");
        // Without the numbers (not x86), the name alone; without a name, a placeholder.
        assert_eq!(cpu_model_in("model name\t: Some CPU\n"), "Some CPU");
        assert_eq!(cpu_model_in(""), "unknown CPU");
    }
}
