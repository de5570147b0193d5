//! [`LocalLauncher`]: the workers of a run as `cnd-worker` processes on this
//! machine, with the same environment a pod gets, so a distributed run can be
//! tried (and tested end to end) without a cluster.
//!
//! At most `parallelism` workers run at once; the next shard starts when one
//! ends. A worker that crashes (non-zero exit, killed by a signal) is started
//! again for the same shard, up to [`LocalOptions::shard_retries`] times, as an
//! Indexed Job would; after that the launcher reports the run fatal. `stop`
//! kills every worker and waits for it; `kill_on_drop` is the safety net.
//!
//! [`StdoutChannel`] is the result channel that needs nothing installed: workers
//! started with `CND_QUEUE_URL=stdout:` write one signed envelope per line
//! (SPEC §5) and the launcher that spawned them hands the lines to the channel,
//! each marked as sent by the shard of the process that wrote it.
//!
//! Each worker gets its own shard's key ([`RunSpec::shard_key_env`]), so even
//! over SQS its reports can speak for its own shard only. [`Launcher::restart`]
//! kills one shard's worker (the master asks when its progress stopped, e.g.
//! a process frozen by SIGSTOP) and it is started again like a crashed one.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use cnd_core::distributed::STDOUT_ADDRESS;
use cnd_core::worker_env;
use cnd_core::{
    ChannelError, LaunchError, Launcher, Message, Received, ResultChannel, RunSpec, Sender,
    WorkerStatus,
};

/// How local workers are run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalOptions {
    /// The `cnd-worker` binary.
    pub worker_bin: PathBuf,
    /// `CND_THREADS` of each worker; `None`: this machine's CPUs shared out
    /// between the workers that run at once, so workers × threads ≈ cores.
    pub threads: Option<usize>,
    /// How often one shard's worker is started again after a crash
    /// ([`DEFAULT_SHARD_RETRIES`](cnd_core::distributed::DEFAULT_SHARD_RETRIES)).
    pub shard_retries: u32,
    /// Environment added to every worker's (the master's own is inherited, so
    /// `AWS_*` reaches the workers as it is).
    pub extra_env: Vec<(String, String)>,
}

