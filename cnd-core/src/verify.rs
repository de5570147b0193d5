//! Independent verification of a nonce: the Digest API of `sha2`, none of the backends.

use sha2::{Digest, Sha256};

use crate::puzzle::Puzzle;

/// What a nonce's hash is, and whether it is golden.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verification {
    /// The nonce checked.
    pub nonce: u64,
    /// `SHA256(SHA256(block || format(nonce)))`.
    pub hash: [u8; 32],
    /// Leading zero bits of `hash` (SPEC §1).
    pub leading_zeros: u32,
    /// Whether `leading_zeros >= D`.
    pub golden: bool,
}

/// `SHA256(SHA256(message))`.
pub fn double_sha256(message: &[u8]) -> [u8; 32] {
    Sha256::digest(Sha256::digest(message)).into()
}

/// Leading zero bits of a hash read as one big-endian 256-bit number.
pub fn leading_zero_bits(hash: &[u8]) -> u32 {
    let mut zeros = 0;
    for &byte in hash {
        zeros += byte.leading_zeros();
        if byte != 0 {
            break;
        }
    }
    zeros
}

/// Hashes `nonce` for `puzzle` from scratch and says whether it is golden.
///
/// A nonce outside the puzzle's space is hashed as its encoding would be
/// (truncated to 32 bits for 32-bit binary nonces); callers reject such nonces first.
///
/// ```
/// use cnd_core::{verify, Puzzle};
/// use cnd_core::puzzle::to_hex;
///
/// // The README's known answer, which Python's hashlib confirms.
/// let check = verify(&Puzzle::with_default_block(16).unwrap(), 133_050);
/// assert!(check.golden);
/// assert_eq!(check.leading_zeros, 16);
/// assert!(to_hex(&check.hash).starts_with("0000a77c"));
/// assert!(!verify(&Puzzle::with_default_block(17).unwrap(), 133_050).golden);
/// ```
pub fn verify(puzzle: &Puzzle, nonce: u64) -> Verification {
    let hash = double_sha256(&puzzle.message(nonce));
    let leading_zeros = leading_zero_bits(&hash);
    Verification {
        nonce,
        hash,
        leading_zeros,
        golden: leading_zeros >= puzzle.difficulty(),
    }
}
