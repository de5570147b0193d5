//! `plan --from`: a cluster's start-up overhead and per-pod hash rate, fitted
//! from the runs a sweep recorded (no I/O here: the rows come in, the fit goes out).
//!
//! The model: a run that found a nonce took
//!
//! ```text
//! time to result = pending + start-up + hashes / (pods × rate)
//! ```
//!
//! where `pending` is how long its workers were seen waiting for a node or the
//! image (measured, per run), `start-up` everything else that does not grow with
//! the work (process or container start, the queue's round trips, the result's
//! way back), and `rate` the hashes per second of one pod. With `y = time −
//! pending` and `x = hashes / pods` that is a line, `y = start-up + x / rate`,
//! fitted by least squares. The fit is then made robust to a few odd runs: runs
//! more than 3 robust standard deviations (1.4826 × the median absolute
//! residual, at least 1 ms) off the line are set aside and the line refitted,
//! until the set stops changing (never below half the runs, 3 runs, or two
//! pod counts). The overhead a plan adds to every run is the median pending
//! plus the fitted start-up; the error is that of the predicted against the
//! measured time to result over every run used, set-aside ones included.

use std::collections::BTreeMap;

use crate::cmd::sweep::record::{Outcome, RunRecord, Spread};

/// The fewest runs a fit of two numbers is made from (two would fit exactly
/// and say nothing of its error).
pub const MIN_RUNS: usize = 3;

/// How far off the line, in robust standard deviations, a run is set aside.
const OUTLIER_SIGMAS: f64 = 3.0;

/// The smallest robust spread of the residuals, seconds: the rows' times are
/// whole milliseconds, so a run this close to the line is never an outlier.
const MIN_SCALE_SECS: f64 = 1e-3;

/// One run, as the fit sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Pods of the run.
    pub pods: u64,
    /// Hashes tried by all its workers.
    pub hashes: f64,
    /// Its time to result, seconds.
    pub secs: f64,
    /// How long its workers were seen pending, seconds.
    pub pending_secs: f64,
}

impl Sample {
    fn x(&self) -> f64 {
        self.hashes / self.pods as f64
    }

    fn y(&self) -> f64 {
        self.secs - self.pending_secs
    }
}

/// The fitted line and how well it predicts the runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    /// Start-up, seconds: the overhead of a run besides pending.
    pub startup_secs: f64,
    /// Hashes per second of one pod.
    pub rate: f64,
    /// Runs set aside as outliers (not fitted, but counted in the error).
    pub set_aside: usize,
    /// The median of |predicted − measured| / measured time to result.
    pub median_relative_error: f64,
    /// The root mean square of predicted − measured time to result, seconds.
    pub rms_secs: f64,
}

/// Why no fit could be made: each is one sentence for the user.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    /// The files hold no rows at all.
    #[error("the files hold no runs: the fit needs runs that found a nonce")]
    Empty,
    /// No row is a run that found a nonce with its time and hashes recorded.
    #[error(
        "none of the {rows} runs in the files found a nonce with its time and hash count recorded: \
         the fit needs found runs"
    )]
    NoRuns {
        /// Rows read.
        rows: usize,
    },
    /// Too few found runs to fit two numbers and see their error.
    #[error(
        "only {runs} of the runs found a nonce: fitting the overhead and the rate needs {MIN_RUNS} or more"
    )]
    TooFew {
        /// Usable runs.
        runs: usize,
    },
    /// The runs come from more than one place, whose rates differ.
    #[error(
        "the runs are from {} places ({}): fit one cluster's runs at a time",
        .0.len(),
        .0.join("; ")
    )]
    Places(Vec<String>),
    /// Every run had the same pod count: nothing tells how time scales with pods.
    #[error(
        "all {runs} runs are at {}: the fit needs runs at two pod counts or more \
         to tell how the time scales with the pods",
        crate::human::plural(*.pods, "pod")
    )]
    OnePodCount {
        /// The pod count.
        pods: u64,
        /// Usable runs.
        runs: usize,
    },
    /// Every run hashed as much per pod: nothing to fit a rate from.
    #[error("every run hashed as much per pod: there is nothing to fit a rate from")]
    NoSpread,
    /// Time does not grow with the hashes: the rate would be negative or infinite.
    #[error(
        "the fitted rate is not positive: in these runs the time to result does not grow with \
         the hashes per pod (slope {slope:.3e} s per hash), so the model does not fit them"
    )]
    Rate {
        /// Seconds per hash per pod, as fitted.
        slope: f64,
    },
    /// The line crosses zero hashes below zero time.
    #[error(
        "the fitted start-up overhead is negative ({ms:.0} ms): these runs do not fit \
         time = overhead + hashes / (pods × rate)"
    )]
    Overhead {
        /// The fitted start-up, milliseconds.
        ms: f64,
    },
}