impl LocalOptions {
    /// Options for `worker_bin` with the defaults: threads shared out, [`DEFAULT_SHARD_RETRIES`](cnd_core::distributed::DEFAULT_SHARD_RETRIES) restarts.
    pub fn new(worker_bin: impl Into<PathBuf>) -> Self {
        LocalOptions {
            worker_bin: worker_bin.into(),
            threads: None,
            shard_retries: cnd_core::distributed::DEFAULT_SHARD_RETRIES,
            extra_env: Vec::new(),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    status: WorkerStatus,
    restarts: u64,
    /// The running workers by shard, each with the switch that kills it for
    /// [`Launcher::restart`].
    running: BTreeMap<u64, oneshot::Sender<()>>,
    succeeded: Vec<u64>,
    /// Shards above this one are not started, and their workers are killed
    /// ([`Launcher::retire_above`]).
    retired_above: Option<u64>,
}

impl State {
    fn is_retired(&self, shard: u64) -> bool {
        self.retired_above.is_some_and(|above| shard > above)
    }
}

/// Runs a run's workers as local processes.
#[derive(Debug)]
pub struct LocalLauncher {
    options: LocalOptions,
    state: Arc<Mutex<State>>,
    stop: Option<watch::Sender<bool>>,
    supervisor: Option<JoinHandle<()>>,
    /// Where workers' stdout lines go, once [`LocalLauncher::stdout_channel`] was asked for.
    reports: Option<mpsc::Sender<Message>>,
}

impl LocalLauncher {
    /// A launcher that starts `options.worker_bin`.
    pub fn new(options: LocalOptions) -> Self {
        LocalLauncher {
            options,
            state: Arc::default(),
            stop: None,
            supervisor: None,
            reports: None,
        }
    }

    /// The channel that receives what this launcher's workers write to stdout:
    /// give its address (`stdout:`) as the run's queue URL. Asking again makes a
    /// new channel; the old one then hears nothing from workers started later.
    pub fn stdout_channel(&mut self) -> StdoutChannel {
        let (sender, receiver) = mpsc::channel(STDOUT_BACKLOG);
        self.reports = Some(sender);
        StdoutChannel { receiver }
    }

    /// How many crashed workers were started again.
    pub fn restarts(&self) -> u64 {
        lock(&self.state).restarts
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// What one worker process needs to be started.
struct Recipe {
    bin: PathBuf,
    env: Vec<(String, String)>,
    /// For each shard's own key.
    spec: RunSpec,
    reports: Option<mpsc::Sender<Message>>,
}

impl Recipe {
    fn spawn(&self, shard: u64, attempt: u32) -> std::io::Result<Child> {
        let name = format!("local-{shard}");
        let mut command = Command::new(&self.bin);
        // A plain variable is safe here: only this user (and root) can read a
        // process's environment.
        let (key_name, key) = self.spec.shard_key_env(shard);
        command
            .envs(self.env.iter().cloned())
            .env(key_name, key)
            .envs(self.spec.shard_env(shard))
            .env(worker_env::WORKER_NAME, &name)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // Workers die with the master, even by SIGKILL: kill_on_drop needs the
        // master alive to run. (The signal follows the spawning thread, a tokio
        // worker thread, which lives as long as the runtime.)
        let master = std::process::id() as libc::pid_t;
        // SAFETY: the closure runs in the child between fork and exec and calls
        // only async-signal-safe functions (prctl, getppid, kill, getpid).
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The master may have died before prctl took effect.
                if libc::getppid() != master {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
                Ok(())
            });
        }
        let mut child = command.spawn()?;
        tracing::debug!(worker = %name, attempt, pid = child.id(), "worker started");
        // Workers' output goes to the master's log, line by line, under their
        // name; with a stdout channel, their stdout lines are reports.
        if let Some(out) = child.stdout.take() {
            let (name, reports) = (name.clone(), self.reports.clone());
            tokio::spawn(async move {
                match reports {
                    Some(reports) => {
                        forward_reports(BufReader::new(out), &name, shard, &reports).await
                    }
                    None => log_lines(out, name, "stdout").await,
                }
            });
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(log_lines(err, name.clone(), "stderr"));
        }
        Ok(child)
    }
}

async fn log_lines(out: impl AsyncRead + Unpin, name: String, stream: &'static str) {
    let mut lines = BufReader::new(out).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::debug!(target: "cnd::worker", worker = %name, stream, "{line}");
    }
}

/// The longest stdout line taken as a report; a report is a few hundred bytes.
pub const MAX_REPORT_LINE: usize = 64 * 1024;

/// Reports waiting for the master before workers' writes wait for it.
const STDOUT_BACKLOG: usize = 1024;

/// Hands each whole line of a worker's stdout to the channel, as sent by
/// `shard`'s worker: envelopes as read, anything else as an unsigned message
/// (the master ignores and counts it). A line cut short by the worker's death,
/// or longer than [`MAX_REPORT_LINE`], is dropped (counted, with one warning per
/// worker).
async fn forward_reports(
    mut out: impl AsyncBufRead + Unpin,
    name: &str,
    shard: u64,
    reports: &mpsc::Sender<Message>,
) {
    let mut too_long = 0u64;
    loop {
        let line = match read_line_bounded(&mut out, MAX_REPORT_LINE).await {
            Ok(Line::Whole(line)) => line,
            Ok(Line::TooLong) => {
                too_long += 1;
                if too_long == 1 {
                    tracing::warn!(worker = %name, "dropped a stdout line longer than {MAX_REPORT_LINE} bytes (further ones are counted at the end)");
                }
                continue;
            }
            Ok(Line::Cut(partial)) => {
                tracing::warn!(worker = %name, bytes = partial.len(), "the worker's output ended mid-line; the partial line was dropped");
                return;
            }
            Ok(Line::End) => {
                if too_long > 1 {
                    tracing::warn!(worker = %name, "dropped {too_long} stdout lines longer than {MAX_REPORT_LINE} bytes in all");
                }
                return;
            }
            Err(e) => {
                tracing::warn!(worker = %name, "reading the worker's stdout failed: {e}");
                return;
            }
        };
        let text = String::from_utf8_lossy(&line);
        let message = Message::from_envelope(&text)
            .unwrap_or_else(|e| {
                tracing::trace!(worker = %name, "a stdout line is {e}");
                Message::unsigned(text.into_owned())
            })
            .from_sender(Sender::Shard(shard));
        if reports.send(message).await.is_err() {
            return; // the channel is gone: the run is over
        }
    }
}

/// One read of [`read_line_bounded`].
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A line, without its newline.
    Whole(Vec<u8>),
    /// A line over the limit, skipped to its end.
    TooLong,
    /// Bytes after the last newline when the stream ended.
    Cut(Vec<u8>),
    /// The stream ended after a newline (or was empty).
    End,
}

