//! Command-line arguments shared by several subcommands, and every value
//! parser of the subcommands' flags (the Kubernetes and SQS ones included).
//!
//! Parsers return one sentence naming what was wrong; clap turns it into exit 2.
//! Every count (D, pods, shards, threads, repeats) is plain decimal digits: no
//! sign, as `str::parse` would allow a leading `+`.

use std::time::Duration;

use clap::Args;
use cnd_core::distributed::MAX_SHARDS;
use cnd_core::puzzle::{parse_block_hex, MAX_DIFFICULTY};
use cnd_core::worker_config::{max_threads, MIN_THREAD_CAP, THREADS_PER_CPU};
use cnd_core::{NonceBits, NonceFormat, NonceRange, Puzzle, DEFAULT_BLOCK};

use crate::cluster::cpu_cores;

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

/// `s` as a whole number written in decimal digits only (spaces around it
/// ignored): `None` for anything else, a sign included, or a number too large
/// for `T`.
fn digits<T: std::str::FromStr>(s: &str) -> Option<T> {
    let t = s.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

/// The most pods or shards one run may have (SPEC §2's shard limit, which
/// `submit --pods` and `--shards` take too).
pub const MAX_COUNT: u64 = MAX_SHARDS;

/// A count of pods or shards: `1 ..= MAX_COUNT`.
pub fn parse_count(s: &str) -> Result<u64, String> {
    match digits::<u64>(s) {
        Some(0) => Err("the count must be at least 1".to_string()),
        Some(n) if n > MAX_COUNT => Err(format!("{n} is more than the {MAX_COUNT} supported")),
        Some(n) => Ok(n),
        None => Err(format!("{s:?} is not a whole number")),
    }
}

/// A difficulty D, `0 ..= 256` (decimal digits only, as every count).
pub fn parse_difficulty(s: &str) -> Result<u32, String> {
    match digits::<u64>(s) {
        Some(d) if d <= u64::from(MAX_DIFFICULTY) => Ok(d as u32),
        Some(d) => Err(cnd_core::PuzzleError::DifficultyTooLarge(d).to_string()),
        None => Err(cnd_core::PuzzleError::DifficultyNotANumber(s.to_string()).to_string()),
    }
}

/// A thread count, at least 1.
pub fn parse_threads(s: &str) -> Result<usize, String> {
    match digits::<usize>(s) {
        Some(0) => Err("the thread count must be at least 1".to_string()),
        // More only wait, and a pool that large takes minutes to start and stop.
        Some(n) if n > max_threads() => Err(format!(
            "{n} threads is more than the {} allowed here: {THREADS_PER_CPU} per CPU this \
             process may use ({}), at least {MIN_THREAD_CAP}",
            max_threads(),
            cnd_core::available_threads()
        )),
        Some(n) => Ok(n),
        None => Err(format!("{s:?} is not a whole number of threads")),
    }
}

/// The most repeats of a sweep's cell, and the most shards per pod.
pub const MAX_REPEAT: u32 = 1000;

/// `sweep --repeat` and `--shards-per-pod`: `1 ..= MAX_REPEAT`.
pub fn parse_repeat(s: &str) -> Result<u32, String> {
    match digits::<u32>(s) {
        Some(0) => Err("must be at least 1".to_string()),
        Some(n) if n > MAX_REPEAT => Err(format!("{n} is more than the {MAX_REPEAT} supported")),
        Some(n) => Ok(n),
        None => Err(format!("{s:?} is not a whole number")),
    }
}

/// The most pod counts, and the most difficulties, one sweep may list: a
/// sweep has at most `MAX_GRID_AXIS²` cells.
pub const MAX_GRID_AXIS: usize = 64;

/// `sweep --pods`: pod counts, ascending, without repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodList(pub Vec<u64>);

/// `sweep --pods 1,2,4,8`: each a count of [`parse_count`], at most
/// [`MAX_GRID_AXIS`] different ones.
pub fn parse_pod_list(s: &str) -> Result<PodList, String> {
    let mut pods = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let n = match digits::<u64>(part) {
            Some(0) => return Err("a pod count must be at least 1".to_string()),
            Some(n) if n > MAX_COUNT => {
                return Err(format!("{n} pods is more than the {MAX_COUNT} supported"))
            }
            Some(n) => n,
            None => return Err(format!("{part:?} is not a whole number of pods")),
        };
        if !pods.contains(&n) {
            if pods.len() == MAX_GRID_AXIS {
                return Err(format!(
                    "more than {MAX_GRID_AXIS} pod counts: a sweep takes at most {MAX_GRID_AXIS}"
                ));
            }
            pods.push(n);
        }
    }
    if pods.is_empty() {
        return Err(format!(
            "{s:?} names no pod counts; give a list like 1,2,4,8"
        ));
    }
    pods.sort_unstable();
    Ok(PodList(pods))
}

