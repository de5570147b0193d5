//! `cnd-cli plan`: the statistics of a run before it starts.

use std::time::Duration;

use clap::Args;
use cnd_core::available_threads;
use cnd_core::stats::{self, PodPlan};
use cnd_core::{Backend, Puzzle};
use serde_json::json;

use crate::args::{
    parse_duration, parse_positive, parse_probability, range_for, OutputArgs, PuzzleArgs,
};
use crate::exit::{usage, Exit};
use crate::human;

/// Expected work, the chance that the space holds a golden nonce at all, and
/// how many pods a deadline needs at a given confidence.
///
/// Each hash is golden with probability 2^-D, so the expected work is 2^D
/// hashes and k hashes succeed with probability 1 - (1 - 2^-D)^k.
#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    puzzle: PuzzleArgs,

    /// Search only START..END (half-open). [default: the whole space]
    #[arg(long, value_name = "START..END")]
    range: Option<String>,

    /// MH/s of one pod. [default: measured on this machine for half a second, all cores]
    #[arg(long, value_name = "MHS_PER_POD", value_parser = parse_positive, allow_negative_numbers = true)]
    rate: Option<f64>,

    /// The deadline to plan for, e.g. 30s, 10m, 2h.
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
    let (rate, rate_source) = match args.rate {
        Some(mhs) => (mhs * 1e6, "given".to_string()),
        None => (
            measured_rate(&puzzle)?,
            format!("measured here, {} threads", available_threads()),
        ),
    };
    let empty = stats::empty_space_probability(d, space);
    let within = args.within.unwrap_or(Duration::from_secs(60));
    let plan = match args.pods {
        Some(pods) => Ok(stats::plan_for_pods(d, rate, within, pods, space)),
        None => stats::pods_for_deadline(d, rate, within, args.confidence, space),
    };
    let quantiles: Vec<(f64, Option<Duration>)> = [0.5, 0.9, 0.99]
        .iter()
        .map(|&p| {
            let hashes = stats::hashes_for_confidence(d, p).expect("valid p");
            let time = (hashes <= space as f64)
                .then(|| Duration::from_secs_f64((hashes / rate).min(1e15)));
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
            Ok(plan) => value["plan"] = plan_json(plan, within),
            Err(e) => value["plan_error"] = json!(e.to_string()),
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
        println!("Rate per pod   {} ({rate_source})", human::rate(rate));
        for (p, t) in &quantiles {
            match t {
                Some(t) => println!(
                    "One pod        {} chance within {}",
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
            Ok(plan) => print_plan(plan, within, args.pods.is_some(), args.confidence),
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
    match plan {
        Ok(_) => Ok(Exit::Success),
        Err(e) if args.within.is_some() => Err(usage(e.to_string())),
        Err(_) => Ok(Exit::Success),
    }
}

fn plan_json(plan: &PodPlan, within: Duration) -> serde_json::Value {
    json!({
        "pods": plan.pods,
        "within_seconds": within.as_secs_f64(),
        "confidence": plan.confidence,
        "hashes": plan.hashes,
        "expected_seconds": plan.expected.as_secs_f64(),
    })
}

fn print_plan(plan: &PodPlan, within: Duration, pods_given: bool, confidence: f64) {
    if pods_given {
        println!(
            "Pods           {}: {} chance within {}",
            human::plural(plan.pods, "pod"),
            human::percent(plan.confidence),
            human::duration(within)
        );
    } else {
        println!(
            "Pods           {} for {} confidence within {} (reaching {})",
            human::plural(plan.pods, "pod"),
            human::percent(confidence),
            human::duration(within),
            human::percent(plan.confidence)
        );
    }
    println!(
        "Expected time  {} with {}",
        human::duration(plan.expected),
        human::plural(plan.pods, "pod")
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