/// Reads one line of at most `limit` bytes without ever holding more.
async fn read_line_bounded(
    out: &mut (impl AsyncBufRead + Unpin),
    limit: usize,
) -> std::io::Result<Line> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let buffer = out.fill_buf().await?;
        if buffer.is_empty() {
            return Ok(match (too_long, line.is_empty()) {
                (true, _) => Line::TooLong,
                (false, true) => Line::End,
                (false, false) => Line::Cut(line),
            });
        }
        let (chunk, found) = match buffer.iter().position(|&b| b == b'\n') {
            Some(at) => (&buffer[..at], Some(at)),
            None => (buffer, None),
        };
        if !too_long && line.len() + chunk.len() <= limit {
            line.extend_from_slice(chunk);
        } else {
            too_long = true;
            line = Vec::new();
        }
        let used = found.map_or(chunk.len(), |at| at + 1);
        out.consume(used);
        if found.is_some() {
            return Ok(if too_long {
                Line::TooLong
            } else {
                Line::Whole(line)
            });
        }
    }
}

/// The reports of local workers started with `CND_QUEUE_URL=stdout:`, as the
/// launcher that spawned them read them (see [`LocalLauncher::stdout_channel`]).
/// Nothing to create or delete: the run's channel lives in this process.
#[derive(Debug)]
pub struct StdoutChannel {
    receiver: mpsc::Receiver<Message>,
}

#[async_trait]
impl ResultChannel for StdoutChannel {
    fn address(&self) -> &str {
        STDOUT_ADDRESS
    }

    /// Cancel safe: a line leaves the channel's queue only in the poll that
    /// returns it (`mpsc::Receiver::recv` is cancel safe; nothing is awaited after).
    async fn receive(&mut self, wait: Duration) -> Result<Received, ChannelError> {
        let first = match tokio::time::timeout(wait, self.receiver.recv()).await {
            Ok(Some(message)) => message,
            // Every worker's stdout is closed and the launcher is gone: nothing
            // more can come, but the caller asked to wait.
            Ok(None) => {
                tokio::time::sleep(wait).await;
                return Ok(Received::default());
            }
            Err(_) => return Ok(Received::default()),
        };
        let mut messages = vec![first];
        while let Ok(message) = self.receiver.try_recv() {
            messages.push(message);
        }
        Ok(Received::new(messages))
    }

    async fn close(&mut self) -> Result<(), ChannelError> {
        self.receiver.close();
        Ok(())
    }
}

/// How one worker process ended.
enum End {
    /// It exited (or waiting for it failed).
    Exited(std::io::Result<ExitStatus>),
    /// The master had it killed to be replaced ([`Launcher::restart`]).
    Replaced,
    /// The run stopped.
    Stopped,
}

/// Waits for a worker to end, or kills it when it is to be replaced or the
/// run stops.
async fn watch_worker(
    shard: u64,
    attempt: u32,
    mut child: Child,
    replace: oneshot::Receiver<()>,
    mut stop: watch::Receiver<bool>,
) -> (u64, u32, End) {
    tokio::select! {
        status = child.wait() => (shard, attempt, End::Exited(status)),
        Ok(()) = replace => {
            // SIGKILL also ends a process frozen by SIGSTOP.
            if let Err(e) = child.kill().await {
                tracing::warn!(shard, "killing worker failed: {e}");
            }
            (shard, attempt, End::Replaced)
        }
        // (The guard wait_for returns is dropped at once: it must not live across an await.)
        _ = async { drop(stop.wait_for(|stop| *stop).await) } => {
            // SIGKILL: a worker holds nothing that needs a graceful end.
            if let Err(e) = child.kill().await {
                tracing::warn!(shard, "killing worker failed: {e}");
            }
            (shard, attempt, End::Stopped)
        }
    }
}