/// `sweep -d`: difficulties, ascending, without repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difficulties(pub Vec<u32>);

/// `sweep -d 20..26` (both ends included), `20,22,24` or `24`: at most
/// [`MAX_GRID_AXIS`] difficulties.
pub fn parse_difficulties(s: &str) -> Result<Difficulties, String> {
    let t = s.trim();
    let mut ds = Vec::new();
    if let Some((a, b)) = t.split_once("..") {
        let b = b.strip_prefix('=').unwrap_or(b);
        let (lo, hi) = (parse_difficulty(a)?, parse_difficulty(b)?);
        if lo > hi {
            return Err(format!("{s:?} is an empty range: write it low..high"));
        }
        ds.extend(lo..=hi);
    } else {
        for part in t.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            ds.push(parse_difficulty(part)?);
        }
    }
    ds.sort_unstable();
    ds.dedup();
    if ds.len() > MAX_GRID_AXIS {
        return Err(format!(
            "{s:?} is {} difficulties: a sweep takes at most {MAX_GRID_AXIS}",
            ds.len()
        ));
    }
    if ds.is_empty() {
        return Err(format!(
            "{s:?} names no difficulty; give 20..26, 20,22 or 24"
        ));
    }
    Ok(Difficulties(ds))
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

/// The interval between a worker's progress reports: [`parse_duration`], from
/// 50 ms to 1 h (what the worker accepts as `CND_PROGRESS_SECS`).
pub fn parse_progress_every(s: &str) -> Result<Duration, String> {
    let every = parse_duration(s)?;
    if every < Duration::from_millis(50) || every > Duration::from_secs(3600) {
        return Err(format!("{s:?} is outside 50ms ..= 1h"));
    }
    Ok(every)
}

/// How often `submit` asks the launcher about its workers: 50 ms to 60 s.
pub fn parse_status_every(s: &str) -> Result<Duration, String> {
    let every = parse_duration(s)?;
    if every < Duration::from_millis(50) || every > Duration::from_secs(60) {
        return Err(format!("{s:?} is outside 50ms ..= 60s"));
    }
    Ok(every)
}

