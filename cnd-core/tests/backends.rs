//! Every backend this CPU can run agrees with `scalar`, the reference, on random
//! puzzles and ranges: block lengths 0..=200 (the nonce anywhere in its block, across
//! a block boundary), binary and decimal nonces, 32 and 64 bits, low and high D,
//! lane-unaligned runs, the top of the space and decimal digit-count boundaries.

use cnd_core::hazmat::{scalar, scan_fn, Job, ScanFn};
use cnd_core::{verify, NonceBits, NonceFormat, Puzzle};
use cnd_core::{Backend, BackendError};
use proptest::prelude::*;

/// The scans under test, by name: every available backend except the reference
/// itself, `auto` (whichever it picks, through its own dispatch), and where this CPU
/// runs `shani` in its AVX-512VL variant, also the SSE-only variant other CPUs run.
fn scans() -> Vec<(String, ScanFn)> {
    let mut scans: Vec<(String, ScanFn)> = Backend::available()
        .into_iter()
        .filter(|&b| b != Backend::Scalar)
        .chain([Backend::Auto])
        .map(|b| (b.to_string(), scan_fn(b)))
        .collect();
    #[cfg(target_arch = "x86_64")]
    if Backend::Shani.is_available() {
        use cnd_core::hazmat::shani::{scan_sse, Variant, STREAMS};
        if Variant::best() != Variant::Sse {
            scans.push(("shani (SSE variant)".into(), scan_sse::<STREAMS>));
        }
    }
    scans
}

/// Checks `scan` against `scalar` on `start .. start + count` of `puzzle`.
fn check(
    puzzle: &Puzzle,
    (name, scan): &(String, ScanFn),
    start: u64,
    count: u32,
) -> Result<(), TestCaseError> {
    let job = Job::new(puzzle);
    let want = job.scan(scalar::scan as ScanFn, start, count);
    let got = job.scan(*scan, start, count);
    prop_assert_eq!(
        got,
        want,
        "{} on {:?} from {} count {}",
        name,
        puzzle,
        start,
        count
    );
    if let Some(nonce) = got {
        let check = verify(puzzle, nonce);
        prop_assert!(check.golden);
        prop_assert!(check.leading_zeros >= puzzle.difficulty());
    }
    Ok(())
}

/// A run inside the space `0..=max`: anywhere, at its top, or around a power of ten.
fn run(max: u64) -> impl Strategy<Value = (u64, u32)> {
    let anywhere = (0..=max, 1u32..=300);
    let top = (0u64..400, 1u32..=300).prop_map(move |(back, count)| (max - back.min(max), count));
    let power = (1u32..=19, 0u64..300, 1u32..=300)
        .prop_map(move |(exp, back, count)| (10u64.pow(exp).saturating_sub(back).min(max), count));
    prop_oneof![anywhere, top, power].prop_map(move |(start, count)| {
        let count = u64::from(count).min((max - start).saturating_add(1)) as u32;
        (start, count)
    })
}

