//! The run as it goes, on stderr: a bar on a terminal, a line every 10 s otherwise.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use cnd_core::{Ignored, MasterEvent, RunSpec, WorkerStatus};
use indicatif::{ProgressBar, ProgressStyle};
use uuid::Uuid;

use crate::console;
use crate::human;

/// What the master's events say so far, drawn as one short status line.
pub struct Live {
    run_id: Uuid,
    bar: Option<ProgressBar>,
    quiet: bool,
    started: Instant,
    last_line: Instant,
    /// What a pending worker waits for: a node, or a free slot on this machine.
    pending_means: &'static str,
    workers: WorkerStatus,
    hashes: u64,
    /// When `hashes` was last reported: the rate is hashes over the time up to
    /// then, so it does not sag between reports (they come every few seconds).
    reported_at: Instant,
    shards_done: u64,
    shards: u64,
    space: u128,
    difficulty: u32,
    /// Hashes per second of one pod, when progress is estimated (no progress reports).
    per_pod: Option<f64>,
    /// Hashes estimated from running pods × `per_pod`, and when last counted.
    estimated: f64,
    counted_at: Instant,
    /// Ignored messages, said without a line each.
    ignored: IgnoredLines,
}

impl Live {
    /// Shows the run of `spec` when `show` (and stderr is a terminal, for the bar);
    /// `pending_means` names what pending workers wait for.
    pub fn new(spec: &RunSpec, show: bool, pending_means: &'static str) -> Live {
        let bar = (show && std::io::stderr().is_terminal()).then(|| {
            // `wide_msg` is cut to the terminal's width, never wrapped onto a second line.
            let bar = ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {elapsed_precise} {wide_msg}")
                    .expect("a valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            console::attach(&bar);
            bar
        });
        Live {
            run_id: spec.run_id,
            bar,
            quiet: !show,
            started: Instant::now(),
            last_line: Instant::now(),
            pending_means,
            workers: WorkerStatus::default(),
            hashes: 0,
            reported_at: Instant::now(),
            shards_done: 0,
            shards: spec.shards,
            space: spec.range.len(),
            difficulty: spec.puzzle.difficulty(),
            per_pod: None,
            estimated: 0.0,
            counted_at: Instant::now(),
            ignored: IgnoredLines::default(),
        }
    }

    /// Shows progress as running pods × `per_pod` hashes per second, marked as
    /// an estimate, for channels that carry only final reports.
    pub fn estimate_with(&mut self, per_pod: f64) {
        self.per_pod = Some(per_pod);
    }

    /// The hashes to show: reported, or the estimate when it is larger.
    fn shown_hashes(&self) -> u64 {
        (self.hashes as f64).max(self.estimated) as u64
    }

    /// Hashes per second up to the moment the shown hashes were counted.
    fn shown_rate(&self) -> f64 {
        let counted = if self.estimated > self.hashes as f64 {
            self.counted_at
        } else {
            self.reported_at
        };
        human::per_sec(
            self.shown_hashes(),
            counted.saturating_duration_since(self.started),
        )
    }

    /// Takes one event of the master into account and redraws.
    pub fn on(&mut self, event: MasterEvent) {
        match event {
            MasterEvent::Workers(status) => {
                if let Some(per_pod) = self.per_pod {
                    let seconds = self.counted_at.elapsed().as_secs_f64();
                    self.estimated += self.workers.running as f64 * per_pod * seconds;
                    self.counted_at = Instant::now();
                }
                self.workers = status
            }
            MasterEvent::Progress(p) => {
                self.hashes = p.total_hashes;
                self.shards_done = p.shards_done;
                self.reported_at = Instant::now();
            }
            MasterEvent::Ignored(why) => {
                if let Some(line) = self.ignored.on(&why, Instant::now()) {
                    console::say(line);
                }
            }
            MasterEvent::WorkerFailed { worker, error, .. } => {
                console::say(format!("worker {worker} failed: {error}"))
            }
            MasterEvent::Stalled { shard, silent_for } => console::say(format!(
                "the worker of shard {shard} reported no progress for {}; stopped it and started it again",
                human::duration(silent_for)
            )),
            MasterEvent::TooManyWorkers {
                running,
                parallelism,
            } => console::say(format!(
                "warning: {running} workers are running, more than the {parallelism} this run asked for at once"
            )),
            MasterEvent::CleanupFailed(what) => console::say(format!(
                "warning: {what}; `cnd-cli cleanup --run {}` removes what is left",
                self.run_id
            )),
            MasterEvent::Retrying {
                what,
                error,
                failing_for,
                budget,
            } => console::say(format!(
                "{what} failed ({error}); retrying, {} of {} allowed",
                human::duration(failing_for),
                human::duration(budget)
            )),
            _ => {}
        }
        // Ignored messages that came in a burst are summed up once the burst's
        // interval is over, whatever event comes next.
        if let Some(line) = self.ignored.tick(Instant::now()) {
            console::say(line);
        }
        self.render();
    }

    /// The workers in a few words, only the states that have some: `3 running ·
    /// 1 starting · 2 waiting for a node`.
    fn workers_line(&self) -> String {
        let w = &self.workers;
        let others = [
            (w.starting, "starting"),
            (w.pending, self.pending_means),
            (w.retrying, "waiting to retry"),
            (w.succeeded, "done"),
            (w.failed, "failed"),
        ];
        let mut line = format!("{} running", w.running);
        for (n, what) in others.iter().filter(|(n, _)| *n > 0) {
            line.push_str(&format!(" · {n} {what}"));
        }
        line
    }

    /// One line, short enough for 80 columns when all workers run:
    /// `4 running | 1/4 shards | 41.20 MH/s · 3.1% · ~12s to 2^26`.
    fn status_line(&self) -> String {
        let hashes = self.shown_hashes();
        let rate = self.shown_rate();
        format!(
            "{} | {}/{} shards | {} · {} · {}",
            self.workers_line(),
            self.shards_done,
            self.shards,
            match self.per_pod {
                Some(_) => format!("≈{} (estimated)", human::rate(rate)),
                None => human::rate(rate),
            },
            human::percent(hashes as f64 / self.space as f64),
            human::eta_to_expected(hashes, rate, self.difficulty),
        )
    }

    fn render(&mut self) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(bar) => bar.set_message(self.status_line()),
            None if self.last_line.elapsed() >= Duration::from_secs(10) => {
                self.last_line = Instant::now();
                eprintln!("cnd-cli: {}", self.status_line());
            }
            None => {}
        }
    }

    /// Erases the bar, before the result is printed, and says how many
    /// messages were ignored in all when not each was shown.
    pub fn finish(&mut self) {
        if self.bar.is_some() {
            console::detach();
        }
        if let Some(line) = self.ignored.finish() {
            console::say(line);
        }
    }
}

