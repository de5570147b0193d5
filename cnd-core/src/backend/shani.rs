//! x86-64 SHA extensions (SHA-NI): `sha256rnds2` does two rounds, `sha256msg1/2` the
//! message schedule. One nonce's rounds form a long dependency chain (each
//! `sha256rnds2` waits for the previous one, 3 to 4 cycles), so [`STREAMS`]
//! independent nonces are interleaved to keep the SHA unit busy every cycle.
//!
//! Everything is straight-line code: the 16 groups of four rounds and the message
//! schedule are unrolled by macros, the message lives in registers (or, past the
//! 16 `xmm` registers the legacy-encoded SHA instructions can name, in spill slots
//! the compiler chooses), and one instance of the loop is compiled per round pair
//! the first varying message word falls in (`RUNS`). What `lanes.rs` does once per
//! call is done here too:
//! - the nonce bytes the whole run shares are message constants, a leading tail
//!   block without varying bytes is compressed into the chaining value, and a
//!   trailing one has its whole `K + W` precomputed;
//! - the rounds before the first varying word run once, on scalars (from the even
//!   round at or before it: `sha256rnds2` does rounds in pairs);
//! - message groups without varying words are loop invariants: the compiler hoists
//!   every schedule step whose inputs are all constant;
//! - the second hash's padding words are constants, and only its first word `H0`
//!   is extracted and compared with the threshold.
//!
//! Two [`Variant`]s of the loop are compiled: one for SHA-NI with SSE4.1 alone, and
//! one that also has AVX-512VL's sixteen extra `xmm` registers for the message
//! schedule and keeps two batches in flight (the second hash of one beside the
//! first hash of the next); [`scan`] runs the one this CPU can.
//!
//! Nonces are encoded on scalars (integer ports, idle while the SHA unit works) as
//! one 64-bit integer `x` per stream whose bytes, lowest first, are the nonce's last
//! eight bytes: the binary nonce itself, or the decimal digits as ASCII, advanced by
//! a SWAR decimal increment (no per-digit loop). A message word is then
//! `fixed | x << l >> r`, two words become one `movq`.

use std::arch::x86_64::*;

use super::scalar::{compress as scalar_compress, K};
use super::{Template, IV};
use crate::puzzle::NonceFormat;

/// Independent nonces in flight per thread in [`Variant::Sse`]. Measured on AMD EPYC (Zen 3: one
/// `sha256rnds2` per cycle, 4 cycles latency), MH/s per CPU-second on the default
/// block, 1 thread, same run: 3 streams 24.7, 4 streams 19.1, 5 streams 12.1 (the
/// SHA instructions can only name `xmm0..15`: with 4 and 5 streams the message
/// schedule spills more, and the loop gets slower, not faster). Keeping the message
/// in memory on purpose (volatile accesses) was slower still: 18.1, 16.5 and 11.4
/// for 3, 4 and 5 streams, against `avx2`'s 12.0 in the same run. The rounds
/// themselves are one `asm!` block per group of four rounds (see `interleaved!`).
///
/// Also tried (Zen 3, where `sha256rnds2` issues every cycle with 4 cycles latency
/// and `sha256msg2` only every second cycle: `examples/sha_costs.rs` measures
/// them): a two- and three-stage pipeline, the first hash of 3 nonces and the second
/// hash of 3 earlier ones in one `asm!` block per step, 6 chains with their states
/// pinned in xmm1..12 and `K + W` read from tables in memory. With the rounds
/// alone (schedules left out, so wrong hashes) it ran 1.5× this loop, 34.7 against
/// 23.1 M nonces per CPU-second: the rounds are not what holds this loop back. With
/// the schedules in the block (in memory, as the registers are taken) it ran at
/// 0.65–0.85× this loop: each schedule group waits on the store of the one before
/// it (about 13 cycles, 150–180 cycles for one compression's 36 group-streams,
/// measured alone), and the out-of-order window did not overlap that with the
/// rounds. Left to the compiler with intrinsics, the states were spilled between
/// groups, in the middle of their chains: 0.8×.
///
/// On Zen 4 (SSE variant, 5 alternated pairs, median MH/s per CPU-second): 3 streams
/// one batch at a time 28.0, 2 streams with two batches in flight 28.2, 3 with two
/// in flight 26.4 (3 runs): without the extra registers, interleaving the batches
/// does not pay.
///
/// Again on Zen 3 (family 25, model 1) on 2026-12-04, core cycles per nonce from
/// `sha_costs` (best of 20 rounds, the quiet runs of 11): 2 streams 135.8, 3 streams
/// 131.1, 4 streams 224.2, so 3 stays, the count Zen 4 gives this variant too. The
/// same loop compiled with AVX as well (the compiler's adds, shuffles and copies in
/// VEX three-operand form, fewer moves) took 136–137 cycles against 131–135, 0.96×.
pub const STREAMS: usize = 3;

