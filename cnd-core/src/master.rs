//! The master of a distributed run, written only against [`Launcher`] and
//! [`ResultChannel`]: it starts the workers, reads their reports, verifies every
//! claimed nonce itself, and always removes what the run created.
//!
//! It owns no runtime: a [`Timer`] from the caller tells the time, every call is
//! raced against the [`CancelToken`], the deadline and its own limit, and
//! `channel.receive(wait)` of about a second paces the loop. So it runs under
//! tokio, a test's tiny executor ([`crate::memory::block_on`]), or anything else
//! that can poll a future.
//!
//! Reports are untrusted input (SPEC §5). A message without a valid signature
//! under the run's [`RunKey`](crate::RunKey) is dropped before it is parsed, so
//! no one without the key can change an answer. Then a malformed report,
//! another run's, one for a shard that does not exist, an `exhausted` that did
//! not count its whole shard, or a `found` whose nonce is outside its shard,
//! not golden, or whose hash is not the nonce's, is ignored with a
//! [`MasterEvent::Ignored`]; it never ends the run. A shard's hash count is
//! never taken for more than the shard's length.
//!
//! What the caller should show (ignored messages, failed workers, retries,
//! incomplete cleanup) comes as [`MasterEvent`]s and is logged only at debug
//! level, so a CLI that prints the events does not say everything twice.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::future::{pending, poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::cancel::{CancelToken, Sleep, Timer};
use crate::distributed::{
    error_chain, CallError, ChannelError, LaunchError, Launcher, Message, Received, ResultChannel,
    RunSpec, RunSpecError, Sender, WorkerStatus, STALL_INTERVALS,
};
use crate::puzzle::to_hex;
use crate::report::{Report, ReportError, ReportKind};
use crate::shard::NonceRange;
use crate::verify::verify;

/// How long one `receive` waits at most: the loop's pace. (An interrupt or the
/// deadline cuts any wait short at once.)
pub const RECEIVE_WAIT: Duration = Duration::from_secs(1);

/// How often the launcher is asked how its workers are doing.
pub const STATUS_EVERY: Duration = Duration::from_secs(2);

/// What the master tells its caller while a run goes on (for live status).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MasterEvent {
    /// The launcher accepted the workers (they are requested, not running yet).
    Launched {
        /// Shards of the run.
        shards: u64,
        /// Workers at once.
        parallelism: u64,
        /// Where the workers report: the channel's address once open (a queue URL).
        reports_to: String,
    },
    /// A snapshot of the workers, every [`MasterOptions::status_every`].
    Workers(WorkerStatus),
    /// A worker's progress (or its final count, from `exhausted`).
    Progress(Progress),
    /// A worker searched its whole shard without finding a golden nonce.
    ShardExhausted {
        /// The shard.
        shard: u64,
        /// The worker's name.
        worker: String,
    },
    /// A worker said it failed; the launcher may retry its shard.
    WorkerFailed {
        /// The shard.
        shard: u64,
        /// The worker's name.
        worker: String,
        /// What the worker said.
        error: String,
    },
    /// A message was not taken into account.
    Ignored(Ignored),
    /// A reported nonce was verified golden: the run ends with it, or, for
    /// [`Answer::Smallest`], once every shard below is exhausted.
    Found {
        /// The nonce.
        nonce: u64,
        /// Its shard.
        shard: u64,
        /// The worker that found it.
        worker: String,
        /// Whether it is its shard's smallest on good authority: from the
        /// shard's own worker, or, under the shared key, once the launcher
        /// says that shard's worker succeeded (said again then, settled). A
        /// find any pod could have sent only bounds the answer; a journal
        /// keeps only settled ones.
        settled: bool,
    },
    /// A call failed and is being retried within [`MasterOptions::retry_for`].
    Retrying {
        /// What failed ("worker status", "receiving results").
        what: &'static str,
        /// The latest error.
        error: String,
        /// How long it has been failing.
        failing_for: Duration,
        /// How long it may fail before the run ends.
        budget: Duration,
    },
    /// A running worker's count did not move for [`MasterOptions::stall_after`]
    /// (frozen, wedged): the launcher replaced it.
    Stalled {
        /// The shard.
        shard: u64,
        /// How long its count had not moved.
        silent_for: Duration,
    },
    /// The launcher said more workers were running than the run's parallelism
    /// allows (a launcher bug, or pods the cluster has not finished stopping):
    /// said once per run, as a warning; the run goes on.
    TooManyWorkers {
        /// Workers the launcher reported running.
        running: u64,
        /// The most the run asked for at once.
        parallelism: u64,
    },
    /// Removing the run's workers or queue failed even after retries; the text
    /// names exactly what may be left behind.
    CleanupFailed(String),
}

/// Progress of the whole run after one report.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// The shard that reported.
    pub shard: u64,
    /// The worker that reported.
    pub worker: String,
    /// Hashes that worker has tried.
    pub shard_hashes: u64,
    /// Nonces from the shard's first one that are all tried (by this run or
    /// the attempts it resumes), as far as the shard's own worker said: what
    /// a journal keeps so that a resumed run skips them.
    pub shard_searched: u64,
    /// How long that worker has searched.
    pub shard_elapsed: Duration,
    /// Hashes tried by the run so far (latest report of each shard, summed).
    pub total_hashes: u64,
    /// Shards that reported `exhausted`.
    pub shards_done: u64,
    /// Shards of the run.
    pub shards: u64,
}

/// Why a message was ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ignored {
    /// Nothing says which shard's worker sent the message (on SQS, no valid
    /// `cnd-shard` attribute), so no key can check it.
    NoSender,
    /// The message has no `cnd-signature`: it is not from a worker of this run.
    Unsigned,
    /// The `cnd-signature` is not the body's under the run's key: a forgery, or
    /// a message altered on the way.
    BadSignature,
    /// Not a well-formed report.
    Malformed(ReportError),
    /// A report of another run (on a shared queue, or a stale message).
    OtherRun(Uuid),
    /// A report for another shard than its sender's: one worker speaking for
    /// another's shard.
    WrongShard {
        /// The shard the report names.
        reported: u64,
        /// The shard of the worker that sent it.
        sender: u64,
    },
    /// A shard index the run does not have.
    NoSuchShard {
        /// The shard reported.
        shard: u64,
        /// Shards of the run.
        shards: u64,
    },
    /// An `exhausted` report whose hash count is not its shard's length: it
    /// cannot have searched the whole shard.
    ShortExhausted {
        /// The shard reported.
        shard: u64,
        /// The hashes it claims.
        hashes: u64,
        /// What was left of the shard to search: its length, less what earlier
        /// attempts of a resumed run searched.
        expected: u64,
    },
    /// A `found` nonce outside the reporting shard's range.
    OutsideShard {
        /// The nonce.
        nonce: u64,
        /// The shard reported.
        shard: u64,
    },
    /// A `found` nonce that is not golden.
    NotGolden {
        /// The nonce.
        nonce: u64,
        /// Leading zero bits of its real hash.
        leading_zeros: u32,
        /// D.
        difficulty: u32,
    },
    /// A golden `found` nonce whose reported hash is not its hash: the worker
    /// (or whoever sent it) did not compute it.
    WrongHash {
        /// The nonce.
        nonce: u64,
        /// The hash reported, in hex.
        reported: String,
    },
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ignored::NoSender => write!(f, "message that names no shard (not from this run's workers)"),
            Ignored::Unsigned => write!(f, "message without a signature (not from this run's workers)"),
            Ignored::WrongShard { reported, sender } => write!(
                f,
                "report for shard {reported} from the worker of shard {sender} (a worker speaks only for its own shard)"
            ),
            Ignored::BadSignature => write!(
                f,
                "message with a wrong signature (forged, altered, or signed for another run)"
            ),
            Ignored::ShortExhausted {
                shard,
                hashes,
                expected,
            } => write!(
                f,
                "exhausted report for shard {shard} counts {hashes} hashes, but the shard had {expected} nonces left to search"
            ),
            Ignored::Malformed(e) => write!(f, "{e}"),
            Ignored::OtherRun(id) => write!(f, "report of another run ({id})"),
            Ignored::NoSuchShard { shard, shards } => {
                write!(f, "report for shard {shard}, but the run has {shards} shards")
            }
            Ignored::OutsideShard { nonce, shard } => {
                write!(f, "found nonce {nonce} is outside shard {shard}")
            }
            Ignored::NotGolden {
                nonce,
                leading_zeros,
                difficulty,
            } => write!(
                f,
                "found nonce {nonce} is not golden: {leading_zeros} leading zero bits < {difficulty}"
            ),
            Ignored::WrongHash { nonce, reported } => {
                write!(f, "found nonce {nonce} does not hash to the reported {reported}")
            }
        }
    }
}

/// What the run did, whatever its outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Totals {
    /// Hashes tried: the latest count reported by each shard, summed, with
    /// what earlier attempts of a resumed run searched.
    pub hashes: u64,
    /// The part of `hashes` earlier attempts searched (a resumed run): this
    /// run's own rate is of `hashes - earlier_hashes`.
    pub earlier_hashes: u64,
    /// Time since the master started (before the launch).
    pub elapsed: Duration,
    /// Shards that reported `exhausted`.
    pub shards_done: u64,
    /// `failed` reports received.
    pub failed_reports: u64,
    /// Messages ignored.
    pub ignored: u64,
    /// Messages of other runs or producers that the channel saw and left alone.
    pub foreign: u64,
    /// Workers replaced because their progress stopped.
    pub stalled: u64,
}

/// A verified golden nonce and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Golden {
    /// The nonce.
    pub nonce: u64,
    /// Its hash, recomputed by the master.
    pub hash: [u8; 32],
    /// Leading zero bits of `hash`.
    pub leading_zeros: u32,
    /// The shard it was found in.
    pub shard: u64,
    /// The worker that found it.
    pub worker: String,
    /// How long that worker searched, by its own clock.
    pub worker_elapsed: Duration,
    /// Hashes that worker tried, by its own count: with `worker_elapsed`, a
    /// pod's rate even when the run ended before the others reported.
    pub worker_hashes: u64,
    /// Time from the master's start until the report was received.
    pub received_after: Duration,
    /// The run's totals when it was received.
    pub totals: Totals,
}

/// How a run ended (when it did not end in an error).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MasterOutcome {
    /// A worker reported a nonce and the master verified it.
    Found(Golden),
    /// Every shard reported `exhausted`: the range holds no golden nonce.
    Exhausted(Totals),
    /// The deadline passed first.
    TimedOut(Totals),
    /// The caller's interrupt flag was set.
    Interrupted(Totals),
}

impl MasterOutcome {
    /// The run's totals.
    pub fn totals(&self) -> &Totals {
        match self {
            MasterOutcome::Found(golden) => &golden.totals,
            MasterOutcome::Exhausted(t)
            | MasterOutcome::TimedOut(t)
            | MasterOutcome::Interrupted(t) => t,
        }
    }
}

/// Why a run ended in an error. The workers and the queue were removed (or that
/// was tried, see [`MasterEvent::CleanupFailed`]) before it was returned.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum MasterError {
    /// The run's shards or parallelism do not fit its range; nothing was started.
    #[error("the run is not valid: {0}")]
    InvalidSpec(RunSpecError),
    /// The launcher could not start the workers.
    #[error("could not start the workers")]
    Launch(#[source] LaunchError),
    /// The launcher says the workers cannot succeed (an image that cannot be
    /// pulled, retries used up).
    #[error("the workers cannot run: {0}")]
    Fatal(String),
    /// Every worker ended but some shards never reported: their part of the
    /// space was not searched.
    #[error(
        "every worker has ended but {} of {shards} shards never reported ({failed} {} failed): {}",
        .unfinished,
        if *.failed == 1 { "worker" } else { "workers" },
        unsearched(.missing, *.unfinished)
    )]
    WorkersGone {
        /// Shards without an `exhausted` report.
        unfinished: u64,
        /// Shards of the run.
        shards: u64,
        /// Failed workers, as the launcher counts them.
        failed: u64,
        /// The first few of those shards (at most 8), with their nonce ranges.
        missing: Vec<(u64, NonceRange)>,
    },
    /// A running worker made no progress for [`MasterOptions::stall_after`] and
    /// the launcher could not replace it.
    #[error(
        "the worker of shard {shard} (nonces {range}) made no progress for {} and could not be replaced; `--range {range}` searches its shard",
        seconds(*.silent_for)
    )]
    Stalled {
        /// The shard.
        shard: u64,
        /// Its nonces.
        range: NonceRange,
        /// How long its count had not moved.
        silent_for: Duration,
        /// Why it could not be replaced.
        #[source]
        cause: LaunchError,
    },
    /// Asking the launcher how the workers are doing kept failing.
    #[error("could not watch the workers")]
    Status(#[source] LaunchError),
    /// Receiving from the result channel kept failing.
    #[error("could not receive results")]
    Channel(#[source] ChannelError),
}

/// "shard 1 (nonces A..B) was not searched; `--range A..B` searches it", for
/// the shards in `missing` (the first few of `unfinished`).
fn unsearched(missing: &[(u64, NonceRange)], unfinished: u64) -> String {
    let listed: Vec<String> = missing
        .iter()
        .map(|(shard, range)| format!("shard {shard} (nonces {range})"))
        .collect();
    let more = unfinished.saturating_sub(missing.len() as u64);
    let mut text = listed.join(", ");
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    match missing {
        [(_, range)] if unfinished == 1 => {
            format!("{text} was not searched; `--range {range}` searches it")
        }
        _ => format!("{text} were not searched"),
    }
}

/// Which golden nonce a run returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Answer {
    /// The first that a worker reports and the master verifies: the fastest
    /// answer, but which one depends on timing.
    #[default]
    First,
    /// The smallest of the run's range, as `cnd-cli run` returns: one answer per
    /// puzzle and range. A find in shard k ends the run once every shard below k
    /// is exhausted (shards above k are retired); each worker's find is its
    /// shard's smallest, as workers search in order.
    Smallest,
}

impl Answer {
    /// `"first"` or `"smallest"`: the name `--json` and journals use.
    pub fn name(self) -> &'static str {
        match self {
            Answer::First => "first",
            Answer::Smallest => "smallest",
        }
    }
}

/// How long the master waits for things, and how long it rides out trouble.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MasterOptions {
    /// Which golden nonce ends the run.
    pub answer: Answer,
    /// When the run ends as timed out, whatever is in flight.
    pub deadline: Option<Instant>,
    /// How long `status` or `receive` may keep failing (transiently: unreachable,
    /// 5xx, no answer) before the run ends in an error. Refusals end it at once.
    pub retry_for: Duration,
    /// The longest one `status`, `receive` (beyond its own wait), `stop` or
    /// `close` call may take; a call that takes longer counts as failed.
    pub call_timeout: Duration,
    /// The longest `launch` may take (it may create many pods).
    pub launch_timeout: Duration,
    /// How long `stop` and `close` are retried at the end of a run (they run
    /// side by side). A second cancellation cuts this short.
    pub cleanup_for: Duration,
    /// How long a running worker's count may stand still before the master
    /// has the launcher replace it (or, if it cannot, ends the run naming the
    /// shard). `None`: [`STALL_INTERVALS`] of the run's
    /// [`progress_every`](RunSpec::progress_every) (30 s by default). Only on
    /// channels that carry progress, with launchers that name running shards.
    pub stall_after: Option<Duration>,
    /// How long the master drains the channel (receives until it comes back
    /// empty) before it concludes that shards never reported.
    pub drain_for: Duration,
    /// How often the launcher is asked how its workers are doing (and
    /// [`MasterEvent::Workers`] said): the resolution of start-up times.
    pub status_every: Duration,
    /// Golden nonces earlier attempts of a resumed run found, by shard. Each
    /// is verified again. With [`Answer::First`] a run with one is over (it
    /// ends at once, creating nothing); with [`Answer::Smallest`] each bounds
    /// the answer, and its shard should be done in [`RunSpec::searched`], as
    /// its find settles it.
    pub earlier_finds: BTreeMap<u64, u64>,
}

