//! The nonce loop shared by the lane-parallel backends (`avx2`, `avx512`, and
//! `avx512x2`, the same loop on a [`Pair`] of vectors).
//!
//! One vector holds one 32-bit SHA-256 word for `N` nonces (lanes). The loop is
//! written once, generic over [`Lanes`]; each backend implements the few word
//! operations (add, the four sigma functions, Ch, Maj, compare) with the best
//! instructions its CPU has and builds, with [`run_table!`], a table of [`run`]
//! instances compiled with its `#[target_feature]`s, so everything here inlines
//! into straight-line code. [`scan`] prepares a call on scalars and picks the instance.
//!
//! What is done once per call rather than per nonce:
//! - the message words the nonces of the call share (the template's bytes, the
//!   nonce bytes common to the whole run) are constants;
//! - a tail block that holds no varying nonce byte is compressed once (when it
//!   comes first) or has its whole message schedule precomputed (when it comes last);
//! - in the first block holding varying bytes, the rounds before the first varying
//!   word run once on scalars, the vector loop starts at that round;
//! - when one word `V` of that block holds all the varying bytes (binary nonces, and
//!   the 2^16-nonce runs `search` hands out, nearly always), `run::<V>` knows at
//!   compile time which words are constant: round `V` is two adds and every message
//!   schedule term without word `V` is computed on scalars ([`compress_single`]);
//! - the second hash's constant words (8..15: padding and length) are folded into
//!   its schedule and round constants, its round 0 starts from the IV, and only
//!   `H0 = IV0 + a` is computed at the end (the leading zeros are in H0, so the
//!   round-61 shortcut of Bitcoin miners, which test H7, does not apply).

use super::scalar::{compress as scalar_compress, K};
use super::{Template, IV};
use crate::puzzle::NonceFormat;

/// The most 32-bit words an encoded nonce can touch: 20 decimal digits over 6 words.
const MAX_VARYING: usize = 6;

/// A vector of `N` 32-bit lanes and the operations SHA-256 needs on it.
///
/// # Safety
///
/// Every method uses CPU instructions that need the implementing backend's target
/// features; call them only from code compiled with those features enabled, running
/// on a CPU that has them.
pub(super) unsafe trait Lanes: Copy {
    /// Lanes per vector (at most 32: a hit mask is a `u32`).
    const N: usize;
    /// Every lane `x`.
    unsafe fn splat(x: u32) -> Self;
    /// Lanes `0, 1, .., N-1`.
    unsafe fn iota() -> Self;
    /// The first `N` values of `a`.
    unsafe fn load(a: &[u32; 32]) -> Self;
    /// Lane-wise wrapping add.
    unsafe fn add(a: Self, b: Self) -> Self;
    /// Lane-wise wrapping subtract.
    unsafe fn sub(a: Self, b: Self) -> Self;
    /// Lane-wise wrapping multiply (the low 32 bits of the product).
    unsafe fn mul(a: Self, b: Self) -> Self;
    /// Lane-wise or.
    unsafe fn or(a: Self, b: Self) -> Self;
    /// Lane-wise shift left by `n` bits; `n >= 32` gives 0.
    unsafe fn shl(a: Self, n: u32) -> Self;
    /// Lane-wise logical shift right by `n` bits; `n >= 32` gives 0.
    unsafe fn shr(a: Self, n: u32) -> Self;
    /// Σ0 (rounds): `ror2 ^ ror13 ^ ror22`.
    unsafe fn big_sigma0(a: Self) -> Self;
    /// Σ1 (rounds): `ror6 ^ ror11 ^ ror25`.
    unsafe fn big_sigma1(e: Self) -> Self;
    /// σ0 (schedule): `ror7 ^ ror18 ^ shr3`.
    unsafe fn small_sigma0(w: Self) -> Self;
    /// σ1 (schedule): `ror17 ^ ror19 ^ shr10`.
    unsafe fn small_sigma1(w: Self) -> Self;
    /// `(e & f) ^ (!e & g)`.
    unsafe fn ch(e: Self, f: Self, g: Self) -> Self;
    /// `(a & b) ^ (a & c) ^ (b & c)`.
    unsafe fn maj(a: Self, b: Self, c: Self) -> Self;
    /// Bit `i` set when lane `i` is `<= max` (unsigned).
    unsafe fn le_mask(a: Self, max: u32) -> u32;
}

/// Two vectors of `L` as one of `2 * L::N` lanes: two independent streams of nonces
/// whose instructions interleave, so the core has a second chain to run while one
/// waits (and twice the registers to hold).
#[derive(Clone, Copy)]
pub(super) struct Pair<L>(L, L);