async fn supervise(
    recipe: Recipe,
    parallelism: u64,
    shard_retries: u32,
    state: Arc<Mutex<State>>,
    stop: watch::Receiver<bool>,
) {
    // A resumed run starts no worker for a shard searched to its end.
    let mut queue: VecDeque<(u64, u32)> = recipe.spec.shards_to_search().map(|s| (s, 0)).collect();
    let mut running = JoinSet::new();
    loop {
        {
            let state = lock(&state);
            queue.retain(|&(shard, _)| !state.is_retired(shard));
        }
        while !*stop.borrow() && (running.len() as u64) < parallelism {
            let Some((shard, attempt)) = queue.pop_front() else {
                break;
            };
            match recipe.spawn(shard, attempt) {
                Ok(child) => {
                    let (replace_tx, replace_rx) = oneshot::channel();
                    lock(&state).running.insert(shard, replace_tx);
                    running.spawn(watch_worker(
                        shard,
                        attempt,
                        child,
                        replace_rx,
                        stop.clone(),
                    ));
                }
                Err(e) => {
                    let mut state = lock(&state);
                    state.status.failed += 1;
                    state.status.fatal.get_or_insert_with(|| {
                        format!("could not start {}: {e}", recipe.bin.display())
                    });
                }
            }
        }
        {
            let mut state = lock(&state);
            state.status.pending = queue.len() as u64;
            state.status.running = running.len() as u64;
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let Ok((shard, attempt, status)) = joined else {
            continue;
        };
        let mut state = lock(&state);
        state.running.remove(&shard);
        match status {
            End::Stopped => {}
            _ if state.is_retired(shard) => {}
            End::Exited(Ok(status)) if status.success() => {
                state.status.succeeded += 1;
                state.succeeded.push(shard);
            }
            end => {
                let why = match end {
                    End::Exited(Ok(status)) => status.to_string(),
                    End::Exited(Err(e)) => e.to_string(),
                    _ => "made no progress; killed to be replaced".to_string(),
                };
                if attempt < shard_retries && !*stop.borrow() {
                    tracing::warn!(
                        shard,
                        attempt,
                        "worker local-{shard} crashed ({why}); starting it again"
                    );
                    state.restarts += 1;
                    // First in line: a restarted shard should not wait behind the rest.
                    queue.push_front((shard, attempt + 1));
                } else {
                    state.status.failed += 1;
                    state.status.fatal.get_or_insert_with(|| {
                        format!(
                            "worker local-{shard} failed {} times; last: {why}",
                            attempt + 1
                        )
                    });
                }
            }
        }
    }
    let mut state = lock(&state);
    state.status.pending = 0;
    state.status.running = 0;
}

/// CPUs of this machine shared out between `parallelism` workers.
pub fn threads_per_worker(parallelism: u64) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / parallelism.max(1) as usize).max(1)
}