/// The kind of an ignored message, in a few words, for the summaries.
fn ignored_kind(why: &Ignored) -> &'static str {
    match why {
        Ignored::NoSender => "naming no shard",
        Ignored::WrongShard { .. } => "for another worker's shard",
        Ignored::Unsigned => "unsigned",
        Ignored::BadSignature => "wrong signature",
        Ignored::Malformed(_) => "malformed",
        Ignored::OtherRun(_) => "of another run",
        Ignored::NoSuchShard { .. } => "for a shard the run does not have",
        Ignored::ShortExhausted { .. } => "exhausted without every hash",
        Ignored::OutsideShard { .. } => "nonce outside its shard",
        Ignored::NotGolden { .. } => "not golden",
        Ignored::WrongHash { .. } => "wrong hash",
        _ => "other",
    }
}

/// Ignored messages on stderr without a line each (a worker, or anyone with
/// access to the queue, can send any number): the first
/// [`IgnoredLines::FIRST`] each on a line of its own, the rest summed up at
/// most once per [`IgnoredLines::EVERY`], and the total at the end. The clock
/// is passed in, so the tests need no sleeps.
#[derive(Debug, Default)]
pub struct IgnoredLines {
    /// All ignored so far.
    total: u64,
    /// All so far, by kind (for the final line).
    all: BTreeMap<&'static str, u64>,
    /// Not yet said, by kind.
    unsaid: BTreeMap<&'static str, u64>,
    /// When the last line about them was printed.
    said_at: Option<Instant>,
}