impl Default for MasterOptions {
    /// The first answer, no deadline, 60 s of retries, 20 s per call, 2 min to
    /// launch, 30 s to clean up, stalls after 6 progress intervals, 15 s to
    /// drain, status every [`STATUS_EVERY`].
    fn default() -> Self {
        MasterOptions {
            answer: Answer::First,
            deadline: None,
            retry_for: Duration::from_secs(60),
            call_timeout: Duration::from_secs(20),
            launch_timeout: Duration::from_secs(120),
            cleanup_for: Duration::from_secs(30),
            stall_after: None,
            drain_for: Duration::from_secs(15),
            status_every: STATUS_EVERY,
            earlier_finds: BTreeMap::new(),
        }
    }
}

impl MasterOptions {
    /// The defaults with a deadline (an instant of the [`Timer`] the run is
    /// given: with a virtual clock, a virtual instant).
    #[must_use]
    pub fn with_deadline(deadline: Option<Instant>) -> MasterOptions {
        MasterOptions {
            deadline,
            ..MasterOptions::default()
        }
    }

    /// These options with [`earlier_finds`](MasterOptions::earlier_finds) set.
    #[must_use]
    pub fn with_earlier_finds(mut self, finds: BTreeMap<u64, u64>) -> MasterOptions {
        self.earlier_finds = finds;
        self
    }

    /// These options with [`retry_for`](MasterOptions::retry_for) set.
    #[must_use]
    pub fn with_retry_for(mut self, retry_for: Duration) -> MasterOptions {
        self.retry_for = retry_for;
        self
    }

    /// These options with [`call_timeout`](MasterOptions::call_timeout) set.
    #[must_use]
    pub fn with_call_timeout(mut self, call_timeout: Duration) -> MasterOptions {
        self.call_timeout = call_timeout;
        self
    }

    /// These options with [`launch_timeout`](MasterOptions::launch_timeout) set.
    #[must_use]
    pub fn with_launch_timeout(mut self, launch_timeout: Duration) -> MasterOptions {
        self.launch_timeout = launch_timeout;
        self
    }

    /// These options with [`cleanup_for`](MasterOptions::cleanup_for) set.
    #[must_use]
    pub fn with_cleanup_for(mut self, cleanup_for: Duration) -> MasterOptions {
        self.cleanup_for = cleanup_for;
        self
    }

    /// These options with [`stall_after`](MasterOptions::stall_after) set.
    #[must_use]
    pub fn with_stall_after(mut self, stall_after: Option<Duration>) -> MasterOptions {
        self.stall_after = stall_after;
        self
    }

    /// These options with [`drain_for`](MasterOptions::drain_for) set.
    #[must_use]
    pub fn with_drain_for(mut self, drain_for: Duration) -> MasterOptions {
        self.drain_for = drain_for;
        self
    }

    /// These options with [`answer`](MasterOptions::answer) set.
    #[must_use]
    pub fn with_answer(mut self, answer: Answer) -> MasterOptions {
        self.answer = answer;
        self
    }

    /// These options with [`status_every`](MasterOptions::status_every) set,
    /// brought within 50 ms ..= 60 s.
    #[must_use]
    pub fn with_status_every(mut self, every: Duration) -> MasterOptions {
        self.status_every = every.clamp(Duration::from_millis(50), Duration::from_secs(60));
        self
    }
}

/// Tries of `stop` and of `close` at the end of a run.
const CLEANUP_TRIES: u32 = 3;

/// Runs a distributed search from launch to cleanup.
///
/// Opens `channel` (its queue made or looked up), launches `spec` with
/// `launcher` — the workers told the channel's address, whatever
/// `spec.queue_url` said — and reads reports from `channel` until its answer
/// (the first verified golden nonce, or the smallest of the range: see
/// [`Answer`]), every shard exhausted, the deadline, or `cancel`, then
/// calls `launcher.stop()` and `channel.close()` on every way out, errors
/// included (each tried up to three times, each try bounded). Every call is
/// raced against `cancel`, the deadline and its own time limit (`timer` tells
/// the time), so a stalled API server or queue never holds the run: a
/// cancellation is honoured at once. `on_event` sees what happens as it happens.
/// The future is `Send`, so it can be spawned. Every instant it uses (deadline,
/// retry budgets, backoff, stalls, totals) is read from `timer`, so a timer with
/// virtual time runs the whole master in virtual time.
///
/// # Cancel safety
///
/// Not cancel safe: dropping the future skips the cleanup, so workers and the
/// queue may outlive the run. Stop a run with `cancel` instead, which ends it
/// at once and still cleans up.
pub async fn run_master(
    launcher: &mut dyn Launcher,
    channel: &mut dyn ResultChannel,
    spec: &RunSpec,
    options: &MasterOptions,
    timer: &dyn Timer,
    cancel: &CancelToken,
    mut on_event: impl FnMut(MasterEvent) + Send,
) -> Result<MasterOutcome, MasterError> {
    let started = timer.now();
    let clock = Clock::new(timer, Some(cancel), options.deadline);
    let result = drive(
        launcher,
        channel,
        spec,
        options,
        &clock,
        started,
        &mut on_event,
    )
    .await;
    // Whatever happened, the run leaves nothing behind (the original leaked pods).
    // Cleanup outlives the cancellation or deadline that ended the run; only a
    // second cancellation (the user insisting) cuts it short.
    let cleanup = Clock::new(timer, None, Some(timer.now() + options.cleanup_for));
    let limit = options.call_timeout;
    let (stopped, closed) = join(
        retry_cleanup(&cleanup, cancel, limit, launcher, |l| l.stop()),
        retry_cleanup(&cleanup, cancel, limit, channel, |c| c.close()),
    )
    .await;
    let left: Vec<String> = [
        stopped
            .err()
            .map(|e| format!("stopping the workers failed: {e}")),
        closed
            .err()
            .map(|e| format!("closing the result channel failed: {e}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !left.is_empty() {
        let what = left.join("; ");
        tracing::debug!(run = %spec.run_id, "cleanup incomplete: {what}");
        on_event(MasterEvent::CleanupFailed(what));
    }
    result
}

/// Both futures, side by side, to completion.
async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (pin!(a), pin!(b));
    let (mut a_out, mut b_out) = (None, None);
    poll_fn(|cx| {
        if a_out.is_none() {
            if let Poll::Ready(out) = a.as_mut().poll(cx) {
                a_out = Some(out);
            }
        }
        if b_out.is_none() {
            if let Poll::Ready(out) = b.as_mut().poll(cx) {
                b_out = Some(out);
            }
        }
        match (a_out.take(), b_out.take()) {
            (Some(a), Some(b)) => Poll::Ready((a, b)),
            (a, b) => {
                (a_out, b_out) = (a, b);
                Poll::Pending
            }
        }
    })
    .await
}

/// A launcher's or channel's cleanup call (`stop`, `close`), as async-trait makes it.
type CleanupStep<T> =
    for<'a> fn(&'a mut T) -> Pin<Box<dyn Future<Output = Result<(), CallError>> + Send + 'a>>;

/// Tries `step` on `target` until it succeeds, fails in a way no retry mends
/// (not [`is_transient`](CallError::is_transient)), [`CLEANUP_TRIES`] tries fail,
/// the cleanup's time (the clock's deadline) is up, or `cancel` is cancelled a
/// second time; each try is bounded by `limit`. The error says why and after
/// how many tries.
async fn retry_cleanup<T: ?Sized>(
    clock: &Clock<'_>,
    cancel: &CancelToken,
    limit: Duration,
    target: &mut T,
    step: CleanupStep<T>,
) -> Result<(), String> {
    let mut last = String::new();
    let mut tries = 0;
    while tries < CLEANUP_TRIES {
        if tries > 0 {
            let backoff = BACKOFF_FIRST * 2u32.pow(tries);
            match clock.bounded(backoff, cancel.cancelled_again()).await {
                Err(Cut::TimedOut) => {}
                Ok(()) => {
                    last = "given up at a second interrupt".into();
                    break;
                }
                Err(_) => {
                    last.push_str("; out of time for cleanup");
                    break;
                }
            }
        }
        tries += 1;
        match clock
            .bounded(limit, until(step(target), cancel.cancelled_again()))
            .await
        {
            Ok(Some(Ok(()))) => return Ok(()),
            Ok(Some(Err(e))) if !e.is_transient() => {
                last = error_chain(&e);
                break;
            }
            Ok(Some(Err(e))) => last = error_chain(&e),
            Ok(None) => {
                last = "given up at a second interrupt".into();
                break;
            }
            Err(Cut::TimedOut) => last = format!("no answer within {}", seconds(limit)),
            Err(_) => {
                last = "no answer before the time for cleanup ran out".into();
                break;
            }
        }
    }
    Err(format!(
        "{last} ({tries} {})",
        if tries == 1 { "try" } else { "tries" }
    ))
}

/// `call`'s output, or `None` if `stop` is ready first.
async fn until<T>(call: impl Future<Output = T>, stop: impl Future<Output = ()>) -> Option<T> {
    let (mut call, mut stop) = (pin!(call), pin!(stop));
    poll_fn(|cx| {
        if let Poll::Ready(out) = call.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        stop.as_mut().poll(cx).map(|()| None)
    })
    .await
}

/// The first wait after a failed call; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
/// The longest wait between tries of a failing call.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Why a bounded call did not finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// The run was cancelled.
    Cancelled,
    /// The run's deadline passed.
    Deadline,
    /// The call's own time limit passed.
    TimedOut,
}

/// What every call of a run is raced against, and where the run reads the time.
struct Clock<'a> {
    timer: &'a dyn Timer,
    cancel: Option<&'a CancelToken>,
    deadline: Option<Instant>,
    /// The one sleep until `deadline`, made at the first bounded call and
    /// shared by every call after it (not one per call).
    deadline_sleep: std::sync::Mutex<DeadlineSleep>,
}

/// [`Clock::deadline_sleep`]: not made yet, sleeping, or passed.
enum DeadlineSleep {
    NotYet,
    Sleeping(Sleep),
    Passed,
}

impl<'a> Clock<'a> {
    fn new(
        timer: &'a dyn Timer,
        cancel: Option<&'a CancelToken>,
        deadline: Option<Instant>,
    ) -> Self {
        Clock {
            timer,
            cancel,
            deadline,
            deadline_sleep: std::sync::Mutex::new(DeadlineSleep::NotYet),
        }
    }

    /// The present, on the timer's clock.
    fn now(&self) -> Instant {
        self.timer.now()
    }

    /// Whether the deadline has passed, polling the run's one deadline sleep
    /// (made here at the first call) so that `cx` is woken when it does.
    fn poll_deadline(&self, cx: &mut Context<'_>) -> bool {
        let Some(deadline) = self.deadline else {
            return false;
        };
        let mut state = self
            .deadline_sleep
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let DeadlineSleep::NotYet = *state {
            let left = deadline.saturating_duration_since(self.now());
            *state = DeadlineSleep::Sleeping(self.timer.sleep(left));
        }
        let passed = match &mut *state {
            DeadlineSleep::Sleeping(sleep) => sleep.as_mut().poll(cx).is_ready(),
            DeadlineSleep::Passed => true,
            DeadlineSleep::NotYet => false,
        };
        if passed {
            *state = DeadlineSleep::Passed;
        }
        passed
    }

    /// Runs `call` until it finishes, the run is cancelled, the deadline passes,
    /// or `limit` passes, whichever comes first.
    async fn bounded<T>(&self, limit: Duration, call: impl Future<Output = T>) -> Result<T, Cut> {
        let mut call = pin!(call);
        let mut cancelled = self.cancel.map(|c| Box::pin(c.cancelled()));
        let mut limit = self.timer.sleep(limit);
        poll_fn(|cx| {
            if let Poll::Ready(out) = call.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            if cancelled
                .as_mut()
                .is_some_and(|c| c.as_mut().poll(cx).is_ready())
            {
                return Poll::Ready(Err(Cut::Cancelled));
            }
            if self.poll_deadline(cx) {
                return Poll::Ready(Err(Cut::Deadline));
            }
            if limit.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(Cut::TimedOut));
            }
            Poll::Pending
        })
        .await
    }
}

/// How long a kind of call has been failing, for the retry budget.
#[derive(Debug, Default)]
struct Failing {
    since: Option<Instant>,
    tries: u32,
}

impl Failing {
    /// Records a failure at `now`; true while the failures are within `budget`.
    fn again(&mut self, now: Instant, budget: Duration) -> bool {
        let since = *self.since.get_or_insert(now);
        self.tries += 1;
        now.saturating_duration_since(since) < budget
    }

    fn for_how_long(&self, now: Instant) -> Duration {
        self.since
            .map_or(Duration::ZERO, |s| now.saturating_duration_since(s))
    }

    /// The wait before the next try: doubling, and ending no later than
    /// `budget` does, so a run gives up when `retry_for` says, not up to one
    /// backoff after it.
    fn backoff(&self, now: Instant, budget: Duration) -> Duration {
        let doublings = self.tries.saturating_sub(1).min(16);
        let left = budget.saturating_sub(self.for_how_long(now));
        (BACKOFF_FIRST * 2u32.pow(doublings))
            .min(BACKOFF_MAX)
            .min(left)
    }

    fn reset(&mut self) {
        *self = Failing::default();
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// The run's state, fed by reports.
struct Tally {
    shard_ranges: Vec<NonceRange>,
    /// Nonces of each shard earlier attempts searched (a resumed run): its
    /// worker searches the rest, from `first + skipped`.
    skipped: Vec<u64>,
    /// Hashes of earlier attempts, by shard: counted in the totals.
    earlier: Vec<u64>,
    /// Each shard's searched prefix, as its own worker reported it.
    searched: Vec<u64>,
    hashes: Vec<u64>,
    /// The count of each shard's latest report: a stall is a count that stops moving.
    last_count: Vec<Option<u64>>,
    exhausted: Vec<bool>,
    /// An `exhausted` under the shared key came, and waits for the launcher.
    unconfirmed: Vec<bool>,
    /// The launcher said the shard's worker succeeded.
    succeeded: Vec<bool>,
    /// Shards counted exhausted on the launcher's word.
    confirmed_by_launcher: u64,
    shards_done: u64,
    failed_reports: u64,
    /// Signatures of `failed` reports taken, so a redelivery counts once.
    failures_seen: HashSet<String>,
    ignored: u64,
    foreign: u64,
    stalled: u64,
    /// Verified finds by shard, the smallest of each ([`Answer::Smallest`]):
    /// from the shard's own worker, or confirmed by the launcher.
    finds: BTreeMap<u64, Golden>,
    /// Finds under the shared key that wait for the launcher, as `unconfirmed`.
    unconfirmed_finds: BTreeMap<u64, Golden>,
}

impl Tally {
    fn new(spec: &RunSpec) -> Result<Tally, MasterError> {
        let shard_ranges = (0..spec.shards)
            .map(|i| spec.range.shard(i, spec.shards))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                MasterError::Launch(
                    LaunchError::other("the run cannot be split into shards").with_source(e),
                )
            })?;
        let shards = shard_ranges.len();
        let exhausted: Vec<bool> = (0..spec.shards).map(|i| spec.searched.is_done(i)).collect();
        let skipped: Vec<u64> = (0..spec.shards)
            .map(|i| match spec.searched.is_done(i) {
                true => shard_length(&shard_ranges[i as usize]),
                false => spec.searched.prefix(i),
            })
            .collect();
        Ok(Tally {
            shard_ranges,
            earlier: skipped.clone(),
            searched: skipped.clone(),
            skipped,
            hashes: vec![0; shards],
            last_count: vec![None; shards],
            shards_done: exhausted.iter().filter(|&&done| done).count() as u64,
            exhausted,
            unconfirmed: vec![false; shards],
            succeeded: vec![false; shards],
            confirmed_by_launcher: 0,
            failed_reports: 0,
            failures_seen: HashSet::new(),
            ignored: 0,
            foreign: 0,
            stalled: 0,
            finds: BTreeMap::new(),
            unconfirmed_finds: BTreeMap::new(),
        })
    }