#[async_trait]
impl Launcher for LocalLauncher {
    async fn launch(&mut self, spec: &RunSpec) -> Result<(), LaunchError> {
        let bin = &self.options.worker_bin;
        if !bin.is_file() {
            return Err(LaunchError::unreachable(
                bin.display().to_string(),
                "no cnd-worker binary there (set CND_WORKER_BIN)",
            ));
        }
        let threads = self
            .options
            .threads
            .unwrap_or_else(|| threads_per_worker(spec.parallelism));
        let mut env = spec.worker_env();
        env.push((worker_env::THREADS.into(), threads.to_string()));
        env.extend(self.options.extra_env.iter().cloned());
        let recipe = Recipe {
            bin: bin.clone(),
            env,
            spec: spec.clone(),
            reports: self.reports.clone(),
        };
        *lock(&self.state) = State {
            status: {
                let mut status = WorkerStatus::default();
                status.pending = spec.shards_to_search().count() as u64;
                status
            },
            ..State::default()
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        self.stop = Some(stop_tx);
        self.supervisor = Some(tokio::spawn(supervise(
            recipe,
            spec.parallelism.max(1),
            self.options.shard_retries,
            Arc::clone(&self.state),
            stop_rx,
        )));
        Ok(())
    }

    async fn status(&mut self) -> Result<WorkerStatus, LaunchError> {
        let state = lock(&self.state);
        let mut succeeded = state.succeeded.clone();
        succeeded.sort_unstable();
        Ok(state
            .status
            .clone()
            .with_running_shards(state.running.keys().copied().collect())
            .with_succeeded_shards(succeeded))
    }

    /// Kills shard `shard`'s worker; the supervisor starts it again as after a
    /// crash (within [`LocalOptions::shard_retries`]).
    async fn restart(&mut self, shard: u64) -> Result<(), LaunchError> {
        match lock(&self.state).running.remove(&shard) {
            Some(replace) => {
                let _ = replace.send(());
                Ok(())
            }
            // Ended on its own meanwhile: nothing to replace.
            None => Ok(()),
        }
    }

    /// Kills the workers of the shards above `shard` and starts none of them.
    async fn retire_above(&mut self, shard: u64) -> Result<(), LaunchError> {
        let retired = {
            let mut state = lock(&self.state);
            let above = state.retired_above.map_or(shard, |r| r.min(shard));
            state.retired_above = Some(above);
            state.running.split_off(&above.saturating_add(1))
        };
        for (_, kill) in retired {
            let _ = kill.send(());
        }
        Ok(())
    }

    async fn stop(&mut self) -> Result<(), LaunchError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(supervisor) = self.supervisor.take() {
            supervisor.await.map_err(|e| {
                LaunchError::other("the local worker supervisor failed").with_source(e)
            })?;
        }
        Ok(())
    }
}