impl IgnoredLines {
    /// Messages shown one by one before they are only counted.
    pub const FIRST: u64 = 3;
    /// The least time between two summary lines.
    pub const EVERY: Duration = Duration::from_secs(10);

    /// Counts one ignored message at `now`; the line to print, if any.
    pub fn on(&mut self, why: &Ignored, now: Instant) -> Option<String> {
        let kind = ignored_kind(why);
        self.total += 1;
        *self.all.entry(kind).or_default() += 1;
        if self.total <= Self::FIRST {
            self.said_at = Some(now);
            let more = if self.total == Self::FIRST {
                format!(
                    " (further ones are counted, a line at most every {} s)",
                    Self::EVERY.as_secs()
                )
            } else {
                String::new()
            };
            return Some(format!("ignored a message: {why}{more}"));
        }
        *self.unsaid.entry(kind).or_default() += 1;
        self.tick(now)
    }

    /// The summary of the messages not yet said, once [`Self::EVERY`] has
    /// passed since the last line.
    pub fn tick(&mut self, now: Instant) -> Option<String> {
        if self.unsaid.is_empty() {
            return None;
        }
        let due = self
            .said_at
            .is_none_or(|at| now.saturating_duration_since(at) >= Self::EVERY);
        if !due {
            return None;
        }
        self.said_at = Some(now);
        let unsaid = std::mem::take(&mut self.unsaid);
        let n: u64 = unsaid.values().sum();
        Some(format!(
            "ignored {} more {}: {}",
            human::count(n),
            if n == 1 { "message" } else { "messages" },
            kinds(&unsaid)
        ))
    }

    /// The last line: how many were ignored in all, when more than were shown.
    pub fn finish(&mut self) -> Option<String> {
        self.unsaid.clear();
        (self.total > Self::FIRST).then(|| {
            format!(
                "ignored {} messages in all: {}",
                human::count(self.total),
                kinds(&self.all)
            )
        })
    }
}

