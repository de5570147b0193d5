//! Cancellation, deadlines, progress and bad arguments of the search.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cnd_core::{
    search, Backend, NonceBits, NonceFormat, NonceRange, Puzzle, SearchControl, SearchError,
    SearchOptions, SearchOutcome,
};

fn impossible() -> Puzzle {
    Puzzle::new("cancel me", 256, NonceBits::B64, NonceFormat::Binary).unwrap()
}

#[test]
fn cancel_stops_a_running_search_and_progress_is_visible_meanwhile() {
    let puzzle = impossible();
    let control = Arc::new(SearchControl::new());
    let options = SearchOptions::all_cores()
        .with_threads(2)
        .with_backend(Backend::best());
    let runner = {
        let control = Arc::clone(&control);
        std::thread::spawn(move || search(&puzzle, puzzle.space(), &options, &control))
    };
    // Progress must become visible while the search runs (no timing bound asserted).
    while control.hashes() == 0 {
        assert!(!runner.is_finished(), "a 2^64 search cannot end on its own");
        std::thread::yield_now();
    }
    let seen = control.hashes();
    control.cancel();
    let outcome = runner.join().unwrap().unwrap();
    let SearchOutcome::Cancelled { hashes, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(hashes >= seen);
}

#[test]
fn a_deadline_ends_the_search_as_timed_out() {
    let puzzle = impossible();
    let options = SearchOptions::all_cores()
        .with_threads(2)
        .with_backend(Backend::best())
        .with_deadline(Some(Instant::now() + Duration::from_millis(50)));
    let outcome = search(&puzzle, puzzle.space(), &options, &SearchControl::new()).unwrap();
    assert!(
        matches!(outcome, SearchOutcome::TimedOut { hashes, .. } if hashes > 0),
        "{outcome:?}"
    );
}

#[test]
fn an_exhausted_range_counts_every_nonce() {
    let puzzle = Puzzle::with_default_block(256).unwrap();
    let range = NonceRange::new(u64::from(u32::MAX) - 100_000, u64::from(u32::MAX)).unwrap();
    let options = SearchOptions::all_cores()
        .with_threads(3)
        .with_backend(Backend::best());
    let outcome = search(&puzzle, range, &options, &SearchControl::new()).unwrap();
    assert!(
        matches!(
            outcome,
            SearchOutcome::Exhausted {
                hashes: 100_001,
                ..
            }
        ),
        "{outcome:?}"
    );
}

#[test]
fn the_top_of_the_64_bit_space_is_searched_without_overflow() {
    let puzzle = Puzzle::new("top", 0, NonceBits::B64, NonceFormat::Decimal).unwrap();
    let range = NonceRange::new(u64::MAX, u64::MAX).unwrap();
    let options = SearchOptions::all_cores()
        .with_threads(2)
        .with_backend(Backend::best());
    let outcome = search(&puzzle, range, &options, &SearchControl::new()).unwrap();
    assert!(
        matches!(outcome, SearchOutcome::Found(f) if f.nonce == u64::MAX),
        "{outcome:?}"
    );
}

#[test]
fn zero_threads_and_ranges_outside_the_space_are_errors() {
    let puzzle = Puzzle::with_default_block(8).unwrap();
    let options = SearchOptions::all_cores()
        .with_threads(0)
        .with_backend(Backend::Scalar);
    assert!(matches!(
        search(&puzzle, puzzle.space(), &options, &SearchControl::new()),
        Err(SearchError::NoThreads)
    ));
    let options = options.with_threads(1);
    let outside = NonceRange::new(0, 1 << 32).unwrap();
    assert!(matches!(
        search(&puzzle, outside, &options, &SearchControl::new()),
        Err(SearchError::OutsideSpace { .. })
    ));
}

#[test]
fn forcing_an_unknown_backend_is_an_error() {
    assert!(matches!(
        Backend::from_name("turbo"),
        Err(cnd_core::BackendError::Unknown(_))
    ));
    for backend in Backend::available() {
        assert_eq!(Backend::from_name(backend.name()).unwrap(), backend);
    }
}

#[test]
fn progress_is_reported_in_order_and_reaches_the_final_count() {
    let puzzle = Puzzle::with_default_block(256).unwrap();
    // Ten whole chunks and a bit: every one reports.
    let range = NonceRange::new(0, 10 * u64::from(cnd_core::CHUNK) + 99).unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let options = SearchOptions::all_cores()
        .with_threads(3)
        .with_backend(Backend::best())
        .on_progress(move |hashes| sink.lock().unwrap().push(hashes));
    let outcome = search(&puzzle, range, &options, &SearchControl::new()).unwrap();
    let SearchOutcome::Exhausted { hashes, .. } = outcome else {
        panic!("{outcome:?}")
    };
    let seen = seen.lock().unwrap();
    assert!(seen.len() >= 2, "about one call per chunk: {seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "never backwards: {seen:?}"
    );
    assert_eq!(
        seen.last(),
        Some(&hashes),
        "the last chunk's call has the total"
    );
}

#[test]
fn a_searcher_keeps_its_threads_for_many_searches() {
    let mut searcher = cnd_core::Searcher::new(
        SearchOptions::all_cores()
            .with_threads(2)
            .with_backend(Backend::best()),
    )
    .unwrap();
    // The README's known answer, twice on the same pool, then a timed-out search.
    let puzzle = Puzzle::with_default_block(16).unwrap();
    for _ in 0..2 {
        let outcome = searcher
            .search(&puzzle, puzzle.space(), &SearchControl::new())
            .unwrap();
        assert!(
            matches!(outcome, SearchOutcome::Found(f) if f.nonce == 133_050),
            "{outcome:?}"
        );
    }
    searcher.set_deadline(Some(Instant::now()));
    let outcome = searcher
        .search(&impossible(), impossible().space(), &SearchControl::new())
        .unwrap();
    assert!(
        matches!(outcome, SearchOutcome::TimedOut { .. }),
        "{outcome:?}"
    );
    assert!(matches!(
        cnd_core::Searcher::new(SearchOptions::all_cores().with_threads(0)),
        Err(SearchError::NoThreads)
    ));
}

#[test]
fn the_searched_prefix_is_whole_chunks_below_the_count_and_the_range_when_exhausted() {
    // Cancelled mid-search: the prefix is whole chunks, never past the count,
    // and every nonce in it was tried (chunks are claimed in order).
    let puzzle = impossible();
    let control = Arc::new(SearchControl::new());
    let options = SearchOptions::all_cores()
        .with_threads(3)
        .with_backend(Backend::best());
    let runner = {
        let control = Arc::clone(&control);
        std::thread::spawn(move || search(&puzzle, puzzle.space(), &options, &control))
    };
    while control.searched() < 4 * u64::from(cnd_core::CHUNK) {
        assert!(!runner.is_finished(), "a 2^64 search cannot end on its own");
        std::thread::yield_now();
    }
    control.cancel();
    runner.join().unwrap().unwrap();
    let (searched, hashes) = (control.searched(), control.hashes());
    assert_eq!(searched % u64::from(cnd_core::CHUNK), 0, "{searched}");
    assert!(searched <= hashes, "{searched} > {hashes}");
    assert!(
        hashes - searched <= 3 * u64::from(cnd_core::CHUNK),
        "{hashes} - {searched}"
    );

    // Exhausted: the prefix is the whole range, a part chunk at its end included.
    let range = NonceRange::new(1_000, 1_000 + 3 * u64::from(cnd_core::CHUNK) + 16).unwrap();
    let control = SearchControl::new();
    let options = SearchOptions::all_cores().with_threads(2);
    let outcome = search(&impossible(), range, &options, &control).unwrap();
    assert!(
        matches!(outcome, SearchOutcome::Exhausted { .. }),
        "{outcome:?}"
    );
    assert_eq!(u128::from(control.searched()), range.len());
}
