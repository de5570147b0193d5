//! What earlier attempts of a run searched, so that a resumed run searches
//! only the rest (SPEC §2, §4 `CND_SEARCHED`).
//!
//! [`Searched`] holds, per shard, either "all of it" (the shard was exhausted,
//! or settled by a find) or a prefix: the first N nonces of the shard, all
//! tried. The master fills it from its journal ([`crate::journal`]); a
//! [`RunSpec`](crate::RunSpec) carries it to the launchers, which start no
//! worker for a shard searched to its end and tell every other worker where
//! its shard's rest begins.
//!
//! ```
//! use cnd_core::Searched;
//!
//! let mut searched = Searched::default();
//! searched.mark_done(0);
//! searched.mark_done(1);
//! searched.add_prefix(3, 65_536);
//! assert_eq!(searched.to_env(), "0-1,3:65536");
//! assert_eq!(Searched::parse("0-1,3:65536", 4).unwrap(), searched);
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The most bytes of `CND_SEARCHED` a launcher puts in one template (an
/// Indexed Job's): Linux refuses one environment string over 128 KiB, and a
/// pod spec should stay small. What does not fit is searched again, which is
/// only work, never a wrong answer.
pub const MAX_SEARCHED_ENV: usize = 32 * 1024;

/// The parts of a run's shards that earlier attempts searched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Searched {
    /// Shards searched to their end.
    done: BTreeSet<u64>,
    /// Shards searched from their first nonce for this many nonces (never 0,
    /// never a done shard).
    prefixes: BTreeMap<u64, u64>,
}

/// Why a `CND_SEARCHED` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SearchedError {
    /// An entry is not `I`, `I-J` nor `I:N` in plain decimal digits.
    #[error("`{0}` is not SHARD, FIRST-LAST or SHARD:NONCES (plain decimal digits)")]
    Syntax(String),
    /// A shard index not below the run's shard count.
    #[error("shard {shard} is not one of the run's {shards} shards")]
    NoSuchShard {
        /// The index.
        shard: u64,
        /// The run's shard count.
        shards: u64,
    },
    /// A shard named twice.
    #[error("shard {0} is named twice")]
    Twice(u64),
}

impl Searched {
    /// Whether nothing is known to be searched.
    pub fn is_empty(&self) -> bool {
        self.done.is_empty() && self.prefixes.is_empty()
    }

    /// Marks `shard` searched to its end.
    pub fn mark_done(&mut self, shard: u64) {
        self.prefixes.remove(&shard);
        self.done.insert(shard);
    }

    /// Records that the first `nonces` of `shard` were all tried; a prefix only
    /// grows, and a done shard stays done.
    pub fn add_prefix(&mut self, shard: u64, nonces: u64) {
        if nonces == 0 || self.done.contains(&shard) {
            return;
        }
        let prefix = self.prefixes.entry(shard).or_insert(0);
        *prefix = (*prefix).max(nonces);
    }

    /// Whether `shard` was searched to its end.
    pub fn is_done(&self, shard: u64) -> bool {
        self.done.contains(&shard)
    }

    /// Nonces from `shard`'s first one already tried (0 for a done shard:
    /// ask [`is_done`](Self::is_done) first).
    pub fn prefix(&self, shard: u64) -> u64 {
        self.prefixes.get(&shard).copied().unwrap_or(0)
    }