/// Least squares of `y = a + b x` over `samples[i]` for `keep[i]`: `(a, b)`,
/// `None` when the kept x are all equal.
fn least_squares(samples: &[Sample], keep: &[bool]) -> Option<(f64, f64)> {
    let kept = || {
        samples
            .iter()
            .zip(keep)
            .filter(|(_, k)| **k)
            .map(|(s, _)| s)
    };
    let n = kept().count() as f64;
    let mx = kept().map(Sample::x).sum::<f64>() / n;
    let my = kept().map(Sample::y).sum::<f64>() / n;
    let sxx: f64 = kept().map(|s| (s.x() - mx).powi(2)).sum();
    let sxy: f64 = kept().map(|s| (s.x() - mx) * (s.y() - my)).sum();
    // Relative to the x's own size: rounding leaves a tiny sxx when all are equal.
    let spread = sxx.is_finite() && sxx > 1e-18 * n * mx * mx;
    if !spread {
        return None;
    }
    let b = sxy / sxx;
    Some((my - b * mx, b))
}

fn pod_counts(samples: &[Sample], keep: &[bool]) -> usize {
    let mut pods: Vec<u64> = samples
        .iter()
        .zip(keep)
        .filter(|(_, k)| **k)
        .map(|(s, _)| s.pods)
        .collect();
    pods.sort_unstable();
    pods.dedup();
    pods.len()
}

fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    Spread::of(&values.collect::<Vec<_>>()).map(|s| s.median)
}

/// Fits start-up and rate to `samples` (see the module's documentation).
pub fn fit(samples: &[Sample]) -> Result<Fit, FitError> {
    let n = samples.len();
    if n < MIN_RUNS {
        return Err(FitError::TooFew { runs: n });
    }
    let mut keep = vec![true; n];
    if pod_counts(samples, &keep) < 2 {
        return Err(FitError::OnePodCount {
            pods: samples[0].pods,
            runs: n,
        });
    }
    let mut line = least_squares(samples, &keep).ok_or(FitError::NoSpread)?;
    let residual = |(a, b): (f64, f64), s: &Sample| s.y() - (a + b * s.x());
    for _ in 0..20 {
        let scale = median(samples.iter().map(|s| residual(line, s).abs()))
            .map_or(MIN_SCALE_SECS, |m| (1.4826 * m).max(MIN_SCALE_SECS));
        let next: Vec<bool> = samples
            .iter()
            .map(|s| residual(line, s).abs() <= OUTLIER_SIGMAS * scale)
            .collect();
        let kept = next.iter().filter(|k| **k).count();
        if next == keep || kept < MIN_RUNS || kept * 2 < n || pod_counts(samples, &next) < 2 {
            break;
        }
        let Some(refit) = least_squares(samples, &next) else {
            break;
        };
        keep = next;
        line = refit;
    }
    let (a, b) = line;
    if !(b.is_finite() && b > 0.0) {
        return Err(FitError::Rate { slope: b });
    }
    if a < 0.0 {
        return Err(FitError::Overhead { ms: a * 1e3 });
    }
    let errors: Vec<f64> = samples.iter().map(|s| residual(line, s)).collect();
    let relative = samples
        .iter()
        .zip(&errors)
        .map(|(s, e)| e.abs() / s.secs.max(1e-3));
    Ok(Fit {
        startup_secs: a,
        rate: 1.0 / b,
        set_aside: keep.iter().filter(|k| !**k).count(),
        median_relative_error: median(relative).unwrap_or(0.0),
        rms_secs: (errors.iter().map(|e| e * e).sum::<f64>() / n as f64).sqrt(),
    })
}

/// The median rate of one pod count's finders, by their own count and clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PodsRate {
    /// The pod count.
    pub pods: u64,
    /// Runs at that count used by the fit.
    pub runs: usize,
    /// The median of their finders' own rates, hashes per second; `None` when
    /// no row has one.
    pub rate: Option<f64>,
}

/// A fit from sweep rows, with what the rows say besides.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    /// The line.
    pub fit: Fit,
    /// Rows read.
    pub rows: usize,
    /// Runs used: found, with a time to result and a hash count.
    pub runs: usize,
    /// Where they ran: the launcher and the cluster.
    pub launcher: String,
    /// See [`Fitted::launcher`].
    pub cluster: String,
    /// The median pending time of the runs used, seconds; `None` when no row has one.
    pub pending_secs: Option<f64>,
    /// The median time until a worker was first seen running, seconds.
    pub first_running_secs: Option<f64>,
    /// Each pod count's runs and its finders' median rate, fewest pods first.
    pub by_pods: Vec<PodsRate>,
}

