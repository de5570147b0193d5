//! The puzzle of SPEC §1: a block, a difficulty, a nonce width and a nonce format.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::shard::NonceRange;

/// The block the original system searched with; the default everywhere.
pub const DEFAULT_BLOCK: &str = "COMSM0010cloud";

/// The largest difficulty: every bit of a 256-bit hash is zero.
pub const MAX_DIFFICULTY: u32 = 256;

/// Why a puzzle (or one of its parts) was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PuzzleError {
    /// The difficulty is above 256, the number of bits in a hash.
    #[error("difficulty {0} is out of range: it must be between 0 and 256")]
    DifficultyTooLarge(u64),
    /// The difficulty is not a whole number.
    #[error("difficulty {0:?} is not a whole number between 0 and 256")]
    DifficultyNotANumber(String),
    /// The nonce width is neither 32 nor 64 bits.
    #[error("nonce bits {0:?} is not supported: use 32 or 64")]
    NonceBits(String),
    /// The nonce format is neither `binary` nor `decimal`.
    #[error("nonce format {0:?} is not supported: use binary or decimal")]
    NonceFormat(String),
    /// The block hex has an odd length or a character outside `0-9a-fA-F`.
    #[error("block hex {0:?} is not valid hex: {1}")]
    BlockHex(String, &'static str),
}

/// How many bits a nonce has: the space is `0 .. 2^bits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum NonceBits {
    /// `0 .. 2^32`, as the original system.
    #[default]
    #[serde(rename = "32")]
    B32,
    /// `0 .. 2^64`, for difficulties where 2^32 nonces are not enough.
    #[serde(rename = "64")]
    B64,
}

impl NonceBits {
    /// The number of bits: 32 or 64.
    pub fn bits(self) -> u32 {
        match self {
            NonceBits::B32 => 32,
            NonceBits::B64 => 64,
        }
    }

    /// The largest nonce of the space.
    pub fn max_nonce(self) -> u64 {
        match self {
            NonceBits::B32 => u64::from(u32::MAX),
            NonceBits::B64 => u64::MAX,
        }
    }

    /// The number of nonces in the space, `2^bits`.
    pub fn space_size(self) -> u128 {
        1u128 << self.bits()
    }
}

impl FromStr for NonceBits {
    type Err = PuzzleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "32" => Ok(NonceBits::B32),
            "64" => Ok(NonceBits::B64),
            _ => Err(PuzzleError::NonceBits(s.to_string())),
        }
    }
}

impl fmt::Display for NonceBits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.bits())
    }
}

/// How a nonce is appended to the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NonceFormat {
    /// Big-endian, fixed width (`bits / 8` bytes).
    #[default]
    Binary,
    /// ASCII decimal digits without leading zeros, as the original worker did.
    Decimal,
}

impl FromStr for NonceFormat {
    type Err = PuzzleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "binary" => Ok(NonceFormat::Binary),
            "decimal" => Ok(NonceFormat::Decimal),
            _ => Err(PuzzleError::NonceFormat(s.to_string())),
        }
    }
}

impl fmt::Display for NonceFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NonceFormat::Binary => "binary",
            NonceFormat::Decimal => "decimal",
        })
    }
}

/// A validated puzzle: find a nonce whose `SHA256(SHA256(block || format(nonce)))`
/// has at least `difficulty` leading zero bits.
///
/// ```
/// use cnd_core::{NonceBits, NonceFormat, Puzzle};
///
/// // The original system's block and encoding: `str(block) + str(nonce)`.
/// let puzzle = Puzzle::new("COMSM0010cloud", 20, NonceBits::B32, NonceFormat::Decimal).unwrap();
/// assert_eq!(puzzle.message(42), b"COMSM0010cloud42");
/// assert_eq!(puzzle.space().len(), 1 << 32);
/// // The default: the same block, 4 big-endian bytes per nonce.
/// let binary = Puzzle::with_default_block(20).unwrap();
/// assert_eq!(binary.message(1), b"COMSM0010cloud\0\0\0\x01");
/// assert!(Puzzle::with_default_block(257).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Puzzle {
    block: Vec<u8>,
    difficulty: u32,
    bits: NonceBits,
    format: NonceFormat,
}

