//! Criterion benchmarks of the hash loop live in `benches/`.
