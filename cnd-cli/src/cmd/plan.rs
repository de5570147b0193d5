//! `cnd-cli plan`: the statistics of a run before it starts.

pub mod fit;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use cnd_core::available_threads;
use cnd_core::stats::{self, PodPlan};
use cnd_core::{Backend, Puzzle};
use serde_json::json;

use crate::args::{
    parse_duration, parse_positive, parse_probability, range_for, OutputArgs, PuzzleArgs,
};
use crate::cmd::sweep::record;
use crate::exit::{usage, Exit};
use crate::human;
use fit::Fitted;

/// Expected work, the chance that the space holds a golden nonce at all, and
/// how many pods a deadline needs at a given confidence.
///
/// Each hash is golden with probability 2^-D, so the expected work is 2^D
/// hashes and k hashes succeed with probability 1 - (1 - 2^-D)^k.
///
/// With --from, the rate per pod and the start-up overhead of a run are fitted
/// from a sweep's results.jsonl (runs that found a nonce, one cluster):
/// time to result = pending + start-up + hashes / (pods × rate), by least
/// squares, runs more than 3 robust deviations off the line set aside. The
/// plan then leaves the overhead (median pending + start-up) out of the
/// deadline: pods are chosen to hash enough in --within minus the overhead.
/// The fit error is how far the model's time is from each run's measured one.
///
/// Examples:
///   cnd-cli plan -d 30 --within 2m --confidence 0.95 --rate 60
///   cnd-cli plan -d 26 --within 10s --from docs/sweep/all-cores/results.jsonl
#[derive(Debug, Args)]
#[command(
    verbatim_doc_comment,
    about = "Expected work, the chance that the space holds a golden nonce at all, and how many \
             pods a deadline needs at a given confidence"
)]
pub struct PlanArgs {
    #[command(flatten)]
    puzzle: PuzzleArgs,

    /// Search only START..END (half-open). [default: the whole space]
    #[arg(long, value_name = "START..END")]
    range: Option<String>,

    /// MH/s of one pod. [default: measured on this machine for half a second, all cores]
    #[arg(long, value_name = "MHS_PER_POD", value_parser = parse_positive, allow_negative_numbers = true)]
    rate: Option<f64>,

    /// Fit the rate per pod and each run's start-up overhead from sweep results
    /// (a results.jsonl that `cnd-cli sweep` wrote, or its directory), then
    /// plan with the overhead included. Repeat it or list files with commas to
    /// pool several sweeps of one cluster. Not with --rate: the rate is what it fits.
    #[arg(
        long,
        value_name = "FILE",
        value_delimiter = ',',
        conflicts_with = "rate"
    )]
    from: Vec<PathBuf>,

    /// The deadline to plan for, e.g. 30s, 10m, 2h (with --from, each run's fitted
    /// overhead comes out of it first).
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    within: Option<Duration>,

    /// The wanted chance of finding a golden nonce by the deadline, e.g. 0.95 or 95%.
    #[arg(long, value_name = "P", default_value = "0.95", value_parser = parse_probability)]
    confidence: f64,

    /// Plan for this many pods instead of computing how many are needed.
    #[arg(long, value_name = "N", value_parser = crate::args::parse_count)]
    pods: Option<u64>,

    #[command(flatten)]
    output: OutputArgs,
}

