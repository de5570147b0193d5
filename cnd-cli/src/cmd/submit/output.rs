//! The result of a run: a summary a person reads at a glance, or one JSON object.

use std::time::Duration;

use cnd_core::puzzle::to_hex;
use cnd_core::{Answer, MasterOutcome, RunSpec, Totals};
use serde::{Deserialize, Serialize};

use crate::human;
use crate::startup::StartupTimes;

/// What `submit --json` prints: one object, written by `submit` and read back
/// by `sweep` from its `submit` children.
///
/// The fields are in the order the keys are printed (alphabetical). Every
/// field is an `Option` so that `sweep` reads an object that lacks some of
/// them, as it always did; `submit` fills all but those of a found nonce,
/// which it leaves out of the object unless the outcome is `found`.
/// `first_running_ms` is printed as null when no worker was seen running.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct SubmitJson {
    /// Which answer the run was for: `first` or `smallest` (`--smallest`).
    pub answer: Option<String>,
    pub difficulty: Option<u32>,
    pub elapsed_ms: Option<u64>,
    pub failed_reports: Option<u64>,
    /// Since the master started, as seen at its status polls; null: none ran.
    pub first_running_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    pub hashes: Option<u64>,
    pub ignored_messages: Option<u64>,
    /// The run's journal file (for `--resume`); null when none is kept.
    pub journal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leading_zeros: Option<u32>,
    pub mhs: Option<f64>,
    /// The golden nonce, in decimal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// `found`, `exhausted`, `timed_out`, `interrupted` (or `unknown`).
    pub outcome: Option<String>,
    pub pending_ms: Option<u64>,
    pub pods: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received_after_ms: Option<u64>,
    /// Of `hashes`, those earlier attempts searched: 0 unless `--resume`.
    pub resumed_hashes: Option<u64>,
    /// Shards whose work earlier attempts did: 0 unless `--resume`.
    pub resumed_shards: Option<u64>,
    pub run_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<u64>,
    pub shards: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_elapsed_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_hashes: Option<u64>,
}

impl SubmitJson {
    /// The object for a run that ended in `outcome`.
    pub(crate) fn new(
        outcome: &MasterOutcome,
        spec: &RunSpec,
        answer: Answer,
        startup: &StartupTimes,
    ) -> Self {
        let totals = outcome.totals();
        let golden = match outcome {
            MasterOutcome::Found(g) => Some(g),
            _ => None,
        };
        let ms = |d: Duration| d.as_millis() as u64;
        SubmitJson {
            answer: Some(answer.name().to_string()),
            difficulty: Some(spec.puzzle.difficulty()),
            elapsed_ms: Some(ms(totals.elapsed)),
            failed_reports: Some(totals.failed_reports),
            first_running_ms: startup.first_running().map(ms),
            hash: golden.map(|g| to_hex(&g.hash)),
            journal: None,
            hashes: Some(totals.hashes),
            ignored_messages: Some(totals.ignored),
            leading_zeros: golden.map(|g| g.leading_zeros),
            // This attempt's own rate: earlier attempts' hashes took other time.
            mhs: Some(human::per_sec(totals.hashes - totals.earlier_hashes, totals.elapsed) / 1e6),
            nonce: golden.map(|g| g.nonce.to_string()),
            outcome: Some(
                match outcome {
                    MasterOutcome::Found(_) => "found",
                    MasterOutcome::Exhausted(_) => "exhausted",
                    MasterOutcome::TimedOut(_) => "timed_out",
                    MasterOutcome::Interrupted(_) => "interrupted",
                    _ => "unknown",
                }
                .to_string(),
            ),
            pending_ms: Some(ms(startup.pending())),
            pods: Some(spec.parallelism),
            received_after_ms: golden.map(|g| ms(g.received_after)),
            resumed_hashes: Some(totals.earlier_hashes),
            resumed_shards: Some(0),
            run_id: Some(spec.run_id.to_string()),
            shard: golden.map(|g| g.shard),
            shards: Some(spec.shards),
            worker: golden.map(|g| g.worker.clone()),
            worker_elapsed_ms: golden.map(|g| ms(g.worker_elapsed)),
            worker_hashes: golden.map(|g| g.worker_hashes),
        }
    }
}

