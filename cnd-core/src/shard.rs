//! Nonce ranges and shards (SPEC §2).

use std::fmt;
use std::str::FromStr;

/// Why a range or a sharding was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RangeError {
    /// The text is not `START..END` with two whole numbers.
    #[error("range {0:?} is not of the form START..END with whole numbers")]
    Syntax(String),
    /// `END` is not above `START`, so the range holds no nonce.
    #[error("range {0:?} is empty or reversed: END must be greater than START")]
    Empty(String),
    /// The range reaches past the top of the nonce space.
    #[error("range {range} reaches past the nonce space 0..{space}")]
    OutsideSpace {
        /// The range as given.
        range: String,
        /// The size of the space, `2^bits`.
        space: u128,
    },
    /// Zero shards were asked for.
    #[error("the shard count must be at least 1")]
    NoShards,
    /// More shards than nonces: some would be empty.
    #[error("{shards} shards is more than the {nonces} nonces of the range")]
    TooManyShards {
        /// Shards asked for.
        shards: u64,
        /// Nonces in the range.
        nonces: u128,
    },
    /// A shard index at or past the shard count.
    #[error("shard index {index} is out of range for {count} shards")]
    ShardIndex {
        /// The index given.
        index: u64,
        /// The number of shards.
        count: u64,
    },
}

/// A non-empty, inclusive range of nonces `first ..= last`.
///
/// Inclusive so that the top of the 64-bit space, `2^64 - 1`, is representable
/// without overflow; lengths are `u128` for the same reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NonceRange {
    first: u64,
    last: u64,
}

impl NonceRange {
    /// `first ..= last`, or `None` when `last < first`.
    pub fn new(first: u64, last: u64) -> Option<Self> {
        (first <= last).then_some(NonceRange { first, last })
    }

    /// The half-open range `start .. end` (`end` may be `2^64`), or `None` when empty.
    pub fn half_open(start: u128, end: u128) -> Option<Self> {
        if start >= end || end > 1u128 << 64 {
            return None;
        }
        Some(NonceRange {
            first: start as u64,
            last: (end - 1) as u64,
        })
    }

    /// The first nonce of the range.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// The last nonce of the range (inclusive).
    pub fn last(&self) -> u64 {
        self.last
    }

    /// One past the last nonce, as `u128` (it may be `2^64`).
    pub fn end(&self) -> u128 {
        u128::from(self.last) + 1
    }

    /// The number of nonces, at least 1 and at most `2^64`.
    pub fn len(&self) -> u128 {
        self.end() - u128::from(self.first)
    }

    /// Always false: a `NonceRange` holds at least one nonce.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `nonce` lies in the range.
    pub fn contains(&self, nonce: u64) -> bool {
        self.first <= nonce && nonce <= self.last
    }

    /// Whether `other` lies wholly inside this range.
    pub fn covers(&self, other: &NonceRange) -> bool {
        self.first <= other.first && other.last <= self.last
    }

    /// Shard `index` of `count` (SPEC §2): `[floor(i*N/S), floor((i+1)*N/S))`, offset by `first`.
    ///
    /// ```
    /// use cnd_core::NonceRange;
    ///
    /// let range = NonceRange::new(0, 9).unwrap(); // 10 nonces
    /// let shards: Vec<_> = (0..3).map(|i| range.shard(i, 3).unwrap()).collect();
    /// // Contiguous, covering the range once, sizes differing by at most one.
    /// assert_eq!(shards, [
    ///     NonceRange::new(0, 2).unwrap(),
    ///     NonceRange::new(3, 5).unwrap(),
    ///     NonceRange::new(6, 9).unwrap(),
    /// ]);
    /// assert!(range.shard(3, 3).is_err());
    /// ```
    pub fn shard(&self, index: u64, count: u64) -> Result<NonceRange, RangeError> {
        let n = self.len();
        if count == 0 {
            return Err(RangeError::NoShards);
        }
        if u128::from(count) > n {
            return Err(RangeError::TooManyShards {
                shards: count,
                nonces: n,
            });
        }
        if index >= count {
            return Err(RangeError::ShardIndex { index, count });
        }
        // No overflow: i + 1 <= S < 2^64 and N <= 2^64, so (i + 1) * N < 2^128.
        let lo = u128::from(index) * n / u128::from(count);
        let hi = (u128::from(index) + 1) * n / u128::from(count);
        let first = u128::from(self.first) + lo;
        Ok(NonceRange {
            first: first as u64,
            last: (u128::from(self.first) + hi - 1) as u64,
        })
    }

    /// Parses `START..END` (half-open) and checks it against a space of `2^bits` nonces.
    pub fn parse_within(text: &str, space: &NonceRange) -> Result<NonceRange, RangeError> {
        let range: NonceRange = text.parse()?;
        if !space.covers(&range) {
            return Err(RangeError::OutsideSpace {
                range: text.to_string(),
                space: space.end(),
            });
        }
        Ok(range)
    }
}

impl FromStr for NonceRange {
    type Err = RangeError;
    /// `START..END`, half-open; `END` may be `2^64` (18446744073709551616).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (start, end) = s
            .split_once("..")
            .ok_or_else(|| RangeError::Syntax(s.to_string()))?;
        let parse = |t: &str| -> Result<u128, RangeError> {
            let t = t.trim();
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(RangeError::Syntax(s.to_string()));
            }
            t.parse::<u128>()
                .map_err(|_| RangeError::Syntax(s.to_string()))
        };
        let (start, end) = (parse(start)?, parse(end)?);
        if end <= start {
            return Err(RangeError::Empty(s.to_string()));
        }
        NonceRange::half_open(start, end).ok_or(RangeError::OutsideSpace {
            range: s.to_string(),
            space: 1u128 << 64,
        })
    }
}

impl fmt::Display for NonceRange {
    /// Half-open, as it is parsed: `START..END`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.first, self.end())
    }
}
