//! What the SIMD instructions the hash loops use cost on this CPU, in core cycles,
//! and how close the `shani`, `avx512` and `avx2` loops come to the floors those
//! costs set:
//! `cargo run --release -p cnd-benches --example sha_costs`. It prints the CPU
//! (model name, family and model, and the generation where it knows it) first.
//!
//! SHA-NI: latency (one dependent chain) and throughput (eight independent chains)
//! of `sha256rnds2`, `sha256msg1` and `sha256msg2`, whether rounds and message
//! schedule share a unit, and whether plain vector shifts and logic do; whether the schedule competes with the
//! shuffles around it; floors for the `shani` loop (the AVX-512VL loop's instruction
//! mix and the SSE loop's, loads and stores included, without dependencies; its
//! rounds alone in 4 chains) and the R each allows; then the backend's own cycles
//! per nonce, at its stream count and at 2 to 4 (see `STREAMS` and `STREAMS_VL` in
//! `shani.rs`).
//!
//! AVX-512 (`zmm`): latency (one chain) and throughput (12 chains) of the
//! instructions the 16-lane `avx512` loop is made of (`vpaddd`, `vpternlogd`,
//! `vprold`/`vprord`, `vpsrld`, `vpxord`/`vpandd`, `vpbroadcastd` and `vmovdqu64`
//! from memory, register moves), whether rotates and adds share pipes, the floor
//! the loop's instruction mix sets (from those throughputs, and measured with no
//! dependencies), and the backend's own cycles per nonce beside it, and those of
//! `avx512x2` (the same loop on two vectors at a time).
//!
//! AVX2 (`ymm`), on every CPU that has it: the same for the 8-lane `avx2` loop
//! (`vpaddd`, `vpor`/`vpxor`/`vpandn`, `vpsrld`/`vpslld`, loads, stores, broadcasts),
//! and its mix measured at full size and at an eighth of it: where the full size is
//! slower, the loop's code is too big for the front end (Zen 3's op cache holds 4K
//! ops; the loop's iteration is 6425 instructions).
//!
//! Cycles are counted with `rdtsc`, scaled by a chain of dependent register
//! `add`s (one cycle each) timed just before and after each round, so turbo, a clock that
//! changes with the host's load and the TSC's own frequency cancel out (a round over
//! which the clock moved is run again). Each figure is the best of seven rounds: on
//! a shared machine the noise only ever adds. The backends' cycles per nonce are the
//! best and the median of 20 rounds, the backends taking turns.

#[cfg(target_arch = "x86_64")]
use cnd_core::{
    cpu_model,
    hazmat::{scan_fn, shani, Job, ScanFn},
    Backend, NonceBits, NonceFormat, Puzzle, DEFAULT_BLOCK,
};

