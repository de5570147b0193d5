//! When a run's workers started, as the master saw it: how long until the first
//! one ran, and how long some waited as pending (on Kubernetes: for a node to be
//! added, or for the image). `submit --json` reports both; `sweep` charts them.
//!
//! Seen through the master's events, so as fine as its status polls
//! ([`cnd_core::master::STATUS_EVERY`]) and the workers' progress reports.

use std::time::{Duration, Instant};

use cnd_core::master::MasterEvent;

/// What the events of one run said about its workers starting.
#[derive(Debug, Clone)]
pub struct StartupTimes {
    started: Instant,
    first_running: Option<Duration>,
    pending_until: Option<Duration>,
}

impl StartupTimes {
    /// Times counted from now (call it just before the master starts, as its
    /// own elapsed times are).
    pub fn new() -> StartupTimes {
        StartupTimes::since(Instant::now())
    }

    /// Times counted from `started`.
    pub fn since(started: Instant) -> StartupTimes {
        StartupTimes {
            started,
            first_running: None,
            pending_until: None,
        }
    }

    /// Takes one event into account, as it arrives.
    pub fn on(&mut self, event: &MasterEvent) {
        self.on_at(event, Instant::now());
    }

    /// Takes one event into account as if it arrived at `at`.
    pub fn on_at(&mut self, event: &MasterEvent, at: Instant) {
        let after = at.saturating_duration_since(self.started);
        let ran = match event {
            MasterEvent::Workers(status) => {
                if status.waiting() > 0 {
                    self.pending_until = Some(after);
                }
                status.running + status.succeeded + status.failed > 0
            }
            // A report is proof that a worker ran.
            MasterEvent::Progress(_)
            | MasterEvent::ShardExhausted { .. }
            | MasterEvent::WorkerFailed { .. }
            | MasterEvent::Found { .. } => true,
            _ => false,
        };
        if ran && self.first_running.is_none() {
            self.first_running = Some(after);
        }
    }

    /// Time until a worker was first seen running (or reporting); `None` if none was.
    pub fn first_running(&self) -> Option<Duration> {
        self.first_running
    }

    /// How long workers were seen pending: until the last status that showed a
    /// pending worker; zero if none ever was.
    pub fn pending(&self) -> Duration {
        self.pending_until.unwrap_or_default()
    }
}

impl Default for StartupTimes {
    fn default() -> Self {
        StartupTimes::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cnd_core::WorkerStatus;

    fn workers(pending: u64, running: u64) -> MasterEvent {
        let mut status = WorkerStatus::default();
        (status.pending, status.running) = (pending, running);
        MasterEvent::Workers(status)
    }

    #[test]
    fn pending_lasts_until_the_last_status_with_a_pending_worker() {
        let t0 = Instant::now();
        let mut times = StartupTimes::since(t0);
        times.on_at(&workers(4, 0), t0 + Duration::from_secs(2));
        assert_eq!(times.first_running(), None);
        times.on_at(&workers(3, 1), t0 + Duration::from_secs(4));
        times.on_at(&workers(1, 3), t0 + Duration::from_secs(30));
        times.on_at(&workers(0, 4), t0 + Duration::from_secs(32));
        times.on_at(&workers(0, 4), t0 + Duration::from_secs(34));
        assert_eq!(times.first_running(), Some(Duration::from_secs(4)));
        assert_eq!(times.pending(), Duration::from_secs(30));
    }

    #[test]
    fn a_report_counts_as_running_and_nothing_pending_is_zero() {
        let t0 = Instant::now();
        let mut times = StartupTimes::since(t0);
        times.on_at(
            &MasterEvent::Launched {
                shards: 2,
                parallelism: 2,
                reports_to: "stdout:".into(),
            },
            t0 + Duration::from_millis(5),
        );
        assert_eq!(times.first_running(), None);
        let found = MasterEvent::Found {
            nonce: 7,
            shard: 0,
            worker: "w".into(),
            settled: true,
        };
        times.on_at(&found, t0 + Duration::from_millis(300));
        times.on_at(&workers(0, 2), t0 + Duration::from_millis(900));
        assert_eq!(times.first_running(), Some(Duration::from_millis(300)));
        assert_eq!(times.pending(), Duration::ZERO);
    }
}