impl Drop for LocalLauncher {
    fn drop(&mut self) {
        // Dropping the supervisor's task drops its children, which kill_on_drop kills.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(supervisor) = self.supervisor.take() {
            supervisor.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cnd_core::Puzzle;
    use std::time::Duration;
    use uuid::Uuid;

    fn spec(shards: u64, parallelism: u64) -> RunSpec {
        let puzzle = Puzzle::with_default_block(8).unwrap();
        RunSpec::new(puzzle.clone(), puzzle.space(), shards, parallelism)
            .unwrap()
            .with_queue_url("file:///dev/null")
            .with_run_key(cnd_core::RunKey::from_bytes([3; 32]))
    }

    /// A fake worker: a shell script that records its shard and behaves as told.
    fn script(dir: &std::path::Path, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("worker.sh");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn tempdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cnd-local-{name}-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    async fn until_done(launcher: &mut LocalLauncher) -> WorkerStatus {
        for _ in 0..500 {
            let status = launcher.status().await.unwrap();
            if status.pending == 0 && status.running == 0 {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("workers never ended");
    }

    #[tokio::test]
    async fn runs_every_shard_with_its_environment_and_bounded_parallelism() {
        let dir = tempdir("env");
        let log = dir.join("log");
        let bin = script(
            &dir,
            &format!(
                "echo \"$CND_SHARD_INDEX $CND_WORKER_NAME $CND_THREADS $CND_SHARD_COUNT $CND_RUN_ID $CND_RUN_KEY\" >> {}; sleep 0.1",
                log.display()
            ),
        );
        let spec = spec(5, 2);
        let mut launcher = LocalLauncher::new(LocalOptions {
            threads: Some(3),
            ..LocalOptions::new(bin)
        });
        launcher.launch(&spec).await.unwrap();
        let first = launcher.status().await.unwrap();
        assert!(first.running <= 2, "{first:?}");
        let status = until_done(&mut launcher).await;
        assert_eq!(status.succeeded, 5);
        assert_eq!(status.fatal, None);
        launcher.stop().await.unwrap();
        let mut lines: Vec<String> = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        lines.sort();
        // Each worker holds its own shard's key, never the run's.
        let expected: Vec<String> = (0..5)
            .map(|s| {
                format!(
                    "{s} local-{s} 3 5 {} {}",
                    spec.run_id,
                    spec.run_key.for_shard(s).to_hex()
                )
            })
            .collect();
        assert_eq!(lines, expected);
        assert_eq!(status.succeeded_shards, [0, 1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn retired_shards_are_killed_and_never_started() {
        let dir = tempdir("retire");
        let log = dir.join("log");
        let bin = script(
            &dir,
            &format!(
                "echo $CND_SHARD_INDEX >> {}
exec sleep 60",
                log.display()
            ),
        );
        let mut launcher = LocalLauncher::new(LocalOptions::new(bin));
        launcher.launch(&spec(6, 2)).await.unwrap();
        // Wait until shards 0 and 1 run.
        let mut status = launcher.status().await.unwrap();
        for _ in 0..500 {
            if std::fs::read_to_string(&log).is_ok_and(|l| l.lines().count() == 2) {
                status = launcher.status().await.unwrap();
                if status.running_shards == Some(vec![0, 1]) {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(status.running_shards, Some(vec![0, 1]), "{status:?}");
        launcher.retire_above(0).await.unwrap();
        for _ in 0..500 {
            status = launcher.status().await.unwrap();
            if status.running_shards == Some(vec![0]) && status.pending == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Shard 0 runs on; 1 is gone without counting as failed; 2..5 never start.
        assert_eq!(status.running_shards, Some(vec![0]), "{status:?}");
        assert_eq!((status.pending, status.failed, status.fatal), (0, 0, None));
        launcher.stop().await.unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "0\n1\n");
    }

    #[tokio::test]
    async fn a_frozen_worker_is_replaced_when_the_master_asks() {
        let dir = tempdir("frozen");
        let count = dir.join("count");
        // Shard 0's first worker freezes itself (SIGSTOP); the next one succeeds.
        let bin = script(
            &dir,
            &format!(
                "echo x >> {c}\n[ $(wc -l < {c}) -ge 2 ] && exit 0\nkill -STOP $$",
                c = count.display()
            ),
        );
        let mut launcher = LocalLauncher::new(LocalOptions::new(bin));
        launcher.launch(&spec(1, 1)).await.unwrap();
        // Wait until the first worker runs (and has frozen itself).
        for _ in 0..500 {
            if std::fs::read_to_string(&count).is_ok_and(|c| c.lines().count() == 1) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let running = launcher.status().await.unwrap();
        assert_eq!(running.running_shards, Some(vec![0]), "{running:?}");
        launcher.restart(0).await.unwrap();
        let status = until_done(&mut launcher).await;
        assert_eq!((status.succeeded, status.failed), (1, 0), "{status:?}");
        assert_eq!(launcher.restarts(), 1);
        assert_eq!(status.running_shards, Some(vec![]));
        // A shard that is not running has nothing to replace.
        launcher.restart(0).await.unwrap();
        launcher.stop().await.unwrap();
    }

    #[tokio::test]
    async fn a_crashed_worker_is_restarted_then_fatal() {
        let dir = tempdir("crash");
        let count = dir.join("count");
        // Shard 1 crashes twice, then succeeds; shard 0 succeeds.
        let bin = script(
            &dir,
            &format!(
                "[ \"$CND_SHARD_INDEX\" = 1 ] || exit 0\necho x >> {c}\n[ $(wc -l < {c}) -ge 3 ] && exit 0\nkill -9 $$",
                c = count.display()
            ),
        );
        let mut launcher = LocalLauncher::new(LocalOptions::new(bin));
        launcher.launch(&spec(2, 2)).await.unwrap();
        let status = until_done(&mut launcher).await;
        assert_eq!(
            (status.succeeded, status.failed, status.fatal),
            (2, 0, None)
        );
        assert_eq!(launcher.restarts(), 2);

        let always = script(&dir, "exit 7");
        let mut launcher = LocalLauncher::new(LocalOptions {
            shard_retries: 2,
            ..LocalOptions::new(always)
        });
        launcher.launch(&spec(1, 1)).await.unwrap();
        let status = until_done(&mut launcher).await;
        assert_eq!(status.failed, 1);
        assert!(status.fatal.unwrap().contains("failed 3 times"));
        assert_eq!(launcher.restarts(), 2);
    }

    #[tokio::test]
    async fn stop_kills_every_worker_and_is_idempotent() {
        let dir = tempdir("stop");
        let pids = dir.join("pids");
        let bin = script(
            &dir,
            &format!("echo $$ >> {}\nexec sleep 60", pids.display()),
        );
        let mut launcher = LocalLauncher::new(LocalOptions::new(bin));
        launcher.launch(&spec(3, 3)).await.unwrap();
        for _ in 0..200 {
            if std::fs::read_to_string(&pids).map_or(0, |s| s.lines().count()) == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let started = std::time::Instant::now();
        launcher.stop().await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        launcher.stop().await.unwrap();
        for pid in std::fs::read_to_string(&pids).unwrap().lines() {
            assert!(
                !std::path::Path::new(&format!("/proc/{pid}")).exists(),
                "worker {pid} still runs"
            );
        }
        let status = launcher.status().await.unwrap();
        assert_eq!((status.running, status.pending), (0, 0));
    }

    #[tokio::test]
    async fn a_missing_binary_fails_the_launch() {
        let mut launcher = LocalLauncher::new(LocalOptions::new("/nonexistent/cnd-worker"));
        let err = launcher.launch(&spec(1, 1)).await.unwrap_err();
        assert!(matches!(err, LaunchError::Unreachable { .. }), "{err}");
        launcher.stop().await.unwrap();
    }

    #[tokio::test]
    async fn lines_are_read_whole_bounded_or_reported_cut() {
        let mut input: &[u8] = b"one\n\ntoo-long-line\nfour\ncut";
        let mut lines = Vec::new();
        loop {
            let line = read_line_bounded(&mut input, 8).await.unwrap();
            let end = matches!(line, Line::End | Line::Cut(_));
            lines.push(line);
            if end {
                break;
            }
        }
        assert_eq!(
            lines,
            [
                Line::Whole(b"one".to_vec()),
                Line::Whole(Vec::new()),
                Line::TooLong,
                Line::Whole(b"four".to_vec()),
                Line::Cut(b"cut".to_vec()),
            ]
        );
        let mut empty: &[u8] = b"";
        assert_eq!(read_line_bounded(&mut empty, 8).await.unwrap(), Line::End);
        // Long lines arriving in small reads are still bounded.
        let long = format!("{}\nok\n", "x".repeat(100));
        let mut small = BufReader::with_capacity(7, long.as_bytes());
        assert_eq!(
            read_line_bounded(&mut small, 50).await.unwrap(),
            Line::TooLong
        );
        assert_eq!(
            read_line_bounded(&mut small, 50).await.unwrap(),
            Line::Whole(b"ok".to_vec())
        );
    }

    #[tokio::test]
    async fn the_stdout_channel_carries_whole_lines_and_drops_cut_ones() {
        let dir = tempdir("stdout");
        let key = cnd_core::RunKey::from_bytes([3; 32]);
        let good = Message::signed(&key, r#"{"v":1}"#).to_envelope();
        // Shard 0: a report, a line of garbage; shard 1: half an envelope, then death.
        let bin = script(
            &dir,
            &format!(
                "if [ \"$CND_SHARD_INDEX\" = 0 ]; then echo '{good}'; echo 'not json'; exit 0; fi\nprintf '{{\"body\":\"{{'\nkill -9 $$"
            ),
        );
        let mut launcher = LocalLauncher::new(LocalOptions {
            shard_retries: 0,
            ..LocalOptions::new(bin)
        });
        let mut channel = launcher.stdout_channel();
        assert_eq!(channel.address(), "stdout:");
        let spec = spec(2, 2).with_queue_url(channel.address());
        launcher.launch(&spec).await.unwrap();
        let status = until_done(&mut launcher).await;
        assert_eq!((status.succeeded, status.failed), (1, 1), "{status:?}");
        let mut received = Vec::new();
        for _ in 0..20 {
            received.extend(
                channel
                    .receive(Duration::from_millis(100))
                    .await
                    .unwrap()
                    .messages,
            );
            if received.len() >= 2 {
                break;
            }
        }
        launcher.stop().await.unwrap();
        // Nothing more comes: the cut line was dropped, not delivered.
        received.extend(
            channel
                .receive(Duration::from_millis(200))
                .await
                .unwrap()
                .messages,
        );
        // Each line is marked as from the shard whose process wrote it.
        assert_eq!(
            received,
            [
                Message::signed(&key, r#"{"v":1}"#).from_sender(Sender::Shard(0)),
                Message::unsigned("not json").from_sender(Sender::Shard(0))
            ]
        );
        channel.close().await.unwrap();
    }
}
