//! The statistics against closed forms computed by hand (SPEC §1).

use std::time::Duration;

use cnd_core::stats::{
    empty_space_probability, expected_hashes, hashes_for_confidence, plan_for_pods,
    pods_for_deadline, success_probability, StatsError,
};

const SPACE_32: u128 = 1 << 32;

#[test]
fn a_32_bit_space_is_empty_37_percent_of_the_time_at_d_32_and_98_at_d_38() {
    assert!((empty_space_probability(32, SPACE_32) - (-1f64).exp()).abs() < 1e-9);
    assert!((empty_space_probability(38, SPACE_32) - (-1f64 / 64.0).exp()).abs() < 1e-9);
    assert!((empty_space_probability(38, SPACE_32) - 0.9845).abs() < 1e-4);
}

#[test]
fn expected_work_is_two_to_the_d() {
    assert_eq!(expected_hashes(0), 1.0);
    assert_eq!(expected_hashes(26), 67_108_864.0);
    assert_eq!(expected_hashes(256), 2f64.powi(256));
}

#[test]
fn success_is_exact_for_tiny_and_certain_cases() {
    assert_eq!(success_probability(0, 1.0), 1.0);
    assert_eq!(success_probability(10, 0.0), 0.0);
    assert!((success_probability(1, 1.0) - 0.5).abs() < 1e-15);
    assert!((success_probability(1, 2.0) - 0.75).abs() < 1e-15);
    // Far beyond f64's reach of (1 - p) yet still accurate: k p = 2^-200.
    let p = success_probability(256, 2f64.powi(56));
    assert!((p / 2f64.powi(-200) - 1.0).abs() < 1e-9, "{p:e}");
}

#[test]
fn hashes_for_confidence_inverts_success_probability() {
    for d in [1, 8, 20, 40, 64, 200] {
        for c in [0.01, 0.5, 0.95, 0.999] {
            let k = hashes_for_confidence(d, c).unwrap();
            assert!(success_probability(d, k) >= c, "d {d} c {c}");
            assert!(
                d > 52 || success_probability(d, k - 1.0) < c,
                "d {d} c {c}: k is the least"
            );
        }
    }
    assert_eq!(
        hashes_for_confidence(8, 1.0),
        Err(StatsError::Confidence(1.0))
    );
    assert_eq!(
        hashes_for_confidence(8, 0.0),
        Err(StatsError::Confidence(0.0))
    );
}

#[test]
fn pods_for_a_deadline_meet_it_and_one_fewer_does_not() {
    let (rate, within) = (25e6, Duration::from_secs(30));
    let plan = pods_for_deadline(32, rate, within, 0.9, 1 << 64).unwrap();
    assert!(plan.confidence >= 0.9, "{plan:?}");
    let fewer = plan_for_pods(32, rate, within, plan.pods - 1, 1 << 64);
    assert!(fewer.confidence < 0.9, "{fewer:?}");
    // ln(10) * 2^32 hashes at 25 MH/s for 30 s each: 14 pods.
    assert_eq!(plan.pods, 14);
}

#[test]
fn an_unreachable_confidence_is_an_error_that_says_how_far_the_space_goes() {
    let err = pods_for_deadline(36, 1e7, Duration::from_secs(60), 0.95, SPACE_32).unwrap_err();
    let StatsError::Unreachable { best, .. } = err else {
        panic!("{err:?}")
    };
    assert!((best - (1.0 - (-1f64 / 16.0).exp())).abs() < 1e-9);
}

#[test]
fn bad_rates_and_deadlines_are_errors() {
    assert!(matches!(
        pods_for_deadline(20, 0.0, Duration::from_secs(1), 0.5, SPACE_32),
        Err(StatsError::Rate(_))
    ));
    assert!(matches!(
        pods_for_deadline(20, f64::NAN, Duration::from_secs(1), 0.5, SPACE_32),
        Err(StatsError::Rate(_))
    ));
    assert_eq!(
        pods_for_deadline(20, 1e6, Duration::ZERO, 0.5, SPACE_32),
        Err(StatsError::Within)
    );
}
