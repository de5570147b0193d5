//! cnd-worker: searches one shard of a run and reports it.
//!
//! Reports go where `CND_QUEUE_URL` says (`cnd_core::Destination`): an SQS queue;
//! `stdout:`, one signed envelope per line for the master that started this
//! process; or `termination-log:PATH`, the final report only, written to the
//! container's termination-message file for the master to read from the pod's
//! status (no queue, no credentials, no API access).
//!
//! Configured only by the environment of SPEC §4 (see `cnd_core::WorkerConfig`),
//! plus `CND_EXPIRES` (the run's end in Unix seconds: the worker stops searching
//! then, even if its master is gone, and marks its messages with it),
//! `CND_PROGRESS_SECS` (seconds between `progress` reports, default 5, from
//! 0.05 to 3600),
//! `CND_BACKEND` (force a hash backend) and `RUST_LOG` (log filter; logs go to stderr).
//!
//! Exit status:
//! - `0`: the final report (`found` or `exhausted`) was delivered;
//! - `1`: the search failed (a `failed` report was sent if possible), or the
//!   final report could not be delivered;
//! - `2`: a variable is missing or malformed; nothing was searched;
//! - `143` / `130`: stopped by SIGTERM / SIGINT (128 + signal, as a shell reports
//!   it). Deliberately not 0: a pod evicted mid-search must not count as a
//!   completed shard, so an Indexed Job runs that shard again.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use cnd_cloud::sqs::{self, RetryPolicy, SqsReportSender};
use cnd_core::distributed::{error_chain, TERMINATION_MESSAGE_LIMIT};
use cnd_core::{
    search, Backend, Destination, Message, Report, ReportKind, RunKey, SearchControl,
    SearchOptions, SearchOutcome, WorkerConfig,
};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

/// The variable that sets the seconds between progress reports.
const PROGRESS_ENV: &str = cnd_core::worker_env::PROGRESS_SECS;
/// The seconds between progress reports that `CND_PROGRESS_SECS` may ask for:
/// faster would flood the queue, slower would get the worker taken as stalled.
const PROGRESS_SECS: std::ops::RangeInclusive<f64> = 0.05..=3600.0;

/// What the environment asks for, checked before any work.
struct Settings {
    config: WorkerConfig,
    backend: Backend,
    progress_every: Duration,
    /// `CND_THREADS` when it was above the cap, and so lowered to `config.threads`.
    threads_asked: Option<usize>,
}

fn main() -> ExitCode {
    let settings = match read_settings() {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("cnd-worker: {message}");
            return ExitCode::from(2);
        }
    };
    init_logging();
    if let Some(asked) = settings.threads_asked {
        warn!(
            "CND_THREADS={asked} is more than the {} threads this worker may use \
             ({} per CPU of its {}, at least {}): searching on {}",
            settings.config.threads,
            cnd_core::worker_config::THREADS_PER_CPU,
            cnd_core::available_threads(),
            cnd_core::worker_config::MIN_THREAD_CAP,
            settings.config.threads
        );
    }
    // One thread for the SDK and the timers: the search has its own rayon
    // threads, and a small runtime keeps the worker's memory small.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            error!("could not start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    let code = match runtime.block_on(run(settings)) {
        Ok(code) => code,
        Err(err) => {
            error!("{}", chain(&err));
            ExitCode::from(1)
        }
    };
    // Dropping a runtime waits for its blocking tasks; a search thread that did
    // not stop in time must not hold the exit up.
    runtime.shutdown_background();
    code
}

/// Reads and checks every variable; the error is one sentence naming the variable.
fn read_settings() -> Result<Settings, String> {
    // Also refuses any CND_ variable that is not UTF-8 (CND_BACKEND and
    // CND_PROGRESS_SECS included), so none below is taken as unset.
    let mut config = WorkerConfig::from_env().map_err(|e| e.to_string())?;
    let backend = Backend::from_env().map_err(|e| format!("CND_BACKEND: {e}"))?;
    let progress_every = match std::env::var_os(PROGRESS_ENV) {
        Some(text) if !text.is_empty() => {
            let text = text.to_string_lossy();
            parse_progress_secs(&text).ok_or_else(|| {
                format!(
                    "{PROGRESS_ENV}={text:?} is not a number of seconds from {} to {}",
                    PROGRESS_SECS.start(),
                    PROGRESS_SECS.end()
                )
            })?
        }
        _ => Duration::from_secs(5),
    };
    // A pod's CPUs may differ from what its master guessed: too many threads
    // are lowered (with a warning once logging is up), not refused.
    let cap = cnd_core::worker_config::max_threads();
    let threads_asked = (config.threads > cap).then_some(config.threads);
    config.threads = config.threads.min(cap);
    Ok(Settings {
        config,
        backend,
        progress_every,
        threads_asked,
    })
}

