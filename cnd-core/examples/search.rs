//! Search this machine's cores for a golden nonce, watching the progress, then
//! check the answer independently.
//!
//! ```sh
//! cargo run -p cnd-core --example search           # D = 18
//! cargo run -p cnd-core --example search -- 24     # harder: 2^24 hashes expected
//! ```

use std::time::{Duration, Instant};

use cnd_core::{
    search, stats, verify, Backend, Puzzle, SearchControl, SearchOptions, SearchOutcome,
};

fn main() {
    let difficulty = std::env::args()
        .nth(1)
        .map_or(18, |d| d.parse().expect("a difficulty 0..=256"));
    find(difficulty);
}

fn find(difficulty: u32) {
    // The default block, `COMSM0010cloud`, with 4 big-endian nonce bytes appended.
    let puzzle = Puzzle::with_default_block(difficulty).expect("a difficulty 0..=256");
    println!(
        "D = {difficulty}: about {} hashes expected",
        stats::expected_hashes(difficulty)
    );

    // Every core, the backend `CND_BACKEND` names (else the fastest; the library
    // itself never reads the environment), a time limit, and a progress callback: it runs on the search threads after every chunk of
    // nonces, so it only prints now and then.
    let last_print = std::sync::Mutex::new(Instant::now());
    let backend = Backend::from_env().expect("CND_BACKEND names a backend this CPU has");
    let options = SearchOptions::all_cores()
        .with_backend(backend)
        .with_deadline(Some(Instant::now() + Duration::from_secs(60)))
        .on_progress(move |hashes| {
            let mut last = last_print.lock().unwrap();
            if last.elapsed() >= Duration::from_millis(200) {
                *last = Instant::now();
                println!("  {hashes} hashes so far");
            }
        });

    // The control can cancel the search from another thread; here it only counts.
    let control = SearchControl::new();
    let outcome = search(&puzzle, puzzle.space(), &options, &control).expect("the search starts");

    match outcome {
        SearchOutcome::Found(found) => {
            // Hashed again from scratch, with none of the search's code.
            let check = verify(&puzzle, found.nonce);
            assert!(check.golden && check.hash == found.hash);
            println!(
                "golden nonce {} ({} leading zero bits) after {} hashes in {:?}",
                found.nonce, found.leading_zeros, found.hashes, found.elapsed
            );
        }
        // SearchOutcome may gain variants: other crates match it with a wildcard.
        other => println!("no golden nonce: {other:?}"),
    }
}

// `cargo test` runs the example too (`test = true` in cnd-core/Cargo.toml), so CI
// sees it work, not only compile.
#[cfg(test)]
#[test]
fn the_example_runs() {
    find(20);
}