/// `Lanes` methods that apply `L`'s to each half of their arguments.
macro_rules! pairwise {
    ($($f:ident($($x:ident),+);)+) => {$(
        #[inline(always)]
        unsafe fn $f($($x: Self),+) -> Self {
            // SAFETY: the caller runs with L's target features (trait contract).
            unsafe { Pair(L::$f($($x.0),+), L::$f($($x.1),+)) }
        }
    )+};
}

// SAFETY: every method calls `L`'s on each half, under `L`'s contract.
unsafe impl<L: Lanes> Lanes for Pair<L> {
    const N: usize = 2 * L::N;

    #[inline(always)]
    unsafe fn splat(x: u32) -> Self {
        // SAFETY: the caller runs with L's target features (trait contract).
        unsafe {
            let v = L::splat(x);
            Pair(v, v)
        }
    }
    #[inline(always)]
    unsafe fn iota() -> Self {
        // SAFETY: the caller runs with L's target features (trait contract).
        unsafe { Pair(L::iota(), L::add(L::iota(), L::splat(L::N as u32))) }
    }
    #[inline(always)]
    unsafe fn load(a: &[u32; 32]) -> Self {
        let mut upper = [0u32; 32];
        upper[..L::N].copy_from_slice(&a[L::N..2 * L::N]);
        // SAFETY: the caller runs with L's target features (trait contract).
        unsafe { Pair(L::load(a), L::load(&upper)) }
    }
    pairwise! {
        add(a, b);
        sub(a, b);
        mul(a, b);
        or(a, b);
        big_sigma0(a);
        big_sigma1(e);
        small_sigma0(w);
        small_sigma1(w);
        ch(e, f, g);
        maj(a, b, c);
    }
    #[inline(always)]
    unsafe fn shl(a: Self, n: u32) -> Self {
        // SAFETY: the caller runs with L's target features (trait contract).
        unsafe { Pair(L::shl(a.0, n), L::shl(a.1, n)) }
    }
    #[inline(always)]
    unsafe fn shr(a: Self, n: u32) -> Self {
        // SAFETY: the caller runs with L's target features (trait contract).
        unsafe { Pair(L::shr(a.0, n), L::shr(a.1, n)) }
    }
    #[inline(always)]
    unsafe fn le_mask(a: Self, max: u32) -> u32 {
        // SAFETY: the caller runs with L's target features (trait contract).
        unsafe { L::le_mask(a.0, max) | L::le_mask(a.1, max) << L::N }
    }
}

/// One SHA-256 round on lanes: `kw` is `K[i] + W[i]`; `d` and `h` are updated in
/// place (the caller rotates the names).
macro_rules! round {
    ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident, $kw:expr) => {
        let t1 = L::add(
            L::add(L::add($h, $kw), L::big_sigma1($e)),
            L::ch($e, $f, $g),
        );
        $d = L::add($d, t1);
        $h = L::add(L::add(t1, L::big_sigma0($a)), L::maj($a, $b, $c));
    };
}

/// Eight rounds `$i .. $i + 8`, the macro `$kw!(i)` giving `K[i] + W[i]` (macros, not
/// closures: a closure is compiled without the caller's target features and not inlined).
macro_rules! rounds8 {
    ($s:ident, $i:expr, $kw:ident) => {{
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = $s;
        round!(a, b, c, d, e, f, g, h, $kw!($i));
        round!(h, a, b, c, d, e, f, g, $kw!($i + 1));
        round!(g, h, a, b, c, d, e, f, $kw!($i + 2));
        round!(f, g, h, a, b, c, d, e, $kw!($i + 3));
        round!(e, f, g, h, a, b, c, d, $kw!($i + 4));
        round!(d, e, f, g, h, a, b, c, $kw!($i + 5));
        round!(c, d, e, f, g, h, a, b, $kw!($i + 6));
        round!(b, c, d, e, f, g, h, a, $kw!($i + 7));
        $s = [a, b, c, d, e, f, g, h];
    }};
}

/// The message schedule step for `w[i & 15]`, `i >= 16`, in a 16-word ring.
#[inline(always)]
unsafe fn schedule<L: Lanes>(w: &mut [L; 16], i: usize) -> L {
    // SAFETY: the caller runs with L's target features (trait contract).
    unsafe {
        let x = L::add(
            L::add(w[i & 15], L::small_sigma0(w[(i + 1) & 15])),
            L::add(w[(i + 9) & 15], L::small_sigma1(w[(i + 14) & 15])),
        );
        w[i & 15] = x;
        x
    }
}