/// Streams per thread where AVX-512VL is present (see [`Variant::Vl`]): two sets of
/// 2, the second hash of one batch interleaved with the first hash of the next.
/// Measured on AMD EPYC Zen 4, MH/s per CPU-second, default block, 1 thread, 5
/// alternated pairs: this 31.9–32.9 (median 32.4), 3 streams without the
/// interleaving 30.4–31.7 (30.8); 3 streams interleaved, and 4, were no better.
///
/// Also tried on Zen 4 and dropped (same run, MH/s per CPU-second):
/// - each hash in two phases, the schedules of 4 to 7 streams into a `K + W`
///   buffer in memory and then the rounds reading `xmm0` straight from it (only
///   loads between the `sha256rnds2`s): 18.2–18.4 against 32.4;
/// - from group 4 on, schedule and rounds of two chains in one `asm!` block with the
///   message in `xmm16..31` (copied low only for the SHA instructions), so that no
///   chain's values move between groups: 32.4–33.0 against 29.5–31.0 for the
///   compiler's code in the same build, within the host's noise of this loop; the
///   block's four copies per chain and group cost what the compiler's moves did.
///
/// This loop executes about 420 instructions per nonce (objdump of the loop: per
/// 2 nonces 843, of which 124 `sha256rnds2`, 94 `msg1`/`msg2`, 279 register moves,
/// and since the `pshufb` message build about 50 scalar ones, down from 160) in
/// 106–117 cycles (`sha_costs`, three runs). Fewer moves would not win much:
/// - the whole compression in assembly with registers allocated by hand
///   (`benches/experiments/hand_asm.py`: 4 chains with 3 or 4 moves per group, or 3
///   chains with 2, the schedule up to three groups ahead; checked against a C
///   reference) took 51–53 cycles per compression, 98–102 per nonce before any
///   message building or checking;
/// - `sha_costs` measures the floors without dependencies: this loop's instruction
///   mix 78 cycles per nonce (the schedule's `msg1`/`msg2` and the `pshufd`/`palignr`
///   compete for the same pipes), the rounds alone in 4 chains 78 (in 5 chains 68.5,
///   but 5 chains do not fit in `xmm0..15`).
pub const STREAMS_VL: usize = 2;

/// How the loop is compiled: which registers it may use, whether the second hash of
/// one batch runs beside the first hash of the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// SHA-NI and SSE4.1 only: 16 `xmm` registers, one batch at a time.
    Sse,
    /// With AVX-512VL: the message schedule also has `xmm16..31` (the SHA
    /// instructions themselves can only name `xmm0..15`), and two batches are in
    /// flight. On Zen 4, about 1.16× [`Variant::Sse`] (32.4 against 28.0 M nonces per
    /// CPU-second, medians of 5 alternated pairs, each at its best stream count).
    Vl,
}

impl Variant {
    /// The variant this CPU runs best: [`Variant::Vl`] where AVX-512VL is present.
    pub fn best() -> Variant {
        if is_x86_feature_detected!("avx512vl") {
            Variant::Vl
        } else {
            Variant::Sse
        }
    }
}

/// Whether this CPU can run the backend.
pub fn is_available() -> bool {
    is_x86_feature_detected!("sha") && is_x86_feature_detected!("sse4.1")
}

/// [`ScanFn`](super::ScanFn) for the shani backend. Callers check [`is_available`]
/// first (`Backend::from_name` does); without SHA-NI it panics rather than fault.
pub fn scan(t: &Template, start: u64, count: u32) -> Option<u64> {
    match Variant::best() {
        Variant::Vl => scan_variant::<STREAMS_VL>(Variant::Vl, t, start, count),
        Variant::Sse => scan_variant::<STREAMS>(Variant::Sse, t, start, count),
    }
}

/// [`scan`] with `S` interleaved streams (1 to 5) in this CPU's best [`Variant`],
/// for measuring the choice of [`STREAMS`] and [`STREAMS_VL`]; `S` other than those
/// is compiled only where it is used.
#[doc(hidden)]
#[cfg_attr(not(feature = "hazmat"), allow(dead_code))] // reached through `hazmat` only
pub fn scan_streams<const S: usize>(t: &Template, start: u64, count: u32) -> Option<u64> {
    scan_variant::<S>(Variant::best(), t, start, count)
}

/// [`scan`] in [`Variant::Sse`] with `S` streams, whatever the CPU has beyond SHA-NI:
/// so that the loop CPUs without AVX-512VL run is tested and measured on those with it.
#[doc(hidden)]
#[cfg_attr(not(feature = "hazmat"), allow(dead_code))] // reached through `hazmat` only
pub fn scan_sse<const S: usize>(t: &Template, start: u64, count: u32) -> Option<u64> {
    scan_variant::<S>(Variant::Sse, t, start, count)
}

