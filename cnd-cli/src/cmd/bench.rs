//! `cnd-cli bench`: each hash backend's MH/s on this CPU, optionally beside OpenSSL.
//!
//! Two rates per measurement: `mhs`, nonces per wall-clock second, and `mhs_cpu`,
//! nonces per CPU-second of the process's threads (`utime + stime` of
//! `/proc/self/stat`, dead threads included). On a machine shared with other work the
//! wall figure swings with the load; the CPU figure does not, and it is what `openssl
//! speed` reports too (it divides by user CPU time unless told `-elapsed`).

use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use cnd_core::available_threads;
use cnd_core::hazmat::{auto, Job};
use cnd_core::Backend;
use serde_json::json;

use crate::args::{parse_duration, parse_threads, OutputArgs, PuzzleShape};
use crate::exit::Exit;
use crate::human;
use crate::machine::{cpu_model, measure_both};

/// Measure how many nonces per second each backend hashes on this CPU.
///
/// Every nonce is hashed in full (D = 256, so none is golden). Without
/// --threads, each backend is measured on 1 thread and on all of them.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    shape: PuzzleShape,

    /// Seconds to measure each backend and thread count.
    #[arg(long, value_name = "S", default_value = "2", value_parser = parse_duration)]
    seconds: Duration,

    /// Threads to measure with. [default: 1, then every CPU this process may use]
    #[arg(long, value_name = "N", value_parser = parse_threads)]
    threads: Option<usize>,

    /// Measure only this backend. [default: every backend this CPU supports]
    #[arg(long, value_name = "NAME")]
    backend: Option<String>,

    /// Also run `openssl speed -evp sha256 -bytes 8192` for as long and print the
    /// ratio R = nonces per CPU-second ÷ (OpenSSL bytes per CPU-second ÷ 128).
    #[arg(long)]
    openssl: bool,

    #[command(flatten)]
    output: OutputArgs,
}

/// One measurement.
#[derive(Debug, Clone, Copy)]
pub struct Measurement {
    /// The backend measured.
    pub backend: Backend,
    /// Threads used.
    pub threads: usize,
    /// Nonces hashed per wall-clock second, all threads together.
    pub rate: f64,
    /// Nonces hashed per CPU-second of the process's threads (None where the CPU
    /// time cannot be read).
    pub cpu_rate: Option<f64>,
}

/// Runs `cnd-cli bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<Exit> {
    let puzzle = args.shape.puzzle(cnd_core::puzzle::MAX_DIFFICULTY)?;
    let backends = match &args.backend {
        Some(name) => vec![Backend::from_name(name)?],
        None => Backend::available(),
    };
    let all = available_threads();
    let thread_counts = match args.threads {
        Some(n) => vec![n],
        None if all > 1 => vec![1, all],
        None => vec![1],
    };
    let cpu = cpu_model();
    // What `auto` picks for this shape, and the rates it picked by.
    let job = Job::new(&puzzle);
    let calibration = auto::calibration(job.templates().last().expect("a template"));
    if !args.output.json {
        println!("CPU: {cpu}");
        let why: Vec<String> = calibration
            .rates
            .iter()
            .map(|(b, r)| format!("{b} {:.2}", r / 1e6))
            .collect();
        if why.is_empty() {
            println!("auto: {} (the only candidate)", calibration.chosen);
        } else {
            println!(
                "auto: {} (calibration, MH/s per CPU-second: {})",
                calibration.chosen,
                why.join(", ")
            );
        }
        println!();
    }
    let mut results = Vec::new();
    for &backend in &backends {
        for &threads in &thread_counts {
            let (rate, cpu_rate) = measure_both(&puzzle, backend, threads, args.seconds)?;
            let m = Measurement {
                backend,
                threads,
                rate,
                cpu_rate,
            };
            if !args.output.json {
                print_row(&m, results.is_empty());
            }
            results.push(m);
        }
    }
    let openssl = if args.openssl {
        Some(openssl_bytes_per_sec(args.seconds)?)
    } else {
        None
    };
    if args.output.json {
        let backends: Vec<_> = results
            .iter()
            .map(|m| {
                let mut row = json!({
                    "name": m.backend.name(),
                    "threads": m.threads,
                    "mhs": round2(m.rate / 1e6),
                    "mhs_cpu": m.cpu_rate.map(|r| round2(r / 1e6)),
                });
                if let Some(bytes) = openssl {
                    row["ratio_vs_openssl"] = json!(ratio(m, bytes).map(round2));
                }
                row
            })
            .collect();
        let calibrated: serde_json::Map<String, serde_json::Value> = calibration
            .rates
            .iter()
            .map(|(b, r)| (b.name().to_string(), json!(round2(r / 1e6))))
            .collect();
        let mut value = json!({
            "cpu": cpu,
            "auto": calibration.chosen.name(),
            "auto_calibration_mhs_cpu": calibrated,
            "backends": backends,
        });
        if let Some(bytes) = openssl {
            value["openssl_sha256_8192_bytes_per_cpu_sec"] = json!(bytes.round());
            value["openssl_nonces_per_cpu_sec_equiv"] = json!((bytes / 128.0).round());
        }
        println!("{value}");
    } else if let Some(bytes) = openssl {
        println!();
        println!(
            "OpenSSL sha256, 8192-byte blocks: {:.1} MB per CPU-second = {} of nonces (÷ 128 bytes each)",
            bytes / 1e6,
            human::rate(bytes / 128.0)
        );
        for m in &results {
            match ratio(m, bytes) {
                Some(r) => println!(
                    "R({}, {} thread{}) = {r:.2} (per CPU-second, both sides)",
                    m.backend,
                    m.threads,
                    if m.threads == 1 { "" } else { "s" },
                ),
                None => println!("R({}): no CPU time on this system", m.backend),
            }
        }
    }
    Ok(Exit::Success)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Nonces per CPU-second ÷ OpenSSL's single-stream nonce-equivalents per CPU-second.
fn ratio(m: &Measurement, openssl_bytes_per_cpu_sec: f64) -> Option<f64> {
    Some(m.cpu_rate? / (openssl_bytes_per_cpu_sec / 128.0))
}

fn print_row(m: &Measurement, first: bool) {
    if first {
        println!(
            "{:<8} {:>7} {:>12} {:>16} {:>18}",
            "backend", "threads", "MH/s", "MH/s per thread", "MH/s per CPU-s"
        );
    }
    println!(
        "{:<8} {:>7} {:>12.2} {:>16.2} {:>18}",
        m.backend.name(),
        m.threads,
        m.rate / 1e6,
        m.rate / 1e6 / m.threads as f64,
        m.cpu_rate
            .map_or_else(|| "-".to_string(), |r| format!("{:.2}", r / 1e6))
    );
}

/// OpenSSL's single-thread SHA-256 throughput on 8192-byte blocks, bytes per second.
fn openssl_bytes_per_sec(seconds: Duration) -> anyhow::Result<f64> {
    let secs = seconds.as_secs().max(1).to_string();
    let output = Command::new("openssl")
        .args([
            "speed", "-evp", "sha256", "-bytes", "8192", "-seconds", &secs,
        ])
        .output()
        .context("running `openssl speed` (is openssl installed?)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    // The last line reads `sha256   1376484.61k`: thousands of bytes per second.
    stdout
        .lines()
        .rev()
        .find_map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next()?;
            let value = words.last()?.strip_suffix('k')?;
            (name.eq_ignore_ascii_case("sha256")).then(|| value.parse::<f64>().ok())?
        })
        .map(|k| k * 1000.0)
        .with_context(|| format!("could not read the sha256 figure from `openssl speed`: {stdout}"))
}