/// Compresses one block whose words `w` vary per lane.
///
/// `chain` is the state before the block (added back at the end); `st` the state
/// before round `from`, rotated left by `from % 8` (to match the round's names); the rounds
/// before `from` are skipped, so `w[..from]` is never read.
#[inline(always)]
unsafe fn compress_block<L: Lanes>(
    chain: &[L; 8],
    st: [L; 8],
    w: &mut [L; 16],
    from: usize,
) -> [L; 8] {
    // SAFETY: the caller runs with L's target features (trait contract).
    unsafe {
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = st;
        macro_rules! kw {
            ($i:expr) => {
                L::add(L::splat(K[$i]), w[$i])
            };
        }
        // Rounds 0..16: each skipped when before `from` (a well-predicted branch);
        // the names rotate statically, `st` was rotated to match round `from`.
        macro_rules! guarded8 {
            ($i:expr) => {
                if from <= $i {
                    round!(a, b, c, d, e, f, g, h, kw!($i));
                }
                if from <= $i + 1 {
                    round!(h, a, b, c, d, e, f, g, kw!($i + 1));
                }
                if from <= $i + 2 {
                    round!(g, h, a, b, c, d, e, f, kw!($i + 2));
                }
                if from <= $i + 3 {
                    round!(f, g, h, a, b, c, d, e, kw!($i + 3));
                }
                if from <= $i + 4 {
                    round!(e, f, g, h, a, b, c, d, kw!($i + 4));
                }
                if from <= $i + 5 {
                    round!(d, e, f, g, h, a, b, c, kw!($i + 5));
                }
                if from <= $i + 6 {
                    round!(c, d, e, f, g, h, a, b, kw!($i + 6));
                }
                if from <= $i + 7 {
                    round!(b, c, d, e, f, g, h, a, kw!($i + 7));
                }
            };
        }
        guarded8!(0);
        guarded8!(8);
        let mut s = [a, b, c, d, e, f, g, h];
        macro_rules! kws {
            ($i:expr) => {
                L::add(L::splat(K[$i]), schedule(w, $i))
            };
        }
        rounds8!(s, 16, kws);
        rounds8!(s, 24, kws);
        rounds8!(s, 32, kws);
        rounds8!(s, 40, kws);
        rounds8!(s, 48, kws);
        rounds8!(s, 56, kws);
        let mut out = *chain;
        for (x, y) in out.iter_mut().zip(s) {
            *x = L::add(*x, y);
        }
        out
    }
}

/// Compresses one block whose words are the same in every lane: `kw[i]` is
/// `K[i] + W[i]`, the whole schedule precomputed.
#[inline(always)]
unsafe fn compress_const<L: Lanes>(chain: [L; 8], kw: &[u32; 64]) -> [L; 8] {
    // SAFETY: the caller runs with L's target features (trait contract).
    unsafe {
        let mut s = chain;
        macro_rules! k {
            ($i:expr) => {
                L::splat(kw[$i])
            };
        }
        rounds8!(s, 0, k);
        rounds8!(s, 8, k);
        rounds8!(s, 16, k);
        rounds8!(s, 24, k);
        rounds8!(s, 32, k);
        rounds8!(s, 40, k);
        rounds8!(s, 48, k);
        rounds8!(s, 56, k);
        let mut out = chain;
        for (x, y) in out.iter_mut().zip(s) {
            *x = L::add(*x, y);
        }
        out
    }
}

const fn ssig0(x: u32) -> u32 {
    x.rotate_right(7) ^ x.rotate_right(18) ^ (x >> 3)
}
const fn ssig1(x: u32) -> u32 {
    x.rotate_right(17) ^ x.rotate_right(19) ^ (x >> 10)
}
const fn bsig0(x: u32) -> u32 {
    x.rotate_right(2) ^ x.rotate_right(13) ^ x.rotate_right(22)
}
const fn bsig1(x: u32) -> u32 {
    x.rotate_right(6) ^ x.rotate_right(11) ^ x.rotate_right(25)
}

/// Round 0 of the second hash from the IV: `T1 = W0 + R0_T1`.
const R0_T1: u32 = IV[7]
    .wrapping_add(bsig1(IV[4]))
    .wrapping_add((IV[4] & IV[5]) ^ (!IV[4] & IV[6]))
    .wrapping_add(K[0]);
/// `a` after round 0 is `T1 + R0_A`.
const R0_A: u32 = bsig0(IV[0]).wrapping_add((IV[0] & IV[1]) ^ (IV[0] & IV[2]) ^ (IV[1] & IV[2]));
/// The second hash's padding words: 8 is 0x80000000, 9..=14 zero, 15 the bit length 256.
const PAD8: u32 = 0x8000_0000;
const LEN: u32 = 256;