fn scan_variant<const S: usize>(
    variant: Variant,
    t: &Template,
    start: u64,
    count: u32,
) -> Option<u64> {
    assert!(is_available(), "the shani backend needs SHA-NI and SSE4.1");
    assert!(variant == Variant::Sse || is_x86_feature_detected!("avx512vl"));
    assert!((1..=5).contains(&S));
    let end = t.nonce_offset + t.nonce_len;
    assert!(count >= 1 && end <= 128);
    let last = start + u64::from(count - 1);
    // A decimal run whose varying digits do not fit in eight bytes (over 10^8
    // nonces, never from `search`) is cut at multiples of 10^7.
    if t.format == NonceFormat::Decimal && t.run_bytes(start, last).1 + 8 < end {
        const PIECE: u64 = 10_000_000;
        let mut from = start;
        loop {
            let to = last.min((from / PIECE + 1) * PIECE - 1);
            if let Some(n) = scan_variant::<S>(variant, t, from, (to - from + 1) as u32) {
                return Some(n);
            }
            if to == last {
                return None;
            }
            from = to + 1;
        }
    }
    let setup = Setup::new(t, start, last);
    let run = runs::<S>(variant)[setup.pair];
    // SAFETY: SHA-NI and SSE4.1 (with the SSSE3 and SSE2 it implies) were detected
    // above, and AVX-512VL (with AVX-512F and AVX2) for `Variant::Vl`: all that the
    // instances of `run` and `run_vl` are compiled for.
    unsafe { run(&setup, t, start, count) }
}

/// A loop instance: [`run`] or [`run_vl`] for one stream count and one first round pair.
type RunFn = unsafe fn(&Setup, &Template, u64, u32) -> Option<u64>;

/// The instances of [`run`] (or [`run_vl`]) for `S` streams, indexed by the first
/// round pair.
fn runs<const S: usize>(variant: Variant) -> [RunFn; 8] {
    macro_rules! pairs {
        ($run:ident) => {
            [
                $run::<S, 0>,
                $run::<S, 1>,
                $run::<S, 2>,
                $run::<S, 3>,
                $run::<S, 4>,
                $run::<S, 5>,
                $run::<S, 6>,
                $run::<S, 7>,
            ]
        };
    }
    match variant {
        Variant::Sse => pairs!(run),
        Variant::Vl => pairs!(run_vl),
    }
}

/// One message word's share of the encoded nonce: `(x >> shr) << shl`, masked.
#[derive(Clone, Copy, Default)]
struct Part {
    shr: u32,
    shl: u32,
    mask: u32,
}

impl Part {
    /// For message word `i` of the tail, the nonce's last byte at `end - 1`.
    fn new(i: usize, end: usize) -> Part {
        // Bits from the nonce's last byte to the end of word i: `x << shift`.
        let shift = 8 * (4 * i as i64 + 4 - end as i64);
        if !(-63..=63).contains(&shift) {
            return Part::default();
        }
        Part {
            shr: (-shift).max(0) as u32,
            shl: shift.max(0) as u32,
            mask: u32::MAX,
        }
    }

    #[inline(always)]
    fn of(self, x: u64) -> u32 {
        ((x >> self.shr) << self.shl) as u32 & self.mask
    }
}

/// A message group (four words) that holds nonce bytes.
#[derive(Clone, Copy, Default)]
struct VarGroup {
    /// The words with the varying bytes zero.
    fixed: [u32; 4],
    parts: [Part; 4],
    /// For each byte of the group as a vector (word `k`'s least significant byte
    /// is byte `4k`), the byte of the encoded nonce `x` it holds, or `0x80` (none):
    /// the `pshufb` mask of [`VarGroup::shuffled`].
    select: [u8; 16],
}

impl VarGroup {
    /// Group `g` of the tail's `words`, the nonce's last byte at `end - 1`.
    fn new(words: &[u32; 32], g: usize, end: usize) -> VarGroup {
        VarGroup {
            fixed: std::array::from_fn(|k| words[4 * g + k]),
            parts: std::array::from_fn(|k| Part::new(4 * g + k, end)),
            select: std::array::from_fn(|r| {
                // Tail byte `p` is byte `3 - p % 4` of its big-endian word; `x`'s
                // byte 0 is the tail's byte `end - 1`.
                let p = 16 * g + 4 * (r / 4) + 3 - r % 4;
                match (end - 1).checked_sub(p) {
                    Some(b) if b < 8 => b as u8,
                    _ => 0x80,
                }
            }),
        }
    }

    /// The group's words for a nonce encoded as `x`, as one vector (lowest word
    /// first), built on scalars.
    #[inline(always)]
    unsafe fn vector(&self, x: u64) -> __m128i {
        let w: [u64; 4] = std::array::from_fn(|k| u64::from(self.fixed[k] | self.parts[k].of(x)));
        // SAFETY: SSE2 is enabled in the caller (this module's `run`).
        unsafe { _mm_set_epi64x((w[3] << 32 | w[2]) as i64, (w[1] << 32 | w[0]) as i64) }
    }