fn puzzle() -> impl Strategy<Value = Puzzle> {
    let difficulty = prop_oneof![8 => 0u32..=16, 1 => 17u32..=40, 1 => Just(256u32)];
    let bits = prop_oneof![Just(NonceBits::B32), Just(NonceBits::B64)];
    let format = prop_oneof![Just(NonceFormat::Binary), Just(NonceFormat::Decimal)];
    (
        proptest::collection::vec(any::<u8>(), 0..=200),
        difficulty,
        bits,
        format,
    )
        .prop_map(|(block, d, bits, format)| Puzzle::new(block, d, bits, format).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn simd_backends_match_scalar(
        (puzzle, (start, count)) in puzzle().prop_flat_map(|p| {
            let max = p.nonce_bits().max_nonce();
            (Just(p), run(max))
        })
    ) {
        for scan in scans() {
            check(&puzzle, &scan, start, count)?;
        }
    }
}

/// Every golden nonce of a range, found by restarting the scan after each one: checks
/// the first-word test on every lane, not only the first hit of a run.
fn all_golden(job: &Job, scan: ScanFn, start: u64, count: u32) -> Vec<u64> {
    let last = start + u64::from(count - 1);
    let mut found = Vec::new();
    let mut from = start;
    while let Some(n) = job.scan(scan, from, (last - from + 1) as u32) {
        found.push(n);
        if n == last {
            break;
        }
        from = n + 1;
    }
    found
}

#[test]
fn every_golden_nonce_of_a_range_matches_scalar() {
    let shapes: &[(&[u8], NonceBits, NonceFormat, u64)] = &[
        (b"COMSM0010cloud", NonceBits::B32, NonceFormat::Binary, 0),
        (
            b"COMSM0010cloud",
            NonceBits::B32,
            NonceFormat::Binary,
            u64::from(u32::MAX) - 3000,
        ),
        (
            b"COMSM0010cloud",
            NonceBits::B64,
            NonceFormat::Binary,
            (1 << 32) - 1500,
        ),
        (
            b"COMSM0010cloud",
            NonceBits::B64,
            NonceFormat::Decimal,
            9_999_999_000,
        ),
        (
            &[0x5a; 61],
            NonceBits::B64,
            NonceFormat::Binary,
            u64::MAX - 3000,
        ),
        (
            &[0xa5; 53],
            NonceBits::B64,
            NonceFormat::Decimal,
            99_998_500,
        ),
        (
            &[7; 200],
            NonceBits::B32,
            NonceFormat::Decimal,
            4_294_964_000,
        ),
        // The last four digits roll over (…9999 to …0000, a carry into the fifth):
        // lanes whose last four digits would carry take the per-lane path.
        (
            b"COMSM0010cloud",
            NonceBits::B32,
            NonceFormat::Decimal,
            1_234_558_500,
        ),
        // Runs whose eighth byte from the nonce's end changes: 19,999,999 to
        // 20,000,000 (eight digits either side) and a 64-bit nonce across 2^56.
        (
            b"COMSM0010cloud",
            NonceBits::B32,
            NonceFormat::Decimal,
            19_998_500,
        ),
        (
            b"COMSM0010cloud",
            NonceBits::B64,
            NonceFormat::Binary,
            (1 << 56) - 1500,
        ),
    ];
    for &(block, bits, format, start) in shapes {
        let puzzle = Puzzle::new(block, 4, bits, format).unwrap();
        let job = Job::new(&puzzle);
        let count = 3001;
        let want = all_golden(&job, scalar::scan, start, count);
        assert!(
            want.len() > 100,
            "D = 4 leaves about one nonce in 16 golden"
        );
        for (name, scan) in scans() {
            let got = all_golden(&job, scan, start, count);
            assert_eq!(got, want, "{name} on {puzzle:?}");
        }
    }
}

#[test]
fn a_missing_backend_is_unsupported_and_an_available_one_parses() {
    for &backend in Backend::ALL {
        let parsed = Backend::from_name(backend.name());
        if backend.is_available() {
            assert_eq!(parsed, Ok(backend));
            assert_eq!(backend.name().parse::<Backend>(), Ok(backend));
        } else {
            assert_eq!(parsed, Err(BackendError::Unsupported(backend.name())));
            let message = parsed.unwrap_err().to_string();
            assert!(message.contains(backend.name()) && message.contains("not supported"));
        }
    }
    assert!(Backend::available().contains(&Backend::Scalar));
    let best = Backend::best();
    assert!(best.is_available() && best != Backend::Auto && best != Backend::Scalar);
    assert_eq!(Backend::from_name("auto"), Ok(Backend::Auto));
    assert!(!Backend::ALL.contains(&Backend::Auto));
}

#[test]
fn auto_picks_the_fastest_candidate_it_measured_once_per_shape() {
    let puzzle = Puzzle::new(b"COMSM0010cloud", 256, NonceBits::B32, NonceFormat::Decimal).unwrap();
    let job = Job::new(&puzzle);
    let t = job.templates().last().unwrap();
    let first = cnd_core::hazmat::auto::calibration(t);
    // Cached: the same answer, not a second measurement.
    let again = cnd_core::hazmat::auto::calibration(t);
    assert_eq!(first.rates, again.rates);
    assert_eq!(first.chosen, again.chosen);
    assert!(first.chosen.is_available() && first.chosen != Backend::Auto);
    if let Some(fastest) = first.rates.iter().max_by(|a, b| a.1.total_cmp(&b.1)) {
        assert_eq!(first.chosen, fastest.0);
        assert!(first.rates.iter().all(|r| r.1 > 0.0 && r.1.is_finite()));
    }
    assert_eq!(Backend::Auto.resolve(&puzzle), first.chosen);
    assert_eq!(Backend::Scalar.resolve(&puzzle), Backend::Scalar);
}

#[test]
fn unknown_backend_names_are_errors() {
    for name in ["", "avx", "AVX512", "sha-ni", "gpu", "scalar2"] {
        assert_eq!(
            Backend::from_name(name),
            Err(BackendError::Unknown(name.trim().to_string())),
            "{name:?}"
        );
    }
}

#[test]
fn simd_backends_exist_on_x86_64() {
    // Names are part of the contract even where the CPU lacks them.
    for name in ["shani", "avx2", "avx512", "avx512x2"] {
        assert!(Backend::ALL.iter().any(|b| b.name() == name));
    }
    #[cfg(target_arch = "x86_64")]
    {
        assert_eq!(
            Backend::Avx512.is_available(),
            is_x86_feature_detected!("avx512f")
        );
        assert_eq!(
            Backend::Avx512x2.is_available(),
            is_x86_feature_detected!("avx512f")
        );
        assert_eq!(
            Backend::Avx2.is_available(),
            is_x86_feature_detected!("avx2")
        );
        assert_eq!(
            Backend::Shani.is_available(),
            is_x86_feature_detected!("sha") && is_x86_feature_detected!("sse4.1")
        );
    }
}
