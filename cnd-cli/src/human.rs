//! Numbers a person can read at a glance.

use std::time::Duration;

/// `43983182` → `43,983,182`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
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
