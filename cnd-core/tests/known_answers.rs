//! Known answers from Python's hashlib (fixtures/gen_known_answers.py), never from our own code.

use cnd_core::hazmat::{scalar, scan_fn, Job};
use cnd_core::puzzle::{parse_block_hex, to_hex};
use cnd_core::{
    search, verify, Backend, NonceBits, NonceFormat, NonceRange, Puzzle, SearchControl,
    SearchOptions, SearchOutcome,
};

const KNOWN: &str = include_str!("fixtures/known_answers.txt");
const SMALLEST: &str = include_str!("fixtures/smallest_golden.txt");

fn test_block(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 37 + 11) % 256) as u8).collect()
}

struct Known {
    puzzle: Puzzle,
    nonce: u64,
    hash: String,
    zeros: u32,
}

fn known_answers() -> Vec<Known> {
    let rows: Vec<Known> = KNOWN
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let bits: NonceBits = f[1].parse().unwrap();
            let format: NonceFormat = f[2].parse().unwrap();
            let zeros: u32 = f[5].parse().unwrap();
            Known {
                puzzle: Puzzle::new(test_block(f[0].parse().unwrap()), zeros, bits, format)
                    .unwrap(),
                nonce: f[3].parse().unwrap(),
                hash: f[4].to_string(),
                zeros,
            }
        })
        .collect();
    assert_eq!(
        rows.len(),
        131 * (2 * 5 + 2 * 6),
        "the whole fixture was read"
    );
    rows
}

#[test]
fn verify_matches_hashlib_for_every_length_format_and_width() {
    for k in known_answers() {
        let v = verify(&k.puzzle, k.nonce);
        assert_eq!(to_hex(&v.hash), k.hash, "{:?} nonce {}", k.puzzle, k.nonce);
        assert_eq!(v.leading_zeros, k.zeros);
        assert!(v.golden, "D equals the hash's own zeros, so it is golden");
    }
}

#[test]
fn scalar_template_hash_matches_hashlib() {
    for k in known_answers() {
        let job = Job::new(&k.puzzle);
        let template = job
            .templates()
            .iter()
            .find(|t| t.first <= k.nonce && k.nonce <= t.last)
            .expect("a template covers every nonce of the space");
        let words = scalar::double_hash(template, k.nonce);
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
        assert_eq!(to_hex(&bytes), k.hash, "{:?} nonce {}", k.puzzle, k.nonce);
    }
}

/// Each backend sees the nonce as golden at exactly its hash's zeros, and not one bit more.
#[test]
fn every_backend_agrees_with_hashlib_at_the_golden_boundary() {
    for backend in Backend::available() {
        for k in known_answers() {
            let at = Job::new(&k.puzzle);
            assert_eq!(
                at.scan(scan_fn(backend), k.nonce, 1),
                Some(k.nonce),
                "{backend} {:?} {}",
                k.puzzle,
                k.nonce
            );
            if k.zeros < 256 {
                let harder = Puzzle::new(
                    k.puzzle.block(),
                    k.zeros + 1,
                    k.puzzle.nonce_bits(),
                    k.puzzle.nonce_format(),
                )
                .unwrap();
                assert_eq!(
                    Job::new(&harder).scan(scan_fn(backend), k.nonce, 1),
                    None,
                    "{backend} {:?} {}",
                    harder,
                    k.nonce
                );
            }
        }
    }
}

#[test]
fn search_finds_hashlibs_smallest_golden_nonce_with_every_backend_and_thread_count() {
    let rows: Vec<&str> = SMALLEST.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(rows.len() >= 10);
    for line in rows {
        let f: Vec<&str> = line.split_whitespace().collect();
        let block = if f[0] == "-" {
            Vec::new()
        } else {
            parse_block_hex(f[0]).unwrap()
        };
        let puzzle = Puzzle::new(
            block,
            f[3].parse().unwrap(),
            f[1].parse().unwrap(),
            f[2].parse().unwrap(),
        )
        .unwrap();
        let expected: u64 = f[4].parse().unwrap();
        // Start a little before the answer so the test stays quick with the scalar backend.
        let range = NonceRange::new(
            expected.saturating_sub(70_000),
            puzzle.nonce_bits().max_nonce(),
        )
        .unwrap();
        for backend in Backend::available() {
            for threads in [1, 3] {
                let options = SearchOptions::all_cores()
                    .with_threads(threads)
                    .with_backend(backend);
                let outcome = search(&puzzle, range, &options, &SearchControl::new()).unwrap();
                let SearchOutcome::Found(found) = outcome else {
                    panic!("{backend} x{threads}: {outcome:?} for {line}")
                };
                assert_eq!(found.nonce, expected, "{backend} x{threads}: {line}");
                assert_eq!(to_hex(&found.hash), f[5]);
                assert!(
                    found.hashes > expected - range.first(),
                    "every nonce up to the answer was hashed"
                );
            }
        }
    }
}

const DEEP: &str = include_str!("fixtures/deep_golden.txt");

/// Past D = 32 a backend's first-word test passes for any hash starting with 32
/// zero bits, and the candidate must be confirmed on the whole hash: a nonce with
/// exactly 32 is golden at D = 32 and must be rejected at D = 33. Windows and
/// answers from hashlib (fixtures/gen_known_answers.py).
#[test]
fn candidates_past_32_bits_are_confirmed_on_the_whole_hash_by_every_backend() {
    let rows: Vec<Vec<&str>> = DEEP
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect())
        .collect();
    let zeros: Vec<u32> = rows.iter().map(|f| f[5].parse().unwrap()).collect();
    assert!(
        zeros.contains(&32) && zeros.iter().any(|&z| z > 32),
        "one nonce D = 33 rejects, one it finds: {zeros:?}"
    );
    for f in rows {
        let block = parse_block_hex(f[0]).unwrap();
        let (bits, format): (NonceBits, NonceFormat) =
            (f[1].parse().unwrap(), f[2].parse().unwrap());
        let nonce: u64 = f[3].parse().unwrap();
        let zeros: u32 = f[5].parse().unwrap();
        let window = NonceRange::new(f[6].parse().unwrap(), f[7].parse().unwrap()).unwrap();
        let at = |d| Puzzle::new(block.clone(), d, bits, format).unwrap();
        let v = verify(&at(zeros), nonce);
        assert_eq!(
            (to_hex(&v.hash), v.leading_zeros),
            (f[4].to_string(), zeros)
        );
        for backend in Backend::available() {
            for d in [32, 33, zeros, zeros + 1] {
                let options = SearchOptions::all_cores()
                    .with_threads(2)
                    .with_backend(backend);
                let outcome = search(&at(d), window, &options, &SearchControl::new()).unwrap();
                match outcome {
                    SearchOutcome::Found(found) if d <= zeros => {
                        assert_eq!(found.nonce, nonce, "{backend} D = {d}");
                        assert_eq!(to_hex(&found.hash), f[4], "{backend} D = {d}");
                    }
                    SearchOutcome::Exhausted { hashes, .. } if d > zeros => {
                        assert_eq!(u128::from(hashes), window.len(), "{backend} D = {d}");
                    }
                    other => panic!(
                        "{backend} D = {d} over {window} (nonce {nonce}, {zeros} zeros): {other:?}"
                    ),
                }
            }
        }
    }
}