/// A duration checked as [`parse_duration`] does, kept as written (to pass on
/// to `submit`, as `sweep` does).
pub fn parse_duration_text(s: &str) -> Result<String, String> {
    parse_duration(s).map(|_| s.trim().to_string())
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

/// A Kubernetes CPU quantity: `2`, `1.5`, `500m`.
pub fn parse_cpu(s: &str) -> Result<String, String> {
    let number = s.strip_suffix('m').unwrap_or(s);
    let ok = !number.is_empty()
        && number.chars().all(|c| c.is_ascii_digit() || c == '.')
        && number.matches('.').count() <= 1
        && !number.starts_with('.')
        && cpu_cores(s).is_some_and(|c| c > 0.0);
    ok.then(|| s.to_string())
        .ok_or_else(|| format!("{s:?} is not a CPU quantity like 1, 2, 1.5 or 500m"))
}

/// A Kubernetes memory quantity: `128Mi`, `1Gi`, `500M`, `1000000`.
pub fn parse_memory(s: &str) -> Result<String, String> {
    const SUFFIXES: &[&str] = &[
        "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E", "",
    ];
    let ok = SUFFIXES.iter().any(|suffix| {
        s.strip_suffix(suffix).is_some_and(|n| {
            !n.is_empty()
                && n.chars().all(|c| c.is_ascii_digit())
                && n.parse::<u64>().is_ok_and(|v| v > 0)
        })
    });
    ok.then(|| s.to_string())
        .ok_or_else(|| format!("{s:?} is not a memory quantity like 128Mi, 1Gi or 500M"))
}

/// A DNS-1123 label (a namespace): lower-case letters, digits and '-', at most 63.
pub fn parse_dns_label(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    ok.then(|| s.to_string()).ok_or_else(|| {
        format!("{s:?} is not a valid namespace: lower-case letters, digits and '-', at most 63 characters")
    })
}

/// A DNS-1123 subdomain (a service account name).
pub fn parse_dns_subdomain(s: &str) -> Result<String, String> {
    let ok =
        !s.is_empty() && s.len() <= 253 && s.split('.').all(|label| parse_dns_label(label).is_ok());
    ok.then(|| s.to_string()).ok_or_else(|| {
        format!(
            "{s:?} is not a valid service account name: lower-case letters, digits, '-' and '.'"
        )
    })
}

/// An image reference: anything without spaces or control characters.
pub fn parse_image(s: &str) -> Result<String, String> {
    let ok = !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then(|| s.to_string())
        .ok_or_else(|| format!("{s:?} is not an image reference like registry/cnd-worker:1"))
}

/// An SQS queue URL: `https://…` (or `http://…` for a local server).
pub fn parse_queue_url(s: &str) -> Result<String, String> {
    let ok = (s.starts_with("https://") || s.starts_with("http://")) && s.len() > "https://".len();
    ok.then(|| s.to_string()).ok_or_else(|| {
        format!(
            "{s:?} is not a queue URL like https://sqs.eu-west-2.amazonaws.com/123456789012/cnd"
        )
    })
}

/// An SQS queue name: letters, digits, '-' and '_', at most 80.
pub fn parse_queue_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 80
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| s.to_string()).ok_or_else(|| {
        format!(
            "{s:?} is not an SQS queue name: letters, digits, '-' and '_', at most 80 characters"
        )
    })
}