    /// [`VarGroup::vector`] by one `pshufb` of `x`'s bytes: three instructions, but
    /// two more loop-invariant vectors. On Zen 4, 1.03× in [`Variant::Vl`] (medians of
    /// 6 alternated pairs, 33.2 against 32.1 M nonces per CPU-second) and 0.97× in
    /// [`Variant::Sse`] (28.1 against 29.1), whose 16 registers are already short.
    #[inline(always)]
    unsafe fn shuffled(&self, x: u64) -> __m128i {
        // SAFETY: SSSE3 and SSE2 are enabled in the caller (this module's `run`);
        // the loads read arrays of 16 bytes.
        unsafe {
            let fixed = _mm_loadu_si128(self.fixed.as_ptr().cast());
            let select = _mm_loadu_si128(self.select.as_ptr().cast());
            _mm_or_si128(fixed, _mm_shuffle_epi8(_mm_cvtsi64_si128(x as i64), select))
        }
    }

    /// The group for `x`: [`VarGroup::shuffled`] with `VL`, else [`VarGroup::vector`].
    #[inline(always)]
    unsafe fn build<const VL: bool>(&self, x: u64) -> __m128i {
        // SAFETY: as for the two functions.
        unsafe {
            if VL {
                self.shuffled(x)
            } else {
                self.vector(x)
            }
        }
    }
}

/// What [`run`] needs, prepared once per call on scalars.
struct Setup {
    /// Round pair (0..8) of the first varying word within its block: the loop starts there.
    pair: usize,
    /// The tail's words with the varying nonce bytes zero.
    words: [u32; 32],
    /// The block (0 or 1) holding the first varying word.
    first_block: usize,
    /// Whether the next block also holds varying words.
    two_blocks: bool,
    /// The chaining value before `first_block`.
    chain: [u32; 8],
    /// The state before round `2 * pair` of `first_block`.
    st: [u32; 8],
    /// The varying groups: the first varying word's and the next one.
    group_a: VarGroup,
    group_b: VarGroup,
    /// Whether `group_b` holds any nonce byte.
    b_varies: bool,
    /// `K + W` of a trailing block without varying words.
    const_kw: Option<[u32; 64]>,
    /// The nonce's encoding of the run's first nonce (see the module's doc).
    x0: u64,
}

impl Setup {
    fn new(t: &Template, start: u64, last: u64) -> Setup {
        let end = t.nonce_offset + t.nonce_len;
        let (first_bytes, varying_from) = t.run_bytes(start, last);
        let v = varying_from / 4;
        let e = (end - 1) / 4;
        debug_assert!(end - varying_from <= 8 && e - v <= 2);
        let words = t.shared_words(&first_bytes, varying_from);
        let block =
            |b: usize| -> [u32; 16] { words[b * 16..b * 16 + 16].try_into().expect("16 words") };
        let first_block = v / 16;
        let mut chain = t.midstate;
        if first_block == 1 {
            scalar_compress(&mut chain, &block(0));
        }
        let pair = (v % 16) / 2;
        let mut st = chain;
        scalar_rounds(&mut st, &block(first_block), 2 * pair);
        let ga = v / 4;
        let gb = ga + 1;
        let two_blocks = e / 16 > first_block;
        let b_varies = e / 4 >= gb;
        let const_kw = (t.tail_blocks == 2 && e < 16).then(|| {
            let w = super::scalar::schedule(&block(1));
            std::array::from_fn(|i| w[i].wrapping_add(K[i]))
        });
        // The last eight bytes of the nonce field (fewer for a shorter nonce), lowest
        // byte last in the message, as an integer.
        let x0 = match t.format {
            NonceFormat::Binary => start,
            NonceFormat::Decimal => {
                let from = end - t.nonce_len.min(8);
                first_bytes[from..end]
                    .iter()
                    .fold(0u64, |x, &b| (x << 8) | u64::from(b))
            }
        };
        Setup {
            pair,
            words,
            first_block,
            two_blocks,
            chain,
            st,
            group_a: VarGroup::new(&words, ga, end),
            group_b: if gb < 8 {
                VarGroup::new(&words, gb, end)
            } else {
                VarGroup::default()
            },
            b_varies,
            const_kw,
            x0,
        }
    }
}

/// Rounds `0..upto` of one block on scalars.
fn scalar_rounds(s: &mut [u32; 8], w: &[u32; 16], upto: usize) {
    for i in 0..upto {
        let [a, b, c, d, e, f, g, h] = *s;
        let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
        let t1 = h
            .wrapping_add(s1)
            .wrapping_add((e & f) ^ (!e & g))
            .wrapping_add(K[i])
            .wrapping_add(w[i]);
        let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
        let t2 = s0.wrapping_add((a & b) ^ (a & c) ^ (b & c));
        *s = [t1.wrapping_add(t2), a, b, c, d.wrapping_add(t1), e, f, g];
    }
}

/// ASCII decimal digits in the bytes of a `u64` (lowest byte the last digit), each
/// digit byte biased by `0xC6` so that `'9'` is `0xFF`: adding 1 to the integer then
/// carries through nines like a decimal increment. Bytes that carried out wrap to 0
/// and are set back to a biased `'0'` (`0xF6`); only the digit bytes (`digits`, a
/// mask of `0xFF` bytes) are fixed, the ones above can only change past the run's
/// last nonce, whose lanes are never read.
#[derive(Clone, Copy)]
struct Decimal {
    biased: u64,
    digits: u64,
}

