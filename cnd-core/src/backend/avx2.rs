//! 8 nonces per vector with AVX2: rotates as two shifts and an or, Ch and Maj from
//! and/xor/or. The loop itself is `lanes.rs`.

use std::arch::x86_64::*;

use super::lanes::{self, Lanes};
use super::Template;

/// Eight 32-bit lanes in a `ymm` register.
#[derive(Clone, Copy)]
struct Ymm(__m256i);

/// `x >> r | x << (32 - r)` for constant `r`, as (right, left) shift pairs xored in.
macro_rules! shifts {
    ($x:expr, $r:literal) => {
        _mm256_xor_si256(
            _mm256_srli_epi32::<$r>($x),
            _mm256_slli_epi32::<{ 32 - $r }>($x),
        )
    };
}

// SAFETY: every method is only reached through `scan_avx2`, which is compiled with
// `avx2` and only called after run-time detection (`scan`).
unsafe impl Lanes for Ymm {
    const N: usize = 8;

    #[inline(always)]
    unsafe fn splat(x: u32) -> Self {
        // SAFETY: AVX2 is enabled in the caller (trait contract).
        Ymm(unsafe { _mm256_set1_epi32(x as i32) })
    }
    #[inline(always)]
    unsafe fn iota() -> Self {
        // SAFETY: AVX2 is enabled in the caller (trait contract).
        Ymm(unsafe { _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7) })
    }
    #[inline(always)]
    unsafe fn load(a: &[u32; 32]) -> Self {
        // SAFETY: `a` has at least 32 readable bytes; unaligned load; AVX2 enabled.
        Ymm(unsafe { _mm256_loadu_si256(a.as_ptr().cast()) })
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        // SAFETY: AVX2 is enabled in the caller (trait contract).
        Ymm(unsafe { _mm256_add_epi32(a.0, b.0) })
    }
    #[inline(always)]
    unsafe fn sub(a: Self, b: Self) -> Self {
        // SAFETY: AVX2 is enabled in the caller (trait contract).
        Ymm(unsafe { _mm256_sub_epi32(a.0, b.0) })
    }
    #[inline(always)]
    unsafe fn mul(a: Self, b: Self) -> Self {
        // SAFETY: AVX2 is enabled in the caller (trait contract).
        Ymm(unsafe { _mm256_mullo_epi32(a.0, b.0) })
    }
    #[inline(always)]
    unsafe fn or(a: Self, b: Self) -> Self {
        // SAFETY: AVX2 is enabled in the caller (trait contract).
        Ymm(unsafe { _mm256_or_si256(a.0, b.0) })
    }
    #[inline(always)]
    unsafe fn shl(a: Self, n: u32) -> Self {
        // SAFETY: AVX2 is enabled in the caller; counts >= 32 give 0.
        Ymm(unsafe { _mm256_sll_epi32(a.0, _mm_cvtsi32_si128(n as i32)) })
    }
    #[inline(always)]
    unsafe fn shr(a: Self, n: u32) -> Self {
        // SAFETY: AVX2 is enabled in the caller; counts >= 32 give 0.
        Ymm(unsafe { _mm256_srl_epi32(a.0, _mm_cvtsi32_si128(n as i32)) })
    }
    #[inline(always)]
    unsafe fn big_sigma0(a: Self) -> Self {
        // SAFETY: AVX2 is enabled in the caller (trait contract).
        unsafe {
            let x = a.0;
            Ymm(_mm256_xor_si256(
                _mm256_xor_si256(shifts!(x, 2), shifts!(x, 13)),
                shifts!(x, 22),
            ))
        }
    }
    #[inline(always)]
    unsafe fn big_sigma1(e: Self) -> Self {
        // SAFETY: AVX2 is enabled in the caller (trait contract).
        unsafe {
            let x = e.0;
            Ymm(_mm256_xor_si256(
                _mm256_xor_si256(shifts!(x, 6), shifts!(x, 11)),
                shifts!(x, 25),
            ))
        }
    }
    #[inline(always)]
    unsafe fn small_sigma0(w: Self) -> Self {
        // SAFETY: AVX2 is enabled in the caller (trait contract).
        unsafe {
            let x = w.0;
            Ymm(_mm256_xor_si256(
                _mm256_xor_si256(shifts!(x, 7), shifts!(x, 18)),
                _mm256_srli_epi32::<3>(x),
            ))
        }
    }
    #[inline(always)]
    unsafe fn small_sigma1(w: Self) -> Self {
        // SAFETY: AVX2 is enabled in the caller (trait contract).
        unsafe {
            let x = w.0;
            Ymm(_mm256_xor_si256(
                _mm256_xor_si256(shifts!(x, 17), shifts!(x, 19)),
                _mm256_srli_epi32::<10>(x),
            ))
        }
    }
    #[inline(always)]
    unsafe fn ch(e: Self, f: Self, g: Self) -> Self {
        // SAFETY: AVX2 is enabled in the caller (trait contract).
        Ymm(unsafe { _mm256_xor_si256(_mm256_and_si256(_mm256_xor_si256(f.0, g.0), e.0), g.0) })
    }
    #[inline(always)]
    unsafe fn maj(a: Self, b: Self, c: Self) -> Self {
        // SAFETY: AVX2 is enabled in the caller (trait contract).
        unsafe {
            Ymm(_mm256_or_si256(
                _mm256_and_si256(a.0, b.0),
                _mm256_and_si256(c.0, _mm256_or_si256(a.0, b.0)),
            ))
        }
    }
    #[inline(always)]
    unsafe fn le_mask(a: Self, max: u32) -> u32 {
        // SAFETY: AVX2 is enabled in the caller (trait contract).
        unsafe {
            let le = _mm256_cmpeq_epi32(_mm256_min_epu32(a.0, _mm256_set1_epi32(max as i32)), a.0);
            _mm256_movemask_ps(_mm256_castsi256_ps(le)) as u32
        }
    }
}

/// Whether this CPU can run the backend.
pub fn is_available() -> bool {
    is_x86_feature_detected!("avx2")
}

/// The nonce loop compiled with AVX2, one instance per shape (see [`lanes::run`]).
const RUNS: [lanes::RunFn; 17] = lanes::run_table!(Ymm, "avx2");

/// [`ScanFn`](super::ScanFn) for the avx2 backend. Callers check [`is_available`]
/// first (`Backend::from_name` does); without AVX2 it panics rather than fault.
pub fn scan(t: &Template, start: u64, count: u32) -> Option<u64> {
    assert!(is_available(), "the avx2 backend needs AVX2");
    // SAFETY: AVX2 was detected just above.
    unsafe { lanes::scan(t, start, count, &RUNS) }
}
