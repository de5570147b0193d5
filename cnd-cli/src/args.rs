//! Command-line arguments shared by several subcommands, and their parsers.
//!
//! Parsers return one sentence naming what was wrong; clap turns it into exit 2.

use std::time::Duration;

use clap::Args;
use cnd_core::puzzle::{parse_block_hex, parse_difficulty};
use cnd_core::worker_config::MAX_THREADS;
use cnd_core::{NonceBits, NonceFormat, NonceRange, Puzzle, DEFAULT_BLOCK};

/// What the nonce is appended to, and how (everything but the difficulty).
#[derive(Debug, Clone, Args)]
pub struct PuzzleShape {
    /// The block, as UTF-8 text. [default: COMSM0010cloud, the original system's block]
    #[arg(long, value_name = "TEXT", conflicts_with = "block_hex")]
    pub block: Option<String>,

    /// The block as hex bytes (any length, may be empty), instead of --block.
    #[arg(long, value_name = "HEX", value_parser = parse_hex)]
    pub block_hex: Option<BlockHex>,

    /// Nonce width in bits: the space searched is 0 .. 2^bits.
    #[arg(long, value_name = "32|64", default_value = "32", value_parser = parse_nonce_bits)]
    pub nonce_bits: NonceBits,

    /// How the nonce is appended: `binary` (big-endian, bits/8 bytes) or
    /// `decimal` (ASCII digits, as the original worker did).
    #[arg(long, value_name = "binary|decimal", default_value = "binary", value_parser = parse_nonce_format)]
    pub nonce_format: NonceFormat,
}

impl PuzzleShape {
    /// The block bytes: --block-hex, else --block, else the default block.
    pub fn block(&self) -> Vec<u8> {
        match (&self.block_hex, &self.block) {
            (Some(BlockHex(bytes)), _) => bytes.clone(),
            (None, Some(text)) => text.as_bytes().to_vec(),
            (None, None) => DEFAULT_BLOCK.as_bytes().to_vec(),
        }
    }

    /// The puzzle with difficulty `difficulty`.
    pub fn puzzle(&self, difficulty: u32) -> Result<Puzzle, cnd_core::PuzzleError> {
        Puzzle::new(self.block(), difficulty, self.nonce_bits, self.nonce_format)
    }
}

/// Block bytes given as hex (a newtype so clap takes one value, not a list).
#[derive(Debug, Clone)]
pub struct BlockHex(pub Vec<u8>);

fn parse_hex(s: &str) -> Result<BlockHex, String> {
    parse_block_hex(s).map(BlockHex).map_err(|e| e.to_string())
}

/// A whole puzzle: its shape and a difficulty.
#[derive(Debug, Clone, Args)]
pub struct PuzzleArgs {
    #[command(flatten)]
    pub shape: PuzzleShape,

    /// D: the leading zero bits a golden hash needs (0..=256). Expected work is
    /// 2^D hashes; 32-bit nonces give out around D = 32 (see `cnd-cli plan`).
    #[arg(short = 'd', long, value_name = "D", value_parser = parse_difficulty)]
    pub difficulty: u32,
}

impl PuzzleArgs {
    /// The validated puzzle.
    pub fn puzzle(&self) -> Result<Puzzle, cnd_core::PuzzleError> {
        self.shape.puzzle(self.difficulty)
    }
}

/// `--json`: one JSON object on stdout instead of the human summary.
#[derive(Debug, Clone, Copy, Args)]
pub struct OutputArgs {
    /// Print one JSON object on stdout instead of the human summary (no progress bar).
    #[arg(long)]
    pub json: bool,
}

fn parse_nonce_bits(s: &str) -> Result<NonceBits, String> {
    s.parse().map_err(|e: cnd_core::PuzzleError| e.to_string())
}

fn parse_nonce_format(s: &str) -> Result<NonceFormat, String> {
    s.parse().map_err(|e: cnd_core::PuzzleError| e.to_string())
}

/// A thread count, at least 1.
pub fn parse_threads(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("the thread count must be at least 1".to_string()),
        Ok(n) if n > MAX_THREADS => Err(format!(
            "{n} threads is more than the {MAX_THREADS} supported"
        )),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a whole number of threads")),
    }
}

/// The longest duration a flag accepts.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// A duration: `90s`, `5m`, `1h30m`, or a plain number of seconds; more than zero.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let duration = match t.parse::<f64>() {
        Ok(secs) if (0.0..1e12).contains(&secs) => Duration::from_secs_f64(secs),
        Ok(_) => return Err(format!("{s:?} is not a usable number of seconds")),
        Err(_) => humantime::parse_duration(t)
            .map_err(|e| format!("{s:?} is not a duration like 90s, 5m or 1h30m ({e})"))?,
    };
    if duration.is_zero() {
        return Err(format!("the duration {s:?} must be longer than zero"));
    }
    // Adding an unbounded duration to `Instant::now()` overflows and panics.
    if duration > MAX_DURATION {
        return Err(format!(
            "the duration {s:?} is longer than the 366 days allowed"
        ));
    }
    Ok(duration)
}

/// A probability strictly between 0 and 1; `95%` is accepted too.
pub fn parse_probability(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let value = match t.strip_suffix('%') {
        Some(percent) => percent.trim().parse::<f64>().map(|p| p / 100.0),
        None => t.parse::<f64>(),
    }
    .map_err(|_| format!("{s:?} is not a probability like 0.95 or 95%"))?;
    if !(value > 0.0 && value < 1.0) {
        return Err(format!(
            "the probability {s:?} must be strictly between 0 and 1"
        ));
    }
    Ok(value)
}

/// A positive, finite number (a rate).
pub fn parse_positive(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}

/// `--range START..END` for `puzzle`, or its whole space.
pub fn range_for(puzzle: &Puzzle, range: Option<&str>) -> Result<NonceRange, cnd_core::RangeError> {
    match range {
        Some(text) => NonceRange::parse_within(text, &puzzle.space()),
        None => Ok(puzzle.space()),
    }
}

#[cfg(test)]
mod duration_tests {
    use super::*;

    #[test]
    fn durations_beyond_a_year_are_refused_not_panics() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("366days"), Ok(MAX_DURATION));
        assert!(parse_duration("500000000000years").is_err());
        assert!(parse_duration("367days").is_err());
        assert!(parse_duration("99999999999").is_err());
        assert!(parse_duration("0").is_err());
    }
}
