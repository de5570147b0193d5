//! 16 nonces per vector with AVX-512F: native rotates (`vprord`) and three-input
//! logic (`vpternlogd`) for Σ, σ, Ch and Maj. The loop itself is `lanes.rs`.
//!
//! Two loops: [`scan`] on one vector (16 nonces in flight, the `avx512` backend) and
//! [`scan_x2`] on two at a time (32, `avx512x2`): where the core's vector pipes
//! wait on a round's chain of dependent instructions rather than on each other, the
//! second vector's instructions fill them. On Zen 4 (2026-12-06) that is 6% fewer
//! cycles per nonce; the cost is twice the live values, more than the 32 `zmm`
//! registers hold (the excess goes to the stack). `auto` measures both.

use std::arch::x86_64::*;

use super::lanes::{self, Lanes};
use super::Template;

/// Sixteen 32-bit lanes in a `zmm` register.
#[derive(Clone, Copy)]
struct Zmm(__m512i);

/// `vpternlogd` truth tables: inputs a = 0xF0, b = 0xCC, c = 0xAA.
const XOR3: i32 = 0x96;
const CH: i32 = 0xCA;
const MAJ: i32 = 0xE8;

// SAFETY: every method is only reached through `scan_avx512`, which is compiled with
// `avx512f` and only called after run-time detection (`scan`).
unsafe impl Lanes for Zmm {
    const N: usize = 16;

