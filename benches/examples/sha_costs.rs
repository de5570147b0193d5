//! What the SHA-NI instructions cost on this CPU, in core cycles: latency (one
//! dependent chain) and throughput (eight independent chains) of `sha256rnds2`,
//! `sha256msg1` and `sha256msg2`, and whether rounds and message schedule share a
//! unit; whether the schedule competes with the shuffles around it; two floors for
//! the `shani` loop (its instruction mix without dependencies, its rounds alone in 4
//! chains) and the R each allows; then the backend's own cycles per nonce (see
//! `STREAMS` and `STREAMS_VL` in `shani.rs`):
//! `cargo run --release -p cnd-benches --example sha_costs`.
//!
//! Cycles are counted with `rdtsc`, scaled by a chain of dependent `add`s (one
//! cycle each), so turbo and the TSC's own frequency cancel out. Each figure is the
//! best of seven rounds: on a shared machine the noise only ever adds.

#[cfg(target_arch = "x86_64")]
use cnd_core::{
    cpu_model,
    hazmat::{scan_fn, Job},
    Backend, NonceBits, NonceFormat, Puzzle, DEFAULT_BLOCK,
};

/// Prints and returns the cycles one run of the `asm!` lines takes, divided by
/// `per`; `cycle` is the TSC ticks per core cycle. The lines may use and clobber
/// every `xmm` register the legacy SHA instructions can name, and 256 bytes of
/// scratch memory at `{scratch}`.
#[cfg(target_arch = "x86_64")]
macro_rules! measure {
    ($cycle:expr, $name:literal, $per:expr, $($line:expr),+) => {{
        let mut scratch = [0u64; 32];
        let scratch = scratch.as_mut_ptr();
        // SAFETY: the CPU has the instructions the lines use (each caller checks);
        // the lines only touch the xmm registers declared clobbered and the 256
        // bytes at `scratch`.
        let ticks = best_ticks(|| unsafe {
            std::arch::asm!(
                "/* scratch memory: {scratch} */",
                $($line,)+
                scratch = in(reg) scratch,
                out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
                out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _,
                out("xmm8") _, out("xmm9") _, out("xmm10") _, out("xmm11") _,
                out("xmm12") _, out("xmm13") _, out("xmm14") _, out("xmm15") _,
                options(nostack, att_syntax),
            );
        });
        let cycles = ticks / $cycle / $per;
        println!("{:<52} {:5.2} cycles", $name, cycles);
        cycles
    }};
}

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
    let rnds2_latency = measure!(
        cycle,
        "sha256rnds2, latency (1 chain)",
        8.0,
        ".rept 8",
        "sha256rnds2 %xmm0, %xmm9, %xmm1",
        ".endr"
    );
    let rnds2_throughput = measure!(
        cycle,
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
        cycle,
        "sha256msg1, latency (1 chain)",
        8.0,
        ".rept 8",
        "sha256msg1 %xmm10, %xmm1",
        ".endr"
    );
    measure!(
        cycle,
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
        cycle,
        "sha256msg2, latency (1 chain)",
        8.0,
        ".rept 8",
        "sha256msg2 %xmm10, %xmm1",
        ".endr"
    );
    measure!(
        cycle,
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
        cycle,
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
        cycle,
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
    if std::arch::is_x86_feature_detected!("avx") {
        pipes_and_floors(cycle, rnds2_latency);
    }
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
        "  its floor on the round unit alone",
        63.0 * rnds2_throughput
    );
}