/// The second hash of a 32-byte digest `d`, only as far as its first word
/// `H0 = IV0 + a` after round 64.
#[inline(always)]
#[allow(unused_assignments)] // the ring's last store
unsafe fn second_h0<L: Lanes>(d: [L; 8]) -> L {
    // SAFETY: the caller runs with L's target features (trait contract).
    unsafe {
        let s = L::splat;
        let (s0, s1) = (L::small_sigma0, L::small_sigma1);
        // A 16-word ring, W[j] in slot j % 16, each word computed when its round
        // needs it (an array of all 64 costs a 4 KiB memset per vector).
        let mut w = [
            d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[0], d[0], d[0], d[0], d[0], d[0],
            d[0], d[0],
        ];
        macro_rules! at {
            ($j:expr) => {
                w[($j) & 15]
            };
        }
        // W[i], i >= 16, with the constant words 8..=15 folded in.
        macro_rules! sched {
            ($i:expr) => {{
                let x = match $i {
                    16 => L::add(s0(at!(1)), at!(0)),
                    17 => L::add(L::add(s0(at!(2)), at!(1)), s(ssig1(LEN))),
                    18..=21 => L::add(L::add(s1(at!($i - 2)), s0(at!($i - 15))), at!($i - 16)),
                    22 => L::add(L::add(s1(at!(20)), s0(at!(7))), L::add(at!(6), s(LEN))),
                    23 => L::add(L::add(s1(at!(21)), at!(16)), L::add(at!(7), s(ssig0(PAD8)))),
                    24 => L::add(L::add(s1(at!(22)), at!(17)), s(PAD8)),
                    25..=29 => L::add(s1(at!($i - 2)), at!($i - 7)),
                    30 => L::add(L::add(s1(at!(28)), at!(23)), s(ssig0(LEN))),
                    31 => L::add(L::add(s1(at!(29)), at!(24)), L::add(s0(at!(16)), s(LEN))),
                    _ => L::add(
                        L::add(s1(at!($i - 2)), at!($i - 7)),
                        L::add(s0(at!($i - 15)), at!($i - 16)),
                    ),
                };
                at!($i) = x;
                x
            }};
        }
        macro_rules! kw {
            ($i:expr) => {
                match $i {
                    0..=7 => L::add(s(K[$i]), at!($i)),
                    8 => s(K[8].wrapping_add(PAD8)),
                    9..=14 => s(K[$i]),
                    15 => s(K[15].wrapping_add(LEN)),
                    _ => L::add(s(K[$i]), sched!($i)),
                }
            };
        }
        // Round 0 from the IV: two adds.
        let t1 = L::add(d[0], s(R0_T1));
        let a1 = L::add(t1, s(R0_A));
        let e1 = L::add(t1, s(IV[3]));
        // Names as rounds8! has them at round 1: (h, a, b, c, d, e, f, g) is (A..H).
        let (mut a, mut b, mut c, mut d) = (s(IV[0]), s(IV[1]), s(IV[2]), e1);
        let (mut e, mut f, mut g, mut h) = (s(IV[4]), s(IV[5]), s(IV[6]), a1);
        round!(h, a, b, c, d, e, f, g, kw!(1));
        round!(g, h, a, b, c, d, e, f, kw!(2));
        round!(f, g, h, a, b, c, d, e, kw!(3));
        round!(e, f, g, h, a, b, c, d, kw!(4));
        round!(d, e, f, g, h, a, b, c, kw!(5));
        round!(c, d, e, f, g, h, a, b, kw!(6));
        round!(b, c, d, e, f, g, h, a, kw!(7));
        let mut st = [a, b, c, d, e, f, g, h];
        rounds8!(st, 8, kw);
        rounds8!(st, 16, kw);
        rounds8!(st, 24, kw);
        rounds8!(st, 32, kw);
        rounds8!(st, 40, kw);
        rounds8!(st, 48, kw);
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = st;
        round!(a, b, c, d, e, f, g, h, kw!(56));
        round!(h, a, b, c, d, e, f, g, kw!(57));
        round!(g, h, a, b, c, d, e, f, kw!(58));
        round!(f, g, h, a, b, c, d, e, kw!(59));
        round!(e, f, g, h, a, b, c, d, kw!(60));
        round!(d, e, f, g, h, a, b, c, kw!(61));
        round!(c, d, e, f, g, h, a, b, kw!(62));
        // Round 63: only the new `a` is needed (`e` after it feeds nothing we read).
        let t1 = L::add(L::add(L::add(a, kw!(63)), L::big_sigma1(f)), L::ch(f, g, h));
        let a64 = L::add(L::add(t1, L::big_sigma0(b)), L::maj(b, c, d));
        L::add(a64, s(IV[0]))
    }
}

/// Rounds `0..upto` of one block on scalars (the rounds before the first varying word).
fn scalar_rounds(s: &mut [u32; 8], w: &[u32; 16], upto: usize) {
    for i in 0..upto {
        let [a, b, c, d, e, f, g, h] = *s;
        let t1 = h
            .wrapping_add(bsig1(e))
            .wrapping_add((e & f) ^ (!e & g))
            .wrapping_add(K[i])
            .wrapping_add(w[i]);
        let t2 = bsig0(a).wrapping_add((a & b) ^ (a & c) ^ (b & c));
        *s = [t1.wrapping_add(t2), a, b, c, d.wrapping_add(t1), e, f, g];
    }
}