    /// The shards the answer still waits for: every unexhausted one, or, for
    /// [`Answer::Smallest`], those below the lowest find (and that find's own
    /// shard while its report waits for the launcher).
    fn unfinished(&self, answer: Answer) -> impl Iterator<Item = u64> + '_ {
        let (bound, waits) = match (answer, self.lowest_find()) {
            (Answer::Smallest, Some(lowest)) => (lowest, !self.finds.contains_key(&lowest)),
            _ => (self.shard_ranges.len() as u64, false),
        };
        (0..bound)
            .filter(|&shard| !self.exhausted[shard as usize])
            .chain(waits.then_some(bound))
    }

    /// The lowest shard with a verified golden nonce, whoever reported it: no
    /// shard above it can hold the smallest.
    fn lowest_find(&self) -> Option<u64> {
        let confirmed = self.finds.keys().next();
        let unconfirmed = self.unconfirmed_finds.keys().next();
        confirmed.into_iter().chain(unconfirmed).min().copied()
    }

    /// Hashes over every shard, earlier attempts' included.
    fn hashes(&self) -> u64 {
        let this_run = self.hashes.iter().fold(0u64, |a, &h| a.saturating_add(h));
        let earlier = self.earlier.iter().fold(0u64, |a, &h| a.saturating_add(h));
        this_run.saturating_add(earlier)
    }

    /// What is left of a shard earlier attempts did not search to its end:
    /// the nonces no one has searched yet.
    fn rest(&self, shard: usize) -> NonceRange {
        let range = self.shard_ranges[shard];
        let skipped = self.skipped[shard].min(shard_length(&range) - 1);
        NonceRange::new(range.first() + skipped, range.last()).expect("a rest of the shard")
    }

    /// What is left of `shard` for this run to search, as a hash count (0
    /// when earlier attempts searched it all).
    fn rest_length(&self, shard: usize) -> u64 {
        shard_length(&self.shard_ranges[shard]) - self.skipped[shard]
    }

    /// Takes a golden nonce an earlier attempt found in `shard` (verified
    /// again): it settles that shard for [`Answer::Smallest`].
    fn take_earlier_find(&mut self, puzzle: &crate::Puzzle, shard: u64, nonce: u64) -> bool {
        let i = shard as usize;
        let Some(range) = self.shard_ranges.get(i) else {
            return false;
        };
        let check = verify(puzzle, nonce);
        if !range.contains(nonce) || !check.golden {
            return false;
        }
        if self.exhausted[i] {
            // Its find settles it; it is not a shard without one.
            self.exhausted[i] = false;
            self.shards_done -= 1;
        }
        self.earlier[i] = nonce - range.first() + 1;
        let golden = Golden {
            nonce,
            hash: check.hash,
            leading_zeros: check.leading_zeros,
            shard,
            worker: "an earlier attempt".into(),
            worker_elapsed: Duration::ZERO,
            worker_hashes: self.earlier[i],
            received_after: Duration::ZERO,
            totals: Totals::default(),
        };
        keep_smaller(&mut self.finds, shard, golden);
        true
    }

    fn totals(&self, elapsed: Duration) -> Totals {
        Totals {
            hashes: self.hashes(),
            earlier_hashes: self.earlier.iter().fold(0u64, |a, &h| a.saturating_add(h)),
            elapsed,
            shards_done: self.shards_done,
            failed_reports: self.failed_reports,
            ignored: self.ignored,
            foreign: self.foreign,
            stalled: self.stalled,
        }
    }
}

/// How a run ends: an outcome or an error. The steps of [`Run`] return
/// `Err(ending)` to end the run, so `?` carries it out.
type Ending = Result<MasterOutcome, MasterError>;

/// Who a verified signature says sent a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Authority {
    /// The worker of the report's own shard: signed with that shard's key, or
    /// carried by a channel that knows the sender.
    Shard,
    /// Some worker of the run: signed with the shared key over a channel that
    /// cannot tell who sent it (an Indexed Job's pods on SQS).
    Run,
}

/// The calls whose failures the master rides out within `retry_for`.
#[derive(Debug, Clone, Copy)]
enum Call {
    Open,
    Status,
    Receive,
}

/// The longest one receive waits while the master drains the channel before
/// it concludes (a long poll of a second asks every SQS server).
const DRAIN_WAIT: Duration = Duration::from_secs(1);

/// One run between its launch and its end: the launcher, the channel, the
/// tally, and the small steps the loop is made of.
struct Run<'a> {
    launcher: &'a mut dyn Launcher,
    channel: &'a mut dyn ResultChannel,
    /// The caller's spec, with the channel's address once it is open.
    spec: RunSpec,
    options: &'a MasterOptions,
    clock: &'a Clock<'a>,
    started: Instant,
    on_event: &'a mut (dyn FnMut(MasterEvent) + Send),
    tally: Tally,
    next_status: Instant,
    status_failing: Failing,
    receive_failing: Failing,
    /// Consecutive status polls that saw no live worker while shards are
    /// unfinished; two in a row (≥ STATUS_EVERY apart) end the run, after a drain.
    idle_polls: u32,
    /// When each running shard's count last moved (or its worker was first
    /// seen running); `None` when stalls are not watched on this run.
    watched: Option<HashMap<u64, Instant>>,
    stall_after: Duration,
    /// Whether [`MasterEvent::TooManyWorkers`] has been said.
    said_too_many: bool,
    /// The shard above which the launcher was asked to retire workers.
    retired_above: Option<u64>,
}

async fn drive(
    launcher: &mut dyn Launcher,
    channel: &mut dyn ResultChannel,
    spec: &RunSpec,
    options: &MasterOptions,
    clock: &Clock<'_>,
    started: Instant,
    on_event: &mut (dyn FnMut(MasterEvent) + Send),
) -> Ending {
    spec.check().map_err(MasterError::InvalidSpec)?;
    let mut tally = Tally::new(spec)?;
    for (&shard, &nonce) in &options.earlier_finds {
        if !tally.take_earlier_find(&spec.puzzle, shard, nonce) {
            tracing::warn!(run = %spec.run_id, shard, nonce, "an earlier attempt's find is not a golden nonce of its shard: ignored");
        }
    }
    let stall_after = options
        .stall_after
        .unwrap_or_else(|| spec.progress_every.saturating_mul(STALL_INTERVALS));
    let watched = channel.reports_progress().then(HashMap::new);
    let mut run = Run {
        launcher,
        channel,
        spec: spec.clone(),
        options,
        clock,
        started,
        on_event,
        tally,
        next_status: clock.now(),
        status_failing: Failing::default(),
        receive_failing: Failing::default(),
        idle_polls: 0,
        watched,
        stall_after,
        said_too_many: false,
        retired_above: None,
    };
    match run.go().await {
        Err(ending) => ending,
        Ok(never) => match never {},
    }
}

