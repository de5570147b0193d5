//! The statistics of a run: expected work, chance of success, pods for a deadline.
//!
//! Each hash is golden with probability `p = 2^-D`, independently, so after `k`
//! distinct nonces the chance of having found one is `1 - (1 - p)^k`. Everything
//! is computed through `ln_1p`/`exp_m1`, which stay exact where `p` is tiny.
//!
//! ```
//! use cnd_core::stats;
//!
//! assert_eq!(stats::expected_hashes(26), 67_108_864.0); // 2^26
//! // 2^32 nonces hold no golden one at D = 32 about 37% of the time (SPEC §1).
//! let empty = stats::empty_space_probability(32, 1 << 32);
//! assert!((empty - 0.368).abs() < 0.001);
//! // Hashes for a 95% chance of a find at D = 20: about 3 times 2^20.
//! let hashes = stats::hashes_for_confidence(20, 0.95).unwrap();
//! assert!((hashes / stats::expected_hashes(20) - 3.0).abs() < 0.01);
//! ```

use std::time::Duration;

/// Why a plan could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum StatsError {
    /// The confidence is not strictly between 0 and 1.
    #[error("confidence {0} must be strictly between 0 and 1 (e.g. 0.95)")]
    Confidence(f64),
    /// The hash rate per pod is not a positive number.
    #[error("the hash rate per pod must be a positive number of MH/s, not {0}")]
    Rate(f64),
    /// The deadline is zero.
    #[error("the deadline must be longer than zero")]
    Within,
    /// Even the whole space is unlikely enough to hold a golden nonce.
    #[error(
        "no number of pods reaches {confidence} confidence: the whole space of {space} nonces \
         holds a golden nonce with probability {best:.4} at difficulty {difficulty}"
    )]
    Unreachable {
        /// The confidence asked for.
        confidence: f64,
        /// The best confidence the space allows.
        best: f64,
        /// The nonces in the space searched.
        space: u128,
        /// D.
        difficulty: u32,
    },
}

/// The chance that one hash is golden, `2^-D`.
pub fn golden_probability(difficulty: u32) -> f64 {
    (-f64::from(difficulty)).exp2()
}

/// The expected number of hashes to find a golden nonce, `2^D`.
pub fn expected_hashes(difficulty: u32) -> f64 {
    f64::from(difficulty).exp2()
}

/// The chance that at least one of `hashes` distinct nonces is golden.
pub fn success_probability(difficulty: u32, hashes: f64) -> f64 {
    if hashes <= 0.0 {
        return 0.0;
    }
    if difficulty == 0 {
        return 1.0;
    }
    -(hashes * (-golden_probability(difficulty)).ln_1p()).exp_m1()
}

/// The chance that a space of `nonces` holds no golden nonce, `(1 - 2^-D)^N`.
pub fn empty_space_probability(difficulty: u32, nonces: u128) -> f64 {
    1.0 - success_probability(difficulty, nonces as f64)
}

/// Hashes needed to have found a golden nonce with probability `confidence`.
pub fn hashes_for_confidence(difficulty: u32, confidence: f64) -> Result<f64, StatsError> {
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(StatsError::Confidence(confidence));
    }
    if difficulty == 0 {
        return Ok(1.0);
    }
    Ok(((-confidence).ln_1p() / (-golden_probability(difficulty)).ln_1p()).ceil())
}

/// What a distributed run needs to meet a deadline with a given confidence.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct PodPlan {
    /// Pods (shards searched at once) needed.
    pub pods: u64,
    /// Hashes needed, across all pods.
    pub hashes: f64,
    /// The chance of success by the deadline with `pods` pods.
    pub confidence: f64,
    /// The expected time to the first golden nonce with `pods` pods.
    pub expected: Duration,
}

/// Pods needed to find a golden nonce within `within` with probability `confidence`,
/// each hashing `rate` hashes per second, in a space of `space` nonces.
pub fn pods_for_deadline(
    difficulty: u32,
    rate: f64,
    within: Duration,
    confidence: f64,
    space: u128,
) -> Result<PodPlan, StatsError> {
    if !(rate.is_finite() && rate > 0.0) {
        return Err(StatsError::Rate(rate / 1e6));
    }
    if within.is_zero() {
        return Err(StatsError::Within);
    }
    let hashes = hashes_for_confidence(difficulty, confidence)?;
    if hashes > space as f64 {
        return Err(StatsError::Unreachable {
            confidence,
            best: success_probability(difficulty, space as f64),
            space,
            difficulty,
        });
    }
    let per_pod = rate * within.as_secs_f64();
    let pods = (hashes / per_pod).ceil().max(1.0) as u64;
    Ok(plan_for_pods(difficulty, rate, within, pods, space))
}

/// What `pods` pods at `rate` hashes per second each achieve by `within`.
pub fn plan_for_pods(
    difficulty: u32,
    rate: f64,
    within: Duration,
    pods: u64,
    space: u128,
) -> PodPlan {
    let total_rate = rate * pods as f64;
    let hashes = (total_rate * within.as_secs_f64()).min(space as f64);
    PodPlan {
        pods,
        hashes,
        confidence: success_probability(difficulty, hashes),
        expected: Duration::from_secs_f64(
            (expected_hashes(difficulty) / total_rate).min(Duration::MAX.as_secs_f64() / 2.0),
        ),
    }
}