impl Decimal {
    const BIAS: u64 = 0xC6C6_C6C6_C6C6_C6C6;

    fn new(ascii: u64, digits: u64) -> Decimal {
        Decimal {
            biased: ascii.wrapping_add(Self::BIAS & digits),
            digits,
        }
    }

    #[inline(always)]
    fn ascii(self) -> u64 {
        self.biased.wrapping_sub(Self::BIAS & self.digits)
    }

    #[inline(always)]
    fn increment(&mut self) {
        const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
        let x = self.biased.wrapping_add(1);
        // High bit of each byte that is zero (exact: no carries between bytes).
        let zero = !(((x & LOW7) + LOW7) | x | LOW7);
        let fix = ((zero >> 7) * 0xF6) & self.digits;
        self.biased = x + fix;
    }
}

/// A SHA-256 state as `sha256rnds2` wants it: `abef = [F, E, B, A]`, `cdgh = [H, G, D, C]`
/// (lowest lane first).
#[derive(Clone, Copy)]
struct State {
    abef: __m128i,
    cdgh: __m128i,
}

/// Converts a state of eight words to SHA-NI's layout.
#[inline(always)]
unsafe fn state(h: &[u32; 8]) -> State {
    let w = h.map(|x| x as i32);
    // SAFETY: SSE2 is enabled in the caller (this module's `run`).
    unsafe {
        State {
            abef: _mm_setr_epi32(w[5], w[4], w[1], w[0]),
            cdgh: _mm_setr_epi32(w[7], w[6], w[3], w[2]),
        }
    }
}

/// Four words as one vector, lowest first.
#[inline(always)]
unsafe fn quad(w: &[u32]) -> __m128i {
    // SAFETY: SSE2 is enabled in the caller.
    unsafe { _mm_setr_epi32(w[0] as i32, w[1] as i32, w[2] as i32, w[3] as i32) }
}

/// `K[4g..4g + 4]` as a vector (a constant: the compiler folds it).
#[inline(always)]
unsafe fn k4(g: usize) -> __m128i {
    // SAFETY: SSE2 is enabled in the caller.
    unsafe { quad(&K[4 * g..]) }
}

/// Message group `i` of stream `s`.
macro_rules! msg {
    ($m:ident, $s:expr, $i:expr) => {
        $m[$s][$i]
    };
}

/// The next message group: `W[4g..4g+4]` from the four before it (`m[g & 3]` is
/// replaced), on every stream.
macro_rules! schedule {
    ($m:ident, $g:expr) => {
        for s in 0..S {
            let next = _mm_sha256msg1_epu32(msg!($m, s, $g & 3), msg!($m, s, ($g + 1) & 3));
            let next = _mm_add_epi32(
                next,
                _mm_alignr_epi8::<4>(msg!($m, s, ($g + 3) & 3), msg!($m, s, ($g + 2) & 3)),
            );
            let next = _mm_sha256msg2_epu32(next, msg!($m, s, ($g + 3) & 3));
            $m[s][$g & 3] = next;
        }
    };
}

/// Rounds `4g .. 4g + 4` on every stream (from `4g + 2` when `lo` is false), with
/// `K + W` of each stream in `kw`.
macro_rules! rounds4 {
    ($st:ident, $kw:expr, $lo:expr) => {
        let kw = $kw;
        if $lo && S == 4 {
            let st: &mut [State; 4] = (&mut $st[..]).try_into().expect("4 streams");
            let kw: &[__m128i; 4] = (&kw[..]).try_into().expect("4 streams");
            interleaved!(
                st,
                kw,
                (0, c0, a0, k0),
                (1, c1, a1, k1),
                (2, c2, a2, k2),
                (3, c3, a3, k3)
            );
        } else if $lo && S == 3 {
            let st: &mut [State; 3] = (&mut $st[..]).try_into().expect("3 streams");
            let kw: &[__m128i; 3] = (&kw[..]).try_into().expect("3 streams");
            interleaved!(st, kw, (0, c0, a0, k0), (1, c1, a1, k1), (2, c2, a2, k2));
        } else if $lo && S == 5 {
            let st: &mut [State; 5] = (&mut $st[..]).try_into().expect("5 streams");
            let kw: &[__m128i; 5] = (&kw[..]).try_into().expect("5 streams");
            interleaved!(
                st,
                kw,
                (0, c0, a0, k0),
                (1, c1, a1, k1),
                (2, c2, a2, k2),
                (3, c3, a3, k3),
                (4, c4, a4, k4)
            );
        } else {
            rounds4_intrinsics!($st, kw, $lo);
        }
    };
}