/// `K[i] + W[i]` for a block whose words are all known.
fn const_schedule(block: &[u32; 16]) -> [u32; 64] {
    let mut w = [0u32; 64];
    w[..16].copy_from_slice(block);
    for i in 16..64 {
        w[i] = ssig1(w[i - 2])
            .wrapping_add(w[i - 7])
            .wrapping_add(ssig0(w[i - 15]))
            .wrapping_add(w[i - 16]);
    }
    for (x, k) in w.iter_mut().zip(K) {
        *x = x.wrapping_add(k);
    }
    w
}

/// Adds `n` to the ASCII decimal number in `field`, wrapping at the top (only lanes
/// past the end of a run ever wrap, and their results are masked off).
#[inline(always)]
fn add_decimal(field: &mut [u8], mut n: u32) {
    for digit in field.iter_mut().rev() {
        if n == 0 {
            return;
        }
        let x = u32::from(*digit - b'0') + n;
        *digit = b'0' + (x % 10) as u8;
        n = x / 10;
    }
}

/// The value of the last four ASCII digits of `field` (at least four long).
fn last4(field: &[u8]) -> u32 {
    field[field.len() - 4..]
        .iter()
        .fold(0, |x, &d| x * 10 + u32::from(d - b'0'))
}

/// `n` (each lane below 10^4) as four ASCII digits, the first in the top byte: the
/// nonce's last four bytes as a big-endian word. Divides by 10 as `n * 52429 >> 19`
/// (exact below 43,699).
#[inline(always)]
unsafe fn ascii4<L: Lanes>(n: L) -> L {
    // SAFETY: the caller runs with L's target features (trait contract).
    unsafe {
        let (magic, ten) = (L::splat(52429), L::splat(10));
        let q1 = L::shr(L::mul(n, magic), 19);
        let q2 = L::shr(L::mul(q1, magic), 19);
        let q3 = L::shr(L::mul(q2, magic), 19);
        let d0 = L::sub(n, L::mul(q1, ten));
        let d1 = L::sub(q1, L::mul(q2, ten));
        let d2 = L::sub(q2, L::mul(q3, ten));
        L::or(
            L::or(L::splat(0x3030_3030), L::or(L::shl(q3, 24), L::shl(d2, 16))),
            L::or(L::shl(d1, 8), d0),
        )
    }
}

/// How one varying message word is built from a binary nonce `hi:lo` on lanes:
/// `common | hi_part(hi) | lo << shl | lo >> shr` (shift counts of 32 give 0).
#[derive(Clone, Copy, Default)]
struct BinaryWord {
    shl: u32,
    shr: u32,
    /// Signed shift of the nonce's value into this word: `>= 0` left, `< 0` right.
    shift: i32,
}

impl BinaryWord {
    /// The bits of this word that the nonce's last four bytes occupy.
    fn lo_mask(self) -> u32 {
        u32::MAX.checked_shl(self.shl).unwrap_or(0) | u32::MAX.checked_shr(self.shr).unwrap_or(0)
    }

    fn new(word: usize, offset: usize, len: usize) -> BinaryWord {
        let shift = 8 * (4 * word as i32 + 4 - offset as i32 - len as i32);
        let (shl, shr) = if shift >= 0 {
            (shift as u32, 32)
        } else {
            (32, (-shift) as u32)
        };
        BinaryWord { shl, shr, shift }
    }

    /// What the nonce's high 32 bits put into this word.
    fn hi_part(self, hi: u32) -> u32 {
        if self.shift >= 0 {
            return 0;
        }
        let r = (-self.shift) as u32;
        match r {
            1..=31 => hi << (32 - r),
            32..=63 => hi >> (r - 32),
            _ => 0,
        }
    }
}

/// A message word of the nonce's block: the same in every lane (`C`) or not (`X`).
/// In [`compress_single`] which is which is known at compile time, so the matches
/// fold away and work on constant words is done once, on scalars.
#[derive(Clone, Copy)]
enum Word<L> {
    C(u32),
    X(L),
}

impl<L: Lanes> Word<L> {
    #[inline(always)]
    unsafe fn small_sigma0(self) -> Self {
        match self {
            Word::C(c) => Word::C(ssig0(c)),
            // SAFETY: the caller runs with L's target features (trait contract).
            Word::X(x) => Word::X(unsafe { L::small_sigma0(x) }),
        }
    }

    #[inline(always)]
    unsafe fn small_sigma1(self) -> Self {
        match self {
            Word::C(c) => Word::C(ssig1(c)),
            // SAFETY: the caller runs with L's target features (trait contract).
            Word::X(x) => Word::X(unsafe { L::small_sigma1(x) }),
        }
    }