/// `CND_PROGRESS_SECS`: a finite number of seconds within [`PROGRESS_SECS`].
fn parse_progress_secs(text: &str) -> Option<Duration> {
    let secs = text.parse::<f64>().ok()?;
    if !PROGRESS_SECS.contains(&secs) {
        return None;
    }
    Duration::try_from_secs_f64(secs).ok()
}

/// An error and its causes in one line, each said once (`{:#}` repeats a cause
/// that an error's own message already ends with).
fn chain(err: &anyhow::Error) -> String {
    let err: &(dyn std::error::Error + 'static) = err.as_ref();
    error_chain(err)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,aws_config=warn,aws_smithy_runtime=warn")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, never in `kubectl logs`.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        // A closed stderr (a master that died, a log pipe nobody reads) must not
        // end the search: by default a failed write is reported with eprintln!,
        // which panics on that same closed stderr.
        .log_internal_errors(false)
        .init();
}

/// How the worker was told to stop.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Term,
    Int,
    Hup,
    Quit,
}

impl Stop {
    fn exit_code(self) -> ExitCode {
        match self {
            Stop::Term => ExitCode::from(143),
            Stop::Int => ExitCode::from(130),
            Stop::Hup => ExitCode::from(129),
            Stop::Quit => ExitCode::from(131),
        }
    }
}

/// Resolves when SIGTERM (Kubernetes deleting the pod), SIGINT, SIGHUP (a
/// closed terminal) or SIGQUIT arrives: each stops the search the same way.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("could not handle SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("could not handle SIGINT")?,
            hup: signal(SignalKind::hangup()).context("could not handle SIGHUP")?,
            quit: signal(SignalKind::quit()).context("could not handle SIGQUIT")?,
        })
    }

    async fn next(&mut self) -> Stop {
        tokio::select! {
            _ = self.term.recv() => Stop::Term,
            _ = self.int.recv() => Stop::Int,
            _ = self.hup.recv() => Stop::Hup,
            _ = self.quit.recv() => Stop::Quit,
        }
    }
}

async fn run(settings: Settings) -> anyhow::Result<ExitCode> {
    let Settings {
        config,
        backend,
        progress_every,
        ..
    } = settings;
    // Installed first, so a SIGTERM during start-up is not the default (abrupt) death.
    let mut signals = Signals::install()?;
    let reporter = tokio::select! {
        reporter = Reporter::connect(&config) => reporter?,
        stop = signals.next() => return Ok(stop.exit_code()),
    };
    info!(
        run = %config.run_id,
        shard = config.shard_index,
        shards = config.shard_count,
        nonces = %config.shard,
        difficulty = config.puzzle.difficulty(),
        threads = config.threads,
        backend = %backend,
        worker = %config.worker_name,
        "searching"
    );

    let control = Arc::new(SearchControl::new());
    let started = Instant::now();
    let Some(rest) = config.rest else {
        // Earlier attempts of the run searched the whole shard (CND_SEARCHED).
        info!("earlier attempts searched this whole shard");
        let report = Report {
            run_id: config.run_id,
            shard: config.shard_index,
            worker: config.worker_name.clone(),
            hashes: 0,
            elapsed_ms: 0,
            kind: ReportKind::Exhausted,
        };
        return deliver_final(&reporter, &report, &mut signals).await;
    };
    if rest != config.shard {
        info!(rest = %rest, "earlier attempts searched the start of this shard");
    }
    let mut search_task = tokio::task::spawn_blocking({
        let (puzzle, shard, control) = (config.puzzle.clone(), rest, Arc::clone(&control));
        let options = SearchOptions::all_cores()
            .with_threads(config.threads)
            .with_backend(backend)
            // The run's lifetime: a worker whose master is gone still stops.
            .with_deadline(config.expires.map(instant_of));
        move || search(&puzzle, shard, &options, &control)
    });
    let progress = tokio::spawn(send_progress(
        reporter.clone(),
        config.clone(),
        Arc::clone(&control),
        started,
        progress_every,
    ));

    let searched = tokio::select! {
        joined = &mut search_task => joined,
        stop = signals.next() => {
            progress.abort();
            return Ok(stop_search(stop, &control, search_task).await);
        }
    };
    progress.abort();

    let failed = |error: String| Report {
        run_id: config.run_id,
        shard: config.shard_index,
        worker: config.worker_name.clone(),
        hashes: control.hashes(),
        elapsed_ms: millis(started.elapsed()),
        kind: ReportKind::Failed { error },
    };
    let final_report = match searched {
        // The generic "deadline passed" would not say which deadline.
        Ok(Ok(SearchOutcome::TimedOut { hashes, .. })) => {
            let error = format!("the run's lifetime (CND_EXPIRES) ended after {hashes} hashes");
            warn!("{error}");
            failed(error)
        }
        Ok(outcome) => {
            match &outcome {
                Ok(SearchOutcome::Found(found)) => {
                    info!(nonce = found.nonce, leading_zeros = found.leading_zeros, hashes = found.hashes, elapsed = ?found.elapsed, "found a golden nonce");
                }
                Ok(SearchOutcome::Exhausted { hashes, elapsed }) => {
                    info!(hashes, elapsed = ?elapsed, "no golden nonce in this shard");
                }
                Ok(_) => {}
                Err(err) => error!("the search could not run: {}", error_chain(err)),
            }
            let report = Report::from_outcome(
                config.run_id,
                config.shard_index,
                config.worker_name.clone(),
                &outcome,
            );
            // Only `stop_search` cancels, and it has returned above: this cannot happen.
            report.unwrap_or_else(|| {
                let error = "the search was cancelled unexpectedly".to_string();
                error!("{error}");
                failed(error)
            })
        }
        Err(err) => {
            let error = format!("the search thread failed: {err}");
            error!("{error}");
            failed(error)
        }
    };
    deliver_final(&reporter, &final_report, &mut signals).await
}

