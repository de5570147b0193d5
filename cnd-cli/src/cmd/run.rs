//! `cnd-cli run`: search on this machine for the smallest golden nonce.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use cnd_core::available_threads;
use cnd_core::puzzle::to_hex;
use cnd_core::{Backend, NonceRange, Puzzle, SearchControl, SearchOptions, SearchOutcome};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::args::{parse_duration, parse_threads, range_for, OutputArgs, PuzzleArgs};
use crate::exit::Exit;
use crate::human;
use crate::signals::StopSignal;

/// Search this machine's cores for the smallest golden nonce of the space.
///
/// The answer is the same on every machine and for every thread count.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    puzzle: PuzzleArgs,

    /// Search only START..END (half-open), e.g. 0..1000000. [default: the whole space]
    #[arg(long, value_name = "START..END")]
    range: Option<String>,

    /// Threads to search with. [default: every CPU this process may use]
    #[arg(long, value_name = "N", value_parser = parse_threads)]
    threads: Option<usize>,

    /// Give up after this long (exit 4), e.g. 30s, 5m, 1h. [default: no limit]
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    timeout: Option<Duration>,

    /// Hash backend: auto (the fastest here, measured), scalar, sha2, shani, avx2, avx512,
    /// avx512x2.
    #[arg(long, value_name = "NAME", env = "CND_BACKEND", default_value = "auto")]
    backend: String,

    #[command(flatten)]
    output: OutputArgs,
}

/// Runs `cnd-cli run`.
pub fn run(args: RunArgs) -> anyhow::Result<Exit> {
    let puzzle = args.puzzle.puzzle()?;
    let range = range_for(&puzzle, args.range.as_deref())?;
    let backend = Backend::from_name(&args.backend)?;
    let threads = args.threads.unwrap_or_else(available_threads);
    human::warn_if_likely_empty(&puzzle, &range);
    // `auto` is said as what it picked for this puzzle (calibrated once, cached).
    let shown = backend.resolve(&puzzle);
    tracing::info!(%range, threads, backend = %shown, difficulty = puzzle.difficulty(), "searching");

    let control = Arc::new(SearchControl::new());
    let handler_control = Arc::clone(&control);
    let stop = StopSignal::install(move || handler_control.cancel())?;
    let options = SearchOptions::all_cores()
        .with_threads(threads)
        .with_backend(backend)
        .with_deadline(args.timeout.map(|t| Instant::now() + t));
    let show_progress = !args.output.json && std::io::stderr().is_terminal();
    let outcome = std::thread::scope(|scope| {
        let search = scope.spawn(|| cnd_core::search(&puzzle, range, &options, &control));
        if show_progress {
            watch_progress(&search, &control, &puzzle, &range);
        }
        search.join().expect("the search thread does not panic")
    })?;
    print_outcome(&outcome, &puzzle, threads, shown, args.output.json);
    Ok(match outcome {
        SearchOutcome::Found(_) => Exit::Success,
        SearchOutcome::Exhausted { .. } => Exit::Exhausted,
        SearchOutcome::TimedOut { .. } => Exit::TimedOut,
        SearchOutcome::Cancelled { .. } => stop.exit(),
        _ => Exit::Error,
    })
}

/// A progress bar on stderr: hashes, MH/s, % of the range, ETA against 2^D.
fn watch_progress<T>(
    search: &std::thread::ScopedJoinHandle<'_, T>,
    control: &SearchControl,
    puzzle: &Puzzle,
    range: &NonceRange,
) {
    let total = range.len().min(u128::from(u64::MAX)) as u64;
    // Short enough for an 80-column terminal; `wide_msg` is cut, never wrapped.
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template(
            "{spinner} {elapsed_precise} [{bar:20}] {percent:>3}% · {wide_msg}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    let started = Instant::now();
    while !search.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
        let hashes = control.hashes();
        let rate = human::per_sec(hashes, started.elapsed());
        bar.set_position(hashes);
        bar.set_message(format!(
            "{} · {}",
            human::rate(rate),
            human::eta_to_expected(hashes, rate, puzzle.difficulty())
        ));
    }
    bar.finish_and_clear();
}

fn print_outcome(
    outcome: &SearchOutcome,
    puzzle: &Puzzle,
    threads: usize,
    backend: Backend,
    json: bool,
) {
    if json {
        let value = match outcome {
            SearchOutcome::Found(f) => json!({
                "outcome": "found",
                "nonce": f.nonce.to_string(),
                "hash": to_hex(&f.hash),
                "leading_zeros": f.leading_zeros,
                "difficulty": puzzle.difficulty(),
                "hashes": f.hashes,
                "elapsed_ms": f.elapsed.as_millis() as u64,
                "mhs": human::per_sec(f.hashes, f.elapsed) / 1e6,
                "threads": threads,
                "backend": backend.name(),
                "shard": 0,
                "worker": "local",
            }),
            SearchOutcome::Exhausted { hashes, elapsed }
            | SearchOutcome::TimedOut { hashes, elapsed }
            | SearchOutcome::Cancelled { hashes, elapsed } => json!({
                "outcome": match outcome {
                    SearchOutcome::Exhausted { .. } => "exhausted",
                    SearchOutcome::TimedOut { .. } => "timed_out",
                    _ => "interrupted",
                },
                "difficulty": puzzle.difficulty(),
                "hashes": hashes,
                "elapsed_ms": elapsed.as_millis() as u64,
                "mhs": human::per_sec(*hashes, *elapsed) / 1e6,
                "threads": threads,
                "backend": backend.name(),
            }),
            _ => json!({ "outcome": "unknown" }),
        };
        println!("{value}");
        return;
    }
    match outcome {
        SearchOutcome::Found(f) => {
            human::print_golden(f.nonce, &f.hash, f.leading_zeros, puzzle.difficulty());
            print_work(f.hashes, f.elapsed, threads, backend);
        }
        SearchOutcome::Exhausted { hashes, elapsed } => {
            println!("No golden nonce: every nonce of the range was tried.");
            print_work(*hashes, *elapsed, threads, backend);
        }
        SearchOutcome::TimedOut { hashes, elapsed } => {
            println!("Timed out before a golden nonce was found.");
            print_work(*hashes, *elapsed, threads, backend);
        }
        SearchOutcome::Cancelled { hashes, elapsed } => {
            println!("Interrupted before a golden nonce was found.");
            print_work(*hashes, *elapsed, threads, backend);
        }
        _ => println!("The search ended in a way this cnd-cli does not know."),
    }
}

fn print_work(hashes: u64, elapsed: Duration, threads: usize, backend: Backend) {
    let rate = human::per_sec(hashes, elapsed);
    println!(
        "Hashes         {} in {}",
        human::count(hashes),
        human::duration(elapsed)
    );
    println!(
        "Rate           {} on {threads} thread{} ({} per thread, {backend} backend)",
        human::rate(rate),
        if threads == 1 { "" } else { "s" },
        human::rate(rate / threads as f64),
    );
}
