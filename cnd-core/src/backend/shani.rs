//! x86-64 SHA extensions (SHA-NI): `sha256rnds2` does two rounds, `sha256msg1/2` the
//! message schedule. One nonce's rounds form a long dependency chain (each
//! `sha256rnds2` waits for the previous one), so [`STREAMS`] independent nonces are
//! interleaved instruction by instruction to keep the SHA unit busy.
//!
//! Done once per call: the nonce bytes shared by the whole run, a leading tail block
//! without varying bytes (compressed into the chaining value) and a trailing one
//! (its schedule precomputed). The second hash's constant words (padding, length) are
//! folded by the compiler, and only its first word is extracted.

use std::arch::x86_64::*;

use super::scalar::{compress as scalar_compress, schedule, K};
use super::{Template, IV};
use crate::puzzle::NonceFormat;

/// Independent nonces in flight per thread: 2 measured best on Sapphire Rapids
/// (12.5 MH/s against 8.5 for 1, 11.8 for 4, 11.0 for 8).
const STREAMS: usize = 2;

/// Whether this CPU can run the backend.
pub fn is_available() -> bool {
    is_x86_feature_detected!("sha") && is_x86_feature_detected!("sse4.1")
}

/// [`ScanFn`](super::ScanFn) for the shani backend. Callers check [`is_available`]
/// first (`Backend::from_name` does); without SHA-NI it panics rather than fault.
pub fn scan(t: &Template, start: u64, count: u32) -> Option<u64> {
    assert!(is_available(), "the shani backend needs SHA-NI and SSE4.1");
    // SAFETY: SHA-NI and SSE4.1 (with the SSSE3 and SSE2 it implies) were detected above.
    unsafe { scan_shani(t, start, count) }
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
    // SAFETY: SSE2 is enabled in the caller (this module's functions run under `scan_shani`).
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

/// Four rounds on every stream; `kw[s]` holds `K[i..i+4] + W[i..i+4]` of stream `s`.
#[inline(always)]
unsafe fn rounds4(st: &mut [State; STREAMS], kw: &[__m128i; STREAMS]) {
    // SAFETY: SHA-NI and SSE2 are enabled in the caller.
    unsafe {
        for (s, &k) in st.iter_mut().zip(kw) {
            s.cdgh = _mm_sha256rnds2_epu32(s.cdgh, s.abef, k);
        }
        for (s, &k) in st.iter_mut().zip(kw) {
            s.abef = _mm_sha256rnds2_epu32(s.abef, s.cdgh, _mm_shuffle_epi32::<0x0E>(k));
        }
    }
}

/// Compresses one block per stream, `m[s]` its 16 words as four vectors; the result
/// is the new chaining value (the state plus `chain`).
#[inline(always)]
unsafe fn compress(
    chain: &[State; STREAMS],
    m: &mut [[__m128i; 4]; STREAMS],
    k4: &[__m128i; 16],
) -> [State; STREAMS] {
    // SAFETY: SHA-NI, SSSE3 and SSE2 are enabled in the caller.
    unsafe {
        let mut st = *chain;
        let mut kw = [_mm_setzero_si128(); STREAMS];
        for g in 0..16 {
            for (x, m) in kw.iter_mut().zip(m.iter_mut()) {
                if g >= 4 {
                    let next = _mm_sha256msg1_epu32(m[g & 3], m[(g + 1) & 3]);
                    let next =
                        _mm_add_epi32(next, _mm_alignr_epi8::<4>(m[(g + 3) & 3], m[(g + 2) & 3]));
                    m[g & 3] = _mm_sha256msg2_epu32(next, m[(g + 3) & 3]);
                }
                *x = _mm_add_epi32(m[g & 3], k4[g]);
            }
            rounds4(&mut st, &kw);
        }
        for (s, c) in st.iter_mut().zip(chain) {
            s.abef = _mm_add_epi32(s.abef, c.abef);
            s.cdgh = _mm_add_epi32(s.cdgh, c.cdgh);
        }
        st
    }
}

/// Compresses a block whose schedule is known: `kw[g]` is `K + W` of rounds `4g..4g+4`.
#[inline(always)]
unsafe fn compress_const(chain: &[State; STREAMS], kw: &[__m128i; 16]) -> [State; STREAMS] {
    // SAFETY: SHA-NI and SSE2 are enabled in the caller.
    unsafe {
        let mut st = *chain;
        for k in kw {
            rounds4(&mut st, &[*k; STREAMS]);
        }
        for (s, c) in st.iter_mut().zip(chain) {
            s.abef = _mm_add_epi32(s.abef, c.abef);
            s.cdgh = _mm_add_epi32(s.cdgh, c.cdgh);
        }
        st
    }
}

/// The second hash of each stream's digest, as far as its first word `H0`.
#[inline(always)]
unsafe fn second_h0(d: &[State; STREAMS], k4: &[__m128i; 16]) -> [u32; STREAMS] {
    // SAFETY: SHA-NI, SSE4.1 and SSE2 are enabled in the caller.
    unsafe {
        let mut m = [[_mm_setzero_si128(); 4]; STREAMS];
        for (m, d) in m.iter_mut().zip(d) {
            // [F, E, B, A] -> [A, B, E, F]; [H, G, D, C] -> [C, D, G, H].
            let abef = _mm_shuffle_epi32::<0x1B>(d.abef);
            let cdgh = _mm_shuffle_epi32::<0x1B>(d.cdgh);
            m[0] = _mm_unpacklo_epi64(abef, cdgh);
            m[1] = _mm_unpackhi_epi64(abef, cdgh);
            // Padding: 0x80 after the 32 bytes, then the bit length, 256.
            m[2] = _mm_setr_epi32(0x8000_0000u32 as i32, 0, 0, 0);
            m[3] = _mm_setr_epi32(0, 0, 0, 256);
        }
        let iv = [state(&IV); STREAMS];
        let out = compress(&iv, &mut m, k4);
        out.map(|s| _mm_extract_epi32::<3>(s.abef) as u32)
    }
}

/// How the message words of one nonce are built: the call's constant words, with
/// the varying ones (`first_var ..`, `nvar` of them) rewritten per nonce.
struct Words {
    words: [u32; 32],
    first_var: usize,
    nvar: usize,
}

#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
unsafe fn scan_shani(t: &Template, start: u64, count: u32) -> Option<u64> {
    let off = t.nonce_offset;
    let len = t.nonce_len;
    let end = off + len;
    assert!(count >= 1 && end <= 128);
    let last = start + u64::from(count - 1);

    // Nonce bytes shared by the whole run are constants of the call.
    let (first_bytes, varying_from) = t.run_bytes(start, last);
    let v = varying_from / 4;
    let e = (end - 1) / 4;
    let mut words = Words {
        words: [0; 32],
        first_var: v,
        nvar: e - v + 1,
    };
    for (word, bytes) in words.words.iter_mut().zip(first_bytes.as_chunks::<4>().0) {
        *word = u32::from_be_bytes(*bytes);
    }
    let first_block = v / 16;
    let last_block = e / 16;
    let mut chain = t.midstate;
    if first_block == 1 {
        let block: [u32; 16] = words.words[..16].try_into().expect("16 words");
        scalar_compress(&mut chain, &block);
    }

    // SAFETY: this function is compiled with the SHA-NI, SSE2, SSSE3 and SSE4.1 features
    // and only called after `is_available` found them.
    unsafe {
        let k4: [__m128i; 16] = std::array::from_fn(|g| quad(&K[4 * g..]));
        // A trailing block with no varying word: precompute K + W for all 64 rounds.
        let const_kw = if t.tail_blocks == 2 && last_block == 0 {
            let block: &[u32; 16] = words.words[16..].try_into().expect("16 words");
            let mut w = schedule(block);
            for (x, k) in w.iter_mut().zip(K) {
                *x = x.wrapping_add(k);
            }
            Some(std::array::from_fn::<__m128i, 16, _>(|g| quad(&w[4 * g..])))
        } else {
            None
        };
        let chain = [state(&chain); STREAMS];
        let max = t.first_word_max();
        let decimal = t.format == NonceFormat::Decimal;
        let mut buf = first_bytes;

        let mut done = 0u32;
        while done < count {
            let base = start + u64::from(done);
            // The message blocks of each stream's nonce (lanes past the run hash junk).
            let mut m = [[[_mm_setzero_si128(); 4]; 2]; STREAMS];
            for (s, m) in m.iter_mut().enumerate() {
                let nonce = base.wrapping_add(s as u64);
                if decimal {
                    // `buf` holds `nonce` already: runs are consecutive.
                    let chunks = buf.as_chunks::<4>().0;
                    for k in 0..words.nvar.min(6) {
                        let i = (words.first_var + k) & 31;
                        words.words[i] = u32::from_be_bytes(chunks[i]);
                    }
                    increment_decimal(&mut buf[off..end]);
                } else {
                    for k in 0..words.nvar.min(3) {
                        let i = (words.first_var + k) & 31;
                        words.words[i] = (words.words[i] & !binary_mask(i, off, len))
                            | binary_part(nonce, i, off, len);
                    }
                }
                for (b, m) in m
                    .iter_mut()
                    .enumerate()
                    .take(last_block + 1)
                    .skip(first_block)
                {
                    for (g, m) in m.iter_mut().enumerate() {
                        *m = quad(&words.words[(16 * b + 4 * g) & 31..][..4]);
                    }
                }
            }
            let mut h = chain;
            for b in first_block..=last_block {
                let mut mb: [[__m128i; 4]; STREAMS] = std::array::from_fn(|s| m[s][b & 1]);
                h = compress(&h, &mut mb, &k4);
            }
            if let Some(kw) = &const_kw {
                h = compress_const(&h, kw);
            }
            let h0 = second_h0(&h, &k4);
            let remaining = count - done;
            for (s, &h0) in h0.iter().enumerate().take(remaining as usize) {
                if h0 <= max {
                    let nonce = base + s as u64;
                    if t.difficulty <= 32 || t.confirm(nonce) {
                        return Some(nonce);
                    }
                }
            }
            done = done.saturating_add(STREAMS as u32);
        }
        None
    }
}

/// Bits of message word `i` that a binary nonce at `off`, `len` bytes long, covers.
#[inline(always)]
fn binary_mask(i: usize, off: usize, len: usize) -> u32 {
    binary_part(u64::MAX >> (64 - 8 * len), i, off, len)
}

/// What a binary nonce at byte `off`, `len` bytes long, puts into message word `i`.
#[inline(always)]
fn binary_part(nonce: u64, i: usize, off: usize, len: usize) -> u32 {
    let nonce = nonce & (u64::MAX >> (64 - 8 * len));
    // Bits from the nonce's last byte to the end of word i.
    let shift = 8 * (4 * i as i64 + 4 - off as i64 - len as i64);
    if shift >= 0 {
        if shift >= 64 {
            0
        } else {
            (nonce << shift) as u32
        }
    } else if -shift >= 64 {
        0
    } else {
        (nonce >> -shift) as u32
    }
}

/// Adds one to the ASCII decimal number in `field`, wrapping at the top (only nonces
/// past the end of a run ever wrap, and they are never reported).
#[inline(always)]
fn increment_decimal(field: &mut [u8]) {
    for digit in field.iter_mut().rev() {
        if *digit < b'9' {
            *digit += 1;
            return;
        }
        *digit = b'0';
    }
}
