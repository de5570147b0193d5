//! Numbers a person can read at a glance, and the warnings that use them.

use std::time::Duration;

use cnd_core::{stats, NonceRange, Puzzle};

/// `43983182` → `43,983,182` (any unsigned width, 2^64 included).
pub fn count(n: impl Into<u128>) -> String {
    let digits = n.into().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Hashes per second as `35.71 MH/s` (or GH/s, kH/s).
pub fn rate(hashes_per_sec: f64) -> String {
    match hashes_per_sec {
        r if r >= 1e9 => format!("{:.2} GH/s", r / 1e9),
        r if r >= 1e6 => format!("{:.2} MH/s", r / 1e6),
        r if r >= 1e3 => format!("{:.2} kH/s", r / 1e3),
        r => format!("{r:.0} H/s"),
    }
}

/// A duration as `850 ms`, `12.3 s`, `5 min 18 s`, `3 h 12 min`, `41 days`.
pub fn duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    match secs {
        s if s < 1.0 => format!("{:.0} ms", s * 1e3),
        s if s < 60.0 => format!("{s:.2} s"),
        s if s < 3600.0 => format!("{} min {} s", (s / 60.0) as u64, (s % 60.0) as u64),
        s if s < 86400.0 * 2.0 => format!(
            "{} h {} min",
            (s / 3600.0) as u64,
            (s % 3600.0 / 60.0) as u64
        ),
        s if s < 86400.0 * 365.0 * 2.0 => format!("{:.0} days", s / 86400.0),
        s => format!("{:.3e} years", s / (86400.0 * 365.25)),
    }
}

/// A probability as a percentage with sensible precision: `36.79%`, `<0.01%`.
pub fn percent(p: f64) -> String {
    match p * 100.0 {
        v if v > 0.0 && v < 0.01 => "<0.01%".to_string(),
        v if v < 100.0 && v > 99.99 => ">99.99%".to_string(),
        v => format!("{v:.2}%"),
    }
}

/// Rate per second of `hashes` in `elapsed`, 0 when no time passed.
pub fn per_sec(hashes: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        hashes as f64 / secs
    } else {
        0.0
    }
}

/// `1 pod`, `4 pods`: a count and its noun, singular or plural (nouns that take an `s`).
pub fn plural(n: u64, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        n => format!("{} {noun}s", count(n)),
    }
}

/// The first lines of a found nonce's summary, the same for `run` and `submit`.
pub fn print_golden(nonce: u64, hash: &[u8; 32], leading_zeros: u32, difficulty: u32) {
    println!("Golden nonce   {nonce} (0x{nonce:x})");
    println!("Hash           {}", cnd_core::puzzle::to_hex(hash));
    println!("Leading zeros  {leading_zeros} (needed {difficulty})");
}

/// Says so before a run that is likely to come back empty (SPEC §1).
pub fn warn_if_likely_empty(puzzle: &Puzzle, range: &NonceRange) {
    let empty = stats::empty_space_probability(puzzle.difficulty(), range.len());
    if empty >= 0.05 {
        eprintln!(
            "cnd-cli: warning: at D = {} the {} nonces searched hold no golden nonce with probability {}; \
             consider --nonce-bits 64",
            puzzle.difficulty(),
            count(range.len()),
            percent(empty)
        );
    }
}

/// How long `hashes` more at `rate` per second take to reach 2^D, the expected
/// work: `~1m 5s to 2^30`, or `past 2^30` once that many were hashed.
pub fn eta_to_expected(hashes: u64, rate: f64, difficulty: u32) -> String {
    let expected = stats::expected_hashes(difficulty);
    if rate > 0.0 && (hashes as f64) < expected {
        let left = ((expected - hashes as f64) / rate).min(1e15);
        format!(
            "~{} to 2^{difficulty}",
            duration(Duration::from_secs_f64(left))
        )
    } else {
        format!("past 2^{difficulty}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_have_separators_and_nouns_agree() {
        assert_eq!(count(0u64), "0");
        assert_eq!(count(999u64), "999");
        assert_eq!(count(43_983_182u64), "43,983,182");
        assert_eq!(count(1u128 << 64), "18,446,744,073,709,551,616");
        assert_eq!(plural(1, "pod"), "1 pod");
        assert_eq!(plural(0, "pod"), "0 pods");
        assert_eq!(plural(1200, "shard"), "1,200 shards");
    }

    #[test]
    fn the_eta_counts_down_to_the_expected_work_then_says_it_is_past() {
        // 2^20 hashes at 2^19 per second: 2 s to go from the start.
        assert_eq!(
            eta_to_expected(0, (1u64 << 19) as f64, 20),
            "~2.00 s to 2^20"
        );
        assert_eq!(eta_to_expected(1 << 20, 1e6, 20), "past 2^20");
        assert_eq!(eta_to_expected(5, 0.0, 20), "past 2^20", "no rate yet");
    }
}