/// Four rounds on every stream, in one `asm!` block so that the streams' dependent
/// `sha256rnds2`s stay interleaved instruction by instruction. Left to the compiler
/// (intrinsics), LLVM's scheduler orders them stream after stream (to save
/// registers), and the core then waits out the 4-cycle latency of each.
macro_rules! interleaved {
    ($st:ident, $kw:ident, $(($i:tt, $c:ident, $a:ident, $k:ident)),+) => {
        // SAFETY (the caller's `unsafe` block covers this): SHA-NI and SSE2 are
        // enabled in the caller; the block reads and writes only its register
        // operands and xmm0 (declared clobbered).
        {
            std::arch::asm!(
                $(
                    concat!("movdqa {", stringify!($k), "}, %xmm0"),
                    concat!("sha256rnds2 %xmm0, {", stringify!($a), "}, {", stringify!($c), "}"),
                )+
                $(
                    concat!("pshufd $0x0e, {", stringify!($k), "}, %xmm0"),
                    concat!("sha256rnds2 %xmm0, {", stringify!($c), "}, {", stringify!($a), "}"),
                )+
                $(
                    $c = inout(xmm_reg) $st[$i].cdgh,
                    $a = inout(xmm_reg) $st[$i].abef,
                    $k = in(xmm_reg) $kw[$i],
                )+
                out("xmm0") _,
                options(pure, nomem, nostack, att_syntax),
            );
        }
    };
}

/// [`rounds4!`] by intrinsics, for stream counts without an `asm!` block and for
/// the half group a loop may start with.
macro_rules! rounds4_intrinsics {
    ($st:ident, $kw:expr, $lo:expr) => {
        let kw = $kw;
        if $lo {
            for (s, k) in $st.iter_mut().zip(kw.iter()) {
                s.cdgh = _mm_sha256rnds2_epu32(s.cdgh, s.abef, *k);
            }
        }
        for (s, k) in $st.iter_mut().zip(kw.iter()) {
            s.abef = _mm_sha256rnds2_epu32(s.abef, s.cdgh, _mm_shuffle_epi32::<0x0E>(*k));
        }
    };
}

/// `$group!(g)` for the 16 groups of four rounds, `g` a literal (so that every
/// test on it folds away).
macro_rules! for_each_group {
    ($group:ident) => {
        $group!(0);
        $group!(1);
        $group!(2);
        $group!(3);
        $group!(4);
        $group!(5);
        $group!(6);
        $group!(7);
        $group!(8);
        $group!(9);
        $group!(10);
        $group!(11);
        $group!(12);
        $group!(13);
        $group!(14);
        $group!(15);
    };
}

/// Compresses one block on every stream from round `2 * P`: `st` is the state
/// before that round (with `abef` and `cdgh` swapped when `P` is odd, as
/// `sha256rnds2`'s alternation has them), `m[s]` the block's four message groups
/// (every one, the schedule needs them). Returns the state after round 64, not yet
/// added to the chaining value.
#[inline(always)]
unsafe fn compress<const S: usize, const P: usize>(
    mut st: [State; S],
    m: &mut [[__m128i; 4]; S],
) -> [State; S] {
    // SAFETY: SHA-NI, SSSE3 and SSE2 are enabled in the caller.
    unsafe {
        macro_rules! group {
            ($g:expr) => {
                if $g >= 4 {
                    schedule!(m, $g);
                }
                if 2 * $g + 1 >= P {
                    // Written out here, as in `compress_pair`: one `kw4(m, g)` helper
                    // for both made the SSE variant 0.85× on Zen 4 (24.3 against
                    // 29.2, 5 alternated pairs), its 16 registers allocated worse.
                    let mut kw = [_mm_setzero_si128(); S];
                    for (s, kw) in kw.iter_mut().enumerate() {
                        *kw = _mm_add_epi32(msg!(m, s, $g & 3), k4($g));
                    }
                    rounds4!(st, kw, 2 * $g >= P);
                }
            };
        }
        for_each_group!(group);
        st
    }
}

/// Compresses a block whose `K + W` is known and the same on every stream: `kw[g]`
/// holds rounds `4g..4g+4`.
#[inline(always)]
unsafe fn compress_const<const S: usize>(chain: [State; S], kw: &[__m128i; 16]) -> [State; S] {
    // SAFETY: SHA-NI and SSE2 are enabled in the caller.
    unsafe {
        let mut st = chain;
        for g in 0..16 {
            rounds4!(st, [kw[g]; S], true);
        }
        add(st, &chain)
    }
}

/// `st + chain`, stream by stream.
#[inline(always)]
unsafe fn add<const S: usize>(st: [State; S], chain: &[State; S]) -> [State; S] {
    // SAFETY: SSE2 is enabled in the caller.
    unsafe {
        std::array::from_fn(|s| State {
            abef: _mm_add_epi32(st[s].abef, chain[s].abef),
            cdgh: _mm_add_epi32(st[s].cdgh, chain[s].cdgh),
        })
    }
}