// The error of each step is the run's one ending, returned once: its size
// costs nothing worth a box.
#[allow(clippy::result_large_err)]
impl Run<'_> {
    async fn go(&mut self) -> Result<std::convert::Infallible, Ending> {
        // A resumed run whose earlier attempts settled the answer creates nothing.
        if let Some(ending) = self.ready() {
            return Err(ending);
        }
        self.open_channel().await?;
        self.launch().await?;
        // An earlier attempt's find already bounds the answer.
        self.retire().await?;
        loop {
            self.check_cut()?;
            if self.clock.now() >= self.next_status {
                self.next_status = self.clock.now() + self.options.status_every;
                self.poll_status().await?;
            }
            self.receive_once().await?;
            self.settle().await?;
        }
    }

    /// Time since the run started, on the run's clock.
    fn elapsed(&self) -> Duration {
        self.clock.now().saturating_duration_since(self.started)
    }

    /// How the run ends when a call is cut short by the cancellation or the deadline.
    fn cut_short(&self, cut: Cut) -> Ending {
        if cut == Cut::Cancelled {
            tracing::info!(run = %self.spec.run_id, "interrupted");
            Ok(MasterOutcome::Interrupted(
                self.tally.totals(self.elapsed()),
            ))
        } else {
            tracing::info!(run = %self.spec.run_id, "deadline reached");
            Ok(MasterOutcome::TimedOut(self.tally.totals(self.elapsed())))
        }
    }

    /// Ends the run if it was cancelled or its deadline passed.
    fn check_cut(&self) -> Result<(), Ending> {
        if self.clock.cancel.is_some_and(CancelToken::is_cancelled) {
            return Err(self.cut_short(Cut::Cancelled));
        }
        if self.clock.deadline.is_some_and(|d| self.clock.now() >= d) {
            return Err(self.cut_short(Cut::Deadline));
        }
        Ok(())
    }

    /// Opens the channel (what may pass is retried within `retry_for`) and
    /// writes its address into the spec the workers are launched with: no
    /// caller can forget it.
    async fn open_channel(&mut self) -> Result<(), Ending> {
        loop {
            let limit = self.options.call_timeout;
            let opened = match self
                .clock
                .bounded(limit, self.channel.open(&self.spec))
                .await
            {
                Ok(opened) => opened,
                // It may still have happened: `close` removes what it made.
                Err(Cut::TimedOut) => Err(ChannelError::unreachable(
                    "the result channel",
                    format!("opening it got no answer within {}", seconds(limit)),
                )),
                // Nothing was searched: not "timed out", but a channel that
                // never answered within the run's time.
                Err(Cut::Deadline) => {
                    return Err(Err(MasterError::Channel(ChannelError::unreachable(
                        "the result channel",
                        format!(
                            "opening it got no answer within the run's time limit ({})",
                            seconds(self.elapsed())
                        ),
                    ))))
                }
                Err(cut) => return Err(self.cut_short(cut)),
            };
            match opened {
                Ok(()) => break,
                Err(e) => {
                    self.on_call_failure(Call::Open, e)?;
                    self.back_off(Call::Open).await?;
                }
            }
        }
        self.receive_failing.reset();
        self.spec.queue_url = self.channel.address().to_string();
        tracing::debug!(run = %self.spec.run_id, reports_to = %self.spec.queue_url, "result channel open");
        Ok(())
    }

    /// The failure record of `call`: the channel's calls (open, receive) share one.
    fn failing(&mut self, call: Call) -> &mut Failing {
        match call {
            Call::Status => &mut self.status_failing,
            Call::Open | Call::Receive => &mut self.receive_failing,
        }
    }

    /// Waits out the backoff of a failing call; the cancellation and the
    /// deadline still cut it short.
    // `&mut self`: a `&Run` held across an await would need `Run: Sync`.
    async fn back_off(&mut self, call: Call) -> Result<(), Ending> {
        let (now, budget) = (self.clock.now(), self.options.retry_for);
        let backoff = self.failing(call).backoff(now, budget);
        match self.clock.bounded(backoff, pending::<()>()).await {
            Err(cut @ (Cut::Cancelled | Cut::Deadline)) => Err(self.cut_short(cut)),
            _ => Ok(()),
        }
    }

    async fn launch(&mut self) -> Result<(), Ending> {
        let spec = &self.spec;
        let limit = self.options.launch_timeout;
        match self.clock.bounded(limit, self.launcher.launch(spec)).await {
            Ok(launched) => launched.map_err(|e| Err(MasterError::Launch(e)))?,
            Err(Cut::TimedOut) => {
                return Err(Err(MasterError::Launch(LaunchError::unreachable(
                    "the launcher",
                    format!("starting the workers took longer than {}", seconds(limit)),
                ))))
            }
            Err(cut) => return Err(self.cut_short(cut)),
        }
        tracing::info!(run = %spec.run_id, shards = spec.shards, parallelism = spec.parallelism, "workers launched");
        (self.on_event)(MasterEvent::Launched {
            shards: spec.shards,
            parallelism: spec.parallelism,
            reports_to: spec.queue_url.clone(),
        });
        Ok(())
    }

    /// Asks the launcher how the workers are doing, and acts on it: a fatal
    /// status, shards it confirms, stalled workers, workers all gone.
    async fn poll_status(&mut self) -> Result<(), Ending> {
        let limit = self.options.call_timeout;
        let status = match self.clock.bounded(limit, self.launcher.status()).await {
            Ok(status) => status,
            Err(Cut::TimedOut) => Err(LaunchError::unreachable(
                "the launcher",
                format!(
                    "asking how the workers are doing got no answer within {}",
                    seconds(limit)
                ),
            )),
            Err(cut) => return Err(self.cut_short(cut)),
        };
        let status = match status {
            Ok(status) => status,
            Err(e) => {
                return self.on_call_failure(Call::Status, e);
            }
        };
        self.status_failing.reset();
        (self.on_event)(MasterEvent::Workers(status.clone()));
        self.check_parallelism(&status);
        if let Some(fatal) = status.fatal {
            return Err(Err(MasterError::Fatal(fatal)));
        }
        self.confirm(&status.succeeded_shards);
        if let Some(running) = &status.running_shards {
            self.check_stalls(running).await?;
        }
        let unfinished = self.tally.unfinished(self.options.answer).count();
        let idle =
            status.waiting() == 0 && status.running == 0 && status.succeeded + status.failed > 0;
        self.idle_polls = if idle && unfinished > 0 {
            self.idle_polls + 1
        } else {
            0
        };
        if self.idle_polls >= 2 {
            // Reports may still be on their way, or behind other messages:
            // read what is there before saying shards never reported.
            self.drain().await?;
            if let Some(ending) = self.ready() {
                return Err(ending);
            }
            return Err(Err(self.workers_gone(status.failed)));
        }
        Ok(())
    }

    /// Says once if the launcher runs more workers than the run allows at once.
    fn check_parallelism(&mut self, status: &WorkerStatus) {
        // `RunSpec::check` holds parallelism to at most the shards.
        let parallelism = self.spec.parallelism;
        if status.running > parallelism && !self.said_too_many {
            self.said_too_many = true;
            tracing::warn!(
                running = status.running,
                parallelism,
                "the launcher runs more workers than the run's parallelism"
            );
            (self.on_event)(MasterEvent::TooManyWorkers {
                running: status.running,
                parallelism,
            });
        }
    }

    /// One receive of up to [`RECEIVE_WAIT`] (less when the next status poll
    /// or the deadline is sooner), its messages taken into account.
    async fn receive_once(&mut self) -> Result<(), Ending> {
        let now = self.clock.now();
        let mut wait = RECEIVE_WAIT.min(self.next_status.saturating_duration_since(now));
        if let Some(d) = self.clock.deadline {
            wait = wait.min(d.saturating_duration_since(now));
        }
        let limit = wait + self.options.call_timeout;
        let received = match self.clock.bounded(limit, self.channel.receive(wait)).await {
            Ok(received) => received,
            Err(Cut::TimedOut) => Err(ChannelError::unreachable(
                self.channel.address(),
                format!("no answer within {}", seconds(limit)),
            )),
            Err(cut) => return Err(self.cut_short(cut)),
        };
        match received {
            Ok(received) => {
                self.receive_failing.reset();
                let empty = received.is_empty();
                self.absorb(received)?;
                if empty {
                    self.wait_out(now + wait).await?;
                }
                Ok(())
            }
            Err(e) => {
                self.on_call_failure(Call::Receive, e)?;
                // Not a hot loop against a failing service.
                self.back_off(Call::Receive).await
            }
        }
    }

    /// Waits on the clock until `until`, or until the run is cut. A channel
    /// may answer an empty receive at once (SQS long-polls whole seconds
    /// only, so a wait under one is a short poll): the loop keeps its pace
    /// of one receive per wait instead of spinning against the queue.
    async fn wait_out(&mut self, until: Instant) -> Result<(), Ending> {
        let rest = until.saturating_duration_since(self.clock.now());
        if rest.is_zero() {
            return Ok(());
        }
        match self.clock.bounded(rest, pending::<()>()).await {
            Ok(()) | Err(Cut::TimedOut) => Ok(()),
            Err(cut) => Err(self.cut_short(cut)),
        }
    }

    /// A failed `status` or `receive`: refusals end the run at once, other
    /// failures are retried while they last less than `retry_for`.
    fn on_call_failure(&mut self, call: Call, error: CallError) -> Result<(), Ending> {
        let (what, fail): (_, fn(CallError) -> MasterError) = match call {
            Call::Open => ("opening the result channel", MasterError::Channel),
            Call::Status => ("worker status", MasterError::Status),
            Call::Receive => ("receiving results", MasterError::Channel),
        };
        let (now, budget) = (self.clock.now(), self.options.retry_for);
        let failing = self.failing(call);
        // The one retry policy: what `is_transient` says may pass is retried
        // within the budget, anything else ends the run at once.
        if !error.is_transient() || !failing.again(now, budget) {
            return Err(Err(fail(error)));
        }
        let failing_for = failing.for_how_long(now);
        tracing::debug!(run = %self.spec.run_id, "{what} failed for {}; retrying for up to {}: {}", seconds(failing_for), seconds(self.options.retry_for), error_chain(&error));
        (self.on_event)(MasterEvent::Retrying {
            what,
            error: error_chain(&error),
            failing_for,
            budget: self.options.retry_for,
        });
        Ok(())
    }

    /// Takes a receive's messages into account; a verified find ends the run.
    fn absorb(&mut self, received: Received) -> Result<(), Ending> {
        self.tally.foreign = self.tally.foreign.saturating_add(received.foreign);
        for message in received.messages {
            if let Some(golden) = self.take(&message) {
                return Err(Ok(MasterOutcome::Found(golden)));
            }
        }
        Ok(())
    }

    /// Receives until the channel comes back empty (nothing of this run's, nothing
    /// of anyone else's), for at most [`MasterOptions::drain_for`]: so an answer
    /// on its way, or behind a flood of other messages, is read before the run
    /// concludes without it.
    async fn drain(&mut self) -> Result<(), Ending> {
        let until = self.clock.now() + self.options.drain_for;
        let mut calls = 0u32;
        loop {
            self.check_cut()?;
            // Each call within what is left of the drain, so the drain as a
            // whole takes at most `drain_for`.
            let left = until.saturating_duration_since(self.clock.now());
            if left.is_zero() {
                break;
            }
            calls += 1;
            let wait = DRAIN_WAIT.min(left);
            let received = match self.clock.bounded(left, self.channel.receive(wait)).await {
                Ok(Ok(received)) => received,
                Ok(Err(e)) => {
                    tracing::debug!(run = %self.spec.run_id, "draining the channel stopped: {}", error_chain(&e));
                    break;
                }
                Err(Cut::TimedOut) => break,
                Err(cut) => return Err(self.cut_short(cut)),
            };
            let empty = received.is_empty();
            self.absorb(received)?;
            if empty {
                break;
            }
        }
        tracing::debug!(run = %self.spec.run_id, calls, "drained the channel");
        Ok(())
    }

    /// Ends the run if its answer is known ([`Run::ready`]). If some shards
    /// were confirmed by the launcher rather than by their own worker's key, a
    /// find may still be on its way: drain first, and look again.
    async fn settle(&mut self) -> Result<(), Ending> {
        if self.options.answer == Answer::Smallest {
            self.retire().await?;
        }
        if self.ready().is_none() {
            return Ok(());
        }
        if self.tally.confirmed_by_launcher > 0 {
            self.drain().await?;
        }
        match self.ready() {
            Some(ending) => {
                if let Ok(MasterOutcome::Found(golden)) = &ending {
                    tracing::info!(run = %self.spec.run_id, nonce = golden.nonce, shard = golden.shard, "the smallest golden nonce: every shard below is exhausted");
                }
                Err(ending)
            }
            None => Ok(()),
        }
    }

    /// The run's ending, if its answer is known without another report: every
    /// shard exhausted, or, for [`Answer::Smallest`], a find in a shard whose
    /// lower shards are all exhausted. (A first find ends the run as it is taken.)
    fn ready(&self) -> Option<Ending> {
        // Only an earlier attempt's find is kept for the first answer: a run
        // that found one is over.
        if self.options.answer == Answer::First {
            if let Some(golden) = self.tally.finds.values().min_by_key(|g| g.nonce) {
                let mut golden = golden.clone();
                golden.totals = self.tally.totals(self.elapsed());
                return Some(Ok(MasterOutcome::Found(golden)));
            }
        }
        if self.options.answer == Answer::Smallest {
            if let Some((&shard, golden)) = self.tally.finds.iter().next() {
                let below = &self.tally.exhausted[..shard as usize];
                if !below.iter().all(|&done| done) {
                    return None;
                }
                let mut golden = golden.clone();
                golden.totals = self.tally.totals(self.elapsed());
                return Some(Ok(MasterOutcome::Found(golden)));
            }
        }
        (self.tally.shards_done == self.spec.shards).then(|| self.exhausted())
    }

    fn exhausted(&self) -> Ending {
        tracing::info!(run = %self.spec.run_id, "every shard exhausted");
        Ok(MasterOutcome::Exhausted(self.tally.totals(self.elapsed())))
    }

    /// Asks the launcher to stop the shards above the lowest find, once per
    /// lower find: they cannot hold the smallest golden nonce. A failure only
    /// costs their work, never the answer, so it is logged, not fatal.
    async fn retire(&mut self) -> Result<(), Ending> {
        let Some(lowest) = self.tally.lowest_find() else {
            return Ok(());
        };
        if lowest + 1 >= self.spec.shards || self.retired_above.is_some_and(|r| r <= lowest) {
            return Ok(());
        }
        self.retired_above = Some(lowest);
        let limit = self.options.call_timeout;
        let run = self.spec.run_id;
        match self
            .clock
            .bounded(limit, self.launcher.retire_above(lowest))
            .await
        {
            Ok(Ok(())) => {
                tracing::info!(run = %run, "shards above {lowest} retired: a golden nonce in shard {lowest} is smaller than any of theirs")
            }
            Ok(Err(e)) => {
                tracing::warn!(run = %run, "retiring the shards above {lowest} failed, so they run on: {}", error_chain(&e))
            }
            Err(Cut::TimedOut) => {
                tracing::warn!(run = %run, "retiring the shards above {lowest} got no answer within {}, so they run on", seconds(limit))
            }
            Err(cut) => return Err(self.cut_short(cut)),
        }
        Ok(())
    }

    fn workers_gone(&self, failed: u64) -> MasterError {
        let missing = self
            .tally
            .unfinished(self.options.answer)
            .take(8)
            .map(|shard| (shard, self.tally.rest(shard as usize)))
            .collect();
        MasterError::WorkersGone {
            unfinished: self.tally.unfinished(self.options.answer).count() as u64,
            shards: self.spec.shards,
            failed,
            missing,
        }
    }

    /// The launcher says these shards' workers succeeded: an `exhausted` under
    /// the shared key that waited for this now counts.
    fn confirm(&mut self, succeeded: &[u64]) {
        for &shard in succeeded {
            let Some(i) = usize::try_from(shard)
                .ok()
                .filter(|&i| i < self.tally.succeeded.len())
            else {
                continue;
            };
            self.tally.succeeded[i] = true;
            if let Some(golden) = self.tally.unconfirmed_finds.remove(&shard) {
                self.tally.confirmed_by_launcher += 1;
                (self.on_event)(MasterEvent::Found {
                    nonce: golden.nonce,
                    shard,
                    worker: golden.worker.clone(),
                    settled: true,
                });
                keep_smaller(&mut self.tally.finds, shard, golden);
            }
            if self.tally.unconfirmed[i] {
                self.tally.unconfirmed[i] = false;
                self.tally.confirmed_by_launcher += 1;
                self.mark_exhausted(shard, "confirmed by the launcher".into());
            }
        }
    }

    fn mark_exhausted(&mut self, shard: u64, worker: String) {
        let i = shard as usize;
        if !self.tally.exhausted[i] {
            self.tally.exhausted[i] = true;
            self.tally.shards_done += 1;
        }
        (self.on_event)(MasterEvent::ShardExhausted { shard, worker });
    }

    /// Replaces running workers whose count has not moved for `stall_after`;
    /// a launcher that cannot replace one ends the run naming the shard.
    async fn check_stalls(&mut self, running: &[u64]) -> Result<(), Ending> {
        let Some(watched) = self.watched.as_mut() else {
            return Ok(());
        };
        let now = self.clock.now();
        let running: HashSet<u64> = running.iter().copied().collect();
        watched.retain(|shard, _| running.contains(shard));
        for &shard in &running {
            watched.entry(shard).or_insert(now);
        }
        let mut stalled: Vec<(u64, Duration)> = watched
            .iter()
            .map(|(&shard, &since)| (shard, now.saturating_duration_since(since)))
            .filter(|&(_, silent)| silent >= self.stall_after)
            .collect();
        stalled.sort_unstable();
        for (shard, silent_for) in stalled {
            let limit = self.options.call_timeout;
            let restarted = match self
                .clock
                .bounded(limit, self.launcher.restart(shard))
                .await
            {
                Ok(restarted) => restarted,
                Err(Cut::TimedOut) => Err(LaunchError::unreachable(
                    "the launcher",
                    format!("replacing a worker got no answer within {}", seconds(limit)),
                )),
                Err(cut) => return Err(self.cut_short(cut)),
            };
            if let Err(cause) = restarted {
                return Err(Err(MasterError::Stalled {
                    shard,
                    range: self.tally.shard_ranges[shard as usize],
                    silent_for,
                    cause,
                }));
            }
            tracing::info!(run = %self.spec.run_id, shard, "worker made no progress for {}; replaced", seconds(silent_for));
            self.tally.stalled += 1;
            if let Some(watched) = self.watched.as_mut() {
                watched.insert(shard, self.clock.now());
            }
            (self.on_event)(MasterEvent::Stalled { shard, silent_for });
        }
        Ok(())
    }

    /// Takes one message into account; returns the golden nonce if it is a
    /// verified find. Reports are verified once, here, in [`check`].
    fn take(&mut self, message: &Message) -> Option<Golden> {
        let received_after = self.elapsed();
        let (report, authority) = match check(&self.spec, &self.tally, message) {
            Ok(checked) => checked,
            Err(why) => {
                tracing::debug!(run = %self.spec.run_id, "ignored a message: {why}");
                self.tally.ignored += 1;
                (self.on_event)(MasterEvent::Ignored(why));
                return None;
            }
        };
        let shard = report.shard as usize;
        // Counts only grow (a retried worker starting over must not lower the total),
        // and never past the shard's length, whoever sent them.
        let length = self.tally.rest_length(shard);
        let hashes = report.hashes.min(length);
        if self.tally.last_count[shard] != Some(hashes) {
            self.tally.last_count[shard] = Some(hashes);
            if let Some(since) = self.watched.as_mut().and_then(|w| w.get_mut(&report.shard)) {
                *since = self.clock.now();
            }
        }
        self.tally.hashes[shard] = self.tally.hashes[shard].max(hashes);
        match report.kind {
            ReportKind::Found { nonce, hash } => {
                tracing::info!(run = %self.spec.run_id, nonce, shard, worker = %report.worker, "golden nonce verified");
                let settled = self.options.answer == Answer::First
                    || authority == Authority::Shard
                    || self.tally.succeeded[shard];
                (self.on_event)(MasterEvent::Found {
                    nonce,
                    shard: report.shard,
                    worker: report.worker.clone(),
                    settled,
                });
                let golden = Golden {
                    nonce,
                    hash,
                    leading_zeros: crate::verify::leading_zero_bits(&hash),
                    shard: report.shard,
                    worker: report.worker.clone(),
                    worker_elapsed: Duration::from_millis(report.elapsed_ms),
                    worker_hashes: hashes,
                    received_after,
                    totals: self.tally.totals(self.elapsed()),
                };
                if self.options.answer == Answer::First {
                    return Some(golden);
                }
                // The answer needs the shard's smallest: any worker's golden
                // nonce bounds it, but only the shard's own worker (or the
                // launcher's word that it succeeded) settles it.
                let finds = if authority == Authority::Shard || self.tally.succeeded[shard] {
                    &mut self.tally.finds
                } else {
                    &mut self.tally.unconfirmed_finds
                };
                keep_smaller(finds, report.shard, golden);
            }
            ReportKind::Exhausted => {
                if authority == Authority::Shard || self.tally.succeeded[shard] {
                    self.mark_exhausted(report.shard, report.worker.clone());
                } else {
                    // Any worker of the run could have signed this: it counts
                    // once the launcher says this shard's worker succeeded.
                    self.tally.unconfirmed[shard] = true;
                }
            }
            ReportKind::Progress { searched } => {
                // Only the shard's own worker may say how far its shard is
                // searched, and never past what it has tried.
                let most = self.tally.skipped[shard].saturating_add(hashes);
                let whole = shard_length(&self.tally.shard_ranges[shard]);
                if authority == Authority::Shard && searched < whole {
                    let searched = searched.min(most);
                    self.tally.searched[shard] = self.tally.searched[shard].max(searched);
                }
            }
            ReportKind::Failed { ref error } => {
                // Informational: the launcher retries the shard, or says it is
                // fatal. A report delivered twice is counted once.
                let signature = message.signature.clone().unwrap_or_default();
                if self.tally.failures_seen.insert(signature) {
                    self.tally.failed_reports += 1;
                    tracing::debug!(run = %self.spec.run_id, shard, worker = %report.worker, "worker failed: {error}");
                    (self.on_event)(MasterEvent::WorkerFailed {
                        shard: report.shard,
                        worker: report.worker.clone(),
                        error: error.clone(),
                    });
                }
            }
        }
        (self.on_event)(MasterEvent::Progress(Progress {
            shard: report.shard,
            worker: report.worker,
            shard_hashes: self.tally.hashes[shard],
            shard_searched: self.tally.searched[shard],
            shard_elapsed: Duration::from_millis(report.elapsed_ms),
            total_hashes: self.tally.hashes(),
            shards_done: self.tally.shards_done,
            shards: self.spec.shards,
        }));
        None
    }
}

/// Keeps `golden` as `shard`'s find unless a smaller one is already there.
fn keep_smaller(finds: &mut BTreeMap<u64, Golden>, shard: u64, golden: Golden) {
    match finds.get(&shard) {
        Some(kept) if kept.nonce <= golden.nonce => {}
        _ => {
            finds.insert(shard, golden);
        }
    }
}

/// A shard's length as a hash count (a whole 64-bit space counts as 2^64 − 1).
fn shard_length(range: &NonceRange) -> u64 {
    u64::try_from(range.len()).unwrap_or(u64::MAX)
}