/// Whether the schedule's instructions and the `pshufd` that halves each `K + W`
/// compete for the same pipes (on Zen 4 they do: the sum of the parts is slower
/// than the slowest part), then two floors for the `shani` loop: its instruction
/// mix with no dependencies at all, and its rounds alone (no schedule) in four
/// chains with hand-allocated registers; and the R (see docs/performance.md)
/// each floor would give.
#[cfg(target_arch = "x86_64")]
fn pipes_and_floors(cycle: f64, rnds2_latency: f64) {
    /// `sha256rnds2` per nonce in the `shani` loop (objdump: 124 per 2 nonces).
    const NONCE_RNDS2: f64 = 62.0;
    // 3 msg1 into xmm10..12 and 3 msg2 into xmm13..15 (each register once per
    // block, far below their latency), and 4 pshufd + 3 palignr only written.
    macro_rules! msg_ops {
        () => {
            ".irp r, 10, 11, 12\nsha256msg1 %xmm9, %xmm\\r\n.endr\n\
             .irp r, 13, 14, 15\nsha256msg2 %xmm9, %xmm\\r\n.endr"
        };
    }
    macro_rules! shuffle_ops {
        () => {
            ".rept 4\nvpshufd $0x0e, %xmm9, %xmm7\n.endr\n\
             .rept 3\nvpalignr $4, %xmm9, %xmm9, %xmm8\n.endr"
        };
    }
    measure!(
        cycle,
        "4 pshufd + 3 palignr alone (per block)",
        1.0,
        shuffle_ops!()
    );
    measure!(cycle, "3 msg1 + 3 msg2 alone (per block)", 1.0, msg_ops!());
    measure!(
        cycle,
        "  with 4 pshufd + 3 palignr (per block)",
        1.0,
        msg_ops!(),
        shuffle_ops!()
    );
    // The loop's mix per 16 `sha256rnds2` (objdump of the VL loop, per 2 nonces:
    // 124 rnds2, 46 msg1, 48 msg2, 56 pshufd, 46 alignr, 106 paddd, 279 register
    // moves), the rounds on 6 chains (enough for their 4-cycle latency).
    macro_rules! mix {
        ($name:literal, $halves:literal $(, $moves:literal)?) => {
            measure!(
                cycle,
                $name,
                16.0 / NONCE_RNDS2,
                ".rept 2",
                ".irp r, 1, 2, 3, 4, 5, 6, 1, 2",
                "sha256rnds2 %xmm0, %xmm9, %xmm\\r",
                ".endr",
                msg_ops!(),
                ".rept 3",
                "vpalignr $4, %xmm9, %xmm9, %xmm8",
                ".endr",
                ".rept 7",
                "vpaddd %xmm9, %xmm9, %xmm7",
                ".endr",
                ".endr",
                $halves,
                $($moves,)?
                "nop"
            )
        };
    }
    let mix = mix!(
        "the shani loop's mix, no dependencies (per nonce)",
        ".rept 7\nvpshufd $0x0e, %xmm9, %xmm7\n.endr"
    );
    mix!(
        "  with its 279 moves per 2 nonces (per nonce)",
        ".rept 7\nvpshufd $0x0e, %xmm9, %xmm7\n.endr",
        ".rept 36\nvmovdqa %xmm9, %xmm7\n.endr"
    );
    // The second half of each `K + W` stored and reloaded (load and store ports)
    // instead of shuffled.
    let stored = mix!(
        "  K + W halves by store and reload (per nonce)",
        ".irp off, 0, 16, 32, 48, 64, 80, 96\nvmovdqu %xmm9, \\off({scratch})\nvmovq \\off+8({scratch}), %xmm7\n.endr"
    );
    // The rounds alone of 4 or 5 chains that never end, `K + W` added and halved as
    // the loop does, each chain's state pinned in two registers: 16 groups, one
    // compression per chain. Only 4 fit beside a loop's message registers.
    macro_rules! rounds_alone {
        ($name:literal, $chains:literal, $($abef_cdgh:literal),+) => {
            measure!(
                cycle,
                $name,
                $chains as f64 * 32.0 / NONCE_RNDS2,
                ".macro rounds4 abef, cdgh",
                "vpaddd %xmm13, %xmm15, %xmm0",
                "sha256rnds2 %xmm0, %xmm\\abef, %xmm\\cdgh",
                "vpshufd $0x0e, %xmm0, %xmm0",
                "sha256rnds2 %xmm0, %xmm\\cdgh, %xmm\\abef",
                ".endm",
                ".rept 16",
                $(concat!("rounds4 ", $abef_cdgh),)+
                ".endr",
                ".purgem rounds4"
            )
        };
    }
    let rounds = rounds_alone!(
        "rounds alone, 4 chains that never end (per nonce)",
        4,
        "1, 2",
        "3, 4",
        "5, 6",
        "7, 8"
    );
    rounds_alone!(
        "  5 chains (per nonce)",
        5,
        "1, 2",
        "3, 4",
        "5, 6",
        "7, 8",
        "9, 10"
    );
    // OpenSSL hashes one chain: 2 blocks of 32 dependent sha256rnds2 per 128 bytes.
    let openssl = 64.0 * rnds2_latency;
    println!(
        "R at those floors (OpenSSL: 64 dependent sha256rnds2 = {openssl:.0} cycles per 128 bytes): {:.2}, {:.2} and {:.2}",
        openssl / mix,
        openssl / stored,
        openssl / rounds
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