    /// `K + W` as lanes.
    #[inline(always)]
    unsafe fn plus_k(self, k: u32) -> L {
        // SAFETY: the caller runs with L's target features (trait contract).
        unsafe {
            match self {
                Word::C(c) => L::splat(c.wrapping_add(k)),
                Word::X(x) => L::add(x, L::splat(k)),
            }
        }
    }

    /// The sum of four words: constants summed on scalars, one splat added to the rest.
    #[inline(always)]
    unsafe fn sum4(terms: [Self; 4]) -> Self {
        let mut constant = 0u32;
        let mut any_constant = false;
        let mut lanes: Option<L> = None;
        for term in terms {
            match term {
                Word::C(c) => {
                    constant = constant.wrapping_add(c);
                    any_constant = true;
                }
                // SAFETY: the caller runs with L's target features (trait contract).
                Word::X(x) => lanes = Some(lanes.map_or(x, |y| unsafe { L::add(y, x) })),
            }
        }
        match lanes {
            None => Word::C(constant),
            // SAFETY: the caller runs with L's target features (trait contract).
            Some(x) if any_constant => Word::X(unsafe { L::add(x, L::splat(constant)) }),
            Some(x) => Word::X(x),
        }
    }
}

/// Compresses the nonce's block when only its word `V` differs between lanes (`wv`):
/// `st` is the (scalar) state before round `V`, `words` the block's other words.
/// Round `V` is two adds, and every schedule term that does not depend on word `V`
/// is computed on scalars.
#[inline(always)]
#[allow(unused_comparisons, unused_assignments)] // `V < 0` in the generated rounds; the last schedule store
unsafe fn compress_single<L: Lanes, const V: usize>(
    chain: &[L; 8],
    st: &[u32; 8],
    words: &[u32; 16],
    wv: L,
) -> [L; 8] {
    // SAFETY: the caller runs with L's target features (trait contract).
    unsafe {
        let [a, b, c, d, e, f, g, h] = *st;
        let t1 = h
            .wrapping_add(bsig1(e))
            .wrapping_add((e & f) ^ (!e & g))
            .wrapping_add(K[V]);
        let to_a = t1.wrapping_add(bsig0(a).wrapping_add((a & b) ^ (a & c) ^ (b & c)));
        let to_e = d.wrapping_add(t1);
        let s = L::splat;
        let mut after = [
            L::add(wv, s(to_a)),
            s(a),
            s(b),
            s(c),
            L::add(wv, s(to_e)),
            s(e),
            s(f),
            s(g),
        ];
        // The names rounds8! uses at round V + 1.
        after.rotate_left((V + 1) % 8);
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = after;
        let mut w: [Word<L>; 16] = std::array::from_fn(|i| {
            if i == V {
                Word::X(wv)
            } else {
                Word::C(words[i])
            }
        });
        macro_rules! kw {
            ($i:expr) => {
                w[$i].plus_k(K[$i])
            };
        }
        macro_rules! guarded8 {
            ($i:expr) => {
                if V < $i {
                    round!(a, b, c, d, e, f, g, h, kw!($i));
                }
                if V < $i + 1 {
                    round!(h, a, b, c, d, e, f, g, kw!($i + 1));
                }
                if V < $i + 2 {
                    round!(g, h, a, b, c, d, e, f, kw!($i + 2));
                }
                if V < $i + 3 {
                    round!(f, g, h, a, b, c, d, e, kw!($i + 3));
                }
                if V < $i + 4 {
                    round!(e, f, g, h, a, b, c, d, kw!($i + 4));
                }
                if V < $i + 5 {
                    round!(d, e, f, g, h, a, b, c, kw!($i + 5));
                }
                if V < $i + 6 {
                    round!(c, d, e, f, g, h, a, b, kw!($i + 6));
                }
                if V < $i + 7 {
                    round!(b, c, d, e, f, g, h, a, kw!($i + 7));
                }
            };
        }
        guarded8!(0);
        guarded8!(8);
        let mut st = [a, b, c, d, e, f, g, h];
        macro_rules! kws {
            ($i:expr) => {{
                let x = Word::sum4([
                    w[$i & 15],
                    w[($i + 1) & 15].small_sigma0(),
                    w[($i + 9) & 15],
                    w[($i + 14) & 15].small_sigma1(),
                ]);
                w[$i & 15] = x;
                x.plus_k(K[$i])
            }};
        }
        rounds8!(st, 16, kws);
        rounds8!(st, 24, kws);
        rounds8!(st, 32, kws);
        rounds8!(st, 40, kws);
        rounds8!(st, 48, kws);
        rounds8!(st, 56, kws);
        let mut out = *chain;
        for (x, y) in out.iter_mut().zip(st) {
            *x = L::add(*x, y);
        }
        out
    }
}

