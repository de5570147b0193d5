//! In-memory [`Launcher`] and [`ResultChannel`]: workers are threads of this
//! process, reports go through a queue in memory. For tests and examples; the
//! real ones are in `cnd-cloud`.
//!
//! `receive` blocks its thread while it waits (this crate has no async runtime),
//! which is fine for tests driven by a simple executor.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::backend::Backend;
use crate::distributed::{
    ChannelError, LaunchError, Launcher, Message, ResultChannel, RunSpec, WorkerStatus,
};
use crate::report::{Report, ReportKind};
use crate::search::{search, SearchControl, SearchOptions, SearchOutcome};

#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<VecDeque<Message>>,
    ready: Condvar,
    closed: Mutex<bool>,
}

/// Polls a future to completion on this thread: the smallest executor, enough
/// for [`run_master`](crate::master::run_master) with the in-memory launcher and
/// channel and a [`ThreadTimer`](crate::cancel::ThreadTimer).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(out) => return out,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// A channel whose messages live in memory.
#[derive(Debug, Clone, Default)]
pub struct MemoryChannel {
    shared: Arc<Shared>,
}

impl MemoryChannel {
    /// An empty channel.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts a message on the channel, as a worker (or a forger) would.
    pub fn send(&self, message: Message) {
        let mut queue = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.push_back(message);
        self.shared.ready.notify_all();
    }

    /// Whether [`ResultChannel::close`] was called.
    pub fn is_closed(&self) -> bool {
        *self.shared.closed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Messages not received yet.
    pub fn pending(&self) -> usize {
        self.shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

#[async_trait]
impl ResultChannel for MemoryChannel {
    fn address(&self) -> &str {
        "memory://"
    }

    async fn receive(&mut self, wait: Duration) -> Result<Vec<Message>, ChannelError> {
        let deadline = Instant::now() + wait;
        let mut queue = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        while queue.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            queue = self
                .shared
                .ready
                .wait_timeout(queue, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Ok(queue.drain(..).collect())
    }

    async fn close(&mut self) -> Result<(), ChannelError> {
        *self.shared.closed.lock().unwrap_or_else(|e| e.into_inner()) = true;
        Ok(())
    }
}

/// A launcher whose workers are threads searching their shard with one thread each.
#[derive(Debug)]
pub struct MemoryLauncher {
    channel: MemoryChannel,
    backend: Backend,
    workers: Vec<(Arc<SearchControl>, JoinHandle<()>)>,
    stopped: bool,
}

impl MemoryLauncher {
    /// Workers that report on `channel` and hash with `backend`.
    pub fn new(channel: MemoryChannel, backend: Backend) -> Self {
        MemoryLauncher {
            channel,
            backend,
            workers: Vec::new(),
            stopped: false,
        }
    }

    /// Whether `stop` was called.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }
}

#[async_trait]
impl Launcher for MemoryLauncher {
    async fn launch(&mut self, spec: &RunSpec) -> Result<(), LaunchError> {
        for shard in 0..spec.shards {
            let range = spec
                .range
                .shard(shard, spec.shards)
                .map_err(|e| LaunchError::Other(e.to_string()))?;
            let control = Arc::new(SearchControl::new());
            let (puzzle, run_id, key, channel) = (
                spec.puzzle.clone(),
                spec.run_id,
                spec.run_key.clone(),
                self.channel.clone(),
            );
            let options = SearchOptions {
                threads: 1,
                backend: self.backend,
                deadline: None,
            };
            let worker_control = Arc::clone(&control);
            let handle = std::thread::spawn(move || {
                let outcome = search(&puzzle, range, &options, &worker_control);
                let (hashes, elapsed, kind) = match outcome {
                    Ok(SearchOutcome::Found(found)) => (
                        found.hashes,
                        found.elapsed,
                        ReportKind::Found {
                            nonce: found.nonce,
                            hash: found.hash,
                        },
                    ),
                    Ok(SearchOutcome::Exhausted { hashes, elapsed }) => {
                        (hashes, elapsed, ReportKind::Exhausted)
                    }
                    Ok(_) => return,
                    Err(e) => (
                        0,
                        Duration::ZERO,
                        ReportKind::Failed {
                            error: e.to_string(),
                        },
                    ),
                };
                let report = Report {
                    run_id,
                    shard,
                    worker: format!("memory-{shard}"),
                    hashes,
                    elapsed_ms: elapsed.as_millis() as u64,
                    kind,
                };
                channel.send(Message::signed(&key, report.to_json()));
            });
            self.workers.push((control, handle));
        }
        Ok(())
    }

    async fn status(&mut self) -> Result<WorkerStatus, LaunchError> {
        let running = self
            .workers
            .iter()
            .filter(|(_, h)| !h.is_finished())
            .count() as u64;
        Ok(WorkerStatus {
            running,
            succeeded: self.workers.len() as u64 - running,
            ..WorkerStatus::default()
        })
    }

    async fn stop(&mut self) -> Result<(), LaunchError> {
        for (control, _) in &self.workers {
            control.cancel();
        }
        for (_, handle) in self.workers.drain(..) {
            let _ = handle.join();
        }
        self.stopped = true;
        Ok(())
    }
}
