//! In-memory [`Launcher`] and [`ResultChannel`]: workers are threads of this
//! process, reports go through a queue in memory. For tests and examples; the
//! real ones are in `cnd-cloud`.
//!
//! `receive` waits without blocking its thread: a sent message wakes the
//! receiving task, and a [`ThreadTimer`] sleep ends the
//! wait, so it works under tokio as well as under [`block_on`].

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;

use crate::backend::Backend;
use crate::cancel::{ThreadTimer, Timer};
use crate::distributed::{
    ChannelError, LaunchError, Launcher, Message, Received, ResultChannel, RunSpec, Sender,
    WorkerStatus,
};
use crate::report::Report;
use crate::search::{search, SearchControl, SearchOptions};
use crate::shard::NonceRange;

#[derive(Debug, Default)]
struct Shared {
    queue: VecDeque<Message>,
    /// The tasks waiting in `receive`, woken by `send`.
    waiting: Vec<Waker>,
    closed: bool,
}

/// Polls a future to completion on this thread: the smallest executor, enough
/// for [`run_master`](crate::master::run_master) with the in-memory launcher and
/// channel and a [`ThreadTimer`].
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
    shared: Arc<Mutex<Shared>>,
}

impl MemoryChannel {
    /// An empty channel.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts a message on the channel, as a worker (or a forger) would.
    pub fn send(&self, message: Message) {
        let waiting = {
            let mut shared = self.lock();
            shared.queue.push_back(message);
            std::mem::take(&mut shared.waiting)
        };
        for waker in waiting {
            waker.wake();
        }
    }

    /// Whether [`ResultChannel::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Messages not received yet.
    pub fn pending(&self) -> usize {
        self.lock().queue.len()
    }
}

#[async_trait]
impl ResultChannel for MemoryChannel {
    fn address(&self) -> &str {
        "memory://"
    }

    /// Cancel safe: messages leave the queue only in the poll that returns them.
    async fn receive(&mut self, wait: Duration) -> Result<Received, ChannelError> {
        let mut sleep = ThreadTimer.sleep(wait);
        let messages = poll_fn(|cx| {
            {
                let mut shared = self.lock();
                if !shared.queue.is_empty() {
                    return Poll::Ready(shared.queue.drain(..).collect());
                }
                // Registered under the lock that `send` takes: a message sent
                // after the check above wakes this task.
                if !shared.waiting.iter().any(|w| w.will_wake(cx.waker())) {
                    shared.waiting.push(cx.waker().clone());
                }
            }
            sleep.as_mut().poll(cx).map(|()| Vec::new())
        })
        .await;
        Ok(Received::new(messages))
    }

    async fn close(&mut self) -> Result<(), ChannelError> {
        self.lock().closed = true;
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
    retired_above: Option<u64>,
}

impl MemoryLauncher {
    /// Workers that report on `channel` and hash with `backend`.
    pub fn new(channel: MemoryChannel, backend: Backend) -> Self {
        MemoryLauncher {
            channel,
            backend,
            workers: Vec::new(),
            stopped: false,
            retired_above: None,
        }
    }

    /// Whether `stop` was called.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// The lowest shard above which the master retired workers, if it did.
    pub fn retired_above(&self) -> Option<u64> {
        self.retired_above
    }
}

#[async_trait]
impl Launcher for MemoryLauncher {
    async fn launch(&mut self, spec: &RunSpec) -> Result<(), LaunchError> {
        // What earlier attempts searched is not searched again.
        for shard in spec.shards_to_search() {
            let range = spec.range.shard(shard, spec.shards).map_err(|e| {
                LaunchError::other("the run cannot be split into shards").with_source(e)
            })?;
            let skip = spec.searched.prefix(shard);
            let range = NonceRange::new(range.first() + skip, range.last()).expect("a rest");
            let control = Arc::new(SearchControl::new());
            // Each worker holds its own shard's key, as a local process does.
            let (puzzle, run_id, key, channel) = (
                spec.puzzle.clone(),
                spec.run_id,
                spec.run_key.for_shard(shard),
                self.channel.clone(),
            );
            let options = SearchOptions::all_cores()
                .with_threads(1)
                .with_backend(self.backend);
            let worker_control = Arc::clone(&control);
            let handle = std::thread::spawn(move || {
                let outcome = search(&puzzle, range, &options, &worker_control);
                // Cancelled: stopped by the master, which no longer listens.
                let Some(report) =
                    Report::from_outcome(run_id, shard, format!("memory-{shard}"), &outcome)
                else {
                    return;
                };
                channel.send(
                    Message::signed(&key, report.to_json()).from_sender(Sender::Claims(shard)),
                );
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

    /// Cancels the searches of the shards above `shard` (they report nothing).
    async fn retire_above(&mut self, shard: u64) -> Result<(), LaunchError> {
        let first = usize::try_from(shard).map_or(usize::MAX, |s| s.saturating_add(1));
        for (control, _) in self.workers.iter().skip(first) {
            control.cancel();
        }
        self.retired_above = Some(self.retired_above.map_or(shard, |r| r.min(shard)));
        Ok(())
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
