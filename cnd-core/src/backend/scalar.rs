//! The portable reference backend: one nonce at a time, plain Rust, no unsafe.
//!
//! It is written to be obviously right, not fast; every other backend is tested
//! against it.

use super::{leading_zeros, Template, IV};

/// SHA-256's round constants.
pub(crate) const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// SHA-256's message schedule: the 64 words `W[t]` of one block.
pub fn schedule(block: &[u32; 16]) -> [u32; 64] {
    let mut w = [0u32; 64];
    w[..16].copy_from_slice(block);
    for i in 16..64 {
        let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
        let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16]
            .wrapping_add(s0)
            .wrapping_add(w[i - 7])
            .wrapping_add(s1);
    }
    w
}

/// SHA-256's compression function on one block of 16 big-endian words.
pub fn compress(state: &mut [u32; 8], block: &[u32; 16]) {
    let w = schedule(block);
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;
    for i in 0..64 {
        let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
        let ch = (e & f) ^ (!e & g);
        let t1 = h
            .wrapping_add(s1)
            .wrapping_add(ch)
            .wrapping_add(K[i])
            .wrapping_add(w[i]);
        let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
        let maj = (a & b) ^ (a & c) ^ (b & c);
        let t2 = s0.wrapping_add(maj);
        h = g;
        g = f;
        f = e;
        e = d.wrapping_add(t1);
        d = c;
        c = b;
        b = a;
        a = t1.wrapping_add(t2);
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
        *s = s.wrapping_add(v);
    }
}

/// `SHA256(SHA256(message))` for `nonce`, as eight big-endian words.
pub fn double_hash(t: &Template, nonce: u64) -> [u32; 8] {
    let mut bytes = t.tail_bytes;
    t.write_nonce(nonce, &mut bytes);
    let mut state = t.midstate;
    for block in bytes.chunks_exact(64).take(t.tail_blocks) {
        let mut words = [0u32; 16];
        for (word, b) in words.iter_mut().zip(block.chunks_exact(4)) {
            *word = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        }
        compress(&mut state, &words);
    }
    // The second hash: 32 bytes of digest, 0x80, zeros, bit length 256.
    let mut second = [0u32; 16];
    second[..8].copy_from_slice(&state);
    second[8] = 0x8000_0000;
    second[15] = 256;
    let mut out = IV;
    compress(&mut out, &second);
    out
}

/// [`ScanFn`](super::ScanFn) for the scalar backend.
pub fn scan(t: &Template, start: u64, count: u32) -> Option<u64> {
    (0..u64::from(count))
        .map(|i| start + i)
        .find(|&nonce| leading_zeros(&double_hash(t, nonce)) >= t.difficulty)
}
