//! What the SHA-NI instructions cost on this CPU, in core cycles: latency (one
//! dependent chain) and throughput (eight independent chains) of `sha256rnds2`,
//! `sha256msg1` and `sha256msg2`, and whether rounds and message schedule share a
//! unit; then the `shani` backend's own cycles per nonce beside the floor those
//! figures set for it (see `STREAMS` in `shani.rs`):
//! `cargo run --release -p cnd-benches --example sha_costs`.
//!
//! Cycles are counted with `rdtsc`, scaled by a chain of dependent `add`s (one
//! cycle each), so turbo and the TSC's own frequency cancel out. Each figure is the
//! best of seven rounds: on a shared machine the noise only ever adds.

#[cfg(target_arch = "x86_64")]
use cnd_core::{
    hazmat::{scan_fn, Job},
    Backend, NonceBits, NonceFormat, Puzzle, DEFAULT_BLOCK,
};

#[cfg(target_arch = "x86_64")]
fn main() {
    if !std::arch::is_x86_feature_detected!("sha") {
        println!("this CPU has no SHA-NI");
        return;
    }
    println!("CPU: {}", cpu_model());
    let cycle = best_ticks(|| unsafe {
        // SAFETY: integer adds on a scratch register.
        std::arch::asm!(".rept 64", "add $1, {x}", ".endr", x = out(reg) _, options(nomem, nostack, att_syntax));
    }) / 64.0;
    // SAFETY (every block below): the CPU has SHA-NI (checked above); the blocks
    // only touch the xmm registers they declare clobbered.
    macro_rules! measure {
        ($name:literal, $per:expr, $($line:literal),+) => {{
            let ticks = best_ticks(|| unsafe {
                std::arch::asm!(
                    $($line,)+
                    out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
                    out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _,
                    out("xmm8") _, out("xmm9") _, out("xmm10") _, out("xmm11") _,
                    out("xmm12") _, out("xmm13") _,
                    options(nomem, nostack, att_syntax),
                );
            });
            let cycles = ticks / cycle / $per;
            println!("{:<52} {:5.2} cycles", $name, cycles);
            cycles
        }};
    }
    measure!(
        "sha256rnds2, latency (1 chain)",
        8.0,
        ".rept 8",
        "sha256rnds2 %xmm0, %xmm9, %xmm1",
        ".endr"
    );
    let rnds2_throughput = measure!(
        "sha256rnds2, throughput (8 chains)",
        16.0,
        ".rept 2",
        "sha256rnds2 %xmm0, %xmm9, %xmm1",
        "sha256rnds2 %xmm0, %xmm9, %xmm2",
        "sha256rnds2 %xmm0, %xmm9, %xmm3",
        "sha256rnds2 %xmm0, %xmm9, %xmm4",
        "sha256rnds2 %xmm0, %xmm9, %xmm5",
        "sha256rnds2 %xmm0, %xmm9, %xmm6",
        "sha256rnds2 %xmm0, %xmm9, %xmm7",
        "sha256rnds2 %xmm0, %xmm9, %xmm8",
        ".endr"
    );
    measure!(
        "sha256msg1, latency (1 chain)",
        8.0,
        ".rept 8",
        "sha256msg1 %xmm10, %xmm1",
        ".endr"
    );
    measure!(
        "sha256msg1, throughput (8 chains)",
        8.0,
        "sha256msg1 %xmm10, %xmm1",
        "sha256msg1 %xmm10, %xmm2",
        "sha256msg1 %xmm10, %xmm3",
        "sha256msg1 %xmm10, %xmm4",
        "sha256msg1 %xmm10, %xmm5",
        "sha256msg1 %xmm10, %xmm6",
        "sha256msg1 %xmm10, %xmm7",
        "sha256msg1 %xmm10, %xmm8"
    );
    measure!(
        "sha256msg2, latency (1 chain)",
        8.0,
        ".rept 8",
        "sha256msg2 %xmm10, %xmm1",
        ".endr"
    );
    measure!(
        "sha256msg2, throughput (8 chains)",
        8.0,
        "sha256msg2 %xmm10, %xmm1",
        "sha256msg2 %xmm10, %xmm2",
        "sha256msg2 %xmm10, %xmm3",
        "sha256msg2 %xmm10, %xmm4",
        "sha256msg2 %xmm10, %xmm5",
        "sha256msg2 %xmm10, %xmm6",
        "sha256msg2 %xmm10, %xmm7",
        "sha256msg2 %xmm10, %xmm8"
    );
    measure!(
        "8 sha256rnds2 + 3 sha256msg2 (per rnds2; 1.00 = overlap)",
        8.0,
        "sha256rnds2 %xmm0, %xmm9, %xmm1",
        "sha256rnds2 %xmm0, %xmm9, %xmm2",
        "sha256msg2 %xmm10, %xmm11",
        "sha256rnds2 %xmm0, %xmm9, %xmm3",
        "sha256rnds2 %xmm0, %xmm9, %xmm4",
        "sha256msg2 %xmm10, %xmm12",
        "sha256rnds2 %xmm0, %xmm9, %xmm5",
        "sha256rnds2 %xmm0, %xmm9, %xmm6",
        "sha256msg2 %xmm10, %xmm13",
        "sha256rnds2 %xmm0, %xmm9, %xmm7",
        "sha256rnds2 %xmm0, %xmm9, %xmm8"
    );
    measure!(
        "8 sha256rnds2 + 3 sha256msg1 (per rnds2; 1.00 = overlap)",
        8.0,
        "sha256rnds2 %xmm0, %xmm9, %xmm1",
        "sha256rnds2 %xmm0, %xmm9, %xmm2",
        "sha256msg1 %xmm10, %xmm11",
        "sha256rnds2 %xmm0, %xmm9, %xmm3",
        "sha256rnds2 %xmm0, %xmm9, %xmm4",
        "sha256msg1 %xmm10, %xmm12",
        "sha256rnds2 %xmm0, %xmm9, %xmm5",
        "sha256rnds2 %xmm0, %xmm9, %xmm6",
        "sha256msg1 %xmm10, %xmm13",
        "sha256rnds2 %xmm0, %xmm9, %xmm7",
        "sha256rnds2 %xmm0, %xmm9, %xmm8"
    );
    // The shani backend itself, in the same cycles: the default puzzle, every nonce
    // hashed (D = 256), one thread.
    let puzzle = Puzzle::new(DEFAULT_BLOCK, 256, NonceBits::B32, NonceFormat::Binary).unwrap();
    let job = Job::new(&puzzle);
    let scan = scan_fn(Backend::Shani);
    const RUN: u32 = 1 << 16;
    let ticks = best_ticks_of(5, || {
        for run in 0..4u64 {
            assert!(job.scan(scan, run << 16, RUN).is_none());
        }
    });
    let per_nonce = ticks / cycle / f64::from(4 * RUN);
    println!(
        "{:<52} {:5.1} cycles",
        "shani backend, per nonce (1 thread)", per_nonce
    );
    println!(
        "{:<52} {:5.1} cycles (63 sha256rnds2 at the throughput above)",
        "  its floor on the SHA unit",
        63.0 * rnds2_throughput
    );
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    println!("SHA-NI is x86-64 only");
}

/// The fewest TSC ticks one call of `body` took, over 7 rounds of 200,000 calls.
#[cfg(target_arch = "x86_64")]
fn best_ticks(mut body: impl FnMut()) -> f64 {
    const CALLS: u64 = 200_000;
    best_ticks_of(7, || {
        for _ in 0..CALLS {
            body();
        }
    }) / CALLS as f64
}

/// The fewest TSC ticks one call of `body` took, over `rounds` calls.
#[cfg(target_arch = "x86_64")]
fn best_ticks_of(rounds: usize, mut body: impl FnMut()) -> f64 {
    (0..rounds)
        .map(|_| {
            // SAFETY: rdtsc has no preconditions on x86-64.
            let from = unsafe { std::arch::x86_64::_rdtsc() };
            body();
            // SAFETY: as above.
            let to = unsafe { std::arch::x86_64::_rdtsc() };
            (to - from) as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// The CPU's model name, as `/proc/cpuinfo` gives it.
#[cfg(target_arch = "x86_64")]
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("model name"))?;
            Some(line.split(':').nth(1)?.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}