impl Fitted {
    /// The overhead of a run: the median pending plus the fitted start-up, seconds.
    pub fn overhead_secs(&self) -> f64 {
        self.pending_secs.unwrap_or(0.0) + self.fit.startup_secs
    }

    /// The pod counts of the runs used, fewest first.
    pub fn pods(&self) -> Vec<u64> {
        self.by_pods.iter().map(|p| p.pods).collect()
    }

    /// The finders' median rate per pod at the most pods over that at the
    /// fewest (1 when pods add their whole rate); `None` without two counts' rates.
    pub fn scaling(&self) -> Option<(PodsRate, PodsRate)> {
        let rated: Vec<PodsRate> = self
            .by_pods
            .iter()
            .copied()
            .filter(|p| p.rate.is_some())
            .collect();
        match (rated.first(), rated.last()) {
            (Some(low), Some(high)) if low.pods < high.pods => Some((*low, *high)),
            _ => None,
        }
    }
}

/// Fits the found runs of `records` (all from one launcher and cluster).
pub fn from_records(records: &[RunRecord]) -> Result<Fitted, FitError> {
    let used: Vec<&RunRecord> = records
        .iter()
        .filter(|r| r.outcome == Outcome::Found && r.hashes.is_some())
        .filter(|r| r.time_to_result_ms.is_some())
        .collect();
    if records.is_empty() {
        return Err(FitError::Empty);
    }
    if used.is_empty() {
        return Err(FitError::NoRuns {
            rows: records.len(),
        });
    }
    let mut places: Vec<String> = used
        .iter()
        .map(|r| format!("{} ({})", r.cluster, r.launcher))
        .collect();
    places.sort();
    places.dedup();
    if places.len() > 1 {
        return Err(FitError::Places(places));
    }
    let samples: Vec<Sample> = used
        .iter()
        .map(|r| {
            let secs = r.time_to_result_ms.unwrap_or_default() as f64 / 1e3;
            Sample {
                pods: r.pods,
                hashes: r.hashes.unwrap_or_default() as f64,
                secs,
                pending_secs: (r.pending_ms.unwrap_or(0) as f64 / 1e3).min(secs),
            }
        })
        .collect();
    let fit = fit(&samples)?;
    let mut by_pods: BTreeMap<u64, Vec<&RunRecord>> = BTreeMap::new();
    for r in &used {
        by_pods.entry(r.pods).or_default().push(r);
    }
    let by_pods = by_pods
        .into_iter()
        .map(|(pods, runs)| PodsRate {
            pods,
            runs: runs.len(),
            rate: median(
                runs.iter()
                    .filter_map(|r| r.pod_mhs)
                    .filter(|m| m.is_finite() && *m > 0.0)
                    .map(|m| m * 1e6),
            ),
        })
        .collect();
    let ms_median = |field: fn(&RunRecord) -> Option<u64>| {
        median(
            used.iter()
                .filter_map(|r| field(r))
                .map(|ms| ms as f64 / 1e3),
        )
    };
    Ok(Fitted {
        fit,
        rows: records.len(),
        runs: used.len(),
        launcher: used[0].launcher.clone(),
        cluster: used[0].cluster.clone(),
        pending_secs: ms_median(|r| r.pending_ms),
        first_running_secs: ms_median(|r| r.first_running_ms),
        by_pods,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::sweep::record::tests::found;

    /// A small deterministic generator in [0, 1).
    fn uniform(state: &mut u64) -> f64 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*state >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Runs at 1, 2, 4 and 8 pods that follow the model exactly, then ± `noise`
    /// (a fraction of the time), hashes drawn as a search's are (exponential, mean 2^D).
    fn model_runs(startup: f64, rate: f64, noise: f64) -> Vec<Sample> {
        let mut state = 7;
        let mut out = Vec::new();
        for d in 20..=25 {
            for pods in [1u64, 2, 4, 8] {
                for _ in 0..2 {
                    let hashes = -(1.0 - uniform(&mut state)).ln() * f64::from(d).exp2();
                    let pending = if out.len() % 3 == 0 { 0.5 } else { 0.0 };
                    let secs = pending + startup + hashes / (pods as f64 * rate);
                    let secs = secs * (1.0 + noise * (2.0 * uniform(&mut state) - 1.0));
                    out.push(Sample {
                        pods,
                        hashes,
                        secs,
                        pending_secs: pending,
                    });
                }
            }
        }
        out
    }

    #[test]
    fn exact_runs_give_back_their_start_up_and_rate() {
        let fit = fit(&model_runs(0.8, 5e6, 0.0)).unwrap();
        assert!((fit.startup_secs - 0.8).abs() < 1e-9, "{fit:?}");
        assert!((fit.rate / 5e6 - 1.0).abs() < 1e-9, "{fit:?}");
        assert_eq!(fit.set_aside, 0);
        assert!(fit.median_relative_error < 1e-9 && fit.rms_secs < 1e-9);
    }

    #[test]
    fn a_few_wild_runs_are_set_aside_and_counted_in_the_error() {
        let mut runs = model_runs(0.8, 5e6, 0.01);
        // Two runs held up by 20 s (a slow node, a stalled queue).
        runs[5].secs += 20.0;
        runs[30].secs += 20.0;
        let fit = fit(&runs).unwrap();
        assert!((fit.startup_secs - 0.8).abs() < 0.03, "{fit:?}");
        assert!((fit.rate / 5e6 - 1.0).abs() < 0.01, "{fit:?}");
        assert!(fit.set_aside >= 2, "{fit:?}");
        assert!(fit.median_relative_error < 0.01, "{fit:?}");
        // The two wild runs are in the RMS: 20 s over sqrt(48 / 2).
        assert!(fit.rms_secs > 3.0, "{fit:?}");
    }

    #[test]
    fn degenerate_runs_say_why() {
        let one_count: Vec<Sample> = model_runs(0.8, 5e6, 0.0)
            .into_iter()
            .filter(|s| s.pods == 4)
            .collect();
        assert!(matches!(
            fit(&one_count),
            Err(FitError::OnePodCount { pods: 4, runs: 12 })
        ));
        let shrinking: Vec<Sample> = model_runs(0.8, 5e6, 0.0)
            .into_iter()
            .map(|s| Sample {
                secs: 100.0 - s.hashes / s.pods as f64 / 5e6,
                ..s
            })
            .collect();
        assert!(matches!(fit(&shrinking), Err(FitError::Rate { .. })));
        let early: Vec<Sample> = model_runs(0.0, 5e6, 0.0)
            .into_iter()
            .map(|s| Sample {
                secs: s.secs - 0.3,
                ..s
            })
            .collect();
        let err = fit(&early).unwrap_err();
        assert!(
            matches!(err, FitError::Overhead { ms } if (ms + 300.0).abs() < 1e-6),
            "{err:?}"
        );
        assert!(err.to_string().contains("negative (-300 ms)"), "{err}");
        assert_eq!(
            fit(&model_runs(0.8, 5e6, 0.0)[..2]),
            Err(FitError::TooFew { runs: 2 })
        );
        let flat = [1, 2, 4].map(|pods| Sample {
            pods,
            hashes: pods as f64 * 1e6,
            secs: 1.0,
            pending_secs: 0.0,
        });
        assert_eq!(fit(&flat), Err(FitError::NoSpread));
    }

    #[test]
    fn rows_are_filtered_and_checked_for_one_place() {
        let mut rows: Vec<RunRecord> = (0..6)
            .map(|i| {
                let pods = [1, 2][i % 2];
                let mut r = found(pods, 20, 1, 0.0);
                let hashes = (i as u64 + 1) * 2_000_000;
                r.hashes = Some(hashes);
                // 0.4 s of start-up, 0.1 s pending, 4 MH/s per pod.
                r.pending_ms = Some(100);
                r.time_to_result_ms = Some(500 + hashes / pods / 4000);
                r.pod_mhs = Some(4.0);
                r
            })
            .collect();
        let mut failed = found(8, 20, 1, 9.0);
        failed.outcome = Outcome::TimedOut;
        rows.push(failed);
        let fitted = from_records(&rows).unwrap();
        assert_eq!((fitted.rows, fitted.runs), (7, 6));
        assert_eq!(fitted.pods(), vec![1, 2]);
        assert!((fitted.fit.startup_secs - 0.4).abs() < 1e-3, "{fitted:?}");
        assert!((fitted.overhead_secs() - 0.5).abs() < 1e-3, "{fitted:?}");
        assert!((fitted.fit.rate / 4e6 - 1.0).abs() < 1e-3, "{fitted:?}");
        let (low, high) = fitted.scaling().unwrap();
        assert_eq!((low.pods, high.pods, high.rate), (1, 2, Some(4e6)));

        rows[3].cluster = "eks-prod".into();
        let err = from_records(&rows).unwrap_err().to_string();
        assert!(err.contains("from 2 places"), "{err}");
        assert!(err.contains("eks-prod (local)"), "{err}");

        assert_eq!(from_records(&rows[6..]), Err(FitError::NoRuns { rows: 1 }));
    }
}