/// Runs `cnd-cli plan`.
pub fn run(args: PlanArgs) -> anyhow::Result<Exit> {
    let puzzle = args.puzzle.puzzle()?;
    let d = puzzle.difficulty();
    let range = range_for(&puzzle, args.range.as_deref())?;
    let space = range.len();
    let fitted = match args.from.as_slice() {
        [] => None,
        files => Some(fit_files(files)?),
    };
    let (rate, rate_source) = match (&fitted, args.rate) {
        (Some(f), _) => (f.fit.rate, format!("fitted from {} runs", f.runs)),
        (None, Some(mhs)) => (mhs * 1e6, "given".to_string()),
        (None, None) => (
            measured_rate(&puzzle)?,
            format!("measured here, {} threads", available_threads()),
        ),
    };
    // What every run spends before and besides hashing: zero unless fitted.
    let overhead = Duration::from_secs_f64(fitted.as_ref().map_or(0.0, Fitted::overhead_secs));
    let empty = stats::empty_space_probability(d, space);
    let within = args.within.unwrap_or(Duration::from_secs(60));
    let search = within.saturating_sub(overhead);
    let plan = match args.pods {
        Some(pods) => Ok(stats::plan_for_pods(d, rate, search, pods, space)),
        None if search.is_zero() && !overhead.is_zero() => Err(usage(format!(
            "the deadline {} is no longer than the fitted overhead of a run, {}: \
             no number of pods finds a nonce in time",
            human::duration(within),
            human::duration(overhead)
        ))),
        None => stats::pods_for_deadline(d, rate, search, args.confidence, space)
            .map_err(anyhow::Error::from),
    };
    let quantiles: Vec<(f64, Option<Duration>)> = [0.5, 0.9, 0.99]
        .iter()
        .map(|&p| {
            let hashes = stats::hashes_for_confidence(d, p).expect("valid p");
            let time = (hashes <= space as f64)
                .then(|| overhead + Duration::from_secs_f64((hashes / rate).min(1e15)));
            (p, time)
        })
        .collect();
    if args.output.json {
        let mut value = json!({
            "difficulty": d,
            "space": space.to_string(),
            "expected_hashes": stats::expected_hashes(d),
            "probability_space_empty": empty,
            "rate_mhs_per_pod": rate / 1e6,
            "one_pod_seconds_for": quantiles.iter().map(|(p, t)| json!({"confidence": p, "seconds": t.map(|t| t.as_secs_f64())})).collect::<Vec<_>>(),
        });
        match &plan {
            Ok(plan) => value["plan"] = plan_json(plan, within, overhead),
            Err(e) => value["plan_error"] = json!(e.to_string()),
        }
        if let Some(f) = &fitted {
            value["startup_overhead_ms"] = json!(f.overhead_secs() * 1e3);
            value["fit_error"] = json!(f.fit.median_relative_error);
            value["pods"] = json!(plan.as_ref().ok().map(|p| p.pods));
            value["fit"] = fit_json(f, &args.from);
        }
        println!("{value}");
    } else {
        println!(
            "Puzzle         D = {d}, {}-bit {} nonces, {} nonces searched",
            puzzle.nonce_bits(),
            puzzle.nonce_format(),
            human::count(space)
        );
        println!(
            "Expected work  2^{d} = {:.4e} hashes",
            stats::expected_hashes(d)
        );
        println!(
            "Space empty    {} chance that no nonce searched is golden",
            human::percent(empty)
        );
        if let Some(f) = &fitted {
            print_fit(f, &args.from);
        }
        println!("Rate per pod   {} ({rate_source})", human::rate(rate));
        if let Some(f) = &fitted {
            print_fit_error(f);
        }
        let with_overhead = if overhead.is_zero() {
            ""
        } else {
            ", overhead included"
        };
        for (p, t) in &quantiles {
            match t {
                Some(t) => println!(
                    "One pod        {} chance within {}{with_overhead}",
                    human::percent(*p),
                    human::duration(*t)
                ),
                None => println!(
                    "One pod        {} chance: unreachable in this space",
                    human::percent(*p)
                ),
            }
        }
        match &plan {
            Ok(plan) => print_plan(plan, within, overhead, args.pods.is_some(), args.confidence),
            // With --within the error is the answer and is reported once, on stderr.
            Err(e) if args.within.is_none() => println!("Pods           {e}"),
            Err(_) => {}
        }
    }
    if empty >= 0.05 {
        eprintln!(
            "cnd-cli: warning: the space is likely enough to hold no golden nonce ({}); consider --nonce-bits 64",
            human::percent(empty)
        );
    }
    if let Some((low, high)) = fitted.as_ref().and_then(Fitted::scaling) {
        let (lo, hi) = (low.rate.unwrap_or(0.0), high.rate.unwrap_or(0.0));
        if hi < SCALING_WARNING * lo {
            eprintln!(
                "cnd-cli: warning: each pod hashed {} at {} but {} at {} (median of the finders' own rates): \
                 these pods share their CPUs, so more of them do not search faster, and the pods planned \
                 assume they do",
                human::rate(hi),
                human::plural(high.pods, "pod"),
                human::rate(lo),
                human::plural(low.pods, "pod"),
            );
        }
    }
    match plan {
        Ok(_) => Ok(Exit::Success),
        // A StatsError is bad input (exit 2) as the overhead's error is.
        Err(e) if args.within.is_some() => Err(e),
        Err(_) => Ok(Exit::Success),
    }
}

/// Below this share of the fewest pods' rate per pod at the most pods, the
/// pods are said not to add their rate.
const SCALING_WARNING: f64 = 0.7;

/// Reads the results files (a directory means its results.jsonl) and fits them.
fn fit_files(files: &[PathBuf]) -> anyhow::Result<Fitted> {
    let mut records = Vec::new();
    for file in files {
        let path = results_path(file);
        let rows = record::read_results_file(&path).map_err(|e| match e {
            record::RecordError::Io { path, source } => {
                usage(format!("--from {}: {}", path.display(), source))
            }
            other => usage(other.to_string()),
        })?;
        records.extend(rows);
    }
    fit::from_records(&records).map_err(|e| usage(format!("--from: {e}")))
}

/// `FILE`, or `FILE/results.jsonl` when it is a sweep's directory.
fn results_path(file: &Path) -> PathBuf {
    if file.is_dir() {
        file.join(record::JSONL)
    } else {
        file.to_path_buf()
    }
}

