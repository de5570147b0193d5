//! Hash rate of every backend this CPU can run, on the shapes that matter: the
//! default block with 32-bit binary, decimal and 64-bit binary nonces, and a
//! 200-byte block. Each iteration is one `Job::scan` of 2^16 nonces, as `search`
//! hands them out, at D = 256 so nothing is golden and every nonce is hashed.
//!
//! `cargo bench -p cnd-benches` (a few minutes); `cargo test --benches` (as CI does)
//! runs each once, as a smoke test.

use std::hint::black_box;
use std::time::Duration;

use cnd_core::hazmat::{scan_fn, Job};
use cnd_core::Backend;
use cnd_core::{NonceBits, NonceFormat, Puzzle, DEFAULT_BLOCK};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// Nonces per `Job::scan`: what `search` hands each thread at a time.
const RUN: u32 = cnd_core::CHUNK;

fn hash(c: &mut Criterion) {
    let default = DEFAULT_BLOCK.as_bytes();
    let shapes = [
        ("binary32", default, NonceBits::B32, NonceFormat::Binary, 0),
        // Ten-digit nonces, as most of the 32-bit space has.
        (
            "decimal",
            default,
            NonceBits::B32,
            NonceFormat::Decimal,
            1_000_000_000,
        ),
        ("binary64", default, NonceBits::B64, NonceFormat::Binary, 0),
        (
            "block200",
            &[b'x'; 200][..],
            NonceBits::B32,
            NonceFormat::Binary,
            0,
        ),
    ];
    for (shape, block, bits, format, first) in shapes {
        let puzzle = Puzzle::new(block, 256, bits, format).expect("valid puzzle");
        let job = Job::new(&puzzle);
        let mut group = c.benchmark_group(shape);
        group.throughput(Throughput::Elements(u64::from(RUN)));
        for backend in Backend::available() {
            let scan = scan_fn(backend);
            let mut start = first;
            group.bench_function(backend.name(), |b| {
                b.iter(|| {
                    let found = job.scan(scan, black_box(start), RUN);
                    start += u64::from(RUN);
                    if start > u64::from(u32::MAX) - u64::from(RUN) {
                        start = first;
                    }
                    found
                })
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = hash
}
criterion_main!(benches);