/// What [`run`] needs, prepared once per call by [`scan`] on scalars.
pub(super) struct Setup {
    /// The tail's words with the nonce bytes the whole run shares; varying bytes zero.
    words: [u32; 32],
    /// The encoded first nonce of the run, in the tail.
    first_bytes: [u8; 128],
    /// First and last message word (of the tail) holding varying nonce bytes.
    v: usize,
    e: usize,
    /// The chaining value before the first block with varying words.
    chain: [u32; 8],
    /// The state before round `v % 16` of that block.
    st: [u32; 8],
    /// `K + W` of a trailing block with no varying word.
    const_kw: Option<[u32; 64]>,
}

/// One entry of a backend's table of [`run`] instances: index `V < 16` for runs whose
/// only varying word is word `V` of its block, 16 for any other shape.
pub(super) type RunFn = unsafe fn(&Setup, &Template, u64, u32) -> Option<u64>;

/// The [`ScanFn`](super::ScanFn) body for lane type `L`: prepares the call and hands it
/// to the backend's specialised loop, `runs[V]`.
///
/// # Safety
///
/// Every function of `runs` must be safe to call on this CPU.
#[inline(always)]
pub(super) unsafe fn scan(t: &Template, start: u64, count: u32, runs: &[RunFn; 17]) -> Option<u64> {
    let off = t.nonce_offset;
    let end = off + t.nonce_len;
    assert!(count >= 1 && end <= 128);
    let last = start + u64::from(count - 1);

    // The nonce bytes every nonce of the run shares are message constants.
    let (first_bytes, varying_from) = t.run_bytes(start, last);
    let v = varying_from / 4;
    let e = (end - 1) / 4;
    debug_assert!(e - v < MAX_VARYING);
    let words = t.shared_words(&first_bytes, varying_from);
    let block =
        |b: usize| -> [u32; 16] { words[b * 16..b * 16 + 16].try_into().expect("16 words") };

    // Scalar work once per call: blocks before the first varying word, and the
    // rounds of its block before it.
    let mut chain = t.midstate;
    if v >= 16 {
        scalar_compress(&mut chain, &block(0));
    }
    let mut st = chain;
    scalar_rounds(&mut st, &block(v / 16), v % 16);
    // A last block with no varying word: its whole schedule is a constant.
    let const_kw = (t.tail_blocks == 2 && e < 16).then(|| const_schedule(&block(1)));
    let setup = Setup {
        words,
        first_bytes,
        v,
        e,
        chain,
        st,
        const_kw,
    };
    let run = if v == e { runs[v % 16] } else { runs[16] };
    // SAFETY: the caller vouches for `runs` on this CPU.
    unsafe { run(&setup, t, start, count) }
}

