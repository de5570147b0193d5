//! Hash rate of every available backend on the benchmark shapes, 1 and 2 threads:
//! `cargo run --release -p cnd-benches --example rate -- [SECONDS] [BACKEND...]`;
//! `RATE_SHAPE=binary32` and `RATE_THREADS=1` restrict what runs; `shani2` to
//! `shani5` name the shani backend with that many interleaved streams, in the best
//! variant this CPU has; `shani2-sse` to `shani4-sse` the SSE-only variant (what
//! CPUs without AVX-512VL run).
//!
//! Each thread scans its own runs of 2^16 nonces through `Job::scan` at D = 256
//! (nothing is golden, so every nonce is hashed), as `search` does.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cnd_core::hazmat::{scan_fn as backend_scan_fn, Job, ScanFn};
use cnd_core::Backend;
use cnd_core::{NonceBits, NonceFormat, Puzzle, DEFAULT_BLOCK};

const RUN: u32 = 1 << 16;

fn shapes() -> Vec<(&'static str, Puzzle, u64)> {
    let p = |block: &[u8], bits, format| Puzzle::new(block, 256, bits, format).unwrap();
    let d = DEFAULT_BLOCK.as_bytes();
    vec![
        ("binary32", p(d, NonceBits::B32, NonceFormat::Binary), 0),
        // 10-digit nonces, as most of the 32-bit space has.
        (
            "decimal",
            p(d, NonceBits::B32, NonceFormat::Decimal),
            1_000_000_000,
        ),
        ("binary64", p(d, NonceBits::B64, NonceFormat::Binary), 0),
        (
            "block200",
            p(&[b'x'; 200], NonceBits::B32, NonceFormat::Binary),
            0,
        ),
    ]
}

/// CPU time this thread has run, from the scheduler (so a machine shared with other
/// work does not count against us; `openssl speed` also divides by CPU time).
fn thread_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(f64::NAN, |ns| ns as f64 / 1e9)
}

/// (wall-clock MH/s of all threads, sum over threads of each one's MH/s per CPU second).
fn rate(scan: ScanFn, job: &Job, first: u64, threads: u64, seconds: f64) -> (f64, f64) {
    let next = AtomicU64::new(0);
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let (done, cpu_rate) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let cpu = thread_cpu_seconds();
                    let mut hashed = 0u64;
                    while Instant::now() < deadline {
                        let run = next.fetch_add(1, Ordering::Relaxed);
                        let start = first + run * u64::from(RUN);
                        assert!(job.scan(scan, start, RUN).is_none());
                        hashed += u64::from(RUN);
                    }
                    (hashed, hashed as f64 / (thread_cpu_seconds() - cpu) / 1e6)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .fold((0, 0.0), |(n, r), (m, q)| (n + m, r + q))
    });
    (
        done as f64 / started.elapsed().as_secs_f64() / 1e6,
        cpu_rate,
    )
}

/// A backend by name, or `shaniN[-sse]`: the shani backend with N interleaved streams.
fn scan_fn(name: &str) -> ScanFn {
    #[cfg(target_arch = "x86_64")]
    {
        use cnd_core::hazmat::shani::{scan_sse, scan_streams};
        match name {
            "shani2" => return scan_streams::<2>,
            "shani3" => return scan_streams::<3>,
            "shani4" => return scan_streams::<4>,
            "shani5" => return scan_streams::<5>,
            "shani2-sse" => return scan_sse::<2>,
            "shani3-sse" => return scan_sse::<3>,
            "shani4-sse" => return scan_sse::<4>,
            _ => {}
        }
    }
    backend_scan_fn(Backend::from_name(name).expect("backend"))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: f64 = args.next().map_or(3.0, |s| s.parse().expect("seconds"));
    let names: Vec<String> = args.collect();
    println!("CPU: {}", cnd_core::cpu_model());
    let backends: Vec<(String, ScanFn)> = if names.is_empty() {
        Backend::available()
            .into_iter()
            .map(|b| (b.name().to_string(), backend_scan_fn(b)))
            .collect()
    } else {
        names.iter().map(|n| (n.clone(), scan_fn(n))).collect()
    };
    for (backend, scan) in backends {
        for (shape, puzzle, first) in shapes() {
            if std::env::var("RATE_SHAPE").is_ok_and(|s| s != shape) {
                continue;
            }
            let job = Job::new(&puzzle);
            for threads in [1, 2] {
                if std::env::var("RATE_THREADS").is_ok_and(|t| t != threads.to_string()) {
                    continue;
                }
                let (wall, cpu) = rate(scan, &job, first, threads, seconds);
                println!(
                    "{backend:7} {shape:9} threads={threads} {wall:8.2} MH/s wall {cpu:8.2} MH/s per CPU-second"
                );
            }
        }
    }
}
