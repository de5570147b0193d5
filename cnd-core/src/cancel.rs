//! How a run is stopped and how the master waits, without an async runtime.
//!
//! [`CancelToken`] is the stop signal a caller (a SIGINT handler, a UI, a test)
//! shares with the master: cloning it is cheap, [`CancelToken::cancel`] wakes
//! whoever awaits [`CancelToken::cancelled`]. [`Timer`] is the one thing the
//! master needs from the caller's runtime: a sleep, so that every call it makes
//! can be raced against the clock, and the clock itself ([`ThreadTimer`] works
//! anywhere; `TokioTimer`, feature `tokio`, follows tokio's time, virtual
//! time included).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct Shared {
    /// How many times `cancel` was called.
    count: AtomicU32,
    wakers: Mutex<Vec<Waker>>,
}

/// A stop signal shared between whoever stops a run and the run itself.
///
/// The first [`cancel`](CancelToken::cancel) stops the work, which then cleans
/// up; a second one (a user pressing Ctrl-C again) also cuts the cleanup short:
/// see [`CancelToken::cancelled_again`].
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<Shared>);

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// Cancels: every [`CancelToken::cancelled`] future, now and later, is ready
    /// (and after a second call, every [`CancelToken::cancelled_again`] one).
    /// Cheap, never blocks for long, and safe to call from any thread.
    pub fn cancel(&self) {
        self.0.count.fetch_add(1, Ordering::SeqCst);
        let wakers = std::mem::take(&mut *self.0.wakers.lock().unwrap_or_else(|e| e.into_inner()));
        for waker in wakers {
            waker.wake();
        }
    }

    /// Whether [`CancelToken::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.count.load(Ordering::SeqCst) >= 1
    }

    /// Ready once the token is cancelled.
    pub fn cancelled(&self) -> Cancelled<'_> {
        Cancelled(self, 1)
    }

    /// Ready once the token is cancelled a second time: the caller wants out
    /// now, even if that leaves things behind.
    pub fn cancelled_again(&self) -> Cancelled<'_> {
        Cancelled(self, 2)
    }

    fn count(&self) -> u32 {
        self.0.count.load(Ordering::SeqCst)
    }
}

/// The future of [`CancelToken::cancelled`] and [`CancelToken::cancelled_again`].
#[derive(Debug)]
pub struct Cancelled<'a>(&'a CancelToken, u32);

impl Future for Cancelled<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.count() >= self.1 {
            return Poll::Ready(());
        }
        let mut wakers = self.0 .0.wakers.lock().unwrap_or_else(|e| e.into_inner());
        // Checked again under the lock: a cancel between the two checks has
        // either woken the list already or will find this waker in it.
        if self.0.count() >= self.1 {
            return Poll::Ready(());
        }
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// A sleep that can be sent between threads.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What a sleep longer than any [`Instant`] (or tokio's timer) can hold is
/// cut to: 100 years, as good as never for a run.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The time and sleeping, from the caller's runtime: the master never blocks a
/// thread to wait, and reads every instant from here (deadlines, retry
/// budgets, backoff, stalls), so that a runtime with virtual time (tokio's
/// `start_paused`) runs it in virtual time.
pub trait Timer: Send + Sync {
    /// A future that is ready after `duration` of this timer's time.
    fn sleep(&self, duration: Duration) -> Sleep;

    /// This timer's present instant.
    fn now(&self) -> Instant;
}

/// A [`Timer`] for any executor: real time, and one shared helper thread that
/// wakes every sleeping task at its instant (a heap of wake-ups), however
/// many sleeps there are. Under tokio, `TokioTimer` (feature `tokio`) also
/// follows tokio's virtual time.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadTimer;

impl Timer for ThreadTimer {
    fn sleep(&self, duration: Duration) -> Sleep {
        let now = Instant::now();
        Box::pin(ThreadSleep {
            until: now + duration.min(FOREVER),
            slot: None,
        })
    }

    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// Where the wake-up thread finds the waker of one sleep; the sleep drops it
/// when it ends or is dropped, so a stale entry wakes no one.
type WakerSlot = Arc<Mutex<Option<Waker>>>;

/// A sleep of [`ThreadTimer`].
struct ThreadSleep {
    until: Instant,
    /// Set at the first poll, when the sleep registers with the wake-up thread.
    slot: Option<WakerSlot>,
}

impl Future for ThreadSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.until {
            return Poll::Ready(());
        }
        match &self.slot {
            Some(slot) => {
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
            }
            None => {
                let slot = Arc::new(Mutex::new(Some(cx.waker().clone())));
                wake_ups().add(self.until, Arc::downgrade(&slot));
                self.slot = Some(slot);
            }
        }
        Poll::Pending
    }
}

/// The wake-ups [`ThreadTimer`]'s one thread waits for, earliest first.
struct WakeUps {
    heap: Mutex<std::collections::BinaryHeap<WakeUp>>,
    changed: std::sync::Condvar,
}

/// One sleep's instant and the way to its waker (weak: a dropped sleep is
/// skipped, not kept alive).
struct WakeUp {
    at: Instant,
    slot: std::sync::Weak<Mutex<Option<Waker>>>, // a WakerSlot, weakly
}