/// `1,200 unsigned, 34 wrong signature`: the most common kind first.
fn kinds(counts: &BTreeMap<&'static str, u64>) -> String {
    let mut counts: Vec<(&str, u64)> = counts.iter().map(|(k, n)| (*k, *n)).collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    counts
        .iter()
        .map(|(kind, n)| format!("{} {kind}", human::count(*n)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use cnd_core::Puzzle;

    use super::*;

    fn spec() -> RunSpec {
        let puzzle = Puzzle::with_default_block(30).unwrap();
        RunSpec::new(puzzle.clone(), puzzle.space(), 4, 4).unwrap()
    }

    /// Workers in these states: running, starting, pending, retrying, failed.
    fn workers(counts: [u64; 5]) -> MasterEvent {
        let mut status = WorkerStatus::default();
        [
            status.running,
            status.starting,
            status.pending,
            status.retrying,
            status.failed,
        ] = counts;
        MasterEvent::Workers(status)
    }

    #[test]
    fn progress_without_reports_is_estimated_from_running_pods_and_says_so() {
        let spec = spec();
        let mut live = Live::new(&spec, false, "waiting for a node");
        live.estimate_with(1e6);
        let running = |n| workers([n, 0, 0, 0, 0]);
        live.on(running(2));
        assert_eq!(
            live.shown_hashes(),
            0,
            "nothing ran before the first status"
        );
        std::thread::sleep(Duration::from_millis(100));
        live.on(running(2));
        // 2 pods × 1 MH/s × ≥ 0.1 s.
        assert!(live.shown_hashes() >= 200_000, "{}", live.shown_hashes());
        assert!(
            live.status_line().contains("(estimated)"),
            "{}",
            live.status_line()
        );

        let mut reported = Live::new(&spec, false, "waiting for a node");
        reported.on(running(2));
        std::thread::sleep(Duration::from_millis(20));
        reported.on(running(2));
        assert_eq!(
            reported.shown_hashes(),
            0,
            "without an estimate only reports count"
        );
        assert!(!reported.status_line().contains("estimated"));
    }

    #[test]
    fn ignored_messages_are_shown_three_times_then_summed_up_every_10_s() {
        let t0 = Instant::now();
        let at = |secs: f64| t0 + Duration::from_secs_f64(secs);
        let mut lines = IgnoredLines::default();
        let mut said = Vec::new();
        // 200,000 unsigned and 34 forged messages, over 25 s.
        for i in 0..200_034u64 {
            let why = if i % 5000 == 4999 && i < 170_000 {
                Ignored::BadSignature
            } else {
                Ignored::Unsigned
            };
            let now = at(i as f64 * 25.0 / 200_034.0);
            said.extend(lines.on(&why, now));
        }
        said.extend(lines.tick(at(26.0)));
        said.extend(lines.tick(at(40.0)));
        said.extend(lines.finish());
        assert!(
            said.len() <= 3 + 3 + 1,
            "{} lines: {:?}",
            said.len(),
            &said[..said.len().min(10)]
        );
        assert!(said[0].starts_with("ignored a message: message without a signature"));
        assert!(said[2].contains("further ones are counted"), "{}", said[2]);
        assert!(said[3].starts_with("ignored "), "{}", said[3]);
        assert!(said[3].contains(" more messages: "), "{}", said[3]);
        let last = said.last().unwrap();
        assert_eq!(
            last,
            "ignored 200,034 messages in all: 200,000 unsigned, 34 wrong signature"
        );
        // Every message is in exactly one line: 3 alone, the rest in summaries.
        let summed: u64 = said[3..said.len() - 1]
            .iter()
            .map(|l| {
                let n = l.split_whitespace().nth(1).unwrap().replace(',', "");
                n.parse::<u64>().unwrap()
            })
            .sum();
        assert_eq!(summed + 3, 200_034, "{said:?}");
    }

    #[test]
    fn a_few_ignored_messages_are_each_shown_and_not_summed_up() {
        let t0 = Instant::now();
        let mut lines = IgnoredLines::default();
        let shown: Vec<String> = (0..3)
            .filter_map(|_| lines.on(&Ignored::BadSignature, t0))
            .collect();
        assert_eq!(shown.len(), 3);
        assert_eq!(lines.tick(t0 + Duration::from_secs(60)), None);
        assert_eq!(lines.finish(), None);
        // The fourth, alone, waits for its interval, then is said once.
        let mut lines = IgnoredLines::default();
        for _ in 0..4 {
            lines.on(&Ignored::Unsigned, t0);
        }
        assert_eq!(lines.tick(t0 + Duration::from_secs(9)), None);
        assert_eq!(
            lines.tick(t0 + Duration::from_secs(10)).as_deref(),
            Some("ignored 1 more message: 1 unsigned")
        );
        assert_eq!(lines.tick(t0 + Duration::from_secs(30)), None);
    }

    #[test]
    fn the_line_names_only_the_states_workers_are_in_and_fits_80_columns() {
        let spec = spec();
        let mut live = Live::new(&spec, false, "waiting for a node");
        live.on(workers([4, 0, 0, 0, 0]));
        let line = live.status_line();
        assert!(line.starts_with("4 running | 0/4 shards | "), "{line}");
        // The bar adds a spinner and `00:00:12 ` (11 columns).
        assert!(
            line.chars().count() + 11 <= 80,
            "{} columns: {line}",
            line.chars().count()
        );

        live.on(workers([0, 1, 2, 1, 1]));
        assert!(
            live.status_line().starts_with(
                "0 running · 1 starting · 2 waiting for a node · 1 waiting to retry · 1 failed | "
            ),
            "{}",
            live.status_line()
        );
        let mut local = Live::new(&spec, false, "queued");
        local.on(workers([1, 0, 3, 0, 0]));
        assert!(local.status_line().starts_with("1 running · 3 queued | "));
    }
}
