//! The result of a run: a summary a person reads at a glance, or one JSON object.

use std::time::Duration;

use cnd_core::puzzle::to_hex;
use cnd_core::{MasterOutcome, RunSpec, Totals};
use serde_json::json;

use crate::human;
use crate::startup::StartupTimes;

/// Prints how the run ended on stdout.
pub fn print_outcome(outcome: &MasterOutcome, spec: &RunSpec, startup: &StartupTimes, json: bool) {
    let difficulty = spec.puzzle.difficulty();
    if json {
        let totals = outcome.totals();
        let mut value = json!({
            "outcome": match outcome {
                MasterOutcome::Found(_) => "found",
                MasterOutcome::Exhausted(_) => "exhausted",
                MasterOutcome::TimedOut(_) => "timed_out",
                MasterOutcome::Interrupted(_) => "interrupted",
                _ => "unknown",
            },
            "run_id": spec.run_id.to_string(),
            "difficulty": difficulty,
            "hashes": totals.hashes,
            "elapsed_ms": totals.elapsed.as_millis() as u64,
            "mhs": human::per_sec(totals.hashes, totals.elapsed) / 1e6,
            "pods": spec.parallelism,
            "shards": spec.shards,
            "ignored_messages": totals.ignored,
            "failed_reports": totals.failed_reports,
            // Since the master started, as seen at its status polls; null: none ran.
            "first_running_ms": startup.first_running().map(|d| d.as_millis() as u64),
            "pending_ms": startup.pending().as_millis() as u64,
        });
        if let MasterOutcome::Found(g) = outcome {
            let object = value.as_object_mut().expect("an object");
            object.insert("nonce".into(), json!(g.nonce.to_string()));
            object.insert("hash".into(), json!(to_hex(&g.hash)));
            object.insert("leading_zeros".into(), json!(g.leading_zeros));
            object.insert("shard".into(), json!(g.shard));
            object.insert("worker".into(), json!(g.worker));
            object.insert(
                "worker_elapsed_ms".into(),
                json!(g.worker_elapsed.as_millis() as u64),
            );
            object.insert("worker_hashes".into(), json!(g.worker_hashes));
            object.insert(
                "received_after_ms".into(),
                json!(g.received_after.as_millis() as u64),
            );
        }
        println!("{value}");
        return;
    }
    match outcome {
        MasterOutcome::Found(g) => {
            human::print_golden(g.nonce, &g.hash, g.leading_zeros, difficulty);
            println!(
                "Found by       {} (shard {} of {})",
                g.worker, g.shard, spec.shards
            );
            println!("Time in pod    {}", human::duration(g.worker_elapsed));
            println!(
                "Received after {} (since submit)",
                human::duration(g.received_after)
            );
            print_work(
                &g.totals,
                spec,
                Counted::Finder {
                    hashes: g.worker_hashes,
                    elapsed: g.worker_elapsed,
                },
            );
        }
        MasterOutcome::Exhausted(t) => {
            println!("No golden nonce: every shard of the range was searched.");
            print_work(t, spec, Counted::Everything);
        }
        MasterOutcome::TimedOut(t) => {
            println!("Timed out before a golden nonce was found.");
            print_work(t, spec, Counted::Reported);
        }
        MasterOutcome::Interrupted(t) => {
            println!(
                "Interrupted before a golden nonce was found; what the run created was removed."
            );
            print_work(t, spec, Counted::Reported);
        }
        other => {
            println!("The run ended in a way this cnd-cli does not know.");
            print_work(other.totals(), spec, Counted::Reported);
        }
    }
}

/// How much of the workers' hashing the master's totals hold.
#[derive(Debug, Clone, Copy)]
enum Counted {
    /// Every worker's final report arrived: the totals are exact.
    Everything,
    /// Only the reports received so far: the workers did at least this much.
    Reported,
    /// A worker found the nonce: the others' last reports may be old, but the
    /// finder's own count and time give the rate of one worker.
    Finder { hashes: u64, elapsed: Duration },
}

fn print_work(totals: &Totals, spec: &RunSpec, counted: Counted) {
    let workers = spec.parallelism;
    let at_least = match counted {
        Counted::Everything => "",
        _ => "at least ",
    };
    println!(
        "Hashes         {at_least}{} in {} ({} of the range)",
        human::count(totals.hashes),
        human::duration(totals.elapsed),
        human::percent(totals.hashes as f64 / spec.range.len() as f64)
    );
    let rate = human::per_sec(totals.hashes, totals.elapsed);
    match counted {
        Counted::Finder { hashes, elapsed } if hashes > 0 && !elapsed.is_zero() => {
            let one = human::per_sec(hashes, elapsed);
            println!(
                "Rate           {} per worker (the finder's own count); ≈{} across {}",
                human::rate(one),
                human::rate(one * workers as f64),
                human::plural(workers, "worker")
            );
        }
        Counted::Everything => println!(
            "Rate           {} across {} ({} each)",
            human::rate(rate),
            human::plural(workers, "worker"),
            human::rate(rate / workers as f64)
        ),
        _ => println!(
            "Rate           at least {} across {} (from the reports received)",
            human::rate(rate),
            human::plural(workers, "worker")
        ),
    }
    println!("Run            {}", spec.run_id);
    if totals.ignored > 0 || totals.failed_reports > 0 {
        println!(
            "Messages       {} ignored (not this run's, malformed or not golden) · {} worker failures reported",
            totals.ignored, totals.failed_reports
        );
    }
}