impl PartialEq for WakeUp {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for WakeUp {}
impl PartialOrd for WakeUp {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for WakeUp {
    /// Reversed: the max-heap's top is the earliest instant.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.at.cmp(&self.at)
    }
}

impl WakeUps {
    fn add(&self, at: Instant, slot: std::sync::Weak<Mutex<Option<Waker>>>) {
        let mut heap = self.heap.lock().unwrap_or_else(|e| e.into_inner());
        let earliest = heap.peek().is_none_or(|top| at < top.at);
        heap.push(WakeUp { at, slot });
        if earliest {
            self.changed.notify_one();
        }
    }

    /// The wake-up thread: wakes each due sleep, then waits for the next one
    /// or for an earlier one to be added.
    fn serve(&self) {
        let mut heap = self.heap.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let now = Instant::now();
            while heap.peek().is_some_and(|top| top.at <= now) {
                let due = heap.pop().expect("peeked");
                if let Some(slot) = due.slot.upgrade() {
                    if let Some(waker) = slot.lock().unwrap_or_else(|e| e.into_inner()).take() {
                        waker.wake();
                    }
                }
            }
            heap = match heap.peek().map(|top| top.at) {
                Some(at) => {
                    let wait = at.saturating_duration_since(now);
                    self.changed
                        .wait_timeout(heap, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self.changed.wait(heap).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }
}

/// The one wake-up thread of the process, started at the first sleep.
fn wake_ups() -> &'static WakeUps {
    static WAKE_UPS: std::sync::OnceLock<&'static WakeUps> = std::sync::OnceLock::new();
    WAKE_UPS.get_or_init(|| {
        let wake_ups: &'static WakeUps = Box::leak(Box::new(WakeUps {
            heap: Mutex::new(std::collections::BinaryHeap::new()),
            changed: std::sync::Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("cnd-timer".into())
            .spawn(|| wake_ups.serve())
            .expect("the timer thread starts");
        wake_ups
    })
}

/// The [`Timer`] of a tokio runtime: tokio's sleeps and tokio's clock, so a
/// runtime with paused time (`#[tokio::test(start_paused = true)]`) runs the
/// master in virtual time. Needs a tokio runtime with time enabled.
#[cfg(any(feature = "tokio", test))]
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioTimer;

#[cfg(any(feature = "tokio", test))]
impl Timer for TokioTimer {
    fn sleep(&self, duration: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(duration.min(FOREVER)))
    }

    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_wakes_a_waiting_task_and_stays_cancelled() {
        let token = CancelToken::new();
        assert!(!token.is_cancelled());
        let other = token.clone();
        let started = Instant::now();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            other.cancel();
        });
        crate::memory::block_on(token.cancelled());
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(token.is_cancelled());
        crate::memory::block_on(token.cancelled()); // ready at once now
        let again = token.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            again.cancel();
        });
        crate::memory::block_on(token.cancelled_again());
    }

    #[test]
    fn thread_timer_sleeps_at_least_as_long_as_asked() {
        let started = Instant::now();
        crate::memory::block_on(ThreadTimer.sleep(Duration::from_millis(30)));
        assert!(started.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn thread_timer_wakes_many_sleeps_in_order_from_one_thread() {
        // Later sleeps first, then an earlier one: the wake-up thread must
        // notice the new earliest instant, and each sleep end at its own.
        let started = Instant::now();
        let sleeps: Vec<Sleep> = [80u64, 60, 40, 20]
            .iter()
            .map(|&ms| ThreadTimer.sleep(Duration::from_millis(ms)))
            .collect();
        for (sleep, ms) in sleeps.into_iter().rev().zip([20u64, 40, 60, 80]) {
            crate::memory::block_on(sleep);
            assert!(started.elapsed() >= Duration::from_millis(ms));
        }
        // A sleep dropped before its instant wakes no one and is skipped.
        let mut dropped = ThreadTimer.sleep(Duration::from_millis(10));
        let waker = Waker::noop();
        assert!(dropped
            .as_mut()
            .poll(&mut Context::from_waker(waker))
            .is_pending());
        drop(dropped);
        crate::memory::block_on(ThreadTimer.sleep(Duration::from_millis(20)));
    }

    #[test]
    fn thread_timer_uses_one_thread_for_every_sleep() {
        let waker = Waker::noop();
        let mut sleeps: Vec<Sleep> = (0..200)
            .map(|i| ThreadTimer.sleep(Duration::from_secs(3600 + i)))
            .collect();
        for sleep in &mut sleeps {
            assert!(sleep
                .as_mut()
                .poll(&mut Context::from_waker(waker))
                .is_pending());
        }
        let timer_threads = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .filter(|name| name.trim() == "cnd-timer")
            .count();
        assert_eq!(timer_threads, 1);
    }

    #[test]
    fn a_sleep_too_long_for_an_instant_does_not_panic() {
        let mut forever = ThreadTimer.sleep(Duration::MAX);
        let waker = Waker::noop();
        assert!(forever
            .as_mut()
            .poll(&mut Context::from_waker(waker))
            .is_pending());
    }
}