/// Sends the final report; the exit code says whether the worker did its job
/// (found or exhausted, delivered).
async fn deliver_final(
    reporter: &Reporter,
    final_report: &Report,
    signals: &mut Signals,
) -> anyhow::Result<ExitCode> {
    let success = matches!(
        final_report.kind,
        ReportKind::Found { .. } | ReportKind::Exhausted
    );
    tokio::select! {
        sent = reporter.send(final_report) => match sent {
            Ok(()) => {
                info!(kind = final_report.kind.name(), "report delivered");
                Ok(ExitCode::from(if success { 0 } else { 1 }))
            }
            Err(err) => {
                error!("{}", chain(&err));
                Ok(ExitCode::from(1))
            }
        },
        stop = signals.next() => {
            warn!("stopped while sending the {} report", final_report.kind.name());
            Ok(stop.exit_code())
        }
    }
}

/// Cancels the search and waits for its threads (they stop within one chunk).
async fn stop_search(
    stop: Stop,
    control: &SearchControl,
    search_task: tokio::task::JoinHandle<Result<SearchOutcome, cnd_core::SearchError>>,
) -> ExitCode {
    info!(signal = ?stop, hashes = control.hashes(), "stopping: cancelling the search");
    control.cancel();
    // Bounded so a stuck thread cannot keep a deleted pod alive until SIGKILL.
    if tokio::time::timeout(Duration::from_secs(2), search_task)
        .await
        .is_err()
    {
        warn!("the search did not stop within 2 s; exiting anyway");
    }
    stop.exit_code()
}

/// Where this worker's reports go (SPEC §5).
#[derive(Clone)]
enum Reporter {
    /// Messages on an SQS queue, signed in a message attribute.
    Sqs(SqsReportSender),
    /// Signed envelopes, one per line, on stdout.
    Stdout(RunKey),
    /// The final report as a signed envelope in the termination-message file.
    TerminationLog { path: PathBuf, key: RunKey },
}

impl Reporter {
    /// Sets up the destination; an SQS queue that is gone (or unreachable) is
    /// found out now, not after the shard.
    async fn connect(config: &WorkerConfig) -> anyhow::Result<Reporter> {
        Ok(match &config.destination {
            Destination::Stdout => Reporter::Stdout(config.run_key.clone()),
            Destination::TerminationLog(path) => {
                let path = PathBuf::from(path);
                // Found out now, not after the shard.
                if let Some(dir) = path.parent().filter(|dir| !dir.is_dir()) {
                    anyhow::bail!(
                        "CND_QUEUE_URL: the termination log's directory {} does not exist; not searching",
                        dir.display()
                    );
                }
                Reporter::TerminationLog {
                    path,
                    key: config.run_key.clone(),
                }
            }
            Destination::Sqs(url) => {
                let client = sqs::client_for_queue(url)
                    .await
                    .context("could not configure the SQS client")?;
                check_queue(&client, url).await?;
                Reporter::Sqs(
                    SqsReportSender::new(&client, url, config.run_key.clone())
                        .with_expiry(config.expires),
                )
            }
            other => anyhow::bail!("CND_QUEUE_URL: {other} is not supported by this worker"),
        })
    }

