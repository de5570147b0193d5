//! How a run is stopped and how the master waits, without an async runtime.
//!
//! [`CancelToken`] is the stop signal a caller (a SIGINT handler, a UI, a test)
//! shares with the master: cloning it is cheap, [`CancelToken::cancel`] wakes
//! whoever awaits [`CancelToken::cancelled`]. [`Timer`] is the one thing the
//! master needs from the caller's runtime: a sleep, so that every call it makes
//! can be raced against the clock (`cnd-cloud` has one for tokio,
//! [`ThreadTimer`] works anywhere).

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

/// Sleeping, from the caller's runtime: the master never blocks a thread to wait.
pub trait Timer: Send + Sync {
    /// A future that is ready after `duration`.
    fn sleep(&self, duration: Duration) -> Sleep;
}

/// A [`Timer`] for any executor: each sleep wakes its task from a helper thread.
/// Meant for tests and small programs; under tokio use `cnd_cloud::TokioTimer`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadTimer;

impl Timer for ThreadTimer {
    fn sleep(&self, duration: Duration) -> Sleep {
        Box::pin(ThreadSleep {
            until: Instant::now() + duration,
            waker: None,
        })
    }
}

struct ThreadSleep {
    until: Instant,
    waker: Option<Arc<Mutex<Waker>>>,
}

impl Future for ThreadSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.until {
            return Poll::Ready(());
        }
        match &self.waker {
            Some(waker) => {
                *waker.lock().unwrap_or_else(|e| e.into_inner()) = cx.waker().clone();
            }
            None => {
                let waker = Arc::new(Mutex::new(cx.waker().clone()));
                let (shared, until) = (Arc::clone(&waker), self.until);
                std::thread::spawn(move || {
                    std::thread::sleep(until.saturating_duration_since(Instant::now()));
                    shared
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .wake_by_ref();
                });
                self.waker = Some(waker);
            }
        }
        Poll::Pending
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
}