    #[inline(always)]
    unsafe fn splat(x: u32) -> Self {
        // SAFETY: AVX-512F is enabled in the caller (trait contract).
        Zmm(unsafe { _mm512_set1_epi32(x as i32) })
    }
    #[inline(always)]
    unsafe fn iota() -> Self {
        // SAFETY: AVX-512F is enabled in the caller (trait contract).
        Zmm(unsafe { _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15) })
    }
    #[inline(always)]
    unsafe fn load(a: &[u32; 32]) -> Self {
        // SAFETY: `a` is 64 readable bytes; unaligned load; AVX-512F enabled.
        Zmm(unsafe { _mm512_loadu_si512(a.as_ptr().cast()) })
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        // SAFETY: AVX-512F is enabled in the caller (trait contract).
        Zmm(unsafe { _mm512_add_epi32(a.0, b.0) })
    }
    #[inline(always)]
    unsafe fn sub(a: Self, b: Self) -> Self {
        // SAFETY: AVX-512F is enabled in the caller (trait contract).
        Zmm(unsafe { _mm512_sub_epi32(a.0, b.0) })
    }
    #[inline(always)]
    unsafe fn mul(a: Self, b: Self) -> Self {
        // SAFETY: AVX-512F is enabled in the caller (trait contract).
        Zmm(unsafe { _mm512_mullo_epi32(a.0, b.0) })
    }
    #[inline(always)]
    unsafe fn or(a: Self, b: Self) -> Self {
        // SAFETY: AVX-512F is enabled in the caller (trait contract).
        Zmm(unsafe { _mm512_or_si512(a.0, b.0) })
    }
    #[inline(always)]
    unsafe fn shl(a: Self, n: u32) -> Self {
        // SAFETY: AVX-512F is enabled in the caller; counts >= 32 give 0.
        Zmm(unsafe { _mm512_sll_epi32(a.0, _mm_cvtsi32_si128(n as i32)) })
    }
    #[inline(always)]
    unsafe fn shr(a: Self, n: u32) -> Self {
        // SAFETY: AVX-512F is enabled in the caller; counts >= 32 give 0.
        Zmm(unsafe { _mm512_srl_epi32(a.0, _mm_cvtsi32_si128(n as i32)) })
    }
    #[inline(always)]
    unsafe fn big_sigma0(a: Self) -> Self {
        // SAFETY: AVX-512F is enabled in the caller (trait contract).
        unsafe {
            let x = a.0;
            Zmm(_mm512_ternarylogic_epi32::<XOR3>(
                _mm512_ror_epi32::<2>(x),
                _mm512_ror_epi32::<13>(x),
                _mm512_ror_epi32::<22>(x),
            ))
        }
    }
    #[inline(always)]
    unsafe fn big_sigma1(e: Self) -> Self {
        // SAFETY: AVX-512F is enabled in the caller (trait contract).
        unsafe {
            let x = e.0;
            Zmm(_mm512_ternarylogic_epi32::<XOR3>(
                _mm512_ror_epi32::<6>(x),
                _mm512_ror_epi32::<11>(x),
                _mm512_ror_epi32::<25>(x),
            ))
        }
    }
    #[inline(always)]
    unsafe fn small_sigma0(w: Self) -> Self {
        // SAFETY: AVX-512F is enabled in the caller (trait contract).
        unsafe {
            let x = w.0;
            Zmm(_mm512_ternarylogic_epi32::<XOR3>(
                _mm512_ror_epi32::<7>(x),
                _mm512_ror_epi32::<18>(x),
                _mm512_srli_epi32::<3>(x),
            ))
        }
    }
    #[inline(always)]
    unsafe fn small_sigma1(w: Self) -> Self {
        // SAFETY: AVX-512F is enabled in the caller (trait contract).
        unsafe {
            let x = w.0;
            Zmm(_mm512_ternarylogic_epi32::<XOR3>(
                _mm512_ror_epi32::<17>(x),
                _mm512_ror_epi32::<19>(x),
                _mm512_srli_epi32::<10>(x),
            ))
        }
    }
    #[inline(always)]
    unsafe fn ch(e: Self, f: Self, g: Self) -> Self {
        // SAFETY: AVX-512F is enabled in the caller (trait contract).
        Zmm(unsafe { _mm512_ternarylogic_epi32::<CH>(e.0, f.0, g.0) })
    }
    #[inline(always)]
    unsafe fn maj(a: Self, b: Self, c: Self) -> Self {
        // SAFETY: AVX-512F is enabled in the caller (trait contract).
        Zmm(unsafe { _mm512_ternarylogic_epi32::<MAJ>(a.0, b.0, c.0) })
    }
    #[inline(always)]
    unsafe fn le_mask(a: Self, max: u32) -> u32 {
        // SAFETY: AVX-512F is enabled in the caller (trait contract).
        u32::from(unsafe { _mm512_cmple_epu32_mask(a.0, _mm512_set1_epi32(max as i32)) })
    }
}

/// Whether this CPU can run the backend.
pub fn is_available() -> bool {
    is_x86_feature_detected!("avx512f")
}

/// The nonce loop compiled with AVX-512F, one instance per shape (see [`lanes::run`]).
const RUNS: [lanes::RunFn; 17] = lanes::run_table!(Zmm, "avx512f");

/// The same loop on two vectors at a time (32 nonces in flight).
const RUNS_X2: [lanes::RunFn; 17] = lanes::run_table!(lanes::Pair<Zmm>, "avx512f");

/// [`ScanFn`](super::ScanFn) for the avx512 loop on two interleaved vectors.
pub fn scan_x2(t: &Template, start: u64, count: u32) -> Option<u64> {
    assert!(is_available(), "the avx512 backend needs AVX-512F");
    // SAFETY: AVX-512F was detected just above.
    unsafe { lanes::scan(t, start, count, &RUNS_X2) }
}

/// [`ScanFn`](super::ScanFn) for the avx512 backend. Callers check [`is_available`]
/// first (`Backend::from_name` does); without AVX-512F it panics rather than fault.
pub fn scan(t: &Template, start: u64, count: u32) -> Option<u64> {
    assert!(is_available(), "the avx512 backend needs AVX-512F");
    // SAFETY: AVX-512F was detected just above.
    unsafe { lanes::scan(t, start, count, &RUNS) }
}