/// The second hash's message for each stream's digest: the digest, then padding.
#[inline(always)]
unsafe fn second_msg<const S: usize>(d: &[State; S]) -> [[__m128i; 4]; S] {
    // SAFETY: SSE2 is enabled in the caller.
    unsafe {
        std::array::from_fn(|s| {
            // [F, E, B, A] -> [A, B, E, F]; [H, G, D, C] -> [C, D, G, H].
            let abef = _mm_shuffle_epi32::<0x1B>(d[s].abef);
            let cdgh = _mm_shuffle_epi32::<0x1B>(d[s].cdgh);
            [
                _mm_unpacklo_epi64(abef, cdgh),
                _mm_unpackhi_epi64(abef, cdgh),
                // Padding: 0x80 after the 32 bytes, zeros, the bit length 256.
                _mm_setr_epi32(0x8000_0000u32 as i32, 0, 0, 0),
                _mm_setr_epi32(0, 0, 0, 256),
            ]
        })
    }
}

/// Word A of each stream's state (lane 3 of `abef`).
#[inline(always)]
unsafe fn word_a<const S: usize>(st: &[State; S]) -> [u32; S] {
    // SAFETY: SSE2 is enabled in the caller.
    unsafe { st.map(|s| _mm_cvtsi128_si32(_mm_shuffle_epi32::<0xFF>(s.abef)) as u32) }
}

/// The second hash of each stream's digest, as far as its first word: `H0 - IV0`
/// (the caller adds `IV0`).
#[inline(always)]
unsafe fn second_a<const S: usize>(d: &[State; S]) -> [u32; S] {
    // SAFETY: SHA-NI, SSE4.1, SSSE3 and SSE2 are enabled in the caller.
    unsafe {
        let mut m = second_msg(d);
        word_a(&compress::<S, 0>([state(&IV); S], &mut m))
    }
}

/// [`compress`] of one set of streams from round pair `P` (`st1`, `m1`: the first
/// hash of a batch) and, in the same instruction stream, of another from round 0
/// (`st2`, `m2`: the second hash of the batch before), so that neither set's chain
/// of `sha256rnds2`s waits for the other to drain.
#[inline(always)]
unsafe fn compress_pair<const S: usize, const P: usize>(
    mut st1: [State; S],
    m1: &mut [[__m128i; 4]; S],
    mut st2: [State; S],
    m2: &mut [[__m128i; 4]; S],
) -> ([State; S], [State; S]) {
    // SAFETY: SHA-NI, SSSE3 and SSE2 are enabled in the caller.
    unsafe {
        macro_rules! group {
            ($g:expr) => {
                if $g >= 4 {
                    schedule!(m2, $g);
                    schedule!(m1, $g);
                }
                let kw2: [__m128i; S] =
                    std::array::from_fn(|s| _mm_add_epi32(msg!(m2, s, $g & 3), k4($g)));
                if 2 * $g + 1 >= P {
                    let kw1: [__m128i; S] =
                        std::array::from_fn(|s| _mm_add_epi32(msg!(m1, s, $g & 3), k4($g)));
                    rounds4!(st1, kw1, 2 * $g >= P);
                }
                rounds4!(st2, kw2, true);
            };
        }
        for_each_group!(group);
        (st1, st2)
    }
}

/// The nonce loop ([`body`]) for [`Variant::Sse`].
///
/// # Safety
///
/// The CPU must have SHA-NI, SSE4.1, SSSE3 and SSE2.
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
unsafe fn run<const S: usize, const P: usize>(
    setup: &Setup,
    t: &Template,
    start: u64,
    count: u32,
) -> Option<u64> {
    // SAFETY: the features `body` needs are enabled here and present (the caller's
    // contract).
    unsafe { body::<S, P, false>(setup, t, start, count) }
}

/// The nonce loop ([`body`]) for [`Variant::Vl`].
///
/// # Safety
///
/// The CPU must have SHA-NI, SSE4.1 and AVX-512VL (with AVX-512F and AVX2).
#[target_feature(enable = "sha,sse2,ssse3,sse4.1,avx,avx2,avx512f,avx512vl")]
unsafe fn run_vl<const S: usize, const P: usize>(
    setup: &Setup,
    t: &Template,
    start: u64,
    count: u32,
) -> Option<u64> {
    // SAFETY: as in `run`; the wider register file is the compiler's to use.
    unsafe { body::<S, P, true>(setup, t, start, count) }
}