    /// Shards searched to their end.
    pub fn done(&self) -> impl Iterator<Item = u64> + '_ {
        self.done.iter().copied()
    }

    /// Shards with a prefix, and its length.
    pub fn prefixes(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.prefixes.iter().map(|(&s, &n)| (s, n))
    }

    /// Only what concerns `shard` (what its own worker is told).
    pub fn for_shard(&self, shard: u64) -> Searched {
        let mut one = Searched::default();
        if self.is_done(shard) {
            one.mark_done(shard);
        } else {
            one.add_prefix(shard, self.prefix(shard));
        }
        one
    }

    /// The `CND_SEARCHED` value: runs of done shards as `I-J` (or `I`), then
    /// prefixes as `I:N`, comma-separated; empty when nothing is known.
    pub fn to_env(&self) -> String {
        self.to_env_within(usize::MAX)
    }

    /// [`to_env`](Self::to_env) cut to at most `limit` bytes, whole entries
    /// only: done shards first, as they save the most.
    pub fn to_env_within(&self, limit: usize) -> String {
        let mut out = String::new();
        let mut push = |entry: String| {
            let extra = entry.len() + usize::from(!out.is_empty());
            if out.len() + extra <= limit {
                if !out.is_empty() {
                    out.push(',');
                }
                out.push_str(&entry);
            }
        };
        let mut done = self.done.iter().copied().peekable();
        while let Some(first) = done.next() {
            let mut last = first;
            while done.peek() == Some(&(last + 1)) {
                last += 1;
                done.next();
            }
            push(if first == last {
                first.to_string()
            } else {
                format!("{first}-{last}")
            });
        }
        for (shard, nonces) in &self.prefixes {
            push(format!("{shard}:{nonces}"));
        }
        out
    }

    /// Parses a `CND_SEARCHED` value for a run of `shards` shards (empty: nothing).
    pub fn parse(text: &str, shards: u64) -> Result<Searched, SearchedError> {
        let mut searched = Searched::default();
        let mut named = BTreeSet::new();
        let mut name = |shard: u64| {
            if shard >= shards {
                return Err(SearchedError::NoSuchShard { shard, shards });
            }
            if !named.insert(shard) {
                return Err(SearchedError::Twice(shard));
            }
            Ok(())
        };
        if text.is_empty() {
            return Ok(searched);
        }
        for entry in text.split(',') {
            let syntax = || SearchedError::Syntax(entry.to_string());
            let number = |t: &str| {
                (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| t.parse::<u64>().ok())
                    .flatten()
                    .ok_or_else(syntax)
            };
            if let Some((shard, nonces)) = entry.split_once(':') {
                let (shard, nonces) = (number(shard)?, number(nonces)?);
                if nonces == 0 {
                    return Err(syntax());
                }
                name(shard)?;
                searched.add_prefix(shard, nonces);
            } else if let Some((first, last)) = entry.split_once('-') {
                let (first, last) = (number(first)?, number(last)?);
                if first > last {
                    return Err(syntax());
                }
                if last >= shards {
                    return Err(SearchedError::NoSuchShard {
                        shard: last,
                        shards,
                    });
                }
                for shard in first..=last {
                    name(shard)?;
                    searched.mark_done(shard);
                }
            } else {
                let shard = number(entry)?;
                name(shard)?;
                searched.mark_done(shard);
            }
        }
        Ok(searched)
    }
}

impl fmt::Display for Searched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_env())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_refused_with_the_entry() {
        for (text, want) in [
            ("x", "`x` is not"),
            ("1:0", "`1:0` is not"),
            ("3-1", "`3-1` is not"),
            ("+1", "`+1` is not"),
            ("1,,2", "`` is not"),
            ("4", "shard 4 is not one of the run's 4 shards"),
            ("0-9", "shard 9 is not one of"),
            ("1,0-2", "shard 1 is named twice"),
            ("2:5,2", "shard 2 is named twice"),
        ] {
            let err = Searched::parse(text, 4).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
        assert!(Searched::parse("", 4).unwrap().is_empty());
    }

    #[test]
    fn a_cut_value_keeps_whole_entries_and_done_shards_first() {
        let mut searched = Searched::default();
        for shard in [0, 1, 2, 5, 9] {
            searched.mark_done(shard);
        }
        searched.add_prefix(7, 123_456);
        assert_eq!(searched.to_env(), "0-2,5,9,7:123456");
        assert_eq!(searched.to_env_within(7), "0-2,5,9");
        assert_eq!(searched.to_env_within(6), "0-2,5");
        assert_eq!(searched.to_env_within(3), "0-2");
        // An entry too long for what is left is skipped, a shorter one after it kept.
        assert_eq!(searched.to_env_within(2), "5");
        assert_eq!(searched.to_env_within(0), "");
    }
}
