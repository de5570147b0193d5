//! The `sha2` crate's `compress256` on pre-padded blocks, starting from the midstate.
//!
//! No per-nonce allocation, padding or length encoding: the template holds the
//! padded tail, only the nonce's bytes change. `compress256` itself picks SHA-NI
//! when the CPU has it.

use sha2::block_api::compress256;

use super::{leading_zeros, Template, IV};

/// The second hash's block: the first digest goes into bytes 0..32.
const SECOND_PADDING: [u8; 64] = {
    let mut block = [0u8; 64];
    block[32] = 0x80;
    block[62] = 0x01; // bit length 256, big-endian
    block
};

/// [`ScanFn`](super::ScanFn) for the sha2 backend.
pub fn scan(t: &Template, start: u64, count: u32) -> Option<u64> {
    let mut tail = t.tail_bytes;
    let blocks: usize = t.tail_blocks;
    let mut second = SECOND_PADDING;
    for i in 0..u64::from(count) {
        let nonce = start + i;
        t.write_nonce(nonce, &mut tail);
        let mut state = t.midstate;
        let (tail_blocks, _) = tail.as_chunks::<64>();
        compress256(&mut state, &tail_blocks[..blocks]);
        for (bytes, word) in second.chunks_exact_mut(4).zip(state) {
            bytes.copy_from_slice(&word.to_be_bytes());
        }
        let mut out = IV;
        compress256(&mut out, std::slice::from_ref(&second));
        if leading_zeros(&out) >= t.difficulty {
            return Some(nonce);
        }
    }
    None
}