/// The nonce loop for `S` streams whose first varying message word is in round
/// pair `P` of its block. With `VL` (the caller is compiled for [`Variant::Vl`]),
/// the second hash of each batch runs beside the first hash of the next (where the
/// nonce's block is the tail's only varying one and no constant block follows it)
/// and the message groups are built by [`VarGroup::shuffled`]: both pay only with
/// the registers AVX-512VL adds.
///
/// # Safety
///
/// The CPU must have SHA-NI, SSE4.1, SSSE3 and SSE2, and the caller must be
/// compiled with them (`body` is inlined into [`run`] and [`run_vl`]).
#[inline(always)]
unsafe fn body<const S: usize, const P: usize, const VL: bool>(
    setup: &Setup,
    t: &Template,
    start: u64,
    count: u32,
) -> Option<u64> {
    // SAFETY: this function is compiled with SHA-NI, SSE4.1, SSSE3 and SSE2, which the
    // caller checked the CPU has; the helpers need nothing more.
    unsafe {
        let b0 = setup.first_block * 16;
        let chain1 = [state(&setup.chain); S];
        // The state before round 2P; sha256rnds2's alternation has the halves swapped
        // when P is odd (the group's first call is skipped).
        let st = state(&setup.st);
        let st = if P % 2 == 1 {
            State {
                abef: st.cdgh,
                cdgh: st.abef,
            }
        } else {
            st
        };
        let st = [st; S];
        let block_a: [__m128i; 4] = std::array::from_fn(|g| quad(&setup.words[b0 + 4 * g..]));
        let block_b: [__m128i; 4] =
            std::array::from_fn(|g| quad(&setup.words[(b0 + 16 + 4 * g) & 31..]));
        let const_kw: Option<[__m128i; 16]> = setup
            .const_kw
            .as_ref()
            .map(|kw| std::array::from_fn(|g| quad(&kw[4 * g..])));
        let ga = P / 2;
        let two_blocks = setup.two_blocks;
        let b_varies = setup.b_varies;
        let (group_a, group_b) = (setup.group_a, setup.group_b);
        let max = t.first_word_max();
        let binary = t.format == NonceFormat::Binary;
        let nonce_mask = u64::MAX >> (64 - 8 * t.nonce_len.min(8));
        let digits = u64::MAX >> (64 - 8 * t.nonce_len.min(8));
        let mut decimal = Decimal::new(setup.x0, digits);

        // The message of each stream's nonce.
        macro_rules! message {
            ($base:expr) => {{
                let base: u64 = $base;
                let xs: [u64; S] = std::array::from_fn(|s| {
                    if binary {
                        base.wrapping_add(s as u64) & nonce_mask
                    } else {
                        let x = decimal.ascii();
                        decimal.increment();
                        x
                    }
                });
                let mut ma = [block_a; S];
                let mut mb = [block_b; S];
                for s in 0..S {
                    ma[s][ga] = group_a.build::<VL>(xs[s]);
                    if b_varies {
                        if ga < 3 {
                            ma[s][ga + 1] = group_b.build::<VL>(xs[s]);
                        } else {
                            mb[s][0] = group_b.build::<VL>(xs[s]);
                        }
                    }
                }
                (ma, mb)
            }};
        }
        // Whether the first `n` streams of the batch from `base` hold a golden nonce.
        macro_rules! check {
            ($a:expr, $base:expr, $n:expr) => {{
                let (a, base, n): ([u32; S], u64, u32) = ($a, $base, $n);
                let mut hits = 0u32;
                for (s, &a) in a.iter().enumerate() {
                    hits |= u32::from(a.wrapping_add(IV[0]) <= max) << s;
                }
                if n < S as u32 {
                    hits &= (1 << n) - 1;
                }
                while hits != 0 {
                    let nonce = base + u64::from(hits.trailing_zeros());
                    if t.difficulty <= 32 || t.confirm(nonce) {
                        return Some(nonce);
                    }
                    hits &= hits - 1;
                }
            }};
        }

        if VL && !two_blocks && const_kw.is_none() {
            // One compression per hash: the second hash of each batch runs beside the
            // first hash of the next.
            let (mut ma, _) = message!(start);
            let mut h = add(compress::<S, P>(st, &mut ma), &chain1);
            let mut done = 0u32;
            loop {
                let base = start + u64::from(done);
                let n = count - done;
                if n <= S as u32 {
                    check!(second_a(&h), base, n);
                    return None;
                }
                let (mut ma, _) = message!(base + S as u64);
                let mut m2 = second_msg(&h);
                let (first, second) = compress_pair::<S, P>(st, &mut ma, [state(&IV); S], &mut m2);
                check!(word_a(&second), base, S as u32);
                h = add(first, &chain1);
                done += S as u32;
            }
        }

        let mut done = 0u32;
        while done < count {
            let base = start + u64::from(done);
            let (mut ma, mut mb) = message!(base);
            let mut h = add(compress::<S, P>(st, &mut ma), &chain1);
            if two_blocks {
                h = add(compress::<S, 0>(h, &mut mb), &h);
            }
            if let Some(kw) = &const_kw {
                h = compress_const(h, kw);
            }
            check!(second_a(&h), base, count - done);
            done = done.saturating_add(S as u32);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_increment_carries_like_a_decimal_counter() {
        let ascii = |s: &str| s.bytes().fold(0u64, |x, b| (x << 8) | u64::from(b));
        for (from, len) in [
            (0u64, 1usize),
            (95, 3),
            (999_999, 8),
            (12_345_678, 8),
            (9_999_999, 7),
        ] {
            let text = format!("{from:0len$}");
            let digits = u64::MAX >> (64 - 8 * len);
            let mut d = Decimal::new(ascii(&text), digits);
            for n in from..from + 2_000 {
                let want = format!("{:0len$}", n % 10u64.pow(len as u32));
                // Bytes above the digits only change past the field's last value.
                assert_eq!(d.ascii() & digits, ascii(&want), "{n}");
                d.increment();
            }
        }
    }
}