/// `--range START..END` for `puzzle`, or its whole space.
pub fn range_for(puzzle: &Puzzle, range: Option<&str>) -> Result<NonceRange, cnd_core::RangeError> {
    match range {
        Some(text) => NonceRange::parse_within(text, &puzzle.space()),
        None => Ok(puzzle.space()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_digits_only() {
        assert_eq!(parse_difficulty(" 8 "), Ok(8));
        assert_eq!(parse_difficulty("256"), Ok(256));
        for bad in [
            "+8",
            "-1",
            "8.0",
            "0x8",
            "",
            "257",
            "99999999999999999999999",
        ] {
            assert!(parse_difficulty(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_count("4"), Ok(4));
        assert_eq!(parse_threads("2"), Ok(2));
        assert_eq!(parse_threads(&max_threads().to_string()), Ok(max_threads()));
        let too_many = parse_threads(&(max_threads() + 1).to_string()).unwrap_err();
        assert!(
            too_many.contains(&format!("the {} allowed", max_threads())),
            "{too_many}"
        );
        assert!(parse_threads("4096").is_err() || max_threads() == 4096);
        assert_eq!(parse_repeat("3"), Ok(3));
        for bad in ["+4", "-4", "0", " ", "4 4"] {
            assert!(parse_count(bad).is_err(), "{bad:?}");
            assert!(parse_threads(bad).is_err(), "{bad:?}");
            assert!(parse_repeat(bad).is_err(), "{bad:?}");
        }
        assert!(parse_count("100001").is_err());
        assert_eq!(parse_progress_every("0.05"), Ok(Duration::from_millis(50)));
        assert_eq!(parse_progress_every("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["0.049", "1h1s", "1e300", "0", "-1", "nan"] {
            assert!(parse_progress_every(bad).is_err(), "{bad:?}");
        }
        assert!(parse_repeat("1001").is_err());
        assert!(parse_pod_list("1,+2").is_err());
        assert!(parse_difficulties("+20..22").is_err());
        assert!(parse_difficulties("20..+22").is_err());
    }

    #[test]
    fn grids_are_parsed_and_bounded() {
        assert_eq!(parse_pod_list("1,2,4,8,16").unwrap().0, [1, 2, 4, 8, 16]);
        assert_eq!(parse_pod_list("4, 1,4").unwrap().0, [1, 4]);
        assert!(parse_pod_list("1,0").is_err());
        assert!(parse_pod_list("").is_err());
        assert!(parse_pod_list("two").is_err());
        assert_eq!(
            parse_difficulties("20..26").unwrap().0,
            (20..=26).collect::<Vec<_>>()
        );
        assert_eq!(parse_difficulties("20..=22").unwrap().0, [20, 21, 22]);
        assert_eq!(parse_difficulties("24,20").unwrap().0, [20, 24]);
        assert_eq!(parse_difficulties("24").unwrap().0, [24]);
        assert!(parse_difficulties("26..20").is_err());
        assert!(parse_difficulties("20..300").is_err());
        assert!(parse_repeat("0").is_err());
        // At most 64 of each, however they are written.
        let many: Vec<String> = (1..=65).map(|n| n.to_string()).collect();
        assert!(parse_pod_list(&many[..64].join(",")).is_ok());
        let err = parse_pod_list(&many.join(",")).unwrap_err();
        assert!(err.contains("at most 64"), "{err}");
        assert!(parse_pod_list(&format!("{},1,1,1", many[..64].join(","))).is_ok());
        assert!(parse_difficulties("0..63").is_ok());
        assert!(parse_difficulties("0..64").is_err());
        assert!(parse_difficulties(&many.join(",")).is_err());
        assert!(parse_pod_list(
            &(1..=20000)
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(",")
        )
        .is_err());
    }

    #[test]
    fn durations_beyond_a_year_are_refused_not_panics() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("366days"), Ok(MAX_DURATION));
        assert!(parse_duration("500000000000years").is_err());
        assert!(parse_duration("367days").is_err());
        assert!(parse_duration("99999999999").is_err());
        assert!(parse_duration("0").is_err());
    }

    #[test]
    fn quantities_are_checked() {
        for ok in ["1", "2", "1.5", "500m", "250m"] {
            assert!(parse_cpu(ok).is_ok(), "{ok}");
        }
        for bad in ["", "0", "m", "1.2.3", "-1", "1 cpu", "0m", ".5"] {
            assert!(parse_cpu(bad).is_err(), "{bad}");
        }
        assert_eq!(cpu_cores("500m"), Some(0.5));
        for ok in ["128Mi", "1Gi", "500M", "1000000"] {
            assert!(parse_memory(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Mi", "12 Mi", "1.5Gi", "128mb", "0"] {
            assert!(parse_memory(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(parse_dns_label("cnd-runs").is_ok());
        assert!(parse_dns_label("Cnd").is_err());
        assert!(parse_dns_label("-x").is_err());
        assert!(parse_dns_subdomain("cnd.worker").is_ok());
        assert!(parse_queue_name("cnd-results").is_ok());
        assert!(parse_queue_name("a/b").is_err());
        assert!(parse_queue_url("ftp://x").is_err());
    }
}