/// What a run's result says beyond the master's outcome.
#[derive(Debug, Clone, Default)]
pub struct RunNotes {
    /// The journal's file, if one is kept.
    pub journal: Option<String>,
    /// Shards whose work earlier attempts did (a resumed run).
    pub resumed_shards: u64,
}

/// Prints how the run ended on stdout.
pub fn print_outcome(
    outcome: &MasterOutcome,
    spec: &RunSpec,
    answer: Answer,
    startup: &StartupTimes,
    notes: &RunNotes,
    json: bool,
) {
    let difficulty = spec.puzzle.difficulty();
    if json {
        let mut value = SubmitJson::new(outcome, spec, answer, startup);
        value.journal = notes.journal.clone();
        value.resumed_shards = Some(notes.resumed_shards);
        println!(
            "{}",
            serde_json::to_string(&value).expect("SubmitJson serializes")
        );
        return;
    }
    match outcome {
        MasterOutcome::Found(g) => {
            human::print_golden(g.nonce, &g.hash, g.leading_zeros, difficulty);
            println!(
                "Found by       {} (shard {} of {})",
                g.worker, g.shard, spec.shards
            );
            if answer == Answer::Smallest {
                let below = match g.shard {
                    0 => String::new(),
                    1 => "shard 0 holds none; ".to_string(),
                    k => format!("shards 0-{} hold none; ", k - 1),
                };
                println!(
                    "Smallest       yes: {below}shard {} was searched in order up to it",
                    g.shard
                );
            }
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

#[cfg(test)]
mod tests {
    use cnd_core::Puzzle;

    use super::*;

    fn spec() -> RunSpec {
        let puzzle = Puzzle::with_default_block(22).unwrap();
        RunSpec::new(puzzle.clone(), puzzle.space(), 8, 4).unwrap()
    }

    #[test]
    fn the_object_keeps_its_keys_values_and_nulls() {
        let spec = spec();
        let mut totals = Totals::default();
        totals.hashes = 4_000_000;
        totals.elapsed = Duration::from_millis(2000);
        totals.ignored = 1;
        let outcome = MasterOutcome::TimedOut(totals);
        let value = SubmitJson::new(&outcome, &spec, Answer::Smallest, &StartupTimes::new());
        let text = serde_json::to_string(&value).unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"answer":"smallest","difficulty":22,"elapsed_ms":2000,"failed_reports":0,"first_running_ms":null,"hashes":4000000,"ignored_messages":1,"journal":null,"mhs":2.0,"outcome":"timed_out","pending_ms":0,"pods":4,"resumed_hashes":0,"resumed_shards":0,"run_id":"{}","shards":8}}"#,
                spec.run_id
            )
        );
        assert_eq!(serde_json::from_str::<SubmitJson>(&text).unwrap(), value);

        let found = SubmitJson {
            first_running_ms: Some(150),
            hash: Some("00ab".into()),
            leading_zeros: Some(24),
            nonce: Some("123".into()),
            outcome: Some("found".into()),
            received_after_ms: Some(1900),
            shard: Some(3),
            worker: Some("local-3".into()),
            worker_elapsed_ms: Some(1500),
            worker_hashes: Some(900),
            ..value
        };
        let text = serde_json::to_string(&found).unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"answer":"smallest","difficulty":22,"elapsed_ms":2000,"failed_reports":0,"first_running_ms":150,"hash":"00ab","hashes":4000000,"ignored_messages":1,"journal":null,"leading_zeros":24,"mhs":2.0,"nonce":"123","outcome":"found","pending_ms":0,"pods":4,"received_after_ms":1900,"resumed_hashes":0,"resumed_shards":0,"run_id":"{}","shard":3,"shards":8,"worker":"local-3","worker_elapsed_ms":1500,"worker_hashes":900}}"#,
                spec.run_id
            )
        );
        assert_eq!(serde_json::from_str::<SubmitJson>(&text).unwrap(), found);
    }
}