/// Prints and returns the cycles one run of the `asm!` lines takes, divided by
/// `per`. The lines may use and clobber every `xmm` register the legacy SHA
/// instructions can name, and 256 bytes of scratch memory at `{scratch}`.
#[cfg(target_arch = "x86_64")]
macro_rules! measure {
    ($name:literal, $per:expr, $($line:expr),+) => {{
        let mut scratch = [0u64; 32];
        let scratch = scratch.as_mut_ptr();
        // SAFETY: the CPU has the instructions the lines use (each caller checks);
        // the lines only touch the xmm registers declared clobbered and the 256
        // bytes at `scratch`.
        let cycles = best_cycles(|| unsafe {
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
        let cycles = cycles / $per;
        println!("{:<52} {:5.2} cycles", $name, cycles);
        cycles
    }};
}

#[cfg(target_arch = "x86_64")]
fn main() {
    let cpu = cpu_model();
    match generation(&cpu) {
        Some(generation) => println!("CPU: {cpu}: {generation}"),
        None => println!("CPU: {cpu}"),
    }
    if std::arch::is_x86_feature_detected!("sha") {
        sha_ni();
    } else {
        println!("this CPU has no SHA-NI");
    }
    if std::arch::is_x86_feature_detected!("avx512f") {
        println!();
        zmm_costs_and_floor(&cpu);
    } else {
        println!("this CPU has no AVX-512F");
    }
    if std::arch::is_x86_feature_detected!("avx2") {
        println!();
        ymm_costs_and_floor(&cpu);
    } else {
        println!("this CPU has no AVX2");
    }
}

/// The AMD generation of a [`cpu_model`] line, from its family and model numbers
/// (AMD's own tables; `None` for other vendors and numbers not listed here).
#[cfg(target_arch = "x86_64")]
fn generation(cpu: &str) -> Option<&'static str> {
    let numbers = cpu.rsplit_once("(family ")?.1.strip_suffix(')')?;
    let (family, model) = numbers.split_once(", model ")?;
    let (family, model): (u32, u32) = (family.parse().ok()?, model.parse().ok()?);
    if !cpu.contains("AMD") {
        return None;
    }
    match (family, model) {
        (23, 0x00..=0x2f) => Some("Zen / Zen+"),
        (23, _) => Some("Zen 2"),
        (25, 0x10..=0x1f | 0x60..=0x7f | 0xa0..=0xaf) => Some("Zen 4"),
        (25, _) => Some("Zen 3"),
        (26, 0x00..=0x4f | 0x60..=0x7f) => Some("Zen 5"),
        _ => None,
    }
}

/// Core cycles per nonce of each of `scans`, one thread: the default puzzle, every
/// nonce hashed (D = 256), in runs of 2^16 nonces as `search` hands them out. Each
/// figure is the best and the median of 20 rounds of two runs, the scans taking
/// turns round by round, so that a slow spell on a shared host slows all of them,
/// not one; a median far above the best says the host was busy.
#[cfg(target_arch = "x86_64")]
fn cycles_per_nonce(scans: &[ScanFn]) -> Vec<(f64, f64)> {
    let puzzle = Puzzle::new(DEFAULT_BLOCK, 256, NonceBits::B32, NonceFormat::Binary).unwrap();
    let job = Job::new(&puzzle);
    const RUN: u32 = 1 << 16;
    let mut rounds = vec![Vec::new(); scans.len()];
    for _ in 0..20 {
        for (rounds, &scan) in rounds.iter_mut().zip(scans) {
            let cycles = best_cycles_of(1, || {
                for run in 0..2u64 {
                    assert!(job.scan(scan, run << 16, RUN).is_none());
                }
            });
            rounds.push(cycles / f64::from(2 * RUN));
        }
    }
    rounds
        .into_iter()
        .map(|mut rounds| {
            rounds.sort_by(f64::total_cmp);
            (rounds[0], rounds[rounds.len() / 2])
        })
        .collect()
}

/// The SHA-NI instructions, the floors they set for the `shani` loop, and its cycles
/// per nonce at each stream count.
#[cfg(target_arch = "x86_64")]
fn sha_ni() {
    let rnds2_latency = measure!(
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
    // Whether plain vector work competes with the rounds, as a schedule made
    // of shifts and xors instead of msg2 would.
    measure!(
        "8 sha256rnds2 + 8 psrld + 8 pxor (per rnds2; 1.00 = overlap)",
        8.0,
        ".irp r, 1, 2, 3, 4, 5, 6, 7, 8",
        "sha256rnds2 %xmm0, %xmm9, %xmm\\r",
        "psrld $7, %xmm11",
        "pxor %xmm9, %xmm12",
        ".endr"
    );
    let mixes = std::arch::is_x86_feature_detected!("avx").then(|| pipes_and_floors(rnds2_latency));
    // The shani backend itself, in the same cycles, and at other stream counts in the
    // variant this CPU runs: with AVX-512VL, S streams per batch and two batches in
    // flight (`STREAMS_VL`), else S streams (`STREAMS`).
    let (variant, shipped) = match shani::Variant::best() {
        shani::Variant::Vl => ("AVX-512VL", shani::STREAMS_VL),
        shani::Variant::Sse => ("SSE", shani::STREAMS),
    };
    let streams: [(usize, ScanFn); 3] = [
        (2, shani::scan_streams::<2>),
        (3, shani::scan_streams::<3>),
        (4, shani::scan_streams::<4>),
    ];
    let mut scans = vec![scan_fn(Backend::Shani)];
    scans.extend(streams.iter().map(|&(_, scan)| scan));
    let per_nonce = cycles_per_nonce(&scans);
    let (best, median) = per_nonce[0];
    println!(
        "{:<52} {best:5.1} cycles (median {median:.1})",
        "shani backend, per nonce (1 thread)"
    );
    println!(
        "{:<52} {:5.1} cycles (63 sha256rnds2 at the throughput above)",
        "  its floor on the round unit alone",
        63.0 * rnds2_throughput
    );
    if let Some((vl_mix, sse_mix)) = mixes {
        let mix = match shani::Variant::best() {
            shani::Variant::Vl => vl_mix,
            shani::Variant::Sse => sse_mix,
        };
        println!(
            "  against the mix of the {variant} loop ({mix:.1}): {:.2}x, {:.0}% of its speed",
            best / mix,
            100.0 * mix / best
        );
    }
    println!("  per nonce at 2 to 4 streams ({variant} variant):");
    for (&(count, _), &(best, median)) in streams.iter().zip(&per_nonce[1..]) {
        let marked = if count == shipped {
            " (the backend's)"
        } else {
            ""
        };
        println!(
            "{:<52} {best:5.1} cycles (median {median:.1})",
            format!("    {count} streams{marked}")
        );
    }
}

/// Whether the schedule's instructions and the `pshufd` that halves each `K + W`
/// compete for the same pipes (on Zen 4 they do: the sum of the parts is slower
/// than the slowest part), then two floors for the `shani` loop: its instruction
/// mix with no dependencies at all, and its rounds alone (no schedule) in four
/// chains with hand-allocated registers; and the R (see docs/performance.md)
/// each floor would give. Returns the two loops' mixes, the AVX-512VL loop's and
/// the SSE loop's, in cycles per nonce.
#[cfg(target_arch = "x86_64")]
fn pipes_and_floors(rnds2_latency: f64) -> (f64, f64) {
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
        "4 pshufd + 3 palignr alone (per block)",
        1.0,
        shuffle_ops!()
    );
    measure!("3 msg1 + 3 msg2 alone (per block)", 1.0, msg_ops!());
    measure!(
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
    // The SSE loop's own mix (objdump of its instance for the default puzzle, 3
    // streams, per 3 nonces): 186 rnds2, 69 msg1, 72 msg2, 99 pshufd, 70 palignr,
    // 105 paddd between registers and 54 of memory, 244 register moves, and, its 16
    // registers short of 3 streams' states and schedules, 150 loads and 153 stores of
    // its own; without its 100 or so scalar instructions. Interleaved evenly over
    // the rnds2 (slot `j` holds `(j + 1) * count / 186 - j * count / 186` of each
    // class), which rotate over 6 registers.
    let sse_mix = measure!(
        "the SSE loop's mix, loads and stores too (per nonce)",
        3.0,
        ".set cnd_j, 0",
        ".macro cnd_slot count, line:vararg",
        ".rept ((cnd_j + 1) * \\count / 186) - (cnd_j * \\count / 186)",
        "\\line",
        ".endr",
        ".endm",
        ".rept 31",
        ".irp r, 1, 2, 3, 4, 5, 6",
        "sha256rnds2 %xmm0, %xmm9, %xmm\\r",
        ".if (cnd_j * 69 / 186) % 2",
        "cnd_slot 69, sha256msg1 %xmm9, %xmm10",
        ".else",
        "cnd_slot 69, sha256msg1 %xmm9, %xmm11",
        ".endif",
        ".if (cnd_j * 72 / 186) % 2",
        "cnd_slot 72, sha256msg2 %xmm9, %xmm12",
        ".else",
        "cnd_slot 72, sha256msg2 %xmm9, %xmm13",
        ".endif",
        "cnd_slot 99, pshufd $0x0e, %xmm9, %xmm7",
        "cnd_slot 70, palignr $4, %xmm9, %xmm8",
        "cnd_slot 105, paddd %xmm9, %xmm14",
        "cnd_slot 54, paddd 16({scratch}), %xmm15",
        "cnd_slot 244, movdqa %xmm9, %xmm7",
        "cnd_slot 150, movdqa 32({scratch}), %xmm7",
        "cnd_slot 153, movdqa %xmm9, 128({scratch})",
        ".set cnd_j, cnd_j + 1",
        ".endr",
        ".endr",
        ".purgem cnd_slot"
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
        "R at those floors (OpenSSL: 64 dependent sha256rnds2 = {openssl:.0} cycles per 128 bytes): \
         {:.2} (VL mix), {:.2} (SSE mix), {:.2} (stored halves) and {:.2} (rounds alone)",
        openssl / mix,
        openssl / sse_mix,
        openssl / stored,
        openssl / rounds
    );
    (mix, sse_mix)
}

/// 512 zeroed bytes on a cache line of their own, for the `zmm` loads.
#[cfg(target_arch = "x86_64")]
#[repr(C, align(64))]
struct Scratch([u64; 64]);

/// `measure!` for wider registers: prints and returns the cycles one run of the `asm!`
/// lines takes, divided by `per`. The lines run 16 times in a loop inside one `asm!`
/// block compiled with `$feature`; they may use and clobber every register listed, and
/// `{t}`, a general register that is zero when the lines first run, and read and write
/// the 512 zeroed bytes at `{scratch}` (64-byte aligned). `name = const value` operands
/// may follow the lines, in brackets. `measure_zmm!` and `measure_ymm!` name the two
/// register sets.
#[cfg(target_arch = "x86_64")]
macro_rules! measure_simd {
    ($feature:tt, [$($reg:tt),+], $name:expr, $per:expr, [$($line:expr),+ $(,)?]
     $(, $op:ident = const $value:expr)*) => {{
        #[target_feature(enable = $feature)]
        unsafe fn body(scratch: *mut Scratch) {
            // SAFETY: the CPU has the feature (the caller checks); the lines only
            // touch the registers declared clobbered and the 512 bytes at `scratch`.
            unsafe {
                std::arch::asm!(
                    "/* scratch memory: {scratch} */",
                    "xor {t:e}, {t:e}",
                    "mov $16, {n:e}",
                    "2:",
                    $($line,)+
                    "dec {n:e}",
                    "jnz 2b",
                    scratch = in(reg) scratch,
                    t = out(reg) _,
                    n = out(reg) _,
                    $($op = const $value,)*
                    $(out($reg) _,)+
                    options(nostack, att_syntax),
                );
            }
        }
        let mut scratch = Scratch([0; 64]);
        let scratch: *mut Scratch = &mut scratch;
        // SAFETY: the caller runs this only where the feature was detected.
        let cycles = best_cycles_of_calls(20_000, || unsafe { body(scratch) }) / (16.0 * $per);
        println!("{:<52} {:5.2} cycles", $name, cycles);
        cycles
    }};
}

/// [`measure_simd!`] with AVX-512F and every `zmm` register.
#[cfg(target_arch = "x86_64")]
macro_rules! measure_zmm {
    ($($args:tt)+) => {
        measure_simd!(
            "avx512f",
            [
                "zmm0", "zmm1", "zmm2", "zmm3", "zmm4", "zmm5", "zmm6", "zmm7", "zmm8",
                "zmm9", "zmm10", "zmm11", "zmm12", "zmm13", "zmm14", "zmm15", "zmm16",
                "zmm17", "zmm18", "zmm19", "zmm20", "zmm21", "zmm22", "zmm23", "zmm24",
                "zmm25", "zmm26", "zmm27", "zmm28", "zmm29", "zmm30", "zmm31"
            ],
            $($args)+
        )
    };
}

/// [`measure_simd!`] with AVX2 and every `ymm` register.
#[cfg(target_arch = "x86_64")]
macro_rules! measure_ymm {
    ($($args:tt)+) => {
        measure_simd!(
            "avx2",
            [
                "ymm0", "ymm1", "ymm2", "ymm3", "ymm4", "ymm5", "ymm6", "ymm7", "ymm8",
                "ymm9", "ymm10", "ymm11", "ymm12", "ymm13", "ymm14", "ymm15"
            ],
            $($args)+
        )
    };
}

/// One op's throughput: 24 of it over 12 registers (`.irp` registers `0` to `11`,
/// named `\r` in `$line`, `%zmm\r` or `%ymm\r`), measured by `$measure`
/// (`measure_zmm` or `measure_ymm`), printed as `$name`.
#[cfg(target_arch = "x86_64")]
macro_rules! throughput_12 {
    ($measure:ident, $name:expr, $line:literal) => {
        $measure!(
            $name,
            24.0,
            [
                ".rept 2",
                ".irp r, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11",
                $line,
                ".endr",
                ".endr"
            ]
        )
    };
}

/// One op's latency (16 in one dependent chain, the lines of `.irp` register `0`) and
/// throughput (24 in 12 chains, [`throughput_12!`]), measured by `$measure`
/// (`measure_zmm` or `measure_ymm`): `$line` names its destination, which it also
/// reads, as register `\r` (`%zmm\r`, `%ymm\r`).
#[cfg(target_arch = "x86_64")]
macro_rules! latency_throughput {
    ($measure:ident, $name:literal, $line:literal) => {
        (
            $measure!(
                concat!($name, ", latency (1 chain)"),
                16.0,
                [".irp r, 0", ".rept 16", $line, ".endr", ".endr"]
            ),
            throughput_12!($measure, concat!($name, ", throughput (12 chains)"), $line),
        )
    };
}

/// The instructions one 16-nonce iteration of the `avx512` loop executes for the
/// default puzzle (binary 32-bit nonces; in a run of 2^16 the varying bytes are all in
/// word 4 of the block, so it is `run::<4>`): counted in `objdump -d` of the release
/// build, the binary nonce build, the first hash from round 5 (`compress_single`) and
/// the second (`second_h0`), the loop's compare and branch. By class, with the
/// mnemonics counted into each:
#[cfg(target_arch = "x86_64")]
mod iteration {
    /// `vprold` (the compiler's form of every `vprord` in `avx512.rs`).
    pub const ROTATES: u32 = 1052;
    /// `vpsrld` 161, `vpslld` 1.
    pub const SHIFTS: u32 = 162;
    /// `vpaddd` between registers 918, and the other ops any vector pipe runs:
    /// `vpxord` 1, `vpcmpleud` 1, `vpbroadcastd` from a general register 2.
    pub const ADDS: u32 = 922;
    /// `vpaddd` of a broadcast constant from memory (`K`, `{1to16}`).
    pub const ADDS_K: u32 = 118;
    /// `vpaddd` of a stack slot (the chaining value and spilled words).
    pub const ADDS_MEM: u32 = 42;
    /// `vpternlogd` 649 (2 of them of a broadcast constant).
    pub const TERNLOGS: u32 = 649;
    /// `vmovdqa64` between registers (the copy before each Ch and Maj, which
    /// overwrite an input).
    pub const MOVES: u32 = 240;
    /// Loads of their own: `zmm` (`vmovdqa64`, `vmovaps`) 17, `vpbroadcastd` 2,
    /// `vmovd` 2.
    pub const LOADS: u32 = 21;
    /// Loads folded into ops counted above, besides `ADDS_K` and `ADDS_MEM`: the 2
    /// `vpternlogd`, the `vpxord` and the compare.
    pub const FOLDED_LOADS: u32 = 4;
    /// `zmm` stores (`vmovdqa64`, `vmovaps`).
    pub const STORES: u32 = 17;
    /// General-register instructions (loop control, the nonce's word, the mask).
    pub const SCALAR: u32 = 55;
    /// Every instruction of the iteration (3279).
    pub const ALL: u32 = ROTATES
        + SHIFTS
        + ADDS
        + ADDS_K
        + ADDS_MEM
        + TERNLOGS
        + MOVES
        + LOADS
        + STORES
        + SCALAR
        + 1; // the mask's `kmovw`
    const _: () = assert!(ALL == 3279);
}

/// What the `zmm` instructions of the `avx512` backend cost, the floor they set for
/// its loop, and the loop's own cycles per nonce beside it.
#[cfg(target_arch = "x86_64")]
fn zmm_costs_and_floor(cpu: &str) {
    println!("zmm instructions on {cpu}:");
    let (_, add) = latency_throughput!(measure_zmm, "vpaddd", "vpaddd %zmm31, %zmm\\r, %zmm\\r");
    let (_, add_k) = latency_throughput!(
        measure_zmm,
        "vpaddd m32{1to16} (+ K)",
        "vpaddd 64({scratch}){{1to16}}, %zmm\\r, %zmm\\r"
    );
    let (_, ternlog) = latency_throughput!(
        measure_zmm,
        "vpternlogd",
        "vpternlogd $0x96, %zmm30, %zmm31, %zmm\\r"
    );
    let (_, rotate) = latency_throughput!(measure_zmm, "vprold", "vprold $7, %zmm\\r, %zmm\\r");
    latency_throughput!(measure_zmm, "vprord", "vprord $7, %zmm\\r, %zmm\\r");
    let (_, shift) = latency_throughput!(
        measure_zmm,
        "vpsrld (immediate)",
        "vpsrld $3, %zmm\\r, %zmm\\r"
    );
    latency_throughput!(measure_zmm, "vpxord", "vpxord %zmm31, %zmm\\r, %zmm\\r");
    latency_throughput!(measure_zmm, "vpandd", "vpandd %zmm31, %zmm\\r, %zmm\\r");
    // A register move's latency in a chain of two; its throughput from a register no
    // instruction writes. Latency near 0 and throughput at the dispatch width (6 per
    // cycle on Zen 4) mean the rename stage removes it, no pipe runs it.
    measure_zmm!(
        "vmovdqa64 zmm, zmm, latency (1 chain)",
        16.0,
        [
            ".rept 8",
            "vmovdqa64 %zmm0, %zmm1",
            "vmovdqa64 %zmm1, %zmm0",
            ".endr"
        ]
    );
    let moves = throughput_12!(
        measure_zmm,
        "vmovdqa64 zmm, zmm, throughput (12 registers)",
        "vmovdqa64 %zmm31, %zmm\\r"
    );
    // Loads: a chain through the address (the loaded zero moved to the address
    // register, so each load waits for the last), and independent loads.
    measure_zmm!(
        "vpbroadcastd m32 + vmovd to its address (1 chain)",
        16.0,
        [
            ".rept 16",
            "vpbroadcastd ({scratch},{t},1), %zmm0",
            "vmovd %xmm0, {t:e}",
            ".endr"
        ]
    );
    let broadcast = throughput_12!(
        measure_zmm,
        "vpbroadcastd m32, throughput (12 registers)",
        "vpbroadcastd 64({scratch}), %zmm\\r"
    );
    measure_zmm!(
        "vmovdqu64 m512 + vmovd to its address (1 chain)",
        16.0,
        [
            ".rept 16",
            "vmovdqu64 ({scratch},{t},1), %zmm0",
            "vmovd %xmm0, {t:e}",
            ".endr"
        ]
    );
    let load = throughput_12!(
        measure_zmm,
        "vmovdqu64 m512, throughput (12 registers)",
        "vmovdqu64 64({scratch}), %zmm\\r"
    );
    measure_zmm!(
        "vmovd xmm -> r32 -> xmm, round trip (1 chain)",
        16.0,
        [
            ".rept 16",
            "vmovd %xmm0, {t:e}",
            "vmovd {t:e}, %xmm0",
            ".endr"
        ]
    );
    // Whether rotates and the other ops share pipes: 8 rotates beside 16 adds (or
    // ternlogs) in 12 chains. In one pool of pipes, where a rotate holds twice the
    // pipe time of an add (half its throughput) and the adds may use every pipe, the
    // 24 take 12 cycles; if the adds could not use the rotates' pipes, 16.
    measure_zmm!(
        "8 vprold + 16 vpaddd (per op; 0.50 pooled, 0.67 not)",
        24.0,
        [
            ".irp r, 0, 1, 2, 3, 4, 5, 6, 7",
            "vprold $7, %zmm\\r, %zmm\\r",
            ".endr",
            ".rept 4",
            ".irp r, 8, 9, 10, 11",
            "vpaddd %zmm31, %zmm\\r, %zmm\\r",
            ".endr",
            ".endr"
        ]
    );
    measure_zmm!(
        "8 vprold + 16 vpternlogd (per op; likewise)",
        24.0,
        [
            ".irp r, 0, 1, 2, 3, 4, 5, 6, 7",
            "vprold $7, %zmm\\r, %zmm\\r",
            ".endr",
            ".rept 4",
            ".irp r, 8, 9, 10, 11",
            "vpternlogd $0x96, %zmm30, %zmm31, %zmm\\r",
            ".endr",
            ".endr"
        ]
    );

    // The floor: one 16-nonce iteration's instructions (`iteration`), each class at
    // its throughput above, bounded by four resources, the largest of which sets it:
    // - the rotate and shift pipes, which nothing else needs: their ops at their
    //   throughput;
    // - the pool of every vector pipe: each op's share of it, its throughput for the
    //   ops every pipe runs and half of it for rotates and shifts (they run on half
    //   the pipes, the pair measured above);
    // - the loads (with the K broadcasts and the stack operands) at the slower of
    //   the two load throughputs;
    // - dispatch: every instruction at the rate of the register moves, which the
    //   rename stage removes, so that rate is the dispatch width.
    use iteration::*;
    let n = |count: u32, cycles: f64| f64::from(count) * cycles / 16.0;
    let shift_pipes = n(ROTATES, rotate) + n(SHIFTS, shift);
    let pool =
        n(ADDS, add) + n(ADDS_K + ADDS_MEM, add_k) + n(TERNLOGS, ternlog) + shift_pipes / 2.0;
    let memory = n(
        ADDS_K + ADDS_MEM + LOADS + FOLDED_LOADS,
        load.max(broadcast),
    );
    let dispatch = n(ALL, moves);
    println!(
        "avx512 loop, per nonce (objdump of run::<4>): {:.1} rotates, {:.1} shifts, {:.1} adds \
         (+ {:.1} of K, + {:.1} from the stack), {:.1} ternlogs, {:.1} moves, {:.1} loads, \
         {:.1} stores, {:.1} scalar; {:.1} instructions",
        n(ROTATES, 1.0),
        n(SHIFTS, 1.0),
        n(ADDS, 1.0),
        n(ADDS_K, 1.0),
        n(ADDS_MEM, 1.0),
        n(TERNLOGS, 1.0),
        n(MOVES, 1.0),
        n(LOADS, 1.0),
        n(STORES, 1.0),
        n(SCALAR, 1.0),
        n(ALL, 1.0),
    );
    println!(
        "{:<52} {:5.1} cycles",
        "  its rotates and shifts on their pipes", shift_pipes
    );
    println!(
        "{:<52} {:5.1} cycles",
        "  every vector op on the pool of pipes", pool
    );
    println!(
        "{:<52} {:5.1} cycles",
        "  its loads at the load throughput", memory
    );
    println!(
        "{:<52} {:5.1} cycles",
        "  its instructions at the moves' rate (dispatch)", dispatch
    );
    let floor = shift_pipes.max(pool).max(memory).max(dispatch);
    // The same mix run with no dependencies between its instructions, interleaved
    // evenly (the slot `j` of ROTATES holds one rotate and, of every other class,
    // one where `j * count / ROTATES` steps up): the floor as the CPU sees it.
    let mix = measure_zmm!(
        "  its mix, no dependencies (per nonce)",
        16.0,
        [
            ".set cnd_j, 0",
            ".rept {rotates}",
            "vprold $7, %zmm30, %zmm1",
            ".if ((cnd_j + 1) * {shifts} / {rotates}) - (cnd_j * {shifts} / {rotates})",
            "vpsrld $3, %zmm30, %zmm2",
            ".endif",
            ".if ((cnd_j + 1) * {adds} / {rotates}) - (cnd_j * {adds} / {rotates})",
            "vpaddd %zmm30, %zmm31, %zmm3",
            ".endif",
            ".if ((cnd_j + 1) * {adds_k} / {rotates}) - (cnd_j * {adds_k} / {rotates})",
            "vpaddd ({scratch}){{1to16}}, %zmm30, %zmm4",
            ".endif",
            ".if ((cnd_j + 1) * {adds_mem} / {rotates}) - (cnd_j * {adds_mem} / {rotates})",
            "vpaddd 64({scratch}), %zmm30, %zmm5",
            ".endif",
            ".if ((cnd_j + 1) * {ternlogs} / {rotates}) - (cnd_j * {ternlogs} / {rotates})",
            "vpternlogd $0x96, %zmm30, %zmm31, %zmm1",
            ".endif",
            ".if ((cnd_j + 1) * {moves} / {rotates}) - (cnd_j * {moves} / {rotates})",
            "vmovdqa64 %zmm30, %zmm6",
            ".endif",
            ".if ((cnd_j + 1) * {loads} / {rotates}) - (cnd_j * {loads} / {rotates})",
            "vmovdqa64 128({scratch}), %zmm7",
            ".endif",
            ".if ((cnd_j + 1) * {stores} / {rotates}) - (cnd_j * {stores} / {rotates})",
            "vmovdqa64 %zmm30, 192({scratch})",
            ".endif",
            ".set cnd_j, cnd_j + 1",
            ".endr"
        ],
        rotates = const ROTATES,
        shifts = const SHIFTS,
        adds = const ADDS,
        adds_k = const ADDS_K,
        adds_mem = const ADDS_MEM,
        ternlogs = const TERNLOGS,
        moves = const MOVES,
        loads = const LOADS,
        stores = const STORES
    );
    // The backend itself, and its loop on two vectors at a time.
    let backends = [
        ("avx512 backend, per nonce (1 thread)", Backend::Avx512),
        (
            "avx512x2 backend (the same loop on 2 vectors)",
            Backend::Avx512x2,
        ),
    ];
    backends_against(&backends, floor, mix);
}

/// Each backend's cycles per nonce (they take turns), against a loop's `floor` from
/// the instructions' throughputs and its `mix` measured without dependencies.
#[cfg(target_arch = "x86_64")]
fn backends_against(backends: &[(&str, Backend)], floor: f64, mix: f64) {
    let scans: Vec<ScanFn> = backends.iter().map(|&(_, b)| scan_fn(b)).collect();
    for ((name, _), (today, median)) in backends.iter().zip(cycles_per_nonce(&scans)) {
        println!("{name:<52} {today:5.1} cycles (median {median:.1})");
        println!(
            "  against the floor of the throughputs ({floor:.1}): {:.2}x, {:.0}% of its speed; \
             against the mix measured ({mix:.1}): {:.2}x, {:.0}%",
            today / floor,
            100.0 * floor / today,
            today / mix,
            100.0 * mix / today
        );
    }
}

/// The instructions one 8-nonce iteration of the `avx2` loop executes for the default
/// puzzle, counted as for [`iteration`]: in `objdump -d` of the release build, the
/// blocks of `cnd_core::backend::avx2::RUNS::run` that a `perf record` of `cnd-cli
/// bench --backend avx2 --threads 1` samples (the loop head, the nonce's word,
/// `compress_single`, `second_h0`, the compare and the branch back; the branch over
/// `compress_const` is not taken). By class:
#[cfg(target_arch = "x86_64")]
mod iteration_avx2 {
    /// `vpsrld` 1213 and `vpslld` 1053 (AVX2 has no rotate: each is two shifts and
    /// an `or`; 2 of them shift by a count from memory).
    pub const SHIFTS: u32 = 2266;
    /// The ops any vector pipe runs, between registers: `vpor` 1417, `vpaddd` 913,
    /// `vpxor` 810, `vpand` 365, `vpandn` 121, `vpcmpeqd` 1, `vpminud` 1.
    pub const OPS: u32 = 3628;
    /// `vpaddd` of a memory operand (`K`, splat once per call, and spilled words).
    pub const ADDS_MEM: u32 = 165;
    /// `vpbroadcastd` from memory (the message's constant words).
    pub const BROADCASTS: u32 = 81;
    /// `vpbroadcastd` from an `xmm` register (the nonce's word).
    pub const SHUFFLES: u32 = 2;
    /// Loads of their own: `vmovdqa` 82, `vmovaps` 17, `vmovd` 1.
    pub const LOADS: u32 = 100;
    /// `ymm` stores: `vmovdqa` 131, `vmovaps` 17 (16 registers hold less than a
    /// state, its message and its schedule).
    pub const STORES: u32 = 148;
    /// Register moves: `vmovdqa` 11, `vmovd` 1, `vmovmskps` 1.
    pub const MOVES: u32 = 13;
    /// General-register instructions (loop control, the nonce's word, the mask).
    pub const SCALAR: u32 = 22;
    /// Every instruction of the iteration (6425).
    pub const ALL: u32 =
        SHIFTS + OPS + ADDS_MEM + BROADCASTS + SHUFFLES + LOADS + STORES + MOVES + SCALAR;
    const _: () = assert!(ALL == 6425);
}

/// What the `ymm` instructions of the `avx2` backend cost, the floor they set for its
/// loop, and the loop's own cycles per nonce beside it: the same model as
/// [`zmm_costs_and_floor`], for 8 lanes and rotates made of shifts.
#[cfg(target_arch = "x86_64")]
fn ymm_costs_and_floor(cpu: &str) {
    println!("ymm instructions on {cpu}:");
    let (_, add) = latency_throughput!(measure_ymm, "vpaddd", "vpaddd %ymm15, %ymm\\r, %ymm\\r");
    let (_, add_mem) = latency_throughput!(
        measure_ymm,
        "vpaddd m256",
        "vpaddd 64({scratch}), %ymm\\r, %ymm\\r"
    );
    let (_, or) = latency_throughput!(measure_ymm, "vpor", "vpor %ymm15, %ymm\\r, %ymm\\r");
    latency_throughput!(measure_ymm, "vpxor", "vpxor %ymm15, %ymm\\r, %ymm\\r");
    latency_throughput!(measure_ymm, "vpandn", "vpandn %ymm15, %ymm\\r, %ymm\\r");
    let (_, shift) = latency_throughput!(
        measure_ymm,
        "vpsrld (immediate)",
        "vpsrld $3, %ymm\\r, %ymm\\r"
    );
    latency_throughput!(
        measure_ymm,
        "vpslld (immediate)",
        "vpslld $3, %ymm\\r, %ymm\\r"
    );
    let moves = throughput_12!(
        measure_ymm,
        "vmovdqa ymm, ymm, throughput (12 registers)",
        "vmovdqa %ymm15, %ymm\\r"
    );
    let broadcast = throughput_12!(
        measure_ymm,
        "vpbroadcastd m32, throughput (12 registers)",
        "vpbroadcastd 64({scratch}), %ymm\\r"
    );
    let load = throughput_12!(
        measure_ymm,
        "vmovdqa m256, throughput (12 registers)",
        "vmovdqa 64({scratch}), %ymm\\r"
    );
    let store = measure_ymm!(
        "vmovdqa ymm -> m256, throughput (8 addresses)",
        24.0,
        [
            ".rept 3",
            ".irp off, 0, 32, 64, 96, 128, 160, 192, 224",
            "vmovdqa %ymm15, \\off({scratch})",
            ".endr",
            ".endr"
        ]
    );
    // Whether shifts and the other ops share pipes, as for zmm: 8 shifts beside 16
    // adds in 12 chains. In one pool of pipes, where a shift holds the share of it
    // that its throughput says (half the add's rate: half the pipes), the 24 take
    // 8 shifts' half-time plus 16 adds' time; if the adds could not use the shifts'
    // pipes, the longer of the shifts' time and the adds' on what is left.
    let pooled = (8.0 * shift / 2.0 + 16.0 * add) / 24.0;
    let apart = (8.0 * shift).max(16.0 * add * shift / (shift - add).max(add)) / 24.0;
    measure_ymm!(
        format!("8 vpsrld + 16 vpaddd (per op; {pooled:.2} pooled, {apart:.2} not)"),
        24.0,
        [
            ".irp r, 0, 1, 2, 3, 4, 5, 6, 7",
            "vpsrld $7, %ymm\\r, %ymm\\r",
            ".endr",
            ".rept 4",
            ".irp r, 8, 9, 10, 11",
            "vpaddd %ymm15, %ymm\\r, %ymm\\r",
            ".endr",
            ".endr"
        ]
    );

    // The floor, as for zmm: the shift pipes alone, the pool of every vector pipe
    // (each shift at half its throughput), the loads and stores, dispatch.
    use iteration_avx2::*;
    let n = |count: u32, cycles: f64| f64::from(count) * cycles / 8.0;
    let shift_pipes = n(SHIFTS, shift);
    let pool = n(OPS + SHUFFLES, add.max(or)) + n(ADDS_MEM, add_mem) + shift_pipes / 2.0;
    let loads = n(ADDS_MEM + LOADS, load) + n(BROADCASTS, broadcast);
    let stores = n(STORES, store);
    let dispatch = n(ALL, moves);
    println!(
        "avx2 loop, per nonce (objdump of run): {:.1} shifts, {:.1} adds and logic ops \
         (+ {:.1} from memory), {:.1} broadcasts, {:.1} loads, {:.1} stores, {:.1} moves, \
         {:.1} scalar; {:.1} instructions",
        n(SHIFTS, 1.0),
        n(OPS, 1.0),
        n(ADDS_MEM, 1.0),
        n(BROADCASTS, 1.0),
        n(LOADS, 1.0),
        n(STORES, 1.0),
        n(MOVES, 1.0),
        n(SCALAR, 1.0),
        n(ALL, 1.0),
    );
    for (what, cycles) in [
        ("  its shifts on their pipes", shift_pipes),
        ("  every vector op on the pool of pipes", pool),
        ("  its loads at the load throughput", loads),
        ("  its stores at the store throughput", stores),
        ("  its instructions at the moves' rate (dispatch)", dispatch),
    ] {
        println!("{what:<52} {cycles:5.1} cycles");
    }
    let floor = shift_pipes.max(pool).max(loads).max(stores).max(dispatch);
    // The mix with no dependencies, interleaved evenly (slot `j` of the shifts holds
    // one shift and `(j + 1) * count / SHIFTS - j * count / SHIFTS` of each other
    // class), in several registers per class so no chain is long: at full size (6425
    // instructions, 32 KiB of code, as the loop's iteration), and the same
    // proportions at an eighth of it, which fits an op cache of 4K ops (Zen 3's).
    macro_rules! mix {
        ($name:literal, $eighths:literal) => {
            measure_ymm!(
                $name,
                $eighths as f64,
                [
                    ".set cnd_j, 0",
                    ".rept {shifts} / 2",
                    ".irp r, 0, 1",
                    "vpsrld $7, %ymm15, %ymm\\r",
                    ".endr",
                    ".irp r, 2, 3, 4",
                    ".rept ((cnd_j + 2) * {ops} / {shifts}) - (cnd_j * {ops} / {shifts})",
                    "vpor %ymm14, %ymm15, %ymm\\r",
                    ".endr",
                    ".endr",
                    ".rept ((cnd_j + 2) * {adds_mem} / {shifts}) - (cnd_j * {adds_mem} / {shifts})",
                    "vpaddd 64({scratch}), %ymm15, %ymm5",
                    ".endr",
                    ".rept ((cnd_j + 2) * {broadcasts} / {shifts}) - (cnd_j * {broadcasts} / {shifts})",
                    "vpbroadcastd 128({scratch}), %ymm6",
                    ".endr",
                    ".rept ((cnd_j + 2) * {loads} / {shifts}) - (cnd_j * {loads} / {shifts})",
                    "vmovdqa 192({scratch}), %ymm7",
                    ".endr",
                    ".rept ((cnd_j + 2) * {stores} / {shifts}) - (cnd_j * {stores} / {shifts})",
                    "vmovdqa %ymm15, 256({scratch})",
                    ".endr",
                    ".rept ((cnd_j + 2) * {moves} / {shifts}) - (cnd_j * {moves} / {shifts})",
                    "vmovdqa %ymm15, %ymm8",
                    ".endr",
                    ".set cnd_j, cnd_j + 2",
                    ".endr"
                ],
                shifts = const SHIFTS * $eighths / 8,
                ops = const OPS * $eighths / 24,
                adds_mem = const ADDS_MEM * $eighths / 8,
                broadcasts = const BROADCASTS * $eighths / 8,
                loads = const LOADS * $eighths / 8,
                stores = const STORES * $eighths / 8,
                moves = const MOVES * $eighths / 8
            )
        };
    }
    let mix = mix!("  its mix, no dependencies (per nonce)", 8);
    let small = mix!("  the same at 1/8 of its size (per nonce)", 1);
    backends_against(
        &[("avx2 backend, per nonce (1 thread)", Backend::Avx2)],
        floor,
        mix,
    );
    println!(
        "  the mix at full size takes {:.2}x its eighth: above 1, the iteration is too \
         big for the front end",
        mix / small
    );
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    println!("SHA-NI and AVX-512 are x86-64 only");
}

/// The fewest core cycles one call of `body` took, over 7 rounds of 200,000 calls.
#[cfg(target_arch = "x86_64")]
fn best_cycles(body: impl FnMut()) -> f64 {
    best_cycles_of_calls(200_000, body)
}

/// The fewest core cycles one call of `body` took, over 7 rounds of `calls` calls.
#[cfg(target_arch = "x86_64")]
fn best_cycles_of_calls(calls: u64, mut body: impl FnMut()) -> f64 {
    best_cycles_of(7, || {
        for _ in 0..calls {
            body();
        }
    }) / calls as f64
}

/// The fewest core cycles one call of `body` took, over `rounds` calls: TSC ticks
/// divided by the ticks per core cycle measured just before and just after that call.
/// A call whose two clock readings differ by more than 1% (a clock that changed
/// while it ran, as a shared host's boost does) is not counted, and is run again, up
/// to 8 times as many calls in all (if none was steady, the best of them all).
#[cfg(target_arch = "x86_64")]
fn best_cycles_of(rounds: usize, mut body: impl FnMut()) -> f64 {
    let (mut steady, mut any) = (f64::INFINITY, f64::INFINITY);
    let mut counted = 0;
    for _ in 0..8 * rounds {
        let before = ticks_per_cycle();
        let ticks = ticks(&mut body);
        let after = ticks_per_cycle();
        let cycles = ticks / before.min(after);
        any = any.min(cycles);
        if (before - after).abs() <= 0.01 * before.min(after) {
            steady = steady.min(cycles);
            counted += 1;
            if counted == rounds {
                break;
            }
        }
    }
    if counted > 0 {
        steady
    } else {
        any
    }
}

/// TSC ticks per core cycle now: the fewest ticks of 4 chains of 4096 dependent
/// register-to-register `add`s (one cycle each), a few microseconds in all. Not
/// `add $1`: Intel's Golden Cove renamer folds chains of immediate adds, which then
/// run several a cycle (every figure read 5.3x too high on a Xeon of that core).
#[cfg(target_arch = "x86_64")]
fn ticks_per_cycle() -> f64 {
    (0..4)
        .map(|_| {
            ticks(|| {
                // SAFETY: integer adds on scratch registers.
                unsafe {
                    std::arch::asm!(
                        "mov $64, {n:e}",
                        "mov $1, {one}",
                        "2:",
                        ".rept 64",
                        "add {one}, {x}",
                        ".endr",
                        "dec {n:e}",
                        "jnz 2b",
                        x = out(reg) _,
                        one = out(reg) _,
                        n = out(reg) _,
                        options(nomem, nostack, att_syntax),
                    )
                }
            })
        })
        .fold(f64::INFINITY, f64::min)
        / 4096.0
}

/// The TSC ticks one call of `body` took.
#[cfg(target_arch = "x86_64")]
fn ticks(mut body: impl FnMut()) -> f64 {
    // SAFETY: rdtsc has no preconditions on x86-64.
    let from = unsafe { std::arch::x86_64::_rdtsc() };
    body();
    // SAFETY: as above.
    let to = unsafe { std::arch::x86_64::_rdtsc() };
    (to - from) as f64
}