/// The nonce loop, specialised for runs whose only varying word is word `V` of its
/// block (`V < 16`) or generic (`V == 16`).
///
/// # Safety
///
/// The CPU must have `L`'s target features and the caller must be compiled with them.
#[inline(always)]
pub(super) unsafe fn run<L: Lanes, const V: usize>(
    setup: &Setup,
    t: &Template,
    start: u64,
    count: u32,
) -> Option<u64> {
    let lanes = L::N;
    let off = t.nonce_offset;
    let len = t.nonce_len;
    let end = off + len;
    assert!(count >= 1 && end <= 128 && lanes <= 32);
    let &Setup {
        ref words,
        first_bytes,
        v,
        e,
        chain,
        st,
        const_kw,
    } = setup;
    let nvar = (e - v + 1).min(MAX_VARYING);
    let first_block = v / 16;
    let last_block = e / 16;
    let from = v % 16;
    let const_kw_ref = const_kw.as_ref();
    let block_words: [u32; 16] = words[(first_block * 16) & 16..][..16]
        .try_into()
        .expect("16 words");

    // SAFETY: the caller guarantees L's target features (this function's contract).
    unsafe {
        let chain_v = chain.map(|x| L::splat(x));
        let mut st_rotated = st;
        st_rotated.rotate_left(from % 8);
        let st_v = st_rotated.map(|x| L::splat(x));
        let words_v = words.map(|x| L::splat(x));
        let max = t.first_word_max();
        let binary = t.format == NonceFormat::Binary;
        let mut shapes = [BinaryWord::default(); MAX_VARYING];
        for (k, shape) in shapes.iter_mut().enumerate().take(nvar) {
            *shape = BinaryWord::new(v + k, off, len);
        }
        let iota = L::iota();
        // Decimal nonces of four digits or more: the last four of each lane's nonce are
        // built on vectors, the digits above them (the same in every lane unless the
        // last four carry, which falls back to the per-lane path) are message constants.
        let vector_decimal = !binary && len >= 4;
        let mut buf = first_bytes;
        let mut lane_words = [[0u32; 32]; MAX_VARYING];
        let mut var = [L::splat(0); MAX_VARYING];

        let mut done = 0u32;
        while done < count {
            let base = start + u64::from(done);
            let remaining = count - done;
            let valid = if remaining as usize >= lanes {
                u32::MAX >> (32 - lanes)
            } else {
                (1u32 << remaining) - 1
            };
            // The varying words of this vector's nonces.
            let lo = base as u32;
            let low4 = vector_decimal
                .then(|| last4(&buf[off..end]))
                .filter(|&low4| low4 + lanes as u32 <= 10_000);
            if let Some(low4) = low4 {
                let digits = ascii4(L::add(L::splat(low4), iota));
                let chunks = buf.as_chunks::<4>().0;
                for k in 0..nvar {
                    let shape = shapes[k];
                    let fixed = u32::from_be_bytes(chunks[(v + k) & 31]) & !shape.lo_mask();
                    var[k] = L::or(
                        L::splat(fixed),
                        L::or(L::shl(digits, shape.shl), L::shr(digits, shape.shr)),
                    );
                }
                add_decimal(&mut buf[off..end], lanes as u32);
            } else if binary && lo.checked_add(lanes as u32 - 1).is_some() {
                let hi = (base >> 32) as u32;
                let lo_v = L::add(L::splat(lo), iota);
                for k in 0..nvar {
                    let shape = shapes[k];
                    let fixed = L::splat(words[(v + k) & 31] | shape.hi_part(hi));
                    var[k] = L::or(
                        fixed,
                        L::or(L::shl(lo_v, shape.shl), L::shr(lo_v, shape.shr)),
                    );
                }
            } else {
                for lane in 0..lanes {
                    let nonce = base.wrapping_add(lane as u64);
                    if binary {
                        t.write_nonce(nonce, &mut buf);
                    }
                    let chunks = buf.as_chunks::<4>().0;
                    for (k, words) in lane_words.iter_mut().enumerate().take(nvar) {
                        words[lane] = u32::from_be_bytes(chunks[(v + k) & 31]);
                    }
                    if !binary {
                        add_decimal(&mut buf[off..end], 1);
                    }
                }
                for k in 0..nvar {
                    var[k] = L::load(&lane_words[k]);
                }
            }

            // The first hash.
            let mut h;
            if V < 16 {
                h = compress_single::<L, V>(&chain_v, &st, &block_words, var[0]);
            } else {
                h = chain_v;
                let mut state = st_v;
                let mut round_from = from;
                for b in first_block..=last_block {
                    let mut w: [L; 16] =
                        words_v[(b * 16) & 16..][..16].try_into().expect("16 words");
                    for (k, &x) in var.iter().enumerate().take(nvar) {
                        let word = v + k;
                        if word / 16 == b {
                            w[word & 15] = x;
                        }
                    }
                    h = compress_block(&h, state, &mut w, round_from);
                    state = h;
                    round_from = 0;
                }
            }
            if let Some(kw) = const_kw_ref {
                h = compress_const(h, kw);
            }

            // The second hash's first word decides.
            let h0 = second_h0(h);
            let hits = L::le_mask(h0, max) & valid;
            if hits != 0 {
                if t.difficulty <= 32 {
                    return Some(base + u64::from(hits.trailing_zeros()));
                }
                let mut rest = hits;
                while rest != 0 {
                    let nonce = base + u64::from(rest.trailing_zeros());
                    if t.confirm(nonce) {
                        return Some(nonce);
                    }
                    rest &= rest - 1;
                }
            }
            done = done.saturating_add(lanes as u32);
        }
        None
    }
}

/// A backend's table of [`run`] instances, each compiled with its target features:
/// `run_table!(Zmm, "avx512f")`.
macro_rules! run_table {
    ($lanes:ty, $features:literal) => {{
        #[target_feature(enable = $features)]
        unsafe fn run<const V: usize>(
            setup: &lanes::Setup,
            t: &Template,
            start: u64,
            count: u32,
        ) -> Option<u64> {
            // SAFETY: compiled with the backend's features; only reached through the
            // backend's `scan`, after run-time detection.
            unsafe { lanes::run::<$lanes, V>(setup, t, start, count) }
        }
        [
            run::<0> as lanes::RunFn,
            run::<1>,
            run::<2>,
            run::<3>,
            run::<4>,
            run::<5>,
            run::<6>,
            run::<7>,
            run::<8>,
            run::<9>,
            run::<10>,
            run::<11>,
            run::<12>,
            run::<13>,
            run::<14>,
            run::<15>,
            run::<16>,
        ]
    }};
}
pub(super) use run_table;