    /// Whether `progress` reports are sent: a termination message holds one report.
    fn sends_progress(&self) -> bool {
        !matches!(self, Reporter::TerminationLog { .. })
    }

    /// A reporter that gives up on a report after `every` (progress: a lost one costs nothing).
    fn brief(self, every: Duration) -> Reporter {
        match self {
            Reporter::Sqs(sender) => Reporter::Sqs(sender.with_retry(RetryPolicy {
                tries: 3,
                give_up_after: every,
                ..RetryPolicy::default()
            })),
            other => other,
        }
    }

    async fn send(&self, report: &Report) -> anyhow::Result<()> {
        match self {
            Reporter::Sqs(sender) => Ok(sender.send(report).await?),
            Reporter::Stdout(key) => {
                let mut line = Message::signed(key, report.to_json()).to_envelope();
                line.push('\n');
                // One write of the whole line (the master reads whole lines), off
                // the runtime's thread: a full pipe must not hold off the signals.
                let written = tokio::task::spawn_blocking(move || {
                    let mut out = std::io::stdout().lock();
                    out.write_all(line.as_bytes()).and_then(|()| out.flush())
                })
                .await;
                match written {
                    Ok(result) => result.with_context(|| {
                        format!(
                            "could not write the {} report to stdout",
                            report.kind.name()
                        )
                    }),
                    Err(e) => Err(anyhow::anyhow!("writing to stdout failed: {e}")),
                }
            }
            Reporter::TerminationLog { path, key } => {
                let envelope = Message::signed(key, report.to_json()).to_envelope();
                // Kubernetes keeps only the first 4096 bytes: a cut envelope would be lost.
                anyhow::ensure!(
                    envelope.len() <= TERMINATION_MESSAGE_LIMIT,
                    "the {} report is {} bytes, more than the {TERMINATION_MESSAGE_LIMIT} a termination message holds",
                    report.kind.name(),
                    envelope.len()
                );
                std::fs::write(path, envelope).with_context(|| {
                    format!(
                        "could not write the {} report to {}",
                        report.kind.name(),
                        path.display()
                    )
                })
            }
        }
    }
}

/// Checks the queue exists, retrying transient failures for up to a minute.
async fn check_queue(client: &sqs::Client, queue_url: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(200);
    loop {
        let failure = match tokio::time::timeout(CHECK_TIMEOUT, sqs::check_queue(client, queue_url))
            .await
        {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(err @ cnd_core::ChannelError::Refused { .. })) => {
                return Err(anyhow::anyhow!("{}; not searching", error_chain(&err)))
            }
            Ok(Err(err)) => error_chain(&err),
            Err(_) => format!("looking up queue {queue_url}: no answer within {CHECK_TIMEOUT:?}"),
        };
        if started.elapsed() + delay > Duration::from_secs(60) {
            return Err(anyhow::anyhow!("{failure}; not searching"));
        }
        warn!("{failure}; retrying in {delay:?}");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// The longest one queue lookup may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(20);

/// Sends a `progress` report every `every` until aborted. A lost progress report
/// costs nothing, so it is tried briefly and never holds up the search.
async fn send_progress(
    reporter: Reporter,
    config: WorkerConfig,
    control: Arc<SearchControl>,
    started: Instant,
    every: Duration,
) {
    if !reporter.sends_progress() {
        return;
    }
    let reporter = reporter.brief(every);
    let skipped = config
        .rest
        .map_or(0, |rest| rest.first() - config.shard.first());
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let report = Report {
            run_id: config.run_id,
            shard: config.shard_index,
            worker: config.worker_name.clone(),
            hashes: control.hashes(),
            elapsed_ms: millis(started.elapsed()),
            kind: ReportKind::Progress {
                // Counted from the shard's first nonce, earlier attempts' part included.
                searched: skipped.saturating_add(control.searched()),
            },
        };
        match reporter.send(&report).await {
            Ok(()) => tracing::debug!(hashes = report.hashes, "progress reported"),
            Err(err) => warn!("{}", chain(&err)),
        }
    }
}

/// The instant of a time in Unix seconds (now, if it has passed).
fn instant_of(unix_secs: u64) -> Instant {
    let left = unix_secs.saturating_sub(cnd_core::distributed::unix_now());
    Instant::now() + Duration::from_secs(left.min(366 * 24 * 3600))
}

fn millis(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}