impl Puzzle {
    /// A puzzle from its parts; the only check left is the difficulty's range.
    pub fn new(
        block: impl Into<Vec<u8>>,
        difficulty: u32,
        bits: NonceBits,
        format: NonceFormat,
    ) -> Result<Self, PuzzleError> {
        if difficulty > MAX_DIFFICULTY {
            return Err(PuzzleError::DifficultyTooLarge(u64::from(difficulty)));
        }
        Ok(Puzzle {
            block: block.into(),
            difficulty,
            bits,
            format,
        })
    }

    /// The default block, 32-bit binary nonces, and the given difficulty.
    pub fn with_default_block(difficulty: u32) -> Result<Self, PuzzleError> {
        Puzzle::new(
            DEFAULT_BLOCK.as_bytes(),
            difficulty,
            NonceBits::B32,
            NonceFormat::Binary,
        )
    }

    /// The block bytes.
    pub fn block(&self) -> &[u8] {
        &self.block
    }

    /// D: the leading zero bits a golden hash needs.
    pub fn difficulty(&self) -> u32 {
        self.difficulty
    }

    /// The nonce width.
    pub fn nonce_bits(&self) -> NonceBits {
        self.bits
    }

    /// The nonce format.
    pub fn nonce_format(&self) -> NonceFormat {
        self.format
    }

    /// The whole nonce space, `0 .. 2^bits`.
    pub fn space(&self) -> NonceRange {
        NonceRange::new(0, self.bits.max_nonce()).expect("0 <= max")
    }

    /// The message that is hashed for `nonce`: the block followed by the encoded nonce.
    pub fn message(&self, nonce: u64) -> Vec<u8> {
        let mut message = self.block.clone();
        let mut buf = [0u8; 20];
        let encoded = encode_nonce(nonce, self.bits, self.format, &mut buf);
        message.extend_from_slice(encoded);
        message
    }
}

/// Parses a difficulty, `0 ..= 256`, naming the problem when it is not one.
pub fn parse_difficulty(s: &str) -> Result<u32, PuzzleError> {
    let value: u64 = s
        .trim()
        .parse()
        .map_err(|_| PuzzleError::DifficultyNotANumber(s.to_string()))?;
    if value > u64::from(MAX_DIFFICULTY) {
        return Err(PuzzleError::DifficultyTooLarge(value));
    }
    Ok(value as u32)
}

/// Decodes block hex (`--block-hex`, `CND_BLOCK_HEX`); an empty string is an empty block.
pub fn parse_block_hex(s: &str) -> Result<Vec<u8>, PuzzleError> {
    let digits = s.trim().as_bytes();
    if !digits.len().is_multiple_of(2) {
        return Err(PuzzleError::BlockHex(s.to_string(), "odd number of digits"));
    }
    digits
        .chunks_exact(2)
        .map(|pair| match (hex_value(pair[0]), hex_value(pair[1])) {
            (Some(hi), Some(lo)) => Ok(hi << 4 | lo),
            _ => Err(PuzzleError::BlockHex(
                s.to_string(),
                "a character is not a hex digit",
            )),
        })
        .collect()
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// The number of decimal digits of `n` (1 for 0).
pub fn decimal_digits(n: u64) -> usize {
    let mut digits = 1;
    let mut rest = n / 10;
    while rest > 0 {
        digits += 1;
        rest /= 10;
    }
    digits
}

/// Encodes `nonce` into `buf` and returns the encoded bytes (4, 8 or 1..=20 of them).
pub fn encode_nonce(nonce: u64, bits: NonceBits, format: NonceFormat, buf: &mut [u8; 20]) -> &[u8] {
    match (format, bits) {
        (NonceFormat::Binary, NonceBits::B32) => {
            buf[..4].copy_from_slice(&(nonce as u32).to_be_bytes());
            &buf[..4]
        }
        (NonceFormat::Binary, NonceBits::B64) => {
            buf[..8].copy_from_slice(&nonce.to_be_bytes());
            &buf[..8]
        }
        (NonceFormat::Decimal, _) => {
            let len = decimal_digits(nonce);
            write_decimal(nonce, &mut buf[..len]);
            &buf[..len]
        }
    }
}

/// Writes the last `field.len()` decimal digits of `n` into `field` as ASCII,
/// right-aligned (leading zeros where `n` has fewer digits).
#[inline(always)]
pub(crate) fn write_decimal(n: u64, field: &mut [u8]) {
    let mut rest = n;
    for slot in field.iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
}