fn fit_json(f: &Fitted, files: &[PathBuf]) -> serde_json::Value {
    json!({
        "model": "time_to_result = pending + startup + hashes / (pods * rate)",
        "files": files.iter().map(|f| results_path(f).display().to_string()).collect::<Vec<_>>(),
        "rows": f.rows,
        "runs_used": f.runs,
        "runs_set_aside": f.fit.set_aside,
        "launcher": f.launcher,
        "cluster": f.cluster,
        "pods_seen": f.pods(),
        "pending_ms": f.pending_secs.map(|s| s * 1e3),
        "startup_ms": f.fit.startup_secs * 1e3,
        "first_running_ms": f.first_running_secs.map(|s| s * 1e3),
        "median_relative_error": f.fit.median_relative_error,
        "rms_error_ms": f.fit.rms_secs * 1e3,
        "rate_by_pods": f.by_pods.iter().map(|p| json!({
            "pods": p.pods,
            "runs": p.runs,
            "finder_mhs_per_pod": p.rate.map(|r| r / 1e6),
        })).collect::<Vec<_>>(),
    })
}

fn secs(s: f64) -> String {
    human::duration(Duration::from_secs_f64(s.max(0.0)))
}

fn print_fit(f: &Fitted, files: &[PathBuf]) {
    let names: Vec<String> = files
        .iter()
        .map(|f| results_path(f).display().to_string())
        .collect();
    let pods: Vec<String> = f.pods().iter().map(u64::to_string).collect();
    println!(
        "Fitted from    {} found runs of {} in {} ({}), at {} pods",
        human::count(f.runs as u64),
        human::count(f.rows as u64),
        names.join(", "),
        f.cluster,
        pods.join(", ")
    );
    println!(
        "Model          time to result = pending + start-up + hashes / (pods × rate), least squares{}",
        match f.fit.set_aside {
            0 => String::new(),
            n => format!("; {} off the line set aside", human::plural(n as u64, "run")),
        }
    );
    let pending = f
        .pending_secs
        .map_or("pending not recorded".to_string(), |p| {
            format!("{} pending", secs(p))
        });
    println!(
        "Overhead       {} per run: {pending} + {} start-up{}",
        secs(f.overhead_secs()),
        secs(f.fit.startup_secs),
        f.first_running_secs.map_or(String::new(), |s| format!(
            " (a worker first seen running after {}, median)",
            secs(s)
        ))
    );
}

fn print_fit_error(f: &Fitted) {
    let rates: Vec<String> = f
        .by_pods
        .iter()
        .filter_map(|p| p.rate.map(|r| format!("{} at {}", human::rate(r), p.pods)))
        .collect();
    if !rates.is_empty() {
        println!(
            "Rate by pods   {} pods (each finder's own rate, median)",
            rates.join(", ")
        );
    }
    println!(
        "Fit error      {} median, RMS {}, model against measured time over all {}",
        human::percent(f.fit.median_relative_error),
        secs(f.fit.rms_secs),
        human::plural(f.runs as u64, "run")
    );
}

fn plan_json(plan: &PodPlan, within: Duration, overhead: Duration) -> serde_json::Value {
    json!({
        "pods": plan.pods,
        "within_seconds": within.as_secs_f64(),
        "overhead_seconds": overhead.as_secs_f64(),
        "confidence": plan.confidence,
        "hashes": plan.hashes,
        "expected_seconds": (overhead + plan.expected).as_secs_f64(),
    })
}

fn print_plan(
    plan: &PodPlan,
    within: Duration,
    overhead: Duration,
    pods_given: bool,
    confidence: f64,
) {
    let after = if overhead.is_zero() {
        String::new()
    } else {
        format!(
            ", {} of it hashing after the overhead",
            human::duration(within.saturating_sub(overhead))
        )
    };
    if pods_given {
        println!(
            "Pods           {}: {} chance within {}{after}",
            human::plural(plan.pods, "pod"),
            human::percent(plan.confidence),
            human::duration(within)
        );
    } else {
        println!(
            "Pods           {} for {} confidence within {} (reaching {}){after}",
            human::plural(plan.pods, "pod"),
            human::percent(confidence),
            human::duration(within),
            human::percent(plan.confidence)
        );
    }
    println!(
        "Expected time  {} with {}{}",
        human::duration(overhead + plan.expected),
        human::plural(plan.pods, "pod"),
        if overhead.is_zero() {
            ""
        } else {
            ", overhead included"
        }
    );
}

/// This machine's rate on all cores with the best backend, measured briefly.
fn measured_rate(puzzle: &Puzzle) -> anyhow::Result<f64> {
    let probe = Puzzle::new(
        puzzle.block(),
        cnd_core::puzzle::MAX_DIFFICULTY,
        puzzle.nonce_bits(),
        puzzle.nonce_format(),
    )?;
    crate::machine::measure(
        &probe,
        Backend::from_env()?,
        available_threads(),
        Duration::from_millis(500),
    )
}
