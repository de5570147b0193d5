//! Property tests: shards, encodings, and the search against a brute-force reference.

use cnd_core::puzzle::{encode_nonce, to_hex};
use cnd_core::{
    search, verify, Backend, NonceBits, NonceFormat, NonceRange, Puzzle, Report, ReportKind,
    SearchControl, SearchOptions, SearchOutcome, Searched,
};
use proptest::prelude::*;

fn any_range() -> impl Strategy<Value = NonceRange> {
    let edge = prop_oneof![
        Just(0u64),
        Just(u64::MAX),
        Just(u64::from(u32::MAX)),
        any::<u64>(),
        0u64..1000,
        (u64::MAX - 1000)..=u64::MAX,
    ];
    (edge.clone(), edge).prop_map(|(a, b)| NonceRange::new(a.min(b), a.max(b)).unwrap())
}

fn any_bits() -> impl Strategy<Value = NonceBits> {
    prop_oneof![Just(NonceBits::B32), Just(NonceBits::B64)]
}

fn any_format() -> impl Strategy<Value = NonceFormat> {
    prop_oneof![Just(NonceFormat::Binary), Just(NonceFormat::Decimal)]
}

proptest! {
    #[test]
    fn shards_cover_the_range_exactly_once_with_sizes_within_one(range in any_range(), count in 1u64..2000) {
        let count = count.min(range.len().min(u128::from(u64::MAX)) as u64);
        let mut next = u128::from(range.first());
        let (mut smallest, mut largest) = (u128::MAX, 0u128);
        for i in 0..count {
            let shard = range.shard(i, count).unwrap();
            prop_assert_eq!(u128::from(shard.first()), next, "shard {} starts where {} ended", i, i.wrapping_sub(1));
            next = shard.end();
            smallest = smallest.min(shard.len());
            largest = largest.max(shard.len());
        }
        prop_assert_eq!(next, range.end());
        prop_assert!(largest - smallest <= 1);
    }

    #[test]
    fn more_shards_than_nonces_is_refused(first in any::<u64>(), len in 1u64..100, extra in 1u64..100) {
        let range = NonceRange::new(first.min(u64::MAX - len), first.min(u64::MAX - len) + len - 1).unwrap();
        prop_assert!(range.shard(0, len + extra).is_err());
        prop_assert!(range.shard(len, len).is_err());
    }

    #[test]
    fn range_text_round_trips(range in any_range()) {
        prop_assert_eq!(range.to_string().parse::<NonceRange>().unwrap(), range);
    }

    #[test]
    fn decimal_encoding_is_the_plain_decimal_string(nonce in any::<u64>()) {
        let mut buf = [0u8; 20];
        let encoded = encode_nonce(nonce, NonceBits::B64, NonceFormat::Decimal, &mut buf);
        let expected = nonce.to_string();
        prop_assert_eq!(encoded, expected.as_bytes());
    }

    #[test]
    fn binary_encoding_is_big_endian_fixed_width(nonce in any::<u32>(), wide in any::<u64>()) {
        let mut buf = [0u8; 20];
        prop_assert_eq!(encode_nonce(u64::from(nonce), NonceBits::B32, NonceFormat::Binary, &mut buf), &nonce.to_be_bytes()[..]);
        prop_assert_eq!(encode_nonce(wide, NonceBits::B64, NonceFormat::Binary, &mut buf), &wide.to_be_bytes()[..]);
    }

    #[test]
    fn reports_round_trip_through_json(shard in any::<u64>(), hashes in any::<u64>(), nonce in any::<u64>(), hash in any::<[u8; 32]>(), worker in "[a-z0-9-]{0,40}", error in ".{0,80}") {
        for kind in [ReportKind::Found { nonce, hash }, ReportKind::Exhausted, ReportKind::Progress { searched: hashes / 2 }, ReportKind::Failed { error: error.clone() }] {
            let report = Report { run_id: uuid::Uuid::new_v4(), shard, worker: worker.clone(), hashes, elapsed_ms: hashes / 7, kind };
            prop_assert_eq!(Report::from_json(&report.to_json()).unwrap(), report);
        }
    }

    /// `CND_SEARCHED` reads back as written, cut or not, and never panics.
    #[test]
    fn searched_lists_round_trip(
        shards in 1u64..200,
        done in proptest::collection::vec(any::<u64>(), 0..40),
        prefixes in proptest::collection::vec((any::<u64>(), 1u64..u64::MAX), 0..20),
        limit in 0usize..120,
        junk in "[0-9:,-]{0,30}",
    ) {
        let mut searched = Searched::default();
        for shard in done {
            searched.mark_done(shard % shards);
        }
        for (shard, nonces) in prefixes {
            searched.add_prefix(shard % shards, nonces);
        }
        prop_assert_eq!(&Searched::parse(&searched.to_env(), shards).unwrap(), &searched);
        // A cut list says less, never something else.
        let cut = Searched::parse(&searched.to_env_within(limit), shards).unwrap();
        prop_assert!(searched.to_env_within(limit).len() <= limit);
        for shard in 0..shards {
            prop_assert!(!cut.is_done(shard) || searched.is_done(shard));
            prop_assert!(cut.prefix(shard) == 0 || cut.prefix(shard) == searched.prefix(shard));
        }
        let _ = Searched::parse(&junk, shards);
    }

    #[test]
    fn report_parsing_never_panics(body in ".{0,300}") {
        let _ = Report::from_json(&body);
    }

    /// The search returns exactly the first nonce that the independent verifier calls golden.
    #[test]
    fn search_equals_brute_force_on_small_ranges(
        block in proptest::collection::vec(any::<u8>(), 0..140),
        difficulty in 0u32..9,
        bits in any_bits(),
        format in any_format(),
        start in prop_oneof![0u64..100_000, (u64::from(u32::MAX) - 3000)..=u64::from(u32::MAX), Just(9_990u64), Just(99_999_990u64)],
        len in 1u64..1500,
        threads in 1usize..4,
    ) {
        let puzzle = Puzzle::new(block, difficulty, bits, format).unwrap();
        let last = start.saturating_add(len - 1).min(bits.max_nonce());
        let range = NonceRange::new(start, last).unwrap();
        let reference = (start..=last).find(|&n| verify(&puzzle, n).golden);
        for backend in Backend::available() {
            let options = SearchOptions::all_cores()
        .with_threads(threads)
        .with_backend(backend);
            let outcome = search(&puzzle, range, &options, &SearchControl::new()).unwrap();
            match (outcome, reference) {
                (SearchOutcome::Found(found), Some(expected)) => {
                    prop_assert_eq!(found.nonce, expected);
                    prop_assert_eq!(to_hex(&found.hash), to_hex(&verify(&puzzle, expected).hash));
                }
                (SearchOutcome::Exhausted { hashes, .. }, None) => prop_assert_eq!(u128::from(hashes), range.len()),
                (outcome, reference) => prop_assert!(false, "{} x{}: {:?} but brute force says {:?}", backend, threads, outcome, reference),
            }
        }
    }
}

#[test]
fn thread_count_never_changes_the_answer() {
    // D = 12 on a range holding several golden nonces spread over many chunks.
    let puzzle = Puzzle::with_default_block(12).unwrap();
    let range = NonceRange::new(1_000_000, 1_000_000 + (1 << 20)).unwrap();
    let answers: Vec<u64> = [1, 2, 3, 4, 7, 16]
        .iter()
        .map(|&threads| {
            let options = SearchOptions::all_cores()
                .with_threads(threads)
                .with_backend(Backend::best());
            match search(&puzzle, range, &options, &SearchControl::new()).unwrap() {
                SearchOutcome::Found(f) => f.nonce,
                other => panic!("{other:?}"),
            }
        })
        .collect();
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    let reference = (range.first()..)
        .find(|&n| verify(&puzzle, n).golden)
        .unwrap();
    assert_eq!(answers[0], reference);
}