/// Checks a message's sender and signature, then parses it and checks
/// everything that can be checked about the report (a `found` nonce is
/// recomputed here, once).
fn check(spec: &RunSpec, tally: &Tally, message: &Message) -> Result<(Report, Authority), Ignored> {
    // Before parsing: the shard the message is from picks the key, and without
    // that key nothing in the body is worth reading.
    let shard = message.sender.shard().ok_or(Ignored::NoSender)?;
    if shard >= spec.shards {
        return Err(Ignored::NoSuchShard {
            shard,
            shards: spec.shards,
        });
    }
    let signature = message.signature.as_deref().ok_or(Ignored::Unsigned)?;
    let authority = if spec
        .run_key
        .for_shard(shard)
        .verify(&message.body, signature)
    {
        Authority::Shard
    } else if spec.run_key.shared().verify(&message.body, signature) {
        match message.sender {
            Sender::Shard(_) => Authority::Shard,
            _ => Authority::Run,
        }
    } else {
        return Err(Ignored::BadSignature);
    };
    let report = Report::from_json(&message.body).map_err(Ignored::Malformed)?;
    if report.run_id != spec.run_id {
        return Err(Ignored::OtherRun(report.run_id));
    }
    if report.shard != shard {
        return Err(Ignored::WrongShard {
            reported: report.shard,
            sender: shard,
        });
    }
    let range = &tally.shard_ranges[shard as usize];
    // A resumed run's worker searches its shard's rest only.
    let expected = tally.rest_length(shard as usize);
    if report.kind == ReportKind::Exhausted && report.hashes != expected {
        return Err(Ignored::ShortExhausted {
            shard: report.shard,
            hashes: report.hashes,
            expected,
        });
    }
    if let ReportKind::Found { nonce, hash } = report.kind {
        let skipped = tally.skipped[shard as usize];
        if !range.contains(nonce) || nonce - range.first() < skipped {
            return Err(Ignored::OutsideShard {
                nonce,
                shard: report.shard,
            });
        }
        let verification = verify(&spec.puzzle, nonce);
        if !verification.golden {
            return Err(Ignored::NotGolden {
                nonce,
                leading_zeros: verification.leading_zeros,
                difficulty: spec.puzzle.difficulty(),
            });
        }
        if verification.hash != hash {
            return Err(Ignored::WrongHash {
                nonce,
                reported: to_hex(&hash),
            });
        }
    }
    Ok((report, authority))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;
    use crate::cancel::ThreadTimer;
    use crate::memory::{block_on, MemoryChannel, MemoryLauncher};
    use crate::puzzle::Puzzle;
    use crate::resume::Searched;
    use async_trait::async_trait;
    use std::sync::{Arc, Mutex};

    fn spec(difficulty: u32, range: Option<NonceRange>, shards: u64) -> RunSpec {
        let puzzle = Puzzle::with_default_block(difficulty).unwrap();
        RunSpec {
            run_id: Uuid::new_v4(),
            range: range.unwrap_or(puzzle.space()),
            puzzle,
            shards,
            parallelism: shards,
            queue_url: "memory://".into(),
            run_key: crate::RunKey::generate().unwrap(),
            timeout: None,
            progress_every: crate::distributed::DEFAULT_PROGRESS_EVERY,
            searched: Default::default(),
        }
    }

    fn run(
        launcher: &mut dyn Launcher,
        channel: &mut dyn ResultChannel,
        spec: &RunSpec,
        deadline: Option<Instant>,
        cancel: &CancelToken,
    ) -> (Result<MasterOutcome, MasterError>, Vec<MasterEvent>) {
        run_with(
            launcher,
            channel,
            spec,
            &MasterOptions::with_deadline(deadline),
            cancel,
        )
    }

    fn run_with(
        launcher: &mut dyn Launcher,
        channel: &mut dyn ResultChannel,
        spec: &RunSpec,
        options: &MasterOptions,
        cancel: &CancelToken,
    ) -> (Result<MasterOutcome, MasterError>, Vec<MasterEvent>) {
        let mut events = Vec::new();
        let out = block_on(run_master(
            launcher,
            channel,
            spec,
            options,
            &ThreadTimer,
            cancel,
            |e| events.push(e),
        ));
        (out, events)
    }

    /// The smallest golden nonce of a shard, found the slow, obvious way.
    fn first_golden(spec: &RunSpec, shard: u64) -> Option<u64> {
        let range = spec.range.shard(shard, spec.shards).unwrap();
        (range.first()..=range.last()).find(|&n| verify(&spec.puzzle, n).golden)
    }

    #[test]
    fn finds_and_verifies() {
        let spec = spec(12, None, 4);
        let mut channel = MemoryChannel::new();
        let mut launcher = MemoryLauncher::new(channel.clone(), Backend::Scalar);
        let (out, events) = run(
            &mut launcher,
            &mut channel,
            &spec,
            None,
            &CancelToken::new(),
        );
        let MasterOutcome::Found(golden) = out.unwrap() else {
            panic!("D = 12 is found")
        };
        assert!(verify(&spec.puzzle, golden.nonce).golden);
        assert_eq!(golden.hash, verify(&spec.puzzle, golden.nonce).hash);
        assert!(golden.leading_zeros >= 12);
        assert!(spec
            .range
            .shard(golden.shard, 4)
            .unwrap()
            .contains(golden.nonce));
        assert_eq!(golden.worker, format!("memory-{}", golden.shard));
        assert!(golden.totals.hashes > 0);
        assert!(events
            .iter()
            .any(|e| matches!(e, MasterEvent::Launched { shards: 4, .. })));
        assert!(events
            .iter()
            .any(|e| matches!(e, MasterEvent::Found { .. })));
        assert!(launcher.is_stopped() && channel.is_closed());
    }

    /// A report as the worker of its shard would send it over SQS: signed with
    /// that shard's key, claiming that shard.
    fn signed(spec: &RunSpec, report: &Report) -> Message {
        Message::signed(&spec.run_key.for_shard(report.shard), report.to_json())
            .from_sender(Sender::Claims(report.shard))
    }

    fn report(spec: &RunSpec, shard: u64, hashes: u64, kind: ReportKind) -> Report {
        Report {
            run_id: spec.run_id,
            shard,
            worker: "forger".into(),
            hashes,
            elapsed_ms: 1,
            kind,
        }
    }

    fn ignored(events: &[MasterEvent]) -> Vec<Ignored> {
        events
            .iter()
            .filter_map(|e| match e {
                MasterEvent::Ignored(why) => Some(why.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn forgeries_are_ignored_and_the_real_find_wins() {
        let spec = spec(14, None, 2);
        let mut channel = MemoryChannel::new();
        let real = first_golden(&spec, 0).unwrap();
        let real_hash = verify(&spec.puzzle, real).hash;
        let found = |nonce: u64, hash: [u8; 32], shard: u64, run_id: Uuid| {
            let mut report = report(&spec, shard, 1, ReportKind::Found { nonce, hash });
            report.run_id = run_id;
            signed(&spec, &report)
        };
        let not_golden = (0..).find(|&n| !verify(&spec.puzzle, n).golden).unwrap();
        // Without the key: a perfect report, unsigned, wrongly signed, or signed
        // for another body, counts for nothing.
        let perfect = report(
            &spec,
            0,
            1,
            ReportKind::Found {
                nonce: real,
                hash: real_hash,
            },
        )
        .to_json();
        let other_key = crate::RunKey::generate().unwrap();
        let shard0 = spec.run_key.for_shard(0);
        let claims0 = Sender::Claims(0);
        channel.send(Message::unsigned(perfect.clone()).from_sender(claims0));
        channel.send(Message::signed(&other_key, perfect.clone()).from_sender(claims0));
        channel.send(Message {
            body: perfect.replace("forger", "forgex"),
            signature: Some(shard0.sign(&perfect)),
            sender: claims0,
        });
        // The master's own key is no worker's: a message signed with it is forged.
        channel.send(Message::signed(&spec.run_key, perfect.clone()).from_sender(claims0));
        // No shard named (no cnd-shard attribute): no key to check it with.
        channel.send(Message::signed(&shard0, perfect.clone()));
        // Shard 1's worker speaking for shard 0, with a perfect report.
        channel.send(
            Message::signed(&spec.run_key.for_shard(1), perfect.clone())
                .from_sender(Sender::Claims(1)),
        );
        // With the key (a worker gone wrong): still verified before it counts.
        channel.send(Message::signed(&shard0, "this is not JSON").from_sender(claims0));
        channel.send(found(
            not_golden,
            verify(&spec.puzzle, not_golden).hash,
            0,
            spec.run_id,
        ));
        channel.send(found(real, [0; 32], 0, spec.run_id)); // golden, wrong hash
        channel.send(found(real, real_hash, 1, spec.run_id)); // wrong shard
        channel.send(found(real, real_hash, 7, spec.run_id)); // no such shard
        channel.send(found(real, real_hash, 0, Uuid::new_v4())); // other run
        let mut launcher = MemoryLauncher::new(channel.clone(), Backend::Scalar);
        let (out, events) = run(
            &mut launcher,
            &mut channel,
            &spec,
            None,
            &CancelToken::new(),
        );
        let MasterOutcome::Found(golden) = out.unwrap() else {
            panic!("found")
        };
        assert_ne!(golden.worker, "forger");
        assert!(verify(&spec.puzzle, golden.nonce).golden);
        let ignored = ignored(&events);
        assert_eq!(ignored.len(), 12, "{ignored:?}");
        assert_eq!(ignored[0], Ignored::Unsigned);
        assert_eq!(ignored[1], Ignored::BadSignature);
        assert_eq!(ignored[2], Ignored::BadSignature);
        assert_eq!(ignored[3], Ignored::BadSignature);
        assert_eq!(ignored[4], Ignored::NoSender);
        assert_eq!(
            ignored[5],
            Ignored::WrongShard {
                reported: 0,
                sender: 1
            }
        );
        assert!(matches!(ignored[6], Ignored::Malformed(_)));
        assert!(matches!(ignored[7], Ignored::NotGolden { .. }));
        assert!(matches!(ignored[8], Ignored::WrongHash { .. }));
        assert!(matches!(ignored[9], Ignored::OutsideShard { shard: 1, .. }));
        assert!(matches!(
            ignored[10],
            Ignored::NoSuchShard {
                shard: 7,
                shards: 2
            }
        ));
        assert!(matches!(ignored[11], Ignored::OtherRun(_)));
        assert_eq!(golden.totals.ignored, 12);
        assert!(launcher.is_stopped() && channel.is_closed());
    }

    #[test]
    fn unsigned_exhausted_reports_cannot_end_a_run() {
        // The attack of issue 8: `exhausted` for every shard, `hashes: 1`. Unsigned,
        // they are dropped; signed (a key that leaked), they still do not count,
        // because one hash is not a whole shard.
        let spec = spec(14, None, 2);
        let mut channel = MemoryChannel::new();
        for shard in 0..2 {
            let forged = report(&spec, shard, 1, ReportKind::Exhausted);
            channel.send(Message::unsigned(forged.to_json()).from_sender(Sender::Claims(shard)));
            channel.send(signed(&spec, &forged));
        }
        let mut launcher = MemoryLauncher::new(channel.clone(), Backend::Scalar);
        let (out, events) = run(
            &mut launcher,
            &mut channel,
            &spec,
            None,
            &CancelToken::new(),
        );
        let MasterOutcome::Found(golden) = out.unwrap() else {
            panic!("the space holds golden nonces at D = 14")
        };
        assert!(verify(&spec.puzzle, golden.nonce).golden);
        let ignored = ignored(&events);
        assert_eq!(ignored.len(), 4, "{ignored:?}");
        assert_eq!(ignored[0], Ignored::Unsigned);
        assert!(matches!(
            ignored[1],
            Ignored::ShortExhausted {
                shard: 0,
                hashes: 1,
                expected: 2147483648
            }
        ));
    }

    #[test]
    fn hash_counts_are_clamped_to_the_shard() {
        // A signed progress of 2^64 − 1 hashes counts as the shard's length at most.
        let spec = spec(30, NonceRange::new(1000, 3999), 3);
        let mut channel = MemoryChannel::new();
        channel.send(signed(
            &spec,
            &report(&spec, 1, u64::MAX, ReportKind::Progress { searched: 0 }),
        ));
        let mut launcher = MemoryLauncher::new(channel.clone(), Backend::Scalar);
        let (out, events) = run(
            &mut launcher,
            &mut channel,
            &spec,
            None,
            &CancelToken::new(),
        );
        let progress = events
            .iter()
            .find_map(|e| match e {
                MasterEvent::Progress(p) => Some(p.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(progress.shard_hashes, 1000);
        assert_eq!(out.unwrap().totals().hashes, 3000);
    }

    #[test]
    fn an_empty_range_is_exhausted() {
        // D = 30 over 3000 nonces: (1 - 2^-30)^3000 ≈ 1, and checked below.
        let spec = spec(30, NonceRange::new(1000, 3999), 3);
        assert!((0..3).all(|s| first_golden(&spec, s).is_none()));
        let mut channel = MemoryChannel::new();
        let mut launcher = MemoryLauncher::new(channel.clone(), Backend::Scalar);
        let (out, _) = run(
            &mut launcher,
            &mut channel,
            &spec,
            None,
            &CancelToken::new(),
        );
        let MasterOutcome::Exhausted(totals) = out.unwrap() else {
            panic!("exhausted")
        };
        assert_eq!(totals.hashes, 3000);
        assert_eq!(totals.shards_done, 3);
        assert!(launcher.is_stopped() && channel.is_closed());
    }

    /// A launcher that starts nothing, so only the deadline or an interrupt ends the run.
    #[derive(Default)]
    struct Idle {
        fail_launch: bool,
        launched: bool,
        stopped: Arc<Mutex<u32>>,
    }

    #[async_trait]
    impl Launcher for Idle {
        async fn launch(&mut self, _: &RunSpec) -> Result<(), LaunchError> {
            if self.fail_launch {
                return Err(LaunchError::refused("creating job", "forbidden"));
            }
            self.launched = true;
            Ok(())
        }
        async fn status(&mut self) -> Result<WorkerStatus, LaunchError> {
            Ok(WorkerStatus {
                running: 1,
                ..WorkerStatus::default()
            })
        }
        async fn stop(&mut self) -> Result<(), LaunchError> {
            *self.stopped.lock().unwrap() += 1;
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_times_out() {
        let spec = spec(60, None, 2);
        let mut channel = MemoryChannel::new();
        let mut launcher = Idle::default();
        let deadline = tokio::time::Instant::now().into_std() + Duration::from_millis(300);
        let options = MasterOptions::with_deadline(Some(deadline));
        let (out, _, took) = run_virtual(&mut launcher, &mut channel, &spec, &options).await;
        assert!(matches!(out.unwrap(), MasterOutcome::TimedOut(_)));
        assert_eq!(took, Duration::from_millis(300));
        assert_eq!(*launcher.stopped.lock().unwrap(), 1);
        assert!(channel.is_closed());
    }

    #[tokio::test(start_paused = true)]
    async fn an_interrupt_ends_the_run() {
        let spec = spec(60, None, 2);
        let mut channel = MemoryChannel::new();
        let mut launcher = Idle::default();
        let (out, _, took) = run_virtual_until(
            &mut launcher,
            &mut channel,
            &spec,
            &MasterOptions::default(),
            &cancel_at(&[200]),
        )
        .await;
        assert!(matches!(out.unwrap(), MasterOutcome::Interrupted(_)));
        assert_eq!(took, Duration::from_millis(200), "noticed at once");
        assert!(launcher.launched);
        assert_eq!(*launcher.stopped.lock().unwrap(), 1);
        assert!(channel.is_closed());
    }

    #[test]
    fn a_failed_launch_still_stops_and_closes() {
        let spec = spec(60, None, 2);
        let mut channel = MemoryChannel::new();
        let mut launcher = Idle {
            fail_launch: true,
            ..Idle::default()
        };
        let (out, events) = run(
            &mut launcher,
            &mut channel,
            &spec,
            None,
            &CancelToken::new(),
        );
        assert!(matches!(
            out,
            Err(MasterError::Launch(LaunchError::Refused { .. }))
        ));
        assert!(!events
            .iter()
            .any(|e| matches!(e, MasterEvent::Launched { .. })));
        assert_eq!(*launcher.stopped.lock().unwrap(), 1);
        assert!(channel.is_closed());
    }

    /// A launcher whose workers cannot start.
    struct Doomed(WorkerStatus, bool);

    #[async_trait]
    impl Launcher for Doomed {
        async fn launch(&mut self, _: &RunSpec) -> Result<(), LaunchError> {
            Ok(())
        }
        async fn status(&mut self) -> Result<WorkerStatus, LaunchError> {
            Ok(self.0.clone())
        }
        async fn stop(&mut self) -> Result<(), LaunchError> {
            self.1 = true;
            Ok(())
        }
    }

    #[test]
    fn a_fatal_status_is_an_error() {
        let spec = spec(60, None, 2);
        let mut channel = MemoryChannel::new();
        let mut launcher = Doomed(
            WorkerStatus {
                pending: 2,
                fatal: Some("pod cnd-x-0: ImagePullBackOff".into()),
                ..WorkerStatus::default()
            },
            false,
        );
        let (out, _) = run(
            &mut launcher,
            &mut channel,
            &spec,
            None,
            &CancelToken::new(),
        );
        assert!(matches!(out, Err(MasterError::Fatal(m)) if m.contains("ImagePullBackOff")));
        assert!(launcher.1 && channel.is_closed());
    }

    #[test]
    fn workers_that_all_failed_are_an_error() {
        let spec = spec(60, None, 2);
        let mut channel = MemoryChannel::new();
        let mut launcher = Doomed(
            WorkerStatus {
                failed: 2,
                ..WorkerStatus::default()
            },
            false,
        );
        let (out, _) = run(
            &mut launcher,
            &mut channel,
            &spec,
            None,
            &CancelToken::new(),
        );
        let Err(gone @ MasterError::WorkersGone { .. }) = out else {
            panic!("{out:?}")
        };
        let MasterError::WorkersGone {
            unfinished,
            failed,
            missing,
            ..
        } = &gone
        else {
            unreachable!()
        };
        assert_eq!((*unfinished, *failed), (2, 2));
        let halves: Vec<(u64, String)> = missing.iter().map(|(s, r)| (*s, r.to_string())).collect();
        assert_eq!(
            halves,
            [
                (0, "0..2147483648".to_string()),
                (1, "2147483648..4294967296".to_string())
            ]
        );
        // The message names the shards and the nonces nobody searched.
        assert_eq!(
            gone.to_string(),
            "every worker has ended but 2 of 2 shards never reported (2 workers failed): \
             shard 0 (nonces 0..2147483648), shard 1 (nonces 2147483648..4294967296) were not searched"
        );
        assert!(launcher.1 && channel.is_closed());
    }

    #[test]
    fn one_unsearched_shard_is_named_with_the_range_that_searches_it() {
        let range = NonceRange::new(0, 999).unwrap();
        let gone = MasterError::WorkersGone {
            unfinished: 1,
            shards: 4,
            failed: 1,
            missing: vec![(3, range)],
        };
        assert_eq!(
            gone.to_string(),
            "every worker has ended but 1 of 4 shards never reported (1 worker failed): \
             shard 3 (nonces 0..1000) was not searched; `--range 0..1000` searches it"
        );
    }

    #[test]
    fn failed_reports_are_counted_not_fatal() {
        let spec = spec(12, None, 1);
        let mut channel = MemoryChannel::new();
        channel.send(signed(
            &spec,
            &report(
                &spec,
                0,
                0,
                ReportKind::Failed {
                    error: "oom".into(),
                },
            ),
        ));
        let mut launcher = MemoryLauncher::new(channel.clone(), Backend::Scalar);
        let (out, _) = run(
            &mut launcher,
            &mut channel,
            &spec,
            None,
            &CancelToken::new(),
        );
        let MasterOutcome::Found(golden) = out.unwrap() else {
            panic!("found")
        };
        assert_eq!(golden.totals.failed_reports, 1);
    }

    /// A channel that answers as told: hang forever, fail, or return nothing.
    struct Scripted {
        /// Answers to `receive`, in order; when they run out, `Ok(vec![])`.
        answers: std::collections::VecDeque<Option<Result<Vec<Message>, ChannelError>>>,
        closes: Arc<Mutex<u32>>,
    }

    impl Scripted {
        fn new(answers: Vec<Option<Result<Vec<Message>, ChannelError>>>) -> Scripted {
            Scripted {
                answers: answers.into(),
                closes: Arc::default(),
            }
        }
    }

    #[async_trait]
    impl ResultChannel for Scripted {
        fn address(&self) -> &str {
            "scripted://"
        }
        async fn receive(&mut self, wait: Duration) -> Result<Received, ChannelError> {
            match self.answers.pop_front() {
                // None: a stalled endpoint that never answers.
                Some(None) => pending().await,
                Some(Some(answer)) => answer.map(Received::new),
                None => {
                    std::thread::sleep(wait.min(Duration::from_millis(20)));
                    Ok(Received::default())
                }
            }
        }
        async fn close(&mut self) -> Result<(), ChannelError> {
            *self.closes.lock().unwrap() += 1;
            Ok(())
        }
    }

    fn unreachable() -> ChannelError {
        ChannelError::unreachable("q", "")
            .with_source(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_channel_cannot_hold_off_an_interrupt_or_the_deadline() {
        let spec = spec(60, None, 2);
        // Interrupt while receive hangs.
        let mut channel = Scripted::new(vec![None]);
        let mut launcher = Idle::default();
        let (out, _, took) = run_virtual_until(
            &mut launcher,
            &mut channel,
            &spec,
            &MasterOptions::default(),
            &cancel_at(&[200]),
        )
        .await;
        assert!(matches!(out.unwrap(), MasterOutcome::Interrupted(_)));
        assert_eq!(took, Duration::from_millis(200));
        assert_eq!(*launcher.stopped.lock().unwrap(), 1);
        assert_eq!(*channel.closes.lock().unwrap(), 1);

        // The deadline while receive hangs.
        let mut channel = Scripted::new(vec![None]);
        let deadline = tokio::time::Instant::now().into_std() + Duration::from_millis(300);
        let options = MasterOptions::with_deadline(Some(deadline));
        let (out, _, took) = run_virtual(&mut Idle::default(), &mut channel, &spec, &options).await;
        assert!(matches!(out.unwrap(), MasterOutcome::TimedOut(_)));
        assert_eq!(took, Duration::from_millis(300));
    }

    #[test]
    fn a_call_that_never_answers_counts_as_a_failure_and_is_retried() {
        let spec = spec(60, None, 2);
        // Hangs once (cut by the call timeout), fails once, then answers: the run
        // goes on until the deadline.
        let mut channel = Scripted::new(vec![None, Some(Err(unreachable()))]);
        let options = MasterOptions {
            deadline: Some(Instant::now() + Duration::from_millis(1500)),
            call_timeout: Duration::from_millis(100),
            ..MasterOptions::default()
        };
        let (out, events) = run_with(
            &mut Idle::default(),
            &mut channel,
            &spec,
            &options,
            &CancelToken::new(),
        );
        assert!(matches!(out.unwrap(), MasterOutcome::TimedOut(_)));
        let retries: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                MasterEvent::Retrying { what, error, .. } => Some((*what, error.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(retries.len(), 2, "{retries:?}");
        assert!(retries[0].1.contains("no answer within"), "{retries:?}");
        assert!(retries[1].1.contains("connection refused"), "{retries:?}");
    }

    /// `run_master` on tokio's paused clock: every sleep ends as soon as the
    /// runtime is idle and the run's instants are virtual. Returns the virtual
    /// time the whole run took, cleanup included.
    async fn run_virtual(
        launcher: &mut dyn Launcher,
        channel: &mut dyn ResultChannel,
        spec: &RunSpec,
        options: &MasterOptions,
    ) -> (
        Result<MasterOutcome, MasterError>,
        Vec<MasterEvent>,
        Duration,
    ) {
        run_virtual_until(launcher, channel, spec, options, &CancelToken::new()).await
    }

    /// [`run_virtual`], interrupted by `cancel`.
    async fn run_virtual_until(
        launcher: &mut dyn Launcher,
        channel: &mut dyn ResultChannel,
        spec: &RunSpec,
        options: &MasterOptions,
        cancel: &CancelToken,
    ) -> (
        Result<MasterOutcome, MasterError>,
        Vec<MasterEvent>,
        Duration,
    ) {
        let mut events = Vec::new();
        let started = tokio::time::Instant::now();
        let out = run_master(
            launcher,
            channel,
            spec,
            options,
            &crate::cancel::TokioTimer,
            cancel,
            |e| events.push(e),
        )
        .await;
        (out, events, started.elapsed())
    }

    /// A token cancelled at each of `after` (virtual time, from now).
    fn cancel_at(after: &[u64]) -> CancelToken {
        let token = CancelToken::new();
        let (canceller, after) = (token.clone(), after.to_vec());
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            for ms in after {
                tokio::time::sleep_until(start + Duration::from_millis(ms)).await;
                canceller.cancel();
            }
        });
        token
    }

    /// A channel that counts its receives, each answered as `answer` says.
    struct Counted {
        answer: Receives,
        receives: u32,
    }

    /// How [`Counted`] answers a receive.
    #[derive(Clone, Copy, PartialEq)]
    enum Receives {
        /// Fails at once, transiently.
        Fail,
        /// Nothing, after the whole wait on tokio's clock.
        AfterWait,
        /// Nothing, at once, as SQS's short polls for a wait under a second.
        AtOnce,
    }

    #[async_trait]
    impl ResultChannel for Counted {
        fn address(&self) -> &str {
            "counted://"
        }
        async fn receive(&mut self, wait: Duration) -> Result<Received, ChannelError> {
            self.receives += 1;
            match self.answer {
                Receives::Fail => return Err(unreachable()),
                Receives::AfterWait => tokio::time::sleep(wait).await,
                Receives::AtOnce => {}
            }
            Ok(Received::new(Vec::new()))
        }
        async fn close(&mut self) -> Result<(), ChannelError> {
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_channel_that_always_fails_ends_the_run_at_retry_for_exactly() {
        // Receives at 0, 0.25, 0.75 and 1.75 s (backoff 250 ms doubling), the
        // last wait cut to the budget's end: a fifth at 2 s, and the run ends.
        let spec = spec(60, None, 2);
        let mut channel = Counted {
            answer: Receives::Fail,
            receives: 0,
        };
        let options = MasterOptions::default().with_retry_for(Duration::from_secs(2));
        let (out, events, took) =
            run_virtual(&mut Idle::default(), &mut channel, &spec, &options).await;
        assert!(
            matches!(
                out,
                Err(MasterError::Channel(ChannelError::Unreachable { .. }))
            ),
            "{out:?}"
        );
        assert_eq!(took, Duration::from_secs(2));
        assert_eq!(channel.receives, 5);
        let retried_after: Vec<Duration> = events
            .iter()
            .filter_map(|e| match e {
                MasterEvent::Retrying { failing_for, .. } => Some(*failing_for),
                _ => None,
            })
            .collect();
        assert_eq!(
            retried_after,
            [0, 250, 750, 1750].map(Duration::from_millis)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_run_ends_at_its_deadline_exactly_with_one_receive_a_second() {
        let spec = spec(60, None, 2);
        let mut channel = Counted {
            answer: Receives::AfterWait,
            receives: 0,
        };
        let hour = Duration::from_secs(3600);
        let options =
            MasterOptions::with_deadline(Some(tokio::time::Instant::now().into_std() + hour));
        let mut launcher = Idle::default();
        let (out, _, took) = run_virtual(&mut launcher, &mut channel, &spec, &options).await;
        let Ok(MasterOutcome::TimedOut(totals)) = out else {
            panic!("{out:?}")
        };
        assert_eq!(took, hour);
        assert_eq!(totals.elapsed, hour);
        // Each receive waits RECEIVE_WAIT (1 s), so the hour takes 3,600 of them.
        assert_eq!(channel.receives, 3600);
        assert_eq!(*launcher.stopped.lock().unwrap(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_launcher_running_more_workers_than_allowed_is_said_once() {
        let mut spec = spec(60, None, 4);
        spec.parallelism = 2;
        let mut channel = Counted {
            answer: Receives::AfterWait,
            receives: 0,
        };
        // A launcher running 3 workers where 2 may run, polled every 2 s for 5 s.
        let mut launcher = Told::saying(WorkerStatus::default().with_running(3));
        let deadline = tokio::time::Instant::now().into_std() + Duration::from_secs(5);
        let options = MasterOptions::with_deadline(Some(deadline));
        let (out, events, _) = run_virtual(&mut launcher, &mut channel, &spec, &options).await;
        assert!(matches!(out, Ok(MasterOutcome::TimedOut(_))), "{out:?}");
        let polls = events
            .iter()
            .filter(|e| matches!(e, MasterEvent::Workers(_)))
            .count();
        let warnings: Vec<_> = events
            .iter()
            .filter(|e| matches!(e, MasterEvent::TooManyWorkers { .. }))
            .collect();
        assert_eq!(polls, 3, "at 0, 2 and 4 s: {events:?}");
        assert_eq!(
            warnings,
            [&MasterEvent::TooManyWorkers {
                running: 3,
                parallelism: 2
            }]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn failures_beyond_the_retry_budget_end_the_run_and_refusals_at_once() {
        // Receives at 0 and 250 ms fail (backoff 250 ms, then 500 cut to the
        // budget's end); the third, at 600 ms, is past the budget: the run ends.
        let spec = spec(60, None, 2);
        let mut channel = Scripted::new((0..1000).map(|_| Some(Err(unreachable()))).collect());
        let options = MasterOptions::default().with_retry_for(Duration::from_millis(600));
        let (out, _, took) = run_virtual(&mut Idle::default(), &mut channel, &spec, &options).await;
        assert!(
            matches!(
                out,
                Err(MasterError::Channel(ChannelError::Unreachable { .. }))
            ),
            "{out:?}"
        );
        assert_eq!(took, Duration::from_millis(600));
        assert_eq!(channel.answers.len(), 1000 - 3, "three receives");

        let refused = ChannelError::refused("receiving", "NonExistentQueue");
        let mut channel = Scripted::new(vec![Some(Err(refused))]);
        let (out, _, took) = run_virtual(&mut Idle::default(), &mut channel, &spec, &options).await;
        assert!(matches!(
            out,
            Err(MasterError::Channel(ChannelError::Refused { .. }))
        ));
        assert_eq!(took, Duration::ZERO, "a refusal is not retried");
    }

    /// A launcher whose `launch` or `stop` hangs, or whose `stop` fails a few times.
    #[derive(Default)]
    struct Stubborn {
        hang_launch: bool,
        hang_stop: bool,
        stop_failures: u32,
        stops: u32,
    }

    #[async_trait]
    impl Launcher for Stubborn {
        async fn launch(&mut self, _: &RunSpec) -> Result<(), LaunchError> {
            if self.hang_launch {
                pending::<()>().await;
            }
            Ok(())
        }
        async fn status(&mut self) -> Result<WorkerStatus, LaunchError> {
            Ok(WorkerStatus {
                running: 1,
                ..WorkerStatus::default()
            })
        }
        async fn stop(&mut self) -> Result<(), LaunchError> {
            self.stops += 1;
            if self.hang_stop {
                pending::<()>().await;
            }
            if self.stops <= self.stop_failures {
                return Err(LaunchError::unreachable(
                    "the API server",
                    format!("job cnd-x: etcd timeout {}", self.stops),
                ));
            }
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_launch_is_interrupted_and_cleaned_up() {
        let spec = spec(60, None, 2);
        let mut launcher = Stubborn {
            hang_launch: true,
            ..Stubborn::default()
        };
        let mut channel = MemoryChannel::new();
        let options = MasterOptions::default();
        let (out, events, took) = run_virtual_until(
            &mut launcher,
            &mut channel,
            &spec,
            &options,
            &cancel_at(&[150]),
        )
        .await;
        assert!(matches!(out.unwrap(), MasterOutcome::Interrupted(_)));
        assert_eq!(took, Duration::from_millis(150), "out at the interrupt");
        assert!(!events
            .iter()
            .any(|e| matches!(e, MasterEvent::Launched { .. })));
        assert_eq!(launcher.stops, 1);
        assert!(channel.is_closed());
    }

    #[tokio::test(start_paused = true)]
    async fn cleanup_retries_and_then_names_what_is_left() {
        let spec = spec(60, None, 2);
        let options = MasterOptions::with_deadline(Some(tokio::time::Instant::now().into_std()))
            .with_call_timeout(Duration::from_millis(100));
        // Two failures, then success: nothing to report. Tries at 0, 0.5 and
        // 1.5 s (backoff 500 ms, doubling).
        let mut launcher = Stubborn {
            stop_failures: 2,
            ..Stubborn::default()
        };
        let mut channel = MemoryChannel::new();
        let (out, events, took) = run_virtual(&mut launcher, &mut channel, &spec, &options).await;
        assert!(matches!(out.unwrap(), MasterOutcome::TimedOut(_)));
        assert_eq!(launcher.stops, 3);
        assert_eq!(took, Duration::from_millis(1500));
        assert!(!events
            .iter()
            .any(|e| matches!(e, MasterEvent::CleanupFailed(_))));

        // A stop that hangs every time: each try cut at 100 ms, three tries,
        // said in one line.
        let mut launcher = Stubborn {
            hang_stop: true,
            ..Stubborn::default()
        };
        let mut channel = MemoryChannel::new();
        let options = MasterOptions::with_deadline(Some(tokio::time::Instant::now().into_std()))
            .with_call_timeout(Duration::from_millis(100));
        let (_, events, took) = run_virtual(&mut launcher, &mut channel, &spec, &options).await;
        assert_eq!(took, Duration::from_millis(1800));
        assert_eq!(launcher.stops, CLEANUP_TRIES);
        assert!(
            channel.is_closed(),
            "the queue is removed even if the workers are not"
        );
        let failed: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                MasterEvent::CleanupFailed(what) => Some(what.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(failed.len(), 1);
        assert!(
            failed[0].contains("stopping the workers") && failed[0].contains("no answer"),
            "{failed:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_interrupt_cuts_a_hanging_cleanup_short() {
        // Interrupted at 100 ms; the stop hangs (its limit is 20 s); a second
        // interrupt at 400 ms ends the cleanup there.
        let spec = spec(60, None, 2);
        let mut launcher = Stubborn {
            hang_stop: true,
            ..Stubborn::default()
        };
        let (out, events, took) = run_virtual_until(
            &mut launcher,
            &mut MemoryChannel::new(),
            &spec,
            &MasterOptions::default(),
            &cancel_at(&[100, 400]),
        )
        .await;
        assert!(matches!(out.unwrap(), MasterOutcome::Interrupted(_)));
        assert_eq!(took, Duration::from_millis(400));
        assert!(
            events.iter().any(
                |e| matches!(e, MasterEvent::CleanupFailed(what) if what.contains("second interrupt"))
            ),
            "{events:?}"
        );
    }

    #[test]
    fn an_invalid_spec_searches_nothing_and_says_why() {
        // Zero shards used to end "exhausted" at once: a false answer.
        let mut zero = spec(8, None, 1);
        zero.shards = 0;
        let mut launcher = Stubborn::default();
        let (out, _) = run(
            &mut launcher,
            &mut MemoryChannel::new(),
            &zero,
            None,
            &CancelToken::new(),
        );
        assert!(
            matches!(out, Err(MasterError::InvalidSpec(RunSpecError::NoShards))),
            "{out:?}"
        );
        let mut wide = spec(8, None, 4);
        wide.parallelism = 5;
        let (out, _) = run(
            &mut launcher,
            &mut MemoryChannel::new(),
            &wide,
            None,
            &CancelToken::new(),
        );
        assert!(matches!(
            out,
            Err(MasterError::InvalidSpec(RunSpecError::Parallelism { .. }))
        ));
        let puzzle = Puzzle::with_default_block(8).unwrap();
        assert_eq!(
            RunSpec::new(puzzle.clone(), puzzle.space(), 100_001, 1),
            Err(RunSpecError::TooManyShards(100_001))
        );
        assert!(matches!(
            RunSpec::new(puzzle.clone(), NonceRange::new(0, 9).unwrap(), 11, 1),
            Err(RunSpecError::MoreShardsThanNonces {
                shards: 11,
                nonces: 10
            })
        ));
        let good = RunSpec::new(puzzle.clone(), puzzle.space(), 16, 4).unwrap();
        assert_eq!((good.shards, good.parallelism), (16, 4));
        assert_eq!(good.check(), Ok(()));
    }

    #[test]
    fn the_master_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let spec = spec(60, None, 1);
        let (mut launcher, mut channel) = (Idle::default(), MemoryChannel::new());
        let cancel = CancelToken::new();
        let options = MasterOptions::default();
        let future = run_master(
            &mut launcher,
            &mut channel,
            &spec,
            &options,
            &ThreadTimer,
            &cancel,
            |_| {},
        );
        assert_send(&future);
    }

    /// A launcher that says what it is told, and records restarts and retirements.
    #[derive(Default)]
    struct Told {
        status: Arc<Mutex<WorkerStatus>>,
        restarts: Arc<Mutex<Vec<u64>>>,
        retired: Arc<Mutex<Vec<u64>>>,
        /// Whether `restart` works (the default trait method refuses).
        can_restart: bool,
    }

    impl Told {
        /// A launcher whose status is always `status`.
        fn saying(status: WorkerStatus) -> Told {
            Told {
                status: Arc::new(Mutex::new(status)),
                ..Told::default()
            }
        }
    }

    #[async_trait]
    impl Launcher for Told {
        async fn launch(&mut self, _: &RunSpec) -> Result<(), LaunchError> {
            Ok(())
        }
        async fn status(&mut self) -> Result<WorkerStatus, LaunchError> {
            Ok(self.status.lock().unwrap().clone())
        }
        async fn restart(&mut self, shard: u64) -> Result<(), LaunchError> {
            if !self.can_restart {
                return Err(LaunchError::refused("restarting", "not here"));
            }
            self.restarts.lock().unwrap().push(shard);
            Ok(())
        }
        async fn retire_above(&mut self, shard: u64) -> Result<(), LaunchError> {
            self.retired.lock().unwrap().push(shard);
            Ok(())
        }
        async fn stop(&mut self) -> Result<(), LaunchError> {
            Ok(())
        }
    }

    /// A run with no deadline and no interrupt.
    fn run_to_end(
        launcher: &mut dyn Launcher,
        channel: &mut dyn ResultChannel,
        spec: &RunSpec,
    ) -> (Result<MasterOutcome, MasterError>, Vec<MasterEvent>) {
        run(launcher, channel, spec, None, &CancelToken::new())
    }

    /// A `found` report for `shard`'s smallest golden nonce.
    fn real_find(spec: &RunSpec, shard: u64) -> Report {
        let nonce = first_golden(spec, shard).unwrap();
        report(
            spec,
            shard,
            1,
            ReportKind::Found {
                nonce,
                hash: verify(&spec.puzzle, nonce).hash,
            },
        )
    }

    fn exhausted(spec: &RunSpec, shard: u64) -> Report {
        let length = shard_length(&spec.range.shard(shard, spec.shards).unwrap());
        report(spec, shard, length, ReportKind::Exhausted)
    }

    #[test]
    fn one_worker_cannot_say_no_for_another_shard() {
        // Shard 0's worker holds its own key and lies: a whole-shard `exhausted`
        // for every shard. Only its own shard's counts; the others' worker finds.
        let spec = spec(10, Some(NonceRange::new(0, 40_000).unwrap()), 4);
        let mut channel = MemoryChannel::new();
        let liar = spec.run_key.for_shard(0);
        for shard in 0..4 {
            let lie = exhausted(&spec, shard).to_json();
            // Claiming its own shard, or the other's (whose key it lacks).
            channel.send(Message::signed(&liar, lie.clone()).from_sender(Sender::Claims(0)));
            channel.send(Message::signed(&liar, lie).from_sender(Sender::Claims(shard)));
        }
        let status = WorkerStatus::default()
            .with_running(3)
            .with_running_shards(vec![1, 2, 3]);
        let mut launcher = Told::saying(status);
        channel.send(signed(&spec, &real_find(&spec, 2)));
        let (out, events) = run_to_end(&mut launcher, &mut channel, &spec);
        let Ok(MasterOutcome::Found(golden)) = out else {
            panic!("{out:?}")
        };
        assert_eq!(golden.shard, 2);
        let ignored = ignored(&events);
        let wrong_shard = ignored
            .iter()
            .filter(|i| matches!(i, Ignored::WrongShard { sender: 0, .. }))
            .count();
        let bad_signature = ignored
            .iter()
            .filter(|i| **i == Ignored::BadSignature)
            .count();
        assert_eq!(
            (wrong_shard, bad_signature, ignored.len()),
            (3, 3, 6),
            "{ignored:?}"
        );
        // Its lie about its own shard is the one thing it could do.
        assert_eq!(golden.totals.shards_done, 1);
    }

    #[test]
    fn a_shared_key_exhausted_counts_only_once_the_launcher_confirms() {
        // An Indexed Job's pods share one key over SQS: a `no` for shard 1 from
        // the worker of shard 0 is held until the launcher says shard 1 succeeded.
        let spec = spec(10, Some(NonceRange::new(0, 20_000).unwrap()), 2);
        let shared = spec.run_key.shared();
        let mut channel = MemoryChannel::new();
        for shard in 0..2 {
            channel.send(
                Message::signed(&shared, exhausted(&spec, shard).to_json())
                    .from_sender(Sender::Claims(shard)),
            );
        }
        let status = Arc::new(Mutex::new(
            WorkerStatus::default()
                .with_running(1)
                .with_succeeded(1)
                .with_succeeded_shards(vec![0]),
        ));
        let mut launcher = Told {
            status: Arc::clone(&status),
            ..Told::default()
        };
        let find = real_find(&spec, 1);
        let sender = channel.clone();
        let finder = std::thread::spawn(move || {
            // After a status poll or two: shard 1's real worker reports.
            std::thread::sleep(Duration::from_millis(2500));
            sender.send(Message::signed(&shared, find.to_json()).from_sender(Sender::Claims(1)));
        });
        let (out, _) = run_to_end(&mut launcher, &mut channel, &spec);
        finder.join().unwrap();
        let Ok(MasterOutcome::Found(golden)) = out else {
            panic!("{out:?}")
        };
        assert_eq!((golden.shard, golden.totals.shards_done), (1, 1));

        // Once the launcher confirms both, both count: the range is exhausted.
        let spec = self::spec(30, Some(NonceRange::new(0, 2_000).unwrap()), 2);
        let shared = spec.run_key.shared();
        let mut channel = MemoryChannel::new();
        for shard in 0..2 {
            channel.send(
                Message::signed(&shared, exhausted(&spec, shard).to_json())
                    .from_sender(Sender::Claims(shard)),
            );
        }
        *status.lock().unwrap() = WorkerStatus::default()
            .with_succeeded(2)
            .with_succeeded_shards(vec![0, 1]);
        let (out, _) = run_to_end(&mut launcher, &mut channel, &spec);
        assert!(
            matches!(out, Ok(MasterOutcome::Exhausted(ref t)) if t.shards_done == 2),
            "{out:?}"
        );
    }

    #[test]
    fn workers_gone_is_said_only_after_the_channel_is_drained() {
        // The workers ended; their find is behind a flood of others' messages,
        // which the channel sees but leaves: the master reads on until the
        // channel is empty, and the answer is found, not lost.
        let spec = spec(10, Some(NonceRange::new(0, 20_000).unwrap()), 2);
        let find = signed(&spec, &real_find(&spec, 1));
        let flood = Received::default().with_foreign(10);
        let mut answers: Vec<Received> = vec![flood; 12];
        answers.push(Received::new(vec![find]));
        let mut channel = Flooded(answers.into());
        let mut launcher = Told::saying(
            WorkerStatus::default()
                .with_succeeded(2)
                .with_succeeded_shards(vec![0, 1]),
        );
        let (out, _) = run_to_end(&mut launcher, &mut channel, &spec);
        let Ok(MasterOutcome::Found(golden)) = out else {
            panic!("{out:?}")
        };
        assert_eq!(golden.shard, 1);
        assert_eq!(golden.totals.foreign, 120);
    }

    /// A channel that answers from a list, one answer per call, then nothing.
    struct Flooded(std::collections::VecDeque<Received>);

    #[async_trait]
    impl ResultChannel for Flooded {
        fn address(&self) -> &str {
            "flooded://"
        }
        async fn receive(&mut self, wait: Duration) -> Result<Received, ChannelError> {
            match self.0.pop_front() {
                Some(answer) => {
                    // As slow as a real queue under a flood: 2 status polls pass.
                    std::thread::sleep(Duration::from_millis(250));
                    Ok(answer)
                }
                None => {
                    std::thread::sleep(wait.min(Duration::from_millis(50)));
                    Ok(Received::default())
                }
            }
        }
        async fn close(&mut self) -> Result<(), ChannelError> {
            Ok(())
        }
    }

    #[test]
    fn a_worker_whose_progress_stops_is_replaced() {
        let spec = spec(60, None, 2);
        // Shard 1's count moves at every receive, so at every status poll it has
        // just moved, however loaded the machine; shard 0's never does.
        let mut channel = Ticking {
            spec: spec.clone(),
            hashes: 0,
        };
        let status = WorkerStatus::default()
            .with_running(2)
            .with_running_shards(vec![0, 1]);
        let mut launcher = Told {
            status: Arc::new(Mutex::new(status)),
            can_restart: true,
            ..Told::default()
        };
        let restarts = Arc::clone(&launcher.restarts);
        let options = MasterOptions {
            stall_after: Some(Duration::from_secs(1)),
            // Polls at 0 s and 2 s: shard 0 is replaced at the second.
            deadline: Some(Instant::now() + Duration::from_millis(3500)),
            ..MasterOptions::default()
        };
        let (out, events) = run_with(
            &mut launcher,
            &mut channel,
            &spec,
            &options,
            &CancelToken::new(),
        );
        assert!(
            matches!(out, Ok(MasterOutcome::TimedOut(ref t)) if t.stalled >= 1),
            "{out:?}"
        );
        let restarted = restarts.lock().unwrap().clone();
        assert!(
            !restarted.is_empty() && restarted.iter().all(|&s| s == 0),
            "{restarted:?}"
        );
        assert!(events
            .iter()
            .any(|e| matches!(e, MasterEvent::Stalled { shard: 0, silent_for } if *silent_for >= Duration::from_millis(100))));
    }

    /// A channel whose every receive brings shard 1's next progress report.
    struct Ticking {
        spec: RunSpec,
        hashes: u64,
    }

    #[async_trait]
    impl ResultChannel for Ticking {
        fn address(&self) -> &str {
            "ticking://"
        }
        async fn receive(&mut self, _: Duration) -> Result<Received, ChannelError> {
            // Not a hot loop: the master receives again at once.
            std::thread::sleep(Duration::from_millis(20));
            self.hashes += 1;
            let report = report(
                &self.spec,
                1,
                self.hashes,
                ReportKind::Progress { searched: 0 },
            );
            Ok(Received::new(vec![signed(&self.spec, &report)]))
        }
        async fn close(&mut self) -> Result<(), ChannelError> {
            Ok(())
        }
    }

    #[test]
    fn a_stall_the_launcher_cannot_mend_ends_the_run_naming_the_shard() {
        let spec = spec(60, None, 2);
        let mut channel = MemoryChannel::new();
        let status = WorkerStatus::default()
            .with_running(1)
            .with_running_shards(vec![1]);
        let mut launcher = Told::saying(status);
        let options = MasterOptions {
            stall_after: Some(Duration::from_millis(100)),
            ..MasterOptions::default()
        };
        let (out, _) = run_with(
            &mut launcher,
            &mut channel,
            &spec,
            &options,
            &CancelToken::new(),
        );
        let Err(stalled @ MasterError::Stalled { shard: 1, .. }) = out else {
            panic!("{out:?}")
        };
        let text = stalled.to_string();
        assert!(
            text.starts_with(
                "the worker of shard 1 (nonces 2147483648..4294967296) made no progress for"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("`--range 2147483648..4294967296` searches its shard"),
            "{text}"
        );
    }

    #[test]
    fn a_report_delivered_twice_counts_once() {
        let spec = spec(30, Some(NonceRange::new(0, 2_999).unwrap()), 2);
        let mut channel = MemoryChannel::new();
        let failed = report(
            &spec,
            0,
            5,
            ReportKind::Failed {
                error: "oom".into(),
            },
        );
        for _ in 0..2 {
            channel.send(signed(&spec, &failed));
            for shard in 0..2 {
                channel.send(signed(&spec, &exhausted(&spec, shard)));
            }
        }
        let mut launcher = Told::default();
        let (out, events) = run_to_end(&mut launcher, &mut channel, &spec);
        let Ok(MasterOutcome::Exhausted(totals)) = out else {
            panic!("{out:?}")
        };
        assert_eq!(
            (totals.shards_done, totals.failed_reports, totals.hashes),
            (2, 1, 3_000)
        );
        let failures = events
            .iter()
            .filter(|e| matches!(e, MasterEvent::WorkerFailed { .. }))
            .count();
        assert_eq!(failures, 1);
    }

    /// The golden nonces of `spec`'s shard, in order, found the obvious way.
    fn goldens(spec: &RunSpec, shard: u64) -> Vec<u64> {
        let range = spec.range.shard(shard, spec.shards).unwrap();
        (range.first()..=range.last())
            .filter(|&n| verify(&spec.puzzle, n).golden)
            .collect()
    }

    fn found(spec: &RunSpec, shard: u64, nonce: u64) -> Report {
        let hash = verify(&spec.puzzle, nonce).hash;
        report(spec, shard, 1, ReportKind::Found { nonce, hash })
    }

    #[test]
    fn the_smallest_answer_is_the_obvious_searchs_whatever_the_timing() {
        // Real searches, one thread per shard: higher shards often find first.
        for (i, (difficulty, shards)) in [(9, 4), (10, 7), (11, 3), (8, 16), (12, 5)]
            .into_iter()
            .enumerate()
        {
            let puzzle = Puzzle::new(
                format!("cnd smallest {i}").into_bytes(),
                difficulty,
                crate::NonceBits::B32,
                crate::NonceFormat::Binary,
            )
            .unwrap();
            let range = NonceRange::new(1_000, 1_000 + (1 << 15)).unwrap();
            let spec = RunSpec {
                puzzle,
                range,
                ..spec(difficulty, None, shards)
            };
            let smallest = (range.first()..=range.last())
                .find(|&n| verify(&spec.puzzle, n).golden)
                .expect("2^15 nonces hold a golden one at D <= 12");
            let options = MasterOptions::default().with_answer(Answer::Smallest);
            let (golden, launcher, channel) = found_by_real_search(&spec, &options);
            assert_eq!(golden.nonce, smallest, "puzzle {i}");
            assert!(range
                .shard(golden.shard, shards)
                .unwrap()
                .contains(smallest));
            // Shards above the answer's are retired, unless it is the last.
            let retired = (golden.shard + 1 < shards).then_some(golden.shard);
            assert_eq!(launcher.retired_above(), retired, "puzzle {i}");
            assert!(launcher.is_stopped() && channel.is_closed());
        }
    }

    /// A channel that hands out each message at its time (tokio's clock, from
    /// the first receive), waiting at most the receive's wait.
    struct Timed {
        start: Option<tokio::time::Instant>,
        due: std::collections::VecDeque<(u64, Message)>,
    }

    impl Timed {
        fn new(due: Vec<(u64, Message)>) -> Timed {
            Timed {
                start: None,
                due: due.into(),
            }
        }
    }

    #[async_trait]
    impl ResultChannel for Timed {
        fn address(&self) -> &str {
            "timed://"
        }
        async fn receive(&mut self, wait: Duration) -> Result<Received, ChannelError> {
            let start = *self.start.get_or_insert_with(tokio::time::Instant::now);
            let at = |ms: u64| start + Duration::from_millis(ms);
            let until = tokio::time::Instant::now() + wait;
            if let Some(&(ms, _)) = self.due.front() {
                tokio::time::sleep_until(at(ms).min(until)).await;
            } else {
                tokio::time::sleep_until(until).await;
            }
            let now = tokio::time::Instant::now();
            let mut messages = Vec::new();
            while self.due.front().is_some_and(|&(ms, _)| at(ms) <= now) {
                messages.push(self.due.pop_front().unwrap().1);
            }
            Ok(Received::new(messages))
        }
        async fn close(&mut self) -> Result<(), ChannelError> {
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_higher_find_waits_for_every_lower_shard_and_a_lower_find_wins() {
        let spec = spec(10, Some(NonceRange::new(0, 40_000).unwrap()), 4);
        let options = MasterOptions::default().with_answer(Answer::Smallest);
        let running = WorkerStatus::default()
            .with_running(4)
            .with_running_shards(vec![0, 1, 2, 3]);
        let (find_1, find_2) = (real_find(&spec, 1), real_find(&spec, 2));

        // Shard 2 finds first, shard 0 is exhausted, then shard 1 finds: 1 wins.
        let mut channel = Timed::new(vec![
            (0, signed(&spec, &find_2)),
            (1_000, signed(&spec, &exhausted(&spec, 0))),
            (3_000, signed(&spec, &find_1)),
        ]);
        let mut launcher = Told::saying(running.clone());
        let (out, _, took) = run_virtual(&mut launcher, &mut channel, &spec, &options).await;
        let Ok(MasterOutcome::Found(golden)) = out else {
            panic!("{out:?}")
        };
        let ReportKind::Found { nonce, .. } = find_1.kind else {
            unreachable!()
        };
        assert_eq!((golden.shard, golden.nonce), (1, nonce));
        assert_eq!(took, Duration::from_secs(3));
        assert_eq!(*launcher.retired.lock().unwrap(), vec![2, 1]);
        assert_eq!(golden.totals.shards_done, 1);

        // Shard 1 is exhausted instead: shard 2's find is the answer, at 3 s,
        // not before; reports from retired shard 3 change nothing.
        let mut channel = Timed::new(vec![
            (0, signed(&spec, &find_2)),
            (1_000, signed(&spec, &exhausted(&spec, 0))),
            (2_000, signed(&spec, &real_find(&spec, 3))),
            (3_000, signed(&spec, &exhausted(&spec, 1))),
        ]);
        let mut launcher = Told::saying(running);
        let (out, _, took) = run_virtual(&mut launcher, &mut channel, &spec, &options).await;
        let Ok(MasterOutcome::Found(golden)) = out else {
            panic!("{out:?}")
        };
        assert_eq!(golden.shard, 2);
        assert_eq!(took, Duration::from_secs(3));
        assert_eq!(*launcher.retired.lock().unwrap(), vec![2]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shared_key_find_settles_its_shard_only_once_the_launcher_confirms() {
        // An Indexed Job's pods share one key: a compromised pod reports shard
        // 0's second golden nonce, claiming shard 0. It bounds the answer (shards
        // above 0 retire) but cannot be it: shard 0's own worker reports the
        // smallest later, and the launcher confirms shard 0 at 4 s.
        let spec = spec(8, Some(NonceRange::new(0, 40_000).unwrap()), 2);
        let shared = spec.run_key.shared();
        let goldens = goldens(&spec, 0);
        assert!(goldens.len() >= 2, "{goldens:?}");
        let claim = |report: &Report| {
            Message::signed(&shared, report.to_json()).from_sender(Sender::Claims(0))
        };
        let mut channel = Timed::new(vec![
            (0, claim(&found(&spec, 0, goldens[1]))),
            (3_000, claim(&found(&spec, 0, goldens[0]))),
        ]);
        let status = Arc::new(Mutex::new(
            WorkerStatus::default()
                .with_running(2)
                .with_running_shards(vec![0, 1]),
        ));
        let mut launcher = Told {
            status: Arc::clone(&status),
            ..Told::default()
        };
        let confirm = Arc::clone(&status);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(3_500)).await;
            *confirm.lock().unwrap() = WorkerStatus::default()
                .with_running(1)
                .with_running_shards(vec![1])
                .with_succeeded(1)
                .with_succeeded_shards(vec![0]);
        });
        let options = MasterOptions::default().with_answer(Answer::Smallest);
        let (out, events, took) = run_virtual(&mut launcher, &mut channel, &spec, &options).await;
        let Ok(MasterOutcome::Found(golden)) = out else {
            panic!("{out:?}")
        };
        assert_eq!((golden.shard, golden.nonce), (0, goldens[0]));
        // Neither find settles shard 0 when it comes; the smaller one does at
        // the launcher's word (a journal keeps only that one).
        let finds: Vec<(u64, bool)> = events
            .iter()
            .filter_map(|e| match e {
                MasterEvent::Found { nonce, settled, .. } => Some((*nonce, *settled)),
                _ => None,
            })
            .collect();
        assert_eq!(
            finds,
            [(goldens[1], false), (goldens[0], false), (goldens[0], true)]
        );
        // Confirmed at the status poll at 4 s (every 2 s), after a drain.
        assert!(took >= Duration::from_secs(4), "{took:?}");
        assert_eq!(*launcher.retired.lock().unwrap(), vec![0]);
    }

    #[tokio::test(start_paused = true)]
    async fn status_polls_come_as_often_as_asked() {
        let spec = spec(30, None, 1);
        let mut channel = Counted {
            answer: Receives::AfterWait,
            receives: 0,
        };
        let mut launcher = Told::saying(WorkerStatus::default().with_running(1));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        let options = MasterOptions::with_deadline(Some(deadline.into_std()))
            .with_status_every(Duration::from_millis(250));
        let (out, events, took) = run_virtual(&mut launcher, &mut channel, &spec, &options).await;
        assert!(matches!(out, Ok(MasterOutcome::TimedOut(_))), "{out:?}");
        assert_eq!(took, Duration::from_secs(2));
        let polls = events
            .iter()
            .filter(|e| matches!(e, MasterEvent::Workers(_)))
            .count();
        // At 0, 250, …, 1750 ms.
        assert_eq!(polls, 8);
    }

    #[tokio::test(start_paused = true)]
    async fn empty_answers_at_once_do_not_make_the_master_spin() {
        let spec = spec(30, None, 1);
        let mut channel = Counted {
            answer: Receives::AtOnce,
            receives: 0,
        };
        let mut launcher = Told::saying(WorkerStatus::default().with_running(1));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        let options = MasterOptions::with_deadline(Some(deadline.into_std()))
            .with_status_every(Duration::from_millis(250));
        let (out, _, took) = run_virtual(&mut launcher, &mut channel, &spec, &options).await;
        assert!(matches!(out, Ok(MasterOutcome::TimedOut(_))), "{out:?}");
        assert_eq!(took, Duration::from_secs(2));
        // One receive per 250 ms between status polls, not a busy loop.
        assert_eq!(channel.receives, 8);
    }

    /// Runs `spec` with real one-thread searches to its end, which must be a find.
    fn found_by_real_search(
        spec: &RunSpec,
        options: &MasterOptions,
    ) -> (Golden, MemoryLauncher, MemoryChannel) {
        let mut channel = MemoryChannel::new();
        let mut launcher = MemoryLauncher::new(channel.clone(), Backend::Scalar);
        let (out, _) = run_with(
            &mut launcher,
            &mut channel,
            spec,
            options,
            &CancelToken::new(),
        );
        let Ok(MasterOutcome::Found(golden)) = out else {
            panic!("{out:?}")
        };
        (golden, launcher, channel)
    }

    /// A run resumed from what earlier attempts searched: `searched` of a
    /// 4-shard run over 2^15 nonces at a difficulty none of them meets.
    fn resumed(searched: &Searched) -> RunSpec {
        let spec = spec(40, Some(NonceRange::new(0, (1 << 15) - 1).unwrap()), 4);
        spec.with_searched(searched.clone()).unwrap()
    }

    #[test]
    fn a_resumed_run_searches_only_the_rest_and_counts_the_range_once() {
        let mut searched = Searched::default();
        searched.mark_done(1);
        searched.add_prefix(2, 3_000);
        let spec = resumed(&searched);
        let mut channel = MemoryChannel::new();
        let mut launcher = MemoryLauncher::new(channel.clone(), Backend::Scalar);
        let (out, events) = run_to_end(&mut launcher, &mut channel, &spec);
        let Ok(MasterOutcome::Exhausted(totals)) = out else {
            panic!("{out:?}")
        };
        // Earlier attempts' part and this run's, each nonce once.
        assert_eq!((totals.hashes, totals.shards_done), (1 << 15, 4));
        let exhausted: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                MasterEvent::ShardExhausted { shard, .. } => Some(*shard),
                _ => None,
            })
            .collect();
        assert_eq!(
            exhausted.len(),
            3,
            "shard 1 was not searched again: {exhausted:?}"
        );
        assert!(!exhausted.contains(&1), "{exhausted:?}");
        let ignored = events
            .iter()
            .filter(|e| matches!(e, MasterEvent::Ignored(_)))
            .count();
        assert_eq!(ignored, 0, "the rest's exhausted reports count: {events:?}");
    }

    #[test]
    fn an_exhausted_report_for_the_whole_shard_of_a_resumed_one_is_short() {
        // Shard 2's worker was told to skip 3,000 nonces: a count of the
        // whole shard is a worker that did not do as told (or a forger).
        let mut searched = Searched::default();
        searched.add_prefix(2, 3_000);
        let spec = resumed(&searched);
        let mut channel = MemoryChannel::new();
        for shard in 0..4 {
            channel.send(signed(&spec, &exhausted(&spec, shard)));
        }
        // Every worker ended: after two idle status polls and a drain, the
        // run ends naming the shard that was not searched, and only its rest.
        let mut launcher = Told::saying(WorkerStatus::default().with_succeeded(4));
        let options = MasterOptions::default().with_status_every(Duration::from_millis(50));
        let (out, events) = run_with(
            &mut launcher,
            &mut channel,
            &spec,
            &options,
            &CancelToken::new(),
        );
        let Err(MasterError::WorkersGone {
            unfinished,
            missing,
            ..
        }) = out
        else {
            panic!("{out:?}")
        };
        let shard = spec.range.shard(2, 4).unwrap();
        let rest = NonceRange::new(shard.first() + 3_000, shard.last()).unwrap();
        assert_eq!((unfinished, missing), (1, vec![(2, rest)]));
        assert!(
            events.iter().any(|e| matches!(
                e,
                MasterEvent::Ignored(Ignored::ShortExhausted {
                    shard: 2,
                    expected: 5_192,
                    ..
                })
            )),
            "{events:?}"
        );
    }

    #[test]
    fn progress_moves_the_searched_prefix_only_for_the_shards_own_worker() {
        let spec = resumed(&Searched::default());
        let mut channel = MemoryChannel::new();
        let progress = |searched| Report {
            hashes: 5_000,
            ..report(&spec, 1, 5_000, ReportKind::Progress { searched })
        };
        // Past what its count allows: held to the count.
        channel.send(signed(&spec, &progress(7_000)));
        channel.send(signed(&spec, &progress(4_096)));
        for shard in 0..4 {
            channel.send(signed(&spec, &exhausted(&spec, shard)));
        }
        let mut launcher = Told::default();
        let (_, events) = run_to_end(&mut launcher, &mut channel, &spec);
        let searched: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                MasterEvent::Progress(p) if p.shard == 1 => Some(p.shard_searched),
                _ => None,
            })
            .collect();
        assert_eq!(searched[..2], [5_000, 5_000], "{searched:?}");
    }

    #[test]
    fn an_earlier_find_ends_a_first_answer_run_before_anything_is_made() {
        let spec = spec(8, None, 4);
        let nonce = first_golden(&spec, 2).unwrap();
        let mut searched = Searched::default();
        searched.mark_done(2);
        let resumed = spec.clone().with_searched(searched).unwrap();
        let options = MasterOptions::default().with_earlier_finds(BTreeMap::from([(2, nonce)]));
        let (golden, ..) = found_by_real_search(&resumed, &options);
        // The journal's find, verified again, not a worker's.
        assert_eq!((golden.nonce, golden.shard), (nonce, 2));
        assert_eq!(golden.worker, "an earlier attempt");
        assert_eq!(golden.hash, verify(&spec.puzzle, nonce).hash);
        // A forged one (not golden) is dropped, and the run searches.
        let options = MasterOptions::default().with_earlier_finds(BTreeMap::from([(2, nonce + 1)]));
        let (golden, ..) = found_by_real_search(&spec, &options);
        assert_ne!(golden.nonce, nonce + 1);
        assert!(golden.worker.starts_with("memory-"), "{golden:?}");
    }

    #[test]
    fn a_resumed_smallest_run_keeps_an_earlier_find_and_searches_below_it() {
        for (i, difficulty) in [9u32, 10, 11].into_iter().enumerate() {
            let puzzle = Puzzle::new(
                format!("cnd resumed smallest {i}").into_bytes(),
                difficulty,
                crate::NonceBits::B32,
                crate::NonceFormat::Binary,
            )
            .unwrap();
            let base = spec(difficulty, None, 8);
            let spec = RunSpec {
                puzzle,
                range: NonceRange::new(0, (1 << 16) - 1).unwrap(),
                ..base
            };
            let smallest = (0..=u64::from(u16::MAX))
                .find(|&n| verify(&spec.puzzle, n).golden)
                .unwrap();
            let with_golden: Vec<u64> = (0..8)
                .filter(|&s| first_golden(&spec, s).is_some())
                .collect();
            // An earlier attempt found the last shard's smallest, and searched
            // the first shard half way.
            let last = *with_golden.last().unwrap();
            let mut searched = Searched::default();
            searched.mark_done(last);
            let first_shard = spec.range.shard(0, 8).unwrap();
            let below_smallest = (smallest - first_shard.first()).min(4_096) / 2;
            searched.add_prefix(0, below_smallest.max(1));
            let spec = spec.with_searched(searched).unwrap();
            let finds = BTreeMap::from([(last, first_golden(&spec, last).unwrap())]);
            let options = MasterOptions::default()
                .with_answer(Answer::Smallest)
                .with_earlier_finds(finds);
            let (golden, launcher, _) = found_by_real_search(&spec, &options);
            assert_eq!(golden.nonce, smallest, "D = {difficulty}");
            if last > 0 {
                // At the start for the earlier find, lower once a lower one came.
                let retired = launcher.retired_above();
                assert!(
                    retired.is_some_and(|r| r <= last),
                    "D = {difficulty}: {retired:?}"
                );
            }
        }
    }
}
